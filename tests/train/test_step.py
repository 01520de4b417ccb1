"""jaxdiff/train/step.py, run through loop.train: sharded training equals one-device training
(with and without the accumulation scan), bfloat16 compute keeps float32 parameters, and
non-finite updates are skipped and counted."""

import jax
import numpy as np
import pytest

import train_toy as toy
from jaxdiff import methods
from jaxdiff.train import loop
from train_runs import train


@pytest.mark.parametrize("accum_steps", [1, 2])
def test_sharded_training_matches_one_device(tmp_path, accum_steps):
    """(data 4, fsdp 2) on 8 devices == one device, same global batch, with one microbatch (the
    step without a scan) and with two (the accumulation scan)."""
    overrides = {"batch_size": 16, "grad_accum_steps": accum_steps, "num_steps": 3}
    one = toy.toy_config(**overrides, **{"mesh.data": 1, "mesh.fsdp": 1})
    eight = toy.toy_config(**overrides, **{"mesh.data": 4, "mesh.fsdp": 2})
    single = loop.train(one, str(tmp_path / "one"), methods.build(one),
                        toy.toy_iterator(16), devices=jax.devices()[:1])
    sharded = loop.train(eight, str(tmp_path / "eight"), methods.build(eight),
                         toy.toy_iterator(16))
    assert len(sharded.state.params["Conv_0"]["conv"]["kernel"].sharding.device_set) == 8
    losses_single = [d["loss"] for d in single.logged]
    losses_sharded = [d["loss"] for d in sharded.logged]
    assert len(losses_single) == 3 and losses_single[0] != losses_single[-1]
    np.testing.assert_allclose(losses_sharded, losses_single, rtol=1e-5, atol=1e-6)
    for name, value in toy.flat_params(single.state.params).items():
        np.testing.assert_allclose(toy.flat_params(sharded.state.params)[name], value,
                                   rtol=1e-5, atol=1e-6, err_msg=name)
    assert int(sharded.state.step) == 3


def test_bfloat16_compute_keeps_float32_parameters(tmp_path):
    config = toy.toy_config(num_steps=2, **{"model.dtype": "bfloat16"})
    result = loop.train(config, str(tmp_path / "bf16"), methods.build(config),
                        toy.toy_iterator(8), devices=jax.devices()[:1])
    assert {x.dtype for x in jax.tree.leaves(result.state.params)} == {np.dtype("float32")}
    assert all(np.isfinite(d["loss"]) and d["update_skipped"] == 0 for d in result.logged)



def test_nonfinite_updates_are_skipped_and_counted(tmp_path, two_step_run):
    # Same run as two_step_run but 3 steps, the third batch poisoned: the third update is
    # skipped, so the parameters end where the 2-step run's did (both runs' first two steps are
    # the 2-step warm-up, whatever num_steps is).
    poisoned = train(tmp_path, "poisoned", toy.toy_config(num_steps=3), poison_batches=(2,))
    assert [d["update_skipped"] for d in poisoned.logged] == [0, 0, 1]
    assert np.isnan(poisoned.logged[2]["loss"])
    assert int(poisoned.state.nonfinite_total) == 1 and int(poisoned.state.step) == 3
    _, clean = two_step_run
    for name, value in toy.flat_params(clean.state.params).items():
        np.testing.assert_array_equal(toy.flat_params(poisoned.state.params)[name], value)

    streak = toy.toy_config(num_steps=6, max_nonfinite_streak=2)
    with pytest.raises(loop.NonFiniteError, match="the last 2 updates had a non-finite loss"):
        train(tmp_path, "streak", streak, poison_batches=(1, 2))
