"""Tests of jaxdiff/models/uvit.py on the tiny preset (16 x 16 images, 2 transformer blocks).

With the fast-compile helpers of test_nested_unet.py ("unsafe_rbg" PRNG, XLA backend optimisation
level 0); a few Adam steps give non-trivial parameters that the later comparisons reuse.
"""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from test_layers import assert_every_leaf_changed, assert_logical_axes
from test_nested_unet import FAST_COMPILE, KEY, fast_adam_steps, fast_init

from jaxdiff.models import uvit as U

BATCH, SIDE, NUM_CLASSES = 4, U.PRESET_RESOLUTIONS["tiny"], 3
CONDITIONING = dict(num_classes=NUM_CLASSES, use_context=True)


def make_model(**overrides):
    return U.create(**dict(U.PRESETS["tiny"], **CONDITIONING, **overrides))


MODEL = make_model()
_keys = jax.random.split(jax.random.key(1), 4)
X = jax.random.normal(_keys[0], (BATCH, SIDE, SIDE, 3))
T = jax.random.uniform(_keys[1], (BATCH,))
LABELS = jax.random.randint(_keys[2], (BATCH,), 0, NUM_CLASSES + 1)
CONTEXT = jax.random.normal(_keys[3], (BATCH, 5, 12))
TARGET = jax.random.normal(jax.random.key(9), X.shape)


@functools.lru_cache(maxsize=None)
def forward(train=False, **overrides):
    model = make_model(**overrides)
    return jax.jit(lambda params, key: model.apply(
        {"params": params}, X, T, labels=LABELS, context=CONTEXT, train=train,
        rngs={"dropout": key}), compiler_options=FAST_COMPILE)


def loss_fn(model):
    def loss(params, key):
        out = model.apply({"params": params}, X, T, labels=LABELS, context=CONTEXT, train=True,
                          rngs={"dropout": key})
        return jnp.mean((out - TARGET) ** 2)
    return loss


@pytest.fixture(scope="module")
def initial_variables():
    return fast_init(MODEL, X, T, labels=LABELS, context=CONTEXT)


@pytest.fixture(scope="module")
def trained(initial_variables):
    """(initial params, params after 4 Adam steps)."""
    params = nn.unbox(initial_variables["params"])
    return params, fast_adam_steps(loss_fn(MODEL), params)


def without_layer_axis(boxed_transformer):
    """The scanned stack's first layer, with the leading "layers" logical axis removed."""
    is_box = lambda x: isinstance(x, nn.LogicallyPartitioned)

    def first_layer(box):
        assert box.names[0] == "layers" and box.value.shape[0] == MODEL.transformer_depth
        return box.replace_boxed(box.value[0]).replace(names=box.names[1:])
    return jax.tree.map(first_layer, boxed_transformer, is_leaf=is_box)


def test_output_shape_dtype_axis_names_and_zero_at_init(initial_variables):
    params = dict(initial_variables["params"])
    assert_logical_axes(without_layer_axis(params.pop("transformer")))
    assert_logical_axes(params)
    out = forward()(nn.unbox(initial_variables["params"]), KEY)
    assert out.shape == X.shape and out.dtype == jnp.float32
    np.testing.assert_array_equal(out, 0.0)  # the zero-initialised head


def test_transformer_runs_on_16_tokens_of_the_lowest_resolution(initial_variables):
    params = nn.unbox(initial_variables["params"])
    # 16 px, two 2x downsamplings -> 4 x 4 = 16 positions of width 64.
    assert params["position_embedding"]["embedding"]["embedding"].shape == (16, 64)
    assert params["transformer"]["mlp"]["Dense_0"]["dense"]["kernel"].shape == (2, 64, 256)


def test_gradients_reach_every_parameter_after_a_few_steps(trained):
    before, after = trained
    assert_every_leaf_changed(before, after)
    out = forward()(after, KEY)
    assert np.all(np.isfinite(out)) and np.any(out != 0)


def test_remat_gives_identical_loss_and_gradients(trained):
    _, params = trained
    key = jax.random.key(3)
    value_and_grad = lambda model: jax.jit(jax.value_and_grad(loss_fn(model)),
                                           compiler_options=FAST_COMPILE)(params, key)
    loss, grads = value_and_grad(MODEL)
    loss_remat, grads_remat = value_and_grad(make_model(remat=True))
    np.testing.assert_allclose(loss_remat, loss, rtol=1e-6)
    for g, g_remat in zip(jax.tree_util.tree_leaves(grads), jax.tree_util.tree_leaves(grads_remat)):
        np.testing.assert_allclose(g_remat, g, rtol=1e-5, atol=1e-7)


def test_bfloat16_computation_is_close_to_float32(trained):
    _, params = trained
    reference = forward()(params, KEY)
    out = forward(dtype=jnp.bfloat16)(params, KEY)
    assert out.dtype == jnp.float32
    scale = float(jnp.max(jnp.abs(reference)))
    assert scale > 0
    np.testing.assert_allclose(out, reference, atol=0.05 * scale)


def test_unrolled_transformer_gives_the_same_outputs(trained):
    _, params = trained
    unrolled = forward(unroll_transformer=True)(params, KEY)
    np.testing.assert_allclose(unrolled, forward()(params, KEY), rtol=1e-5, atol=1e-6)


def test_dropout_is_active_in_training_only(trained):
    _, params = trained
    train = forward(train=True)
    first, second = train(params, jax.random.key(5)), train(params, jax.random.key(6))
    assert np.max(np.abs(np.asarray(first) - np.asarray(second))) > 1e-4
    np.testing.assert_array_equal(forward()(params, jax.random.key(5)),
                                  forward()(params, jax.random.key(6)))


def test_space_to_depth_by_hand_and_inverse():
    x = jnp.arange(16.0).reshape(1, 4, 4, 1)
    patches = U.space_to_depth(x, 2)
    # Position (0, 0) holds pixels (0,0) (0,1) (1,0) (1,1) = 0, 1, 4, 5; (1, 1) holds 10 11 14 15.
    np.testing.assert_array_equal(patches[0, 0, 0], [0, 1, 4, 5])
    np.testing.assert_array_equal(patches[0, 1, 1], [10, 11, 14, 15])
    y = jax.random.normal(KEY, (2, 8, 8, 3))
    np.testing.assert_array_equal(U.depth_to_space(U.space_to_depth(y, 4), 4), y)


def test_patched_model_maps_images_to_images():
    model = make_model(patch_size=2)
    x = jax.ShapeDtypeStruct((2, 32, 32, 3), jnp.float32)
    t = jax.ShapeDtypeStruct((2,), jnp.float32)
    context = jax.ShapeDtypeStruct((2, 5, 12), jnp.float32)
    shapes = jax.eval_shape(lambda x, t, c: model.init_with_output(KEY, x, t, context=c),
                            x, t, context)
    out, variables = shapes
    assert out.shape == (2, 32, 32, 3)
    # 2 x 2 patches of 3 channels: the first conv sees 12 input channels, the head makes 12.
    assert variables["params"]["conv_in"]["conv"]["kernel"].value.shape == (3, 3, 12, 16)
    assert variables["params"]["head"]["Conv_0"]["conv"]["kernel"].value.shape == (3, 3, 16, 12)


@pytest.mark.parametrize("shape, t, message", [
    ((BATCH, 14, 14, 3), T, "divisible by 4"),
    ((BATCH, 16, 3), T, "NHWC"),
    ((BATCH, 16, 16, 3), T[:2], "t must have shape"),
])
def test_bad_inputs_fail_with_a_clear_message(initial_variables, shape, t, message):
    with pytest.raises(ValueError, match=message):
        MODEL.apply(initial_variables, jnp.zeros(shape), t, context=CONTEXT)


def test_bad_arguments_fail_with_a_clear_message():
    with pytest.raises(ValueError, match="Unknown UViT arguments"):
        U.create(**U.PRESETS["tiny"], depth=3)
    with pytest.raises(ValueError, match="one entry per level"):
        U.create(**dict(U.PRESETS["tiny"], dropout=(0.1,)))
    with pytest.raises(ValueError, match="Dropout rates"):
        U.create(**dict(U.PRESETS["tiny"], transformer_dropout=1.0))
