"""jaxdiff/train/sharding.py: mesh construction, the sharding rules with their divisibility
fallback, and the parameter and optimizer-state shardings of the toy model."""

import logging

import jax
import optax
import pytest
from jax.sharding import PartitionSpec as P

import train_toy as toy
from jaxdiff import methods
from jaxdiff.train import loop, sharding


def test_mesh_shape_fills_the_rest_and_validates():
    assert sharding.resolve_mesh_shape({"data": -1, "fsdp": 2}, 8) == (4, 2, 1)
    assert sharding.resolve_mesh_shape({"data": 2, "fsdp": -1}, 8) == (2, 4, 1)
    assert sharding.resolve_mesh_shape({"data": 8}, 8) == (8, 1, 1)
    assert sharding.resolve_mesh_shape({"data": -1, "fsdp": 2, "tensor": 2}, 8) == (2, 2, 2)
    with pytest.raises(ValueError, match="multiply to 6, not to the 8 devices"):
        sharding.resolve_mesh_shape({"data": 3, "fsdp": 2}, 8)
    with pytest.raises(ValueError, match="8 is not divisible by 3"):
        sharding.resolve_mesh_shape({"data": -1, "fsdp": 3}, 8)
    with pytest.raises(ValueError, match="Unknown mesh axes"):
        sharding.resolve_mesh_shape({"model": 2}, 8)
    with pytest.raises(ValueError, match="at most one -1"):
        sharding.resolve_mesh_shape({"data": -1, "fsdp": -1}, 8)
    mesh = sharding.create_mesh({"data": 4, "fsdp": 2})
    assert dict(mesh.shape) == {"data": 4, "fsdp": 2, "tensor": 1}
    assert mesh.axis_types == (jax.sharding.AxisType.Auto,) * 3


def test_the_tensor_axis_splits_channels_and_copies_the_batch():
    """tensor = 2: kernels' output channels split over it by a rule, the batch split over data x
    fsdp only."""
    config = toy.toy_config(**{"mesh.data": 2, "mesh.fsdp": 2, "mesh.tensor": 2})
    config.sharding.rules = [("channels_in", "fsdp"), ("channels_out", "tensor")]
    run = loop.setup(config, methods.build(config))
    # Conv_0 maps 3 image channels (not divisible by fsdp = 2: replicated) to its features.
    kernel = run.state_shardings.params["Conv_0"]["conv"]["kernel"]
    assert kernel.spec == P(None, None, None, "tensor")
    assert sharding.batch_sharding(run.mesh).spec == P(("data", "fsdp"))
    assert sharding.batch_devices(run.mesh) == 4


def test_rules_map_logical_names_with_divisibility_fallback():
    mesh = sharding.create_mesh({"data": 4, "fsdp": 2})
    rules = sharding.rules_from_config(None)
    conv = ("kernel_h", "kernel_w", "channels_in", "channels_out")
    assert sharding.spec_for_shape((3, 3, 3, 8), conv, rules, mesh) == P(None, None, None, "fsdp")
    assert sharding.spec_for_shape((3, 3, 8, 3), conv, rules, mesh) == P(None, None, None, None)
    # A mesh axis is used once per array, by the first dimension that maps to it.
    both = sharding.rules_from_config([("channels_in", "fsdp"), ("channels_out", "fsdp")])
    fallbacks = []
    assert sharding.spec_for_shape((4, 8), ("channels_in", "channels_out"), both, mesh,
                                   fallbacks) == P("fsdp", None)
    assert fallbacks == [("channels_out", 8, "fsdp", "already splits an earlier dimension")]
    assert sharding.spec_for_shape((4,), None, rules, mesh) == P()
    with pytest.raises(ValueError, match="must be \\(logical name"):
        sharding.rules_from_config([("channels_out", "model")])


def test_parameter_and_optimizer_shardings_of_the_toy_model(caplog):
    config = toy.toy_config(**{"mesh.data": 4, "mesh.fsdp": 2})
    caplog.set_level(logging.INFO, logger="absl")
    run = loop.setup(config, methods.build(config))
    # The fallback to replication is logged, not silent.
    assert ("Sharding: 2 parameter dimensions stay replicated instead of following their rule: "
            "channels_out of size 3 over fsdp (2): does not divide it.") in caplog.text
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
