"""Tests of jaxdiff/models/layers.py: values computed by hand from the formulas in the docstrings.

Also holds the small helpers that test_unet.py and test_dual_unet.py reuse (logical-axis walk,
a few Adam steps, the every-leaf-changed check).
"""

import math

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


# ----------------------------------------------------------------------------------------------
# Conditioning.


def test_sinusoidal_embedding_values():
    # dim 4: half = 2, frequencies 10000^(-0/1) = 1 and 10000^(-1/1) = 1e-4.
    emb = L.sinusoidal_embedding(jnp.array([0.0, 1.5]), 4)
    expected = [[0.0, 0.0, 1.0, 1.0],
                [math.sin(1.5), math.sin(1.5e-4), math.cos(1.5), math.cos(1.5e-4)]]
    np.testing.assert_allclose(emb, expected, atol=1e-7)
    assert emb.dtype == jnp.float32


@pytest.mark.parametrize("dim", [3, 2])
def test_sinusoidal_embedding_rejects_bad_size(dim):
    with pytest.raises(ValueError, match="even and at least 4"):
        L.sinusoidal_embedding(jnp.zeros((1,)), dim)


def test_time_embedding_is_mlp_of_scaled_sinusoids():
    module = L.TimeEmbedding(features=8, sinusoidal_dim=6, time_scale=1000.0)
    t = jnp.array([0.25, 0.5])
    variables = module.init(KEY, t)
    p = variables["params"]
    dense = lambda name, h: h @ p[name]["dense"]["kernel"].value + p[name]["dense"]["bias"].value
    hidden = jax.nn.silu(dense("Dense_0", L.sinusoidal_embedding(1000.0 * t, 6)))
    np.testing.assert_allclose(module.apply(variables, t), dense("Dense_1", hidden), atol=1e-6)


def test_conditioning_null_class_and_validation():
    module = L.ConditioningEmbedding(8, 4, num_classes=3)
    t = jnp.array([0.1, 0.7])
    variables = module.init(KEY, t, jnp.array([0, 1]))
    table = variables["params"]["ClassEmbedding_0"]["Embed_0"]["embedding"]["embedding"].value
    assert table.shape == (4, 8)  # 3 classes + the null class
    no_labels = module.apply(variables, t)
    null = module.apply(variables, t, jnp.array([3, 3]))
    real = module.apply(variables, t, jnp.array([1, 1]))
    np.testing.assert_array_equal(no_labels, null)
    np.testing.assert_allclose(real - null, jnp.broadcast_to(table[1] - table[3], (2, 8)),
                               atol=1e-6)
    with pytest.raises(ValueError, match="without classes"):
        L.ConditioningEmbedding(8, 4).init(KEY, t, jnp.array([0, 1]))
    with pytest.raises(ValueError, match="without use_context"):
        L.ConditioningEmbedding(8, 4).init(KEY, t, None, jnp.ones((2, 3, 5)))
    with pytest.raises(ValueError, match="needs a context"):
        L.ConditioningEmbedding(8, 4, use_context=True).init(KEY, t)


def test_conditioning_adds_projected_mean_of_context():
    module = L.ConditioningEmbedding(8, 4, use_context=True)
    t = jnp.array([0.1, 0.7])
    context = jax.random.normal(KEY, (2, 3, 5))
    variables = module.init(KEY, t, None, context)
    p = variables["params"]["context_pool"]["dense"]
    time_only = L.TimeEmbedding(8, 4).apply(
        {"params": variables["params"]["TimeEmbedding_0"]}, t)
    expected = time_only + context.mean(axis=1) @ p["kernel"].value + p["bias"].value
    np.testing.assert_allclose(module.apply(variables, t, None, context), expected, atol=1e-6)


# ----------------------------------------------------------------------------------------------
# Residual block.


def test_res_block_is_identity_or_skip_at_init():
    x = jax.random.normal(KEY, (2, 4, 4, 8))
    emb = jax.random.normal(KEY, (2, 12))
    same = L.ResBlock(8, num_groups=4)
    np.testing.assert_array_equal(same.apply(same.init(KEY, x, emb), x, emb), x)
    # Zero last conv: out = skip(x) = 1x1 conv of the average-pooled x.
    wider_down = L.ResBlock(16, num_groups=4, resample="down")
    variables = wider_down.init(KEY, x, emb)
    skip = variables["params"]["skip"]["conv"]
    expected = L.average_pool_2x(x) @ skip["kernel"].value[0, 0] + skip["bias"].value
    np.testing.assert_allclose(wider_down.apply(variables, x, emb), expected, atol=1e-5)


def test_res_block_film_and_additive_conditioning_shapes():
    x, emb = jnp.ones((1, 4, 4, 8)), jnp.ones((1, 12))
    film = L.ResBlock(8, num_groups=4).init(KEY, x, emb)["params"]["emb_proj"]["dense"]
    additive = L.ResBlock(8, num_groups=4, scale_shift=False).init(KEY, x, emb)
    assert film["kernel"].value.shape == (12, 16)  # scale and shift
    assert additive["params"]["emb_proj"]["dense"]["kernel"].value.shape == (12, 8)


def test_res_block_rejects_unknown_resample():
    with pytest.raises(ValueError, match="Unknown resample"):
        L.ResBlock(8, num_groups=4, resample="sideways").init(
            KEY, jnp.ones((1, 4, 4, 8)), jnp.ones((1, 4)))


def test_remat_gives_identical_values_and_gradients():
    assert L.remat_if(L.ResBlock, False) is L.ResBlock
    x = jax.random.normal(KEY, (2, 4, 4, 8))
    emb = jax.random.normal(jax.random.key(1), (2, 12))
    plain = L.ResBlock(8, dropout=0.5, num_groups=4, zero_init_last=False)
    remat = L.remat_if(L.ResBlock, True, static_argnums=(3,))(
        8, dropout=0.5, num_groups=4, zero_init_last=False)
    params = nn.unbox(plain.init(KEY, x, emb)["params"])

    def loss(module, params):
        out = module.apply({"params": params}, x, emb, True, rngs={"dropout": KEY})
        return jnp.sum(out**2)

    value_and_grad = lambda module: fast_jit(
        jax.value_and_grad(lambda p: loss(module, p)))
    assert_same_value_and_grad(value_and_grad(remat)(params), value_and_grad(plain)(params))


# ----------------------------------------------------------------------------------------------
# Attention.


def test_attention_weights_are_float32_softmax_even_for_bfloat16():
    q = jax.random.normal(KEY, (2, 5, 3, 4)).astype(jnp.bfloat16)
    k = jax.random.normal(jax.random.key(1), (2, 6, 3, 4)).astype(jnp.bfloat16)
    weights = L.attention_weights(q, k)
    assert weights.dtype == jnp.float32 and weights.shape == (2, 3, 5, 6)
    logits = np.einsum("bqhd,bkhd->bhqk", np.asarray(q, np.float64),
                       np.asarray(k, np.float64)) / 2.0  # sqrt(d) = 2
    expected = np.exp(logits - logits.max(-1, keepdims=True))
    expected /= expected.sum(-1, keepdims=True)
    np.testing.assert_allclose(weights, expected, atol=1e-6)


def test_multi_head_attention_matches_hand_computation():
    x = jax.random.normal(KEY, (1, 3, 4))
    source = jax.random.normal(jax.random.key(1), (1, 2, 5))
    module = L.MultiHeadAttention(num_heads=2, zero_init_out=False)
    variables = module.init(KEY, x, source)
    p = jax.tree.map(np.asarray, nn.unbox(variables["params"]))
    proj = lambda name, h: np.asarray(h) @ p[name]["dense"]["kernel"] + p[name]["dense"]["bias"]
    q = proj("query", x).reshape(1, 3, 2, 2)
    k = proj("key", source).reshape(1, 2, 2, 2)
    v = proj("value", source).reshape(1, 2, 2, 2)
    logits = np.einsum("bqhd,bkhd->bhqk", q, k) / math.sqrt(2)
    w = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    heads = np.einsum("bhqk,bkhd->bqhd", w, v).reshape(1, 3, 4)
    np.testing.assert_allclose(module.apply(variables, x, source), proj("out", heads),
                               atol=1e-5)


def test_num_attention_heads():
    assert L.num_attention_heads(128, 4, None) == 4
    assert L.num_attention_heads(192, 1, 64) == 3
    with pytest.raises(ValueError, match="head_channels"):
        L.num_attention_heads(96, 1, 64)
    with pytest.raises(ValueError, match="num_heads"):
        L.num_attention_heads(96, 5, None)


def test_attention_block_identity_at_init_and_sows_float32_weights():
    x = jax.random.normal(KEY, (2, 4, 4, 8)).astype(jnp.bfloat16)
    context = jax.random.normal(KEY, (2, 3, 5))
    module = L.AttentionBlock(num_heads=2, num_groups=4, dtype=jnp.bfloat16)
    variables = module.init(KEY, x, context)
    assert_logical_axes(variables["params"])
    out, state = module.apply(variables, x, context, mutable=["intermediates"])
    np.testing.assert_array_equal(out, x)
    self_w = state["intermediates"]["self_attention"]["attention_weights"][0]
    cross_w = state["intermediates"]["cross_attention"]["attention_weights"][0]
    assert self_w.dtype == cross_w.dtype == jnp.float32
    assert self_w.shape == (2, 2, 16, 16) and cross_w.shape == (2, 2, 16, 3)
    np.testing.assert_allclose(cross_w.sum(-1), 1.0, atol=1e-6)


def test_feed_forward_identity_at_init():
    x = jax.random.normal(KEY, (2, 5, 8))
    module = L.FeedForward(mult=2)
    np.testing.assert_array_equal(module.apply(module.init(KEY, x), x), x)


# ----------------------------------------------------------------------------------------------
# Resolution changes and the output head.


def test_resampling_values():
    x = jnp.arange(16.0).reshape(1, 4, 4, 1)
    np.testing.assert_array_equal(L.average_pool_2x(x)[0, :, :, 0], [[2.5, 4.5], [10.5, 12.5]])
    up = L.nearest_upsample_2x(jnp.array([[1.0, 2.0], [3.0, 4.0]]).reshape(1, 2, 2, 1))
    np.testing.assert_array_equal(
        up[0, :, :, 0], [[1, 1, 2, 2], [1, 1, 2, 2], [3, 3, 4, 4], [3, 3, 4, 4]])
    with pytest.raises(ValueError, match="Cannot average-pool a 3x4 image by 2"):
        L.average_pool_2x(jnp.ones((1, 3, 4, 1)))


def test_down_and_up_blocks_shapes():
    x = jnp.ones((2, 8, 8, 4))
    down = L.Downsample(6)
    assert down.apply(down.init(KEY, x), x).shape == (2, 4, 4, 6)
    up = L.Upsample(6)
    assert up.apply(up.init(KEY, x), x).shape == (2, 16, 16, 6)
    with pytest.raises(ValueError, match="even height and width"):
        down.init(KEY, jnp.ones((1, 5, 4, 4)))


def test_output_head_is_zero_and_float32_at_init():
    x = jax.random.normal(KEY, (2, 4, 4, 8)).astype(jnp.bfloat16)
    module = L.OutputHead(3, num_groups=4, dtype=jnp.bfloat16)
    out = module.apply(module.init(KEY, x), x)
    assert out.dtype == jnp.float32 and out.shape == (2, 4, 4, 3)
    np.testing.assert_array_equal(out, 0.0)
