"""Logically partitioned primitives shared by the jaxdiff networks (Flax linen, NHWC).

Every parameter is created through the wrappers below, which attach the logical axis names of
the shared contracts with `nn.with_logical_partitioning`, so that sharding rules can map them to
mesh axes:
    conv kernels      ("kernel_h", "kernel_w", "channels_in", "channels_out")
    dense kernels     ("channels_in", "channels_out")
    biases            ("channels_out",)
    norm scale/bias   ("channels",)
    embedding tables  ("vocab", "channels_out")
Parameters are stored in `param_dtype` (float32); activations are computed in `dtype` (e.g.
bfloat16). Normalisations are always computed in float32 and cast back (so is the attention
softmax, attention.py).

Default initialiser: variance scaling with scale 1, fan_avg, uniform (Glorot uniform), as in
the DDPM reference code (Ho et al. 2020, `diffusion_tf/nn.py`); layers whose output enters a
residual sum can be zero-initialised so that every block starts as the identity (Nichol &
Dhariwal 2021, "Improved DDPM"; Dhariwal & Nichol 2021, "ADM").

Also here: `create_module` (keyword-checked construction of a network from a preset or config),
`remat_if` (optional rematerialisation under a named policy) and `resolve_dtype`. Blocks that
depend on dropout take `train` as their last positional argument, so `remat` can mark it
static. The blocks built from these primitives
live in conditioning.py, attention.py and blocks.py.
"""

from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

Dtype = Any

CONV_KERNEL_AXES = ("kernel_h", "kernel_w", "channels_in", "channels_out")
DENSE_KERNEL_AXES = ("channels_in", "channels_out")
BIAS_AXES = ("channels_out",)
NORM_AXES = ("channels",)
EMBEDDING_AXES = ("vocab", "channels_out")
LOGICAL_AXIS_NAMES = frozenset(
    CONV_KERNEL_AXES + DENSE_KERNEL_AXES + BIAS_AXES + NORM_AXES + EMBEDDING_AXES)

default_kernel_init = nn.initializers.variance_scaling(1.0, "fan_avg", "uniform")


def _kernel_init(zero_init: bool):
    return nn.initializers.zeros_init() if zero_init else default_kernel_init


# ----------------------------------------------------------------------------------------------
# Logically partitioned wrappers.


class Conv(nn.Module):
    """A 'SAME'-padded convolution whose kernel and bias carry logical axis names."""

    features: int
    kernel_size: Sequence[int] = (3, 3)
    strides: Sequence[int] = (1, 1)
    zero_init: bool = False
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x):
        return nn.Conv(
            self.features, tuple(self.kernel_size), strides=tuple(self.strides), padding="SAME",
            dtype=self.dtype, param_dtype=self.param_dtype,
            kernel_init=nn.with_logical_partitioning(
                _kernel_init(self.zero_init), CONV_KERNEL_AXES),
            bias_init=nn.with_logical_partitioning(nn.initializers.zeros_init(), BIAS_AXES),
            name="conv")(x)


class Dense(nn.Module):
    """A dense layer over the last axis whose kernel and bias carry logical axis names."""

    features: int
    zero_init: bool = False
    use_bias: bool = True
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x):
        return nn.Dense(
            self.features, use_bias=self.use_bias, dtype=self.dtype,
            param_dtype=self.param_dtype,
            kernel_init=nn.with_logical_partitioning(
                _kernel_init(self.zero_init), DENSE_KERNEL_AXES),
            bias_init=nn.with_logical_partitioning(nn.initializers.zeros_init(), BIAS_AXES),
            name="dense")(x)


def check_num_groups(channels: int, num_groups: int):
    """Raise ValueError unless num_groups is positive and divides the channel count."""
    if num_groups <= 0 or channels % num_groups:
        raise ValueError(
            f"GroupNorm needs num_groups ({num_groups}) to be positive and divide the channel "
            f"count ({channels}).")


class GroupNorm(nn.Module):
    """Group normalisation (Wu & He 2018) over the last axis, computed in float32.

    y = (x - mean_g) / sqrt(var_g + epsilon) * scale + bias, statistics per sample and group over
    all non-batch axes. The result is cast back to `dtype`.
    """

    num_groups: int = 32
    epsilon: float = 1e-5
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x):
        check_num_groups(x.shape[-1], self.num_groups)
        y = nn.GroupNorm(
            num_groups=self.num_groups, epsilon=self.epsilon, dtype=jnp.float32,
            param_dtype=self.param_dtype,
            scale_init=nn.with_logical_partitioning(nn.initializers.ones_init(), NORM_AXES),
            bias_init=nn.with_logical_partitioning(nn.initializers.zeros_init(), NORM_AXES),
            name="norm")(x.astype(jnp.float32))
        return y.astype(self.dtype)


class LayerNorm(nn.Module):
    """Layer normalisation (Ba et al. 2016) over the last axis, computed in float32."""

    epsilon: float = 1e-6
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x):
        y = nn.LayerNorm(
            epsilon=self.epsilon, dtype=jnp.float32, param_dtype=self.param_dtype,
            scale_init=nn.with_logical_partitioning(nn.initializers.ones_init(), NORM_AXES),
            bias_init=nn.with_logical_partitioning(nn.initializers.zeros_init(), NORM_AXES),
            name="norm")(x.astype(jnp.float32))
        return y.astype(self.dtype)


class Embed(nn.Module):
    """An embedding table with logical axes ("vocab", "channels_out"), N(0, 1) initialised."""

    num_embeddings: int
    features: int
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, ids):
        return nn.Embed(
            self.num_embeddings, self.features, dtype=self.dtype, param_dtype=self.param_dtype,
            embedding_init=nn.with_logical_partitioning(
                nn.initializers.normal(1.0), EMBEDDING_AXES),
            name="embedding")(ids)


def create_module(module_class, **kwargs):
    """`module_class(**kwargs)`, raising ValueError for a keyword that is not one of its fields
    (the `create` of each network module, used on preset and config keyword arguments)."""
    fields = set(module_class.__dataclass_fields__) - {"parent", "name"}
    unknown = sorted(set(kwargs) - fields)
    if unknown:
        raise ValueError(f"Unknown {module_class.__name__} arguments {unknown}; expected some "
                         f"of {sorted(fields)}.")
    return module_class(**kwargs)


# Rematerialisation policies by config name: what a rematerialised block keeps from its forward
# pass for the backward pass (everything else is recomputed). "none" turns remat off; "full"
# keeps nothing (plain jax.checkpoint); the other names are jax.checkpoint_policies, e.g.
# "dots_with_no_batch_dims_saveable" keeps the outputs of matmuls without batch dimensions
# (dense layers), recomputing convolutions, norms and activations.
REMAT_POLICIES = ("none", "full", "dots_saveable", "dots_with_no_batch_dims_saveable",
                  "checkpoint_dots", "checkpoint_dots_with_no_batch_dims", "everything_saveable")

DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16, "float16": jnp.float16}


def check_remat(remat) -> None:
    """ValueError in one sentence unless `remat` is a bool or a name in REMAT_POLICIES."""
    if not isinstance(remat, bool) and remat not in REMAT_POLICIES:
        raise ValueError(f"config.model.remat must be true, false or one of {REMAT_POLICIES}, "
                         f"got {remat!r}.")


def resolve_dtype(name: str, value) -> Dtype:
    """A dtype given by name ("float32", "bfloat16", "float16") or as a dtype, checked; `name`
    is the config field for the error sentence."""
    if isinstance(value, str):
        if value not in DTYPES:
            raise ValueError(f"config.model.{name} must be one of {sorted(DTYPES)}, got "
                             f"{value!r}.")
        return DTYPES[value]
    return value


def remat_if(module_class, remat, static_argnums: Sequence[int] = ()):
    """`module_class` rematerialised as `remat` says (a bool or a name of REMAT_POLICIES): False
    or "none" returns it unchanged, True or "full" saves nothing, a policy name saves what that
    jax.checkpoint_policies policy allows.

    static_argnums count `self` as argument 0 (Flax convention), e.g. (3,) for the `train` flag of
    `ResBlock.__call__(self, x, emb, train)`. Rematerialisation recomputes the block's activations
    in the backward pass instead of storing them; it changes memory and FLOPs, not results.
    """
    check_remat(remat)
    if remat is False or remat == "none":
        return module_class
    policy = None if remat is True or remat == "full" else getattr(jax.checkpoint_policies, remat)
    return nn.remat(module_class, static_argnums=tuple(static_argnums), policy=policy)
