"""Mesh construction, sharding rules, and sharded training equal to single-device training."""

import jax
import numpy as np
import optax
import pytest
from jax.sharding import PartitionSpec as P

import train_toy as toy
from jaxdiff import methods
from jaxdiff.train import loop, sharding, state


def test_mesh_shape_fills_the_rest_and_validates():
    assert sharding.resolve_mesh_shape({"data": -1, "fsdp": 2}, 8) == (4, 2)
    assert sharding.resolve_mesh_shape({"data": 2, "fsdp": -1}, 8) == (2, 4)
    assert sharding.resolve_mesh_shape({"data": 8}, 8) == (8, 1)
    with pytest.raises(ValueError, match="multiply to 6, not to the 8 devices"):
        sharding.resolve_mesh_shape({"data": 3, "fsdp": 2}, 8)
    with pytest.raises(ValueError, match="8 is not divisible by 3"):
        sharding.resolve_mesh_shape({"data": -1, "fsdp": 3}, 8)
    with pytest.raises(ValueError, match="Unknown mesh axes"):
        sharding.resolve_mesh_shape({"model": 2}, 8)
    with pytest.raises(ValueError, match="at most one -1"):
        sharding.resolve_mesh_shape({"data": -1, "fsdp": -1}, 8)
    mesh = sharding.create_mesh({"data": 4, "fsdp": 2})
    assert dict(mesh.shape) == {"data": 4, "fsdp": 2}
    assert mesh.axis_types == (jax.sharding.AxisType.Auto,) * 2


def test_rules_map_logical_names_with_divisibility_fallback():
    mesh = sharding.create_mesh({"data": 4, "fsdp": 2})
    rules = sharding.rules_from_config(None)
    conv = ("kernel_h", "kernel_w", "channels_in", "channels_out")
    assert sharding.spec_for_shape((3, 3, 3, 8), conv, rules, mesh) == P(None, None, None, "fsdp")
    assert sharding.spec_for_shape((3, 3, 8, 3), conv, rules, mesh) == P(None, None, None, None)
    # A mesh axis is used once per array, by the first dimension that maps to it.
    both = sharding.rules_from_config([("channels_in", "fsdp"), ("channels_out", "fsdp")])
    assert sharding.spec_for_shape((4, 8), ("channels_in", "channels_out"), both, mesh) == P(
        "fsdp", None)
    assert sharding.spec_for_shape((4,), None, rules, mesh) == P()
    with pytest.raises(ValueError, match="must be \\(logical name"):
        sharding.rules_from_config([("channels_out", "model")])


def test_parameter_and_optimizer_shardings_of_the_toy_model():
    config = toy.toy_config(**{"mesh.data": 4, "mesh.fsdp": 2})
    run = loop.setup(config, methods.build(config))
    params = run.state_shardings.params
    assert params["Conv_0"]["conv"]["kernel"].spec == P(None, None, None, "fsdp")
    assert params["Conv_0"]["conv"]["bias"].spec == P("fsdp")
    # 3 output channels do not split over fsdp = 2: replicated.
    assert params["Conv_1"]["conv"]["kernel"].spec == P(None, None, None, None)
    adam = run.state_shardings.opt_state[1][0]
    assert isinstance(adam, optax.ScaleByAdamState)
    assert adam.count.spec == P()
    assert adam.mu["Conv_0"]["conv"]["kernel"].spec == P(None, None, None, "fsdp")
    assert run.abstract_state.params["Conv_0"]["conv"]["kernel"].sharding.spec == P(
        None, None, None, "fsdp")
    sizes = [x.size for x in jax.tree.leaves(run.abstract_state.params)]
    assert sum(sizes) == 3 * 3 * 3 * 8 + 8 + 8 + 8 + 3 * 3 * 8 * 3 + 3


def test_learning_rate_schedule_values():
    config = toy.toy_config()
    cosine = state.learning_rate_schedule(config.optimizer, num_steps=6)
    # warm-up 2 steps to 1e-2, then 1e-2 * (1 + cos(pi * (s - 2) / 4)) / 2.
    expected = [0.0, 5e-3, 1e-2, 1e-2 * (1 + np.cos(np.pi / 4)) / 2, 5e-3,
                1e-2 * (1 + np.cos(3 * np.pi / 4)) / 2, 0.0]
    np.testing.assert_allclose([cosine(s) for s in range(7)], expected, atol=1e-9)
    config.optimizer.schedule = "constant"
    constant = state.learning_rate_schedule(config.optimizer, num_steps=6)
    np.testing.assert_allclose([constant(s) for s in (1, 2, 5, 100)], [5e-3, 1e-2, 1e-2, 1e-2])
    config.optimizer.schedule = "linear"
    with pytest.raises(ValueError, match="Unknown learning-rate schedule 'linear'"):
        state.learning_rate_schedule(config.optimizer, num_steps=6)


def test_ema_update_formula():
    ema = state.ema_update({"w": np.array([1.0, 2.0])}, {"w": np.array([3.0, 0.0])}, 0.9)
    np.testing.assert_allclose(ema["w"], [0.9 * 1 + 0.1 * 3, 0.9 * 2 + 0.1 * 0])


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


def test_validation_rejects_indivisible_batch():
    config = toy.toy_config(batch_size=12, grad_accum_steps=1)
    with pytest.raises(ValueError, match="batch_size 12 must be a positive multiple of "
                                         "grad_accum_steps x devices = 1 x 8"):
        loop.validate_config(config, num_devices=8, process_count=1)
    config = toy.toy_config(**{"checkpoint.every": 0})
    with pytest.raises(ValueError, match="config.checkpoint.every must be positive"):
        loop.validate_config(config, num_devices=8, process_count=1)


def test_bfloat16_compute_keeps_float32_parameters(tmp_path):
    config = toy.toy_config(num_steps=2, **{"model.dtype": "bfloat16"})
    result = loop.train(config, str(tmp_path / "bf16"), methods.build(config),
                        toy.toy_iterator(8), devices=jax.devices()[:1])
    assert {x.dtype for x in jax.tree.leaves(result.state.params)} == {np.dtype("float32")}
    assert all(np.isfinite(d["loss"]) and d["update_skipped"] == 0 for d in result.logged)
