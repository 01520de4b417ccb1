"""Tests of jaxdiff/models/unet.py at the tiny size (16x16 images), plus the paper presets'
parameter counts from jax.eval_shape (nothing allocated)."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdiff.models import unet
from test_layers import (adam_steps, assert_bfloat16_close, assert_every_leaf_changed,
                         assert_logical_axes, assert_same_value_and_grad, fast_jit)

KEY = jax.random.key(0)
INIT_KEY = jax.random.key(0, impl="rbg")  # compiles a jitted init ~2x faster than threefry
NUM_CLASSES = 3
# One tiny network exercising every option: classes, text context, learned variance, dropout.
TINY = dict(unet.PRESETS["tiny"], num_classes=NUM_CLASSES, use_context=True, learn_sigma=True,
            dropout=0.1)
MODEL = unet.create(**TINY)
APPLY = fast_jit(MODEL.apply)  # compiled once, shared by the tests
X = jax.random.normal(jax.random.key(1), (2, 16, 16, 3))
T = jnp.array([0.3, 0.8])
LABELS = jnp.array([0, NUM_CLASSES])  # one real class, one null class
CONTEXT = jax.random.normal(jax.random.key(3), (2, 4, 5))
TARGET = jax.random.normal(jax.random.key(2), (2, 16, 16, 6))


def regression_loss(model):
    """Mean squared error of the training-mode output (with dropout) against TARGET."""
    def loss(params, key):
        out = model.apply({"params": params}, X, T, LABELS, CONTEXT, train=True,
                          rngs={"dropout": key})
        return jnp.mean((out - TARGET) ** 2)
    return loss


# Jitted loss and gradient of the training-mode network, shared by training and the remat test.
VALUE_AND_GRAD = fast_jit(jax.value_and_grad(regression_loss(MODEL)))


@pytest.fixture(scope="module")
def boxed_params():
    return fast_jit(MODEL.init)(INIT_KEY, X, T, LABELS, CONTEXT)["params"]


@pytest.fixture(scope="module")
def trained_params(boxed_params):
    return adam_steps(VALUE_AND_GRAD, nn.unbox(boxed_params))


def test_output_is_float32_twice_the_channels_and_zero_at_init(boxed_params):
    out = APPLY({"params": nn.unbox(boxed_params)}, X, T, LABELS, CONTEXT)
    assert out.shape == (2, 16, 16, 6) and out.dtype == jnp.float32
    np.testing.assert_array_equal(out, 0.0)


def test_every_parameter_has_logical_axis_names(boxed_params):
    assert_logical_axes(boxed_params)


def test_a_few_adam_steps_update_every_parameter(boxed_params, trained_params):
    assert_every_leaf_changed(nn.unbox(boxed_params), trained_params)


def test_null_class_differs_from_a_real_class_after_training(trained_params):
    variables = {"params": trained_params}
    real = APPLY(variables, X, T, jnp.array([1, 1]), CONTEXT)
    null = APPLY(variables, X, T, jnp.array([NUM_CLASSES] * 2), CONTEXT)
    assert np.max(np.abs(real - null)) > 1e-4


def test_remat_gives_identical_outputs_and_gradients(trained_params):
    remat_model = unet.create(**TINY, remat=True)
    plain = VALUE_AND_GRAD(trained_params, KEY)
    remat = fast_jit(jax.value_and_grad(regression_loss(remat_model)))(trained_params, KEY)
    assert_same_value_and_grad(remat, plain)


def test_bfloat16_forward_is_close(trained_params):
    """bfloat16 activations against float32 (the attention's float32 softmax is checked in
    test_attention.py)."""
    bf16_model = unet.create(**TINY, dtype=jnp.bfloat16)
    f32 = APPLY({"params": trained_params}, X, T, LABELS, CONTEXT)
    bf16 = fast_jit(lambda p: bf16_model.apply({"params": p}, X, T, LABELS, CONTEXT))(
        trained_params)
    assert_bfloat16_close(bf16, f32)


def test_context_conditioning_uses_the_context(boxed_params):
    # Random parameters everywhere (the zero-initialised layers would hide the context).
    rng = np.random.default_rng(0)
    random = jax.tree.map(lambda v: 0.2 * rng.standard_normal(v.shape, np.float32),
                          nn.unbox(boxed_params))
    out = APPLY({"params": random}, X, T, LABELS, CONTEXT)
    other = APPLY({"params": random}, X, T, LABELS, CONTEXT + 1.0)
    assert np.max(np.abs(out - other)) > 1e-3
    with pytest.raises(ValueError, match="needs a context"):
        MODEL.apply({"params": random}, X, T, LABELS)


@pytest.mark.parametrize("name,image_size,expected", [
    ("ddpm_cifar10", 32, 35_746_307),
    ("iddpm_cifar10", 32, 52_546_438),
    ("adm_imagenet64", 64, 295_905_222),
])
def test_paper_preset_parameter_counts(name, image_size, expected):
    model = unet.create(**unet.PRESETS[name])
    labels = {"labels": jax.ShapeDtypeStruct((1,), jnp.int32)} if model.num_classes else {}
    count = unet.count_parameters(model, (1, image_size, image_size, 3), **labels)
    assert count == expected == unet.PRESET_PARAMETER_COUNTS[name]


def test_bad_inputs_raise_value_error(boxed_params):
    variables = {"params": boxed_params}
    with pytest.raises(ValueError, match="divisible by 2"):
        MODEL.apply(variables, jnp.ones((2, 15, 16, 3)), T, LABELS, CONTEXT)
    with pytest.raises(ValueError, match="t must have shape"):
        MODEL.apply(variables, X, jnp.ones((3,)), LABELS, CONTEXT)
    with pytest.raises(ValueError, match="NHWC"):
        MODEL.apply(variables, jnp.ones((16, 16, 3)), T, LABELS, CONTEXT)
    with pytest.raises(ValueError, match="The context must have shape"):
        MODEL.apply(variables, X, T, LABELS, CONTEXT[0])
    with pytest.raises(ValueError, match="Unknown UNet arguments"):
        unet.create(channels=3)
    with pytest.raises(ValueError, match="without classes"):
        unet.create(**unet.PRESETS["tiny"]).init(KEY, X, T, LABELS)
    with pytest.raises(ValueError, match="channel_mult"):
        unet.create(channel_mult=()).init(KEY, X, T)
