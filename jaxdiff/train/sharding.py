"""Device mesh and sharding policy: mesh axes from the config, parameters sharded by rules on
their Flax logical axis names, batches split over every device.

The mesh has the axes `MESH_AXES = ("data", "fsdp", "tensor")`. The batch is split over
`BATCH_AXES = ("data", "fsdp")` (pure data parallelism when fsdp = 1); parameters and optimizer
moments are split over `fsdp` by the logical rules (ZeRO-3 / FSDP style: XLA gathers a parameter
where it is used). The `tensor` axis (default size 1) holds copies of the same rows: a rule such
as ("channels_out", "tensor") with ("channels_in", "fsdp") splits every kernel's output channels
over it (Megatron-style tensor parallelism for convolutions and dense layers: XLA's SPMD
partitioner then splits the activations' channels too), which lowers activation memory per chip
when one image per chip is already too much. It is the last mesh axis, so its devices are
neighbours (one host's chips). Config fields:

    config.mesh.data, config.mesh.fsdp, config.mesh.tensor
                                          sizes; exactly one may be -1, meaning "the rest"
    config.sharding.rules                 sequence of (logical name, mesh axis or None); names
                                          not listed are replicated. Default DEFAULT_RULES.
"""

from typing import Any, Mapping, Optional, Sequence

import flax.linen as nn
import jax
import numpy as np
import optax
from absl import logging
from jax.sharding import Mesh, NamedSharding, PartitionSpec

MESH_AXES = ("data", "fsdp", "tensor")
BATCH_AXES = ("data", "fsdp")
DEFAULT_RULES = (("channels_out", "fsdp"),)


def resolve_mesh_shape(sizes: Mapping[str, int], num_devices: int) -> tuple[int, ...]:
    """Sizes of MESH_AXES with a single -1 replaced by num_devices / (product of the others)."""
    unknown = set(sizes) - set(MESH_AXES)
    if unknown:
        raise ValueError(f"Unknown mesh axes {sorted(unknown)}; the mesh axes are {MESH_AXES}.")
    shape = [int(sizes.get(axis, 1)) for axis in MESH_AXES]
    if shape.count(-1) > 1 or any(s == 0 or s < -1 for s in shape):
        raise ValueError(f"Mesh sizes {dict(zip(MESH_AXES, shape))} must be positive, with at "
                         "most one -1.")
    known = int(np.prod([s for s in shape if s != -1]))
    if -1 in shape:
        if num_devices % known:
            raise ValueError(f"Mesh sizes {dict(zip(MESH_AXES, shape))} cannot fill "
                             f"{num_devices} devices: {num_devices} is not divisible by {known}.")
        shape[shape.index(-1)] = num_devices // known
    if int(np.prod(shape)) != num_devices:
        raise ValueError(f"Mesh sizes {dict(zip(MESH_AXES, shape))} multiply to "
                         f"{int(np.prod(shape))}, not to the {num_devices} devices.")
    return tuple(shape)


def create_mesh(sizes: Mapping[str, int], devices: Optional[Sequence[Any]] = None) -> Mesh:
    """A mesh with axes MESH_AXES over `devices` (default: all devices), Auto axis types."""
    devices = jax.devices() if devices is None else list(devices)
    shape = resolve_mesh_shape(sizes, len(devices))
    return jax.make_mesh(shape, MESH_AXES, devices=devices,
                         axis_types=(jax.sharding.AxisType.Auto,) * len(MESH_AXES))


def rules_from_config(rules: Optional[Sequence[Sequence[Any]]]) -> tuple:
    """The (logical name, mesh axis or None) rules, checked against MESH_AXES."""
    rules = DEFAULT_RULES if rules is None else tuple(tuple(rule) for rule in rules)
    for rule in rules:
        if len(rule) != 2 or (rule[1] is not None and rule[1] not in MESH_AXES):
            raise ValueError(f"Sharding rule {rule} must be (logical name, one of {MESH_AXES} "
                             "or None).")
    return rules


def spec_for_shape(shape: Sequence[int], logical_names: Optional[Sequence[Optional[str]]],
                   rules: Sequence[Sequence[Any]], mesh: Mesh,
                   fallbacks: Optional[list] = None) -> PartitionSpec:
    """The mesh PartitionSpec of one array: each dimension gets the mesh axis its logical name
    maps to, unless the dimension is not divisible by that axis size or the axis is already
    used by an earlier dimension; then the dimension is replicated and, if `fallbacks` is a
    list, (logical name, size, axis, reason) is appended to it."""
    if logical_names is None:
        return PartitionSpec()
    rule_map = dict(rules)
    used, spec = set(), []
    for size, name in zip(shape, logical_names):
        axis = rule_map.get(name)
        reason = ("already splits an earlier dimension" if axis in used else
                  "does not divide it" if axis is not None and size % mesh.shape[axis] else None)
        if reason and fallbacks is not None:
            fallbacks.append((name, size, axis, reason))
        if axis is None or reason:
            spec.append(None)
        else:
            spec.append(axis)
            used.add(axis)
    return PartitionSpec(*spec)


def param_shardings(abstract_variables: Any, mesh: Mesh, rules: Sequence[Sequence[Any]]) -> Any:
    """NamedShardings for a tree of (possibly `nn.LogicallyPartitioned`) abstract parameters.

    Returns a tree with the structure of the unboxed parameters. Dimensions that a rule maps to
    a mesh axis but that stay replicated are logged, with why."""
    logical_specs = nn.get_partition_spec(abstract_variables)
    shapes = nn.meta.unbox(abstract_variables)
    fallbacks = []

    def to_sharding(shape_struct, logical_spec):
        names = tuple(logical_spec) if len(logical_spec) else None
        return NamedSharding(mesh, spec_for_shape(shape_struct.shape, names, rules, mesh,
                                                  fallbacks))

    shardings = jax.tree.map(to_sharding, shapes, logical_specs,
                             is_leaf=lambda x: isinstance(x, PartitionSpec))
    if fallbacks:
        kinds = sorted({f"{name} of size {size} over {axis} ({mesh.shape[axis]}): {reason}"
                        for name, size, axis, reason in fallbacks})
        logging.warning("Sharding: %d parameter dimensions stay replicated instead of following "
                        "their rule: %s.", len(fallbacks), "; ".join(kinds))
    return shardings


def opt_state_shardings(tx: optax.GradientTransformation, abstract_params: Any,
                        params_sharding: Any, mesh: Mesh) -> Any:
    """Shardings of `tx.init(params)`: per-parameter moments follow their parameter; every other
    leaf (step counts, scalars) is replicated."""
    abstract_state = jax.eval_shape(tx.init, abstract_params)
    replicated = NamedSharding(mesh, PartitionSpec())
    return optax.tree_map_params(
        tx, lambda _, sharding: sharding, abstract_state, params_sharding,
        transform_non_params=lambda _: replicated)


def batch_sharding(mesh: Mesh) -> NamedSharding:
    """Leading (batch) dimension split over BATCH_AXES, the rest replicated (and replicated over
    the tensor axis)."""
    return NamedSharding(mesh, PartitionSpec(BATCH_AXES))


def batch_devices(mesh: Mesh) -> int:
    """How many ways the batch is split: the data x fsdp devices."""
    return int(np.prod([mesh.shape[axis] for axis in BATCH_AXES]))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec())
