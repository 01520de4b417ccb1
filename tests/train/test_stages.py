"""Progressive training in stages within one run (MDM sec. 3.3): a 8 px core, then 16 -> 8 px."""

import importlib.util
import os

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from jaxdiff import main
from jaxdiff.train import prepare
from jaxdiff.train.stages import stage_runs

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def mdm_config(**overrides):
    spec = importlib.util.spec_from_file_location(
        "mdm_config", os.path.join(REPO_ROOT, "configs", "mdm.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    config = module.get_config()
    config.update(dict(batch_size=8, log_every=1, sample=dict(every=0, num_samples=8, seed=1),
                       checkpoint=dict(every=2, keep=2, async_save=False)))
    config.method.sample_steps = 4
    config.update(overrides)
    return config


def test_stage_runs_merge_overrides_and_chain_init_from():
    config = mdm_config(stages=[dict(num_steps=3, method=dict(active_levels=1),
                                     data=dict(resolution=8)),
                                dict(num_steps=5, method=dict(active_levels=2))])
    (first, first_dir), (second, second_dir) = stage_runs(config, "/runs/x")
    assert (first_dir, second_dir) == ("/runs/x/stage_0", "/runs/x/stage_1")
    assert (first.num_steps, first.method.active_levels, first.data.resolution) == (3, 1, 8)
    assert (second.num_steps, second.method.active_levels, second.data.resolution) == (5, 2, 32)
    assert first.init_from == "" and second.init_from == "/runs/x/stage_0"
    assert second.method.sampler == config.method.sampler and list(second.stages) == []
    assert stage_runs(mdm_config(), "/runs/y") == [(mdm_config(), "/runs/y")]
    with pytest.raises(ValueError, match="Stage 1 of config.stages must set num_steps"):
        stage_runs(mdm_config(stages=[dict(num_steps=1), dict(data=dict(resolution=8))]), "/r")


def saved_params(stage_dir, step):
    return ocp.StandardCheckpointer().restore(os.path.join(stage_dir, "checkpoints", str(step),
                                                           "state"))["params"]


def test_two_stage_run_trains_the_core_then_the_outer_level_and_resumes(tmp_path):
    config = mdm_config(stages=[
        dict(num_steps=2, method=dict(active_levels=1), data=dict(resolution=8)),
        dict(num_steps=2, method=dict(active_levels=2), data=dict(resolution=16))])
    workdir = str(tmp_path / "run")
    result = main.run(prepare.prepare(config, workdir, "train"), "train")
    assert int(result.state.step) == 2 and not result.preempted
    core = saved_params(os.path.join(workdir, "stage_0"), 2)
    # Stage 0 trained only the 8 px core: the outer level's zero-initialised adapters and head
    # got zero gradients and are still exactly zero when stage 1 starts from them.
    for name in ("in_adapter", "out_adapter", "head"):
        for leaf in jax.tree_util.tree_leaves(core[name]):
            if leaf.ndim > 1 or name != "head":
                np.testing.assert_array_equal(leaf, 0.0)
    final = saved_params(os.path.join(workdir, "stage_1"), 2)
    assert not np.array_equal(final["out_adapter"]["conv"]["kernel"], 0.0)
    # Running the same command again finds both stages finished and trains nothing more.
    again = main.run(prepare.prepare(config, workdir, "train"), "train")
    assert int(again.state.step) == 2
    np.testing.assert_array_equal(saved_params(os.path.join(workdir, "stage_1"), 2)
                                  ["out_adapter"]["conv"]["kernel"],
                                  final["out_adapter"]["conv"]["kernel"])
    assert sorted(os.listdir(os.path.join(workdir, "stage_1", "checkpoints"))) == ["2"]
