"""Tests of jaxdiff/models/layers.py (the logically partitioned primitives): values computed by
hand from the formulas in the docstrings.

Also holds the small helpers that the other model tests reuse (logical-axis walk, a few Adam
steps, the every-leaf-changed check, fast compilation).
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxdiff.models import layers as L

KEY = jax.random.key(0)
# Tests compile with XLA's backend optimisation level 0: half the compile time on CPU, and
# these tests check values, not speed.
FAST_COMPILE = {"xla_backend_optimization_level": 0}


def fast_jit(fn):
    return jax.jit(fn, compiler_options=FAST_COMPILE)


# ----------------------------------------------------------------------------------------------
# Helpers shared with the network tests.


def assert_logical_axes(boxed_params):
    """Every parameter is LogicallyPartitioned with the contract's names for its kind."""
    is_box = lambda x: isinstance(x, nn.LogicallyPartitioned)
    flat, _ = jax.tree_util.tree_flatten_with_path(boxed_params, is_leaf=is_box)
    assert flat
    for path, leaf in flat:
        assert is_box(leaf), f"{jax.tree_util.keystr(path)} has no logical axis names"
        assert leaf.value.dtype == jnp.float32
        assert len(leaf.names) == leaf.value.ndim
        assert set(leaf.names) <= L.LOGICAL_AXIS_NAMES
        name = path[-1].key
        if name in ("scale",) or (name == "bias" and path[-2].key == "norm"):
            assert leaf.names == L.NORM_AXES, jax.tree_util.keystr(path)
        elif name == "bias":
            assert leaf.names == L.BIAS_AXES, jax.tree_util.keystr(path)
        elif name == "embedding":
            assert leaf.names == L.EMBEDDING_AXES
        elif name == "kernel":
            expected = L.CONV_KERNEL_AXES if leaf.value.ndim == 4 else L.DENSE_KERNEL_AXES
            assert leaf.names == expected, jax.tree_util.keystr(path)
        else:
            raise AssertionError(f"unexpected parameter {jax.tree_util.keystr(path)}")


def adam_steps(value_and_grad_fn, params, steps=4, learning_rate=1e-2):
    """A few Adam steps with a jitted value_and_grad_fn(params, key) -> (loss, grads); returns
    the new params. The gradient function is the caller's, so a test can reuse its compilation.
    Four steps let the gradient reach every layer behind the zero-initialised ones."""
    optimizer = optax.adam(learning_rate)
    opt_state = optimizer.init(params)

    @fast_jit
    def update(params, opt_state, grads):
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state

    for i in range(steps):
        loss, grads = value_and_grad_fn(params, jax.random.fold_in(KEY, i))
        assert np.isfinite(loss)
        params, opt_state = update(params, opt_state, grads)
    return params


def assert_same_value_and_grad(remat, plain):
    """(loss, grads) with and without remat agree: same dropout masks, so only float32
    reassociation in the recomputed backward differs (relative 1e-4 on gradients)."""
    np.testing.assert_allclose(remat[0], plain[0], rtol=1e-6)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6),
                 remat[1], plain[1])


def assert_bfloat16_close(bf16_outputs, f32_outputs):
    """A bfloat16-compute forward is float32 and within 2% of each float32 output's scale.

    bfloat16 keeps 8 significant bits (relative step 2^-8 = 0.4%); through the ~20 layers of
    the tiny networks the largest error measured is 0.3-0.6% of the largest output value."""
    for ours, reference in zip(jax.tree_util.tree_leaves(bf16_outputs),
                               jax.tree_util.tree_leaves(f32_outputs)):
        assert ours.dtype == jnp.float32
        scale = np.max(np.abs(reference))
        assert scale > 0.1
        assert np.max(np.abs(ours - reference)) < 0.02 * scale


def assert_every_leaf_changed(before, after):
    flat_before, _ = jax.tree_util.tree_flatten_with_path(before)
    flat_after = jax.tree_util.tree_leaves(after)
    unchanged = [jax.tree_util.keystr(path) for (path, a), b in zip(flat_before, flat_after)
                 if np.array_equal(np.asarray(a), np.asarray(b))]
    assert not unchanged, f"parameters never updated: {unchanged}"


# ----------------------------------------------------------------------------------------------
# Wrappers.


def test_wrappers_carry_axis_names_and_compute_in_dtype():
    x = jnp.ones((2, 4, 4, 6))
    for module in (L.Conv(8, dtype=jnp.bfloat16), L.Dense(8, dtype=jnp.bfloat16),
                   L.GroupNorm(3, dtype=jnp.bfloat16), L.LayerNorm(dtype=jnp.bfloat16)):
        variables = module.init(KEY, x)
        assert_logical_axes(variables["params"])
        assert module.apply(variables, x).dtype == jnp.bfloat16
    variables = L.Embed(5, 8).init(KEY, jnp.array([0, 4]))
    assert_logical_axes(variables["params"])


def test_remat_policies_and_dtypes_are_checked_by_name():
    for remat in (True, False, "none", "full", "dots_with_no_batch_dims_saveable"):
        L.check_remat(remat)
    with pytest.raises(ValueError, match="^config.model.remat must be true, false or one of "):
        L.check_remat("dots")
    assert L.resolve_dtype("dtype", "bfloat16") == jnp.bfloat16
    assert L.resolve_dtype("dtype", jnp.float32) == jnp.float32
    with pytest.raises(ValueError, match="^config.model.dtype must be one of "):
        L.resolve_dtype("dtype", "bf16")


def test_create_module_rejects_unknown_arguments():
    assert L.create_module(L.Conv, features=4, zero_init=True) == L.Conv(4, zero_init=True)
    with pytest.raises(ValueError, match=r"Unknown Conv arguments \['width'\]"):
        L.create_module(L.Conv, features=4, width=3)


def test_zero_init_gives_zero_output():
    x = jax.random.normal(KEY, (2, 4, 4, 6))
    for module in (L.Conv(8, zero_init=True), L.Dense(8, zero_init=True)):
        out = module.apply(module.init(KEY, x), x)
        np.testing.assert_array_equal(out, 0.0)


def test_group_norm_matches_hand_computation():
    x = jax.random.normal(KEY, (2, 3, 3, 4)) * 3.0 + 1.0
    out = L.GroupNorm(2).apply(L.GroupNorm(2).init(KEY, x), x)
    xs = np.asarray(x, np.float64).reshape(2, 9, 2, 2)  # (B, HW, groups, channels per group)
    mean = xs.mean(axis=(1, 3), keepdims=True)
    var = xs.var(axis=(1, 3), keepdims=True)
    expected = ((xs - mean) / np.sqrt(var + 1e-5)).reshape(x.shape)
    np.testing.assert_allclose(out, expected, atol=1e-5)


def test_group_norm_rejects_groups_not_dividing_channels():
    with pytest.raises(ValueError, match="divide the channel count"):
        L.GroupNorm(3).init(KEY, jnp.ones((1, 2, 2, 4)))
