"""Tests of jaxdiff/models/nested_unet.py on the tiny presets (8, 16 -> 8, 32 -> 16 -> 8 px).

One depth-3 model with classes and a text context is trained for a few Adam steps once (module
fixture); the later tests reuse those non-trivial parameters, so that zero-initialised heads and
adapters cannot make a comparison pass trivially. To keep compilation short on CPU, parameters are
initialised with the "unsafe_rbg" PRNG (XLA's RngBitGenerator compiles much faster than threefry)
and the test-only programs are compiled at XLA backend optimisation level 0.
"""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from test_layers import assert_every_leaf_changed, assert_logical_axes

from jaxdiff.models import nested_unet as N

KEY = jax.random.key(0, impl="unsafe_rbg")
FAST_COMPILE = {"xla_backend_optimization_level": 0}
BATCH = 4
NUM_CLASSES = 3
CONDITIONING = dict(num_classes=NUM_CLASSES, use_context=True, context_features=16)
SIDES = N.PRESET_RESOLUTIONS["tiny_3"]  # (32, 16, 8)


def make_model(preset="tiny_3", **overrides):
    return N.create(**dict(N.PRESETS[preset], **CONDITIONING, **overrides))


@functools.lru_cache(maxsize=None)
def forward(preset="tiny_3", **overrides):
    """The jitted apply of a tiny model, compiled once per (preset, overrides, input shapes)."""
    model = make_model(preset, **overrides)
    return jax.jit(lambda params, images, t, labels, context: model.apply(
        {"params": params}, images, t, labels=labels, context=context),
        compiler_options=FAST_COMPILE)


MODEL = make_model()
FORWARD = forward()
_keys = jax.random.split(jax.random.key(1), 6)
IMAGES = [jax.random.normal(k, (BATCH, side, side, 3)) for k, side in zip(_keys, SIDES)]
T = jax.random.uniform(_keys[3], (BATCH,))
LABELS = jax.random.randint(_keys[4], (BATCH,), 0, NUM_CLASSES + 1)  # with the null class
CONTEXT = jax.random.normal(_keys[5], (BATCH, 5, 12))


def regression_loss(model, images=IMAGES):
    """Mean over levels of the MSE to fixed random targets (dropout active)."""
    targets = [jax.random.normal(jax.random.key(9), x.shape) for x in images]

    def loss(params, key):
        outputs = model.apply({"params": params}, images, T, labels=LABELS, context=CONTEXT,
                              train=True, rngs={"dropout": key})
        return sum(jnp.mean((o - y) ** 2) for o, y in zip(outputs, targets)) / len(outputs)

    return loss


def fast_init(model, *args, **kwargs):
    """model.init(KEY, *args, **kwargs), jitted with the fast-compile options."""
    return jax.jit(lambda key: model.init(key, *args, **kwargs), compiler_options=FAST_COMPILE)(
        KEY)


def fast_adam_steps(loss_fn, params, steps=4, learning_rate=1e-2):
    """`steps` jitted Adam steps on loss_fn(params, key). Four are enough for every parameter
    behind zero-initialised layers: the heads move first, then the layers feeding them, etc."""
    optimizer = optax.adam(learning_rate)

    @functools.partial(jax.jit, compiler_options=FAST_COMPILE)
    def step(params, opt_state, key):
        grads = jax.grad(loss_fn)(params, key)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state

    opt_state = optimizer.init(params)
    for i in range(steps):
        params, opt_state = step(params, opt_state, jax.random.fold_in(KEY, i))
    return params


@pytest.fixture(scope="module")
def initial_variables():
    return fast_init(MODEL, IMAGES, T, labels=LABELS, context=CONTEXT)


@pytest.fixture(scope="module")
def trained(initial_variables):
    """(initial params, params after 4 Adam steps)."""
    params = nn.unbox(initial_variables["params"])
    return params, fast_adam_steps(regression_loss(MODEL), params)


def with_zero_adapters(params):
    """A copy of params with every in/out adapter kernel and bias set to 0."""
    def zero(path, leaf):
        names = [getattr(p, "key", "") for p in path]
        return jnp.zeros_like(leaf) if {"in_adapter", "out_adapter"} & set(names) else leaf
    return jax.tree_util.tree_map_with_path(zero, params)


def test_outputs_are_one_float32_prediction_per_level_and_zero_at_init(initial_variables):
    assert_logical_axes(initial_variables["params"])
    outputs = FORWARD(nn.unbox(initial_variables["params"]), IMAGES, T, LABELS, CONTEXT)
    assert [o.shape for o in outputs] == [x.shape for x in IMAGES]
    assert all(o.dtype == jnp.float32 for o in outputs)
    # Every head (GN -> SiLU -> zero conv) starts at zero.
    for output in outputs:
        np.testing.assert_array_equal(output, 0.0)


def test_parameter_tree_nests_the_inner_models(initial_variables):
    params = initial_variables["params"]
    assert {"time_embedding", "conv_in", "encoder", "in_adapter", "inner", "out_adapter",
            "decoder", "head"} == set(params)
    assert "inner" in params["inner"] and "middle" in params["inner"]["inner"]
    assert "conditioning" in params["inner"]["inner"] and "middle" not in params
    # Adapters: outer C_last -> inner C_0 and back, zero-initialised 3x3 convolutions.
    kernel = params["in_adapter"]["conv"]["kernel"].value
    assert kernel.shape == (3, 3, 16, 8) and not np.any(kernel)
    assert params["out_adapter"]["conv"]["kernel"].value.shape == (3, 3, 8, 16)


def test_gradients_reach_every_parameter_after_a_few_steps(trained):
    before, after = trained
    assert_every_leaf_changed(before, after)
    outputs = FORWARD(after, IMAGES, T, LABELS, CONTEXT)
    assert all(np.all(np.isfinite(o)) and np.any(o != 0) for o in outputs)


def test_each_inner_level_equals_the_standalone_model_when_adapters_are_zero(trained):
    _, params = trained
    params = with_zero_adapters(params)
    outputs = FORWARD(params, IMAGES, T, LABELS, CONTEXT)
    alone_2 = forward("tiny_2")(params["inner"], IMAGES[1:], T, LABELS, CONTEXT)
    alone_1 = forward("tiny")(params["inner"]["inner"], IMAGES[2:], T, LABELS, CONTEXT)
    for nested, alone in zip(outputs[1:], alone_2):
        np.testing.assert_allclose(nested, alone, rtol=0, atol=1e-6)
    np.testing.assert_allclose(outputs[2], alone_1[0], rtol=0, atol=1e-6)
    assert np.any(np.asarray(outputs[2]) != 0)


def test_the_network_owns_its_level_structure(trained):
    """Level factors and sides, and the k innermost levels: innermost(k) is the standalone
    model of those levels, innermost_params its parameter subtree, and innermost_apply runs it
    from the whole model's variables (what progressive training uses)."""
    _, params = trained
    assert MODEL.level_factors == (1, 2, 4)
    assert MODEL.level_sides(32) == SIDES and MODEL.level_sides(16, level=1) == SIDES
    with pytest.raises(ValueError, match="does not divide into the levels"):
        MODEL.level_sides(6)
    inner = MODEL.innermost(2)
    assert inner.depth == 2 and tuple(inner.channels) == tuple(make_model("tiny_2").channels)
    assert MODEL.innermost(3) == MODEL
    assert MODEL.innermost_params(params, 1) is params["inner"]["inner"]
    via_whole = MODEL.innermost_apply(1)({"params": params}, IMAGES[2:], T, labels=LABELS,
                                         context=CONTEXT)
    alone = forward("tiny")(params["inner"]["inner"], IMAGES[2:], T, LABELS, CONTEXT)
    np.testing.assert_allclose(via_whole[0], alone[0], rtol=0, atol=1e-6)
    assert MODEL.innermost_apply(3) == MODEL.apply
    with pytest.raises(ValueError, match="has 3 levels; cannot take the 4 innermost"):
        MODEL.innermost(4)


def test_nonzero_adapters_do_change_the_inner_levels(trained):
    # Control for the test above: the trained adapters feed outer features to the inner levels.
    _, params = trained
    nested = FORWARD(params, IMAGES, T, LABELS, CONTEXT)
    alone = FORWARD(with_zero_adapters(params), IMAGES, T, LABELS, CONTEXT)
    assert np.max(np.abs(np.asarray(nested[2]) - np.asarray(alone[2]))) > 1e-4


def test_mixed_resolution_runs_outer_levels_on_a_batch_prefix(trained):
    _, params = trained
    sizes = (1, 2, BATCH)
    mixed_images = N.mixed_resolution_pyramid(IMAGES, sizes)
    assert [x.shape[0] for x in mixed_images] == list(sizes)
    mixed = FORWARD(params, mixed_images, T, LABELS, CONTEXT)
    full = FORWARD(params, IMAGES, T, LABELS, CONTEXT)
    assert [o.shape[0] for o in mixed] == list(sizes)
    # Row 0 exists at every level: it is computed exactly as in the full run.
    for level in range(3):
        np.testing.assert_allclose(mixed[level][:1], full[level][:1], atol=1e-5)
    # Rows 2..3 exist at 8 px only: they get no outer features, like the standalone core.
    core = forward("tiny")(params["inner"]["inner"], IMAGES[2:], T, LABELS, CONTEXT)[0]
    np.testing.assert_allclose(mixed[2][2:], core[2:], atol=1e-5)
    assert np.max(np.abs(np.asarray(full[2][2:]) - np.asarray(core[2:]))) > 1e-4
    # Row 1 exists at 16 and 8 px: levels 1-2 run on it as the standalone depth-2 model does.
    inner = forward("tiny_2")(params["inner"], IMAGES[1:], T, LABELS, CONTEXT)
    np.testing.assert_allclose(mixed[1][1], inner[0][1], atol=1e-5)


def test_mixed_resolution_mask_and_pyramid_checks():
    np.testing.assert_array_equal(N.mixed_resolution_mask(5, 2), [1, 1, 0, 0, 0])
    with pytest.raises(ValueError, match="does not fit"):
        N.mixed_resolution_mask(2, 3)
    with pytest.raises(ValueError, match="non-decreasing"):
        N.mixed_resolution_pyramid(IMAGES, (3, 2, BATCH))
    with pytest.raises(ValueError, match="non-decreasing"):
        N.mixed_resolution_pyramid(IMAGES, (1, 2, 3))


def test_remat_gives_identical_loss_and_gradients(trained):
    # On the core alone (the blocks of every level are built by the same nested_unet.Blocks).
    params = trained[1]["inner"]["inner"]
    key = jax.random.key(3)
    value_and_grad = lambda model: jax.jit(jax.value_and_grad(regression_loss(
        model, IMAGES[2:])), compiler_options=FAST_COMPILE)(params, key)
    loss, grads = value_and_grad(make_model("tiny"))
    loss_remat, grads_remat = value_and_grad(make_model("tiny", remat=True))
    np.testing.assert_allclose(loss_remat, loss, rtol=1e-6)
    for g, g_remat in zip(jax.tree_util.tree_leaves(grads), jax.tree_util.tree_leaves(grads_remat)):
        np.testing.assert_allclose(g_remat, g, rtol=1e-5, atol=1e-7)


def test_bfloat16_computation_is_close_to_float32(trained):
    # Depth 2 (adapters, padding and skips in bfloat16), reusing the compiled float32 forward.
    params = trained[1]["inner"]
    reference = forward("tiny_2")(params, IMAGES[1:], T, LABELS, CONTEXT)
    bf16 = forward("tiny_2", dtype=jnp.bfloat16)(params, IMAGES[1:], T, LABELS, CONTEXT)
    for out, ref in zip(bf16, reference):
        assert out.dtype == jnp.float32  # the heads return float32
        scale = float(jnp.max(jnp.abs(ref)))
        assert scale > 0
        np.testing.assert_allclose(out, ref, atol=0.05 * scale)


@pytest.mark.parametrize("images, t, message", [
    (IMAGES[:2], T, "list of 3 image batches"),
    ([IMAGES[0], IMAGES[2], IMAGES[2]], T, "must be 2 times the size"),
    ([IMAGES[0][:, :31, :31], IMAGES[1], IMAGES[2]], T, "divisible by 2"),
    ([IMAGES[0], IMAGES[1][:2], IMAGES[2]], T, "must not decrease"),
    (IMAGES, T[:2], "t must have shape"),
    (IMAGES[0], T, "takes a list of image batches"),
])
def test_bad_inputs_fail_with_a_clear_message(initial_variables, images, t, message):
    with pytest.raises(ValueError, match=message):
        MODEL.apply(initial_variables, images, t, labels=LABELS, context=CONTEXT)


def test_bad_arguments_fail_with_a_clear_message():
    with pytest.raises(ValueError, match="Unknown NestedUNet arguments"):
        N.create(**N.PRESETS["tiny"], channel=3)
    with pytest.raises(ValueError, match="one entry per level"):
        N.create(**dict(N.PRESETS["tiny_2"], channels=((8, 16),)))
    with pytest.raises(ValueError, match="same non-zero number of resolutions"):
        N.create(**dict(N.PRESETS["tiny"], num_res_blocks=((1,),)))
