"""jaxdiff/train/checkpoint.py and the loop's resume through it: exact resume after SIGKILL,
clean stop on SIGTERM, restore onto another mesh, refusal of a mismatching checkpoint, init_from,
and which settings a resumed run may change.

Runs use 2 of the 8 host devices (subprocesses: 2 devices) to keep compilation short."""

import os
import signal

import numpy as np
import pytest
import train_toy as toy
from train_runs import DEVICES, train

from jaxdiff import methods
from jaxdiff.train import checkpoint, loop


def interrupted_worker(tmp_path, num_steps, delay, at_checkpoint, signum):
    """A 2-device worker training num_steps steps (checkpoints every 2, `delay` s per batch),
    sent `signum` once checkpoint `at_checkpoint` exists: (spec, process)."""
    workdir, out = str(tmp_path / "run"), str(tmp_path / "result")
    spec = {"workdir": workdir, "out": out, "runs": [num_steps], "delay": delay,
            "overrides": {"checkpoint.every": 2}}
    process = toy.start_worker(spec, num_devices=2)
    toy.wait_for_checkpoint(workdir, at_checkpoint, process)
    process.send_signal(signum)
    return spec, process


def test_resume_after_sigkill_is_bitwise_exact(tmp_path):
    spec, killed = interrupted_worker(tmp_path, 8, 0.3, 4, signal.SIGKILL)
    workdir, out = spec["workdir"], spec["out"]
    killed.wait(timeout=30)
    assert killed.returncode == -signal.SIGKILL
    latest = checkpoint.Checkpointer(os.path.join(workdir, "checkpoints"), keep=3).latest_step()
    assert 4 <= latest < 8

    toy.finish(toy.start_worker(dict(spec, delay=0.0), num_devices=2))
    record, resumed = toy.load_worker_output(out)
    assert min(record["runs"][0]["losses"], key=int) == str(latest + 1)

    # The uninterrupted reference runs in the same kind of process (2 forced CPU devices): XLA's
    # multi-threaded CPU kernels may round differently under another device count.
    reference_out = str(tmp_path / "reference_result")
    toy.finish(toy.start_worker({"workdir": str(tmp_path / "reference"), "out": reference_out,
                                 "runs": [8], "delay": 0.0, "overrides": {"checkpoint.every": 2}},
                                num_devices=2))
    reference, expected = toy.load_worker_output(reference_out)
    assert expected.keys() == resumed.keys()
    for name, value in expected.items():
        np.testing.assert_array_equal(resumed[name], value, err_msg=name)
    for step, loss in record["runs"][0]["losses"].items():
        assert loss == reference["runs"][0]["losses"][step]


def test_sigterm_saves_and_exits_cleanly(tmp_path):
    spec, process = interrupted_worker(tmp_path, 50, 0.2, 2, signal.SIGTERM)
    workdir, out = spec["workdir"], spec["out"]
    toy.finish(process, timeout=60)
    record, _ = toy.load_worker_output(out)
    assert record["runs"][0]["preempted"]
    stopped_at = max(map(int, record["runs"][0]["losses"]))
    assert 2 <= stopped_at < 50
    latest = checkpoint.Checkpointer(os.path.join(workdir, "checkpoints"), keep=3).latest_step()
    assert latest == stopped_at


def test_restore_onto_another_mesh_continues_with_the_same_loss(tmp_path):
    # A constant learning rate, so that the 4-step run and the 6-step runs follow one schedule.
    constant = {"optimizer.schedule": "constant"}
    data_parallel = {"mesh.data": 2, "mesh.fsdp": 1}
    train(tmp_path, "run", toy.toy_config(num_steps=4, **constant, **data_parallel))
    resumed = train(tmp_path, "run", toy.toy_config(num_steps=6, **constant,
                                                    **{"mesh.data": 1, "mesh.fsdp": 2}))
    assert [d["step"] for d in resumed.logged] == [5, 6]
    assert resumed.state.params["Conv_0"]["conv"]["kernel"].sharding.spec[-1] == "fsdp"
    reference = train(tmp_path, "reference",
                      toy.toy_config(num_steps=6, **constant, **data_parallel))
    np.testing.assert_allclose([d["loss"] for d in resumed.logged],
                               [d["loss"] for d in reference.logged[4:]], rtol=1e-5)


def test_mismatching_checkpoint_is_refused_with_the_differences(two_step_run):
    workdir, _ = two_step_run
    wider = toy.toy_config(num_steps=4, **{"model.features": 16})
    with pytest.raises(ValueError) as error:
        loop.train(wider, workdir, methods.build(wider), toy.toy_iterator(8), devices=DEVICES)
    message = str(error.value)
    assert "does not match this run" in message
    assert "config.model.features: checkpoint 8, run 16" in message
    assert "params.Conv_0/conv/kernel: checkpoint [3, 3, 3, 8, 'float32'], run [3, 3, 3, 16, " \
           "'float32']" in message


def test_init_from_copies_parameters_into_a_fresh_run(tmp_path, two_step_run):
    source_dir, source = two_step_run
    child_config = toy.toy_config(num_steps=2, init_from=source_dir)
    method = methods.build(child_config)
    run = loop.setup(child_config, method, DEVICES)
    child = checkpoint.Checkpointer(str(tmp_path / "child" / "checkpoints"), keep=1)
    state = loop.restore_or_initialize(child_config, method, run, child, iterator=None)
    assert int(state.step) == 0
    for name, value in toy.flat_params(source.state.params).items():
        np.testing.assert_array_equal(toy.flat_params(state.params)[name], value)
        np.testing.assert_array_equal(toy.flat_params(state.ema_params)[name],
                                      toy.flat_params(source.state.ema_params)[name])
    missing = toy.toy_config(init_from=str(tmp_path / "nowhere"))
    with pytest.raises(ValueError, match="has no checkpoint"):
        loop.restore_or_initialize(missing, method, run, child, iterator=None)


def test_compatibility_ignores_settings_that_may_change_on_resume():
    saved = {"config": {"model": {"features": 8}, "method": {"name": "toy", "steps": 100},
                        "num_steps": 10},
             "param_shapes": {"w": [3, "float32"]}}
    current = {"config": {"model": {"features": 8}, "method": {"name": "toy", "steps": 50},
                          "num_steps": 20},
               "param_shapes": {"w": [3, "float32"]}}
    assert checkpoint.compatibility_errors(saved, current) == []
    current["config"]["method"]["name"] = "ddpm"
    current["param_shapes"]["v"] = [1, "float32"]
    assert checkpoint.compatibility_errors(saved, current) == [
        "config.method.name: checkpoint 'toy', run 'ddpm'", "params.v is not in the checkpoint"]


def test_resume_with_captions_after_sigkill_is_bitwise_exact(tmp_path):
    """The same with text: captioned digits through the real pipeline (tokenized, one caption
    of several drawn per epoch), caption dropout, a jointly trained text encoder."""
    workdir, out = str(tmp_path / "run"), str(tmp_path / "result")
    spec = {"workdir": workdir, "out": out, "runs": [8], "delay": 0.3, "captions": True,
            "overrides": {"checkpoint.every": 2}}
    killed = toy.start_worker(spec, num_devices=2)
    toy.wait_for_checkpoint(workdir, 4, killed)
    killed.send_signal(signal.SIGKILL)
    killed.wait(timeout=30)
    latest = checkpoint.Checkpointer(os.path.join(workdir, "checkpoints"), keep=3).latest_step()
    assert 4 <= latest < 8
    toy.finish(toy.start_worker(dict(spec, delay=0.0), num_devices=2))
    record, resumed = toy.load_worker_output(out)
    reference_out = str(tmp_path / "reference_result")
    toy.finish(toy.start_worker(dict(spec, workdir=str(tmp_path / "reference"),
                                     out=reference_out, delay=0.0), num_devices=2))
    reference, expected = toy.load_worker_output(reference_out)
    assert any("text_encoder" in name for name in expected)
    assert expected.keys() == resumed.keys()
    for name, value in expected.items():
        np.testing.assert_array_equal(resumed[name], value, err_msg=name)
    for step, loss in record["runs"][0]["losses"].items():
        assert loss == reference["runs"][0]["losses"][step]
