"""Every preset of every config file builds: its config validates for the mesh it asks for, its
method and network build, and its train step traces with abstract inputs (jax.eval_shape: no
memory, no compilation), so a broken preset fails here. Presets whose data must be prepared by
the user (tfds, folders) are traced without their data."""

import glob
import os
import runpy

import jax
import pytest

from jaxdiff.train import prepare
from jaxdiff.train import step as step_lib

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Every preset this test covers: a preset added to a config file without being listed here fails
# test_every_preset_is_covered.
COVERED = {
    "attenuation": ("cifar10", "cpu"),
    "cold": ("blur", "cpu", "cpu_blur", "cpu_decolorize", "cpu_inpaint", "cpu_mix",
             "cpu_pixelate", "decolorize", "inpaint", "mix", "pixelate"),
    "ddpm": ("cifar10", "cpu", "iddpm_cifar10"),
    "mdm": ("cc12m1024", "cc12m256", "cc12m64", "celeba_hq1024", "celeba_hq1024_stage1",
            "celeba_hq1024_stage2", "cpu", "cpu_text", "imagenet256", "imagenet64"),
    "simple_diffusion": ("cpu", "imagenet128", "imagenet256", "imagenet512"),
}


def config_module(name):
    return runpy.run_path(os.path.join(REPO_ROOT, "configs", f"{name}.py"))


def test_every_preset_is_covered():
    files = sorted(os.path.splitext(os.path.basename(path))[0]
                   for path in glob.glob(os.path.join(REPO_ROOT, "configs", "*.py")))
    assert files == sorted(COVERED)
    for name in files:
        assert sorted(config_module(name)["PRESETS"]) == sorted(COVERED[name]), name


@pytest.mark.parametrize("name, preset", [(name, preset) for name in sorted(COVERED)
                                          for preset in COVERED[name]])
def test_preset_builds_and_its_train_step_traces(name, preset):
    config = config_module(name)["get_config"](preset)
    stage = prepare.prepare_stage(config, "/tmp/unused", "train", jax.devices(), read_data=False)
    method, run = stage.method, stage.run
    train_step = step_lib.make_train_step(method, run.tx, run.schedule,
                                          accum_steps=config.grad_accum_steps,
                                          ema_decay=config.ema_decay, mesh=run.mesh)
    new_state, metrics = jax.eval_shape(train_step, run.abstract_state,
                                        prepare.abstract_batch(config, method))
    assert metrics["loss"].shape == () and metrics["grad_norm"].shape == ()
    assert jax.tree.structure(new_state) == jax.tree.structure(run.abstract_state)
    assert [x.shape for x in jax.tree.leaves(new_state.params)] == [
        x.shape for x in jax.tree.leaves(run.abstract_state.params)]
