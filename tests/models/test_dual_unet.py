"""Tests of jaxdiff/models/dual_unet.py (analytic attenuation, arXiv 2306.13720) at the tiny size,
plus the paper preset's parameter count from jax.eval_shape."""

import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdiff.core.predictions import attenuation_eps_from_c
from jaxdiff.core.processes import attenuation_corrupt
from jaxdiff.models import dual_unet, unet
from test_layers import (adam_steps, assert_bfloat16_close, assert_every_leaf_changed,
                         assert_logical_axes, assert_same_value_and_grad, fast_jit)

KEY = jax.random.key(0)
INIT_KEY = jax.random.key(0, impl="rbg")  # compiles a jitted init ~2x faster than threefry
NUM_CLASSES = 3
TINY = dict(dual_unet.PRESETS["tiny"], num_classes=NUM_CLASSES, dropout=0.1)
MODEL = dual_unet.create(**TINY)
APPLY = fast_jit(MODEL.apply)  # compiled once, shared by the tests
X0 = jax.random.uniform(jax.random.key(1), (2, 16, 16, 3), minval=-1.0, maxval=1.0)
NOISE = jax.random.normal(jax.random.key(2), X0.shape)
T = jnp.array([0.25, 0.8])
X = attenuation_corrupt(X0, NOISE, T)  # x_t = (1 - t) x0 + sqrt(t) eps
LABELS = jnp.array([0, NUM_CLASSES])  # one real class, one null class


def attenuation_loss(model):
    """|c_hat + x0|^2 + |eps_hat - eps|^2 (c = -x0) in training mode, with dropout."""
    def loss(params, key):
        c, eps = model.apply({"params": params}, X, T, LABELS, train=True,
                             rngs={"dropout": key})
        return jnp.mean((c + X0) ** 2) + jnp.mean((eps - NOISE) ** 2)
    return loss


VALUE_AND_GRAD = fast_jit(jax.value_and_grad(attenuation_loss(MODEL)))


def random_params(boxed_params, scale=0.2):
    """The network's parameter tree filled with N(0, scale^2) values (nothing zero)."""
    rng = np.random.default_rng(0)
    return jax.tree.map(lambda v: scale * rng.standard_normal(v.shape, np.float32),
                        nn.unbox(boxed_params))


@pytest.fixture(scope="module")
def boxed_params():
    return fast_jit(MODEL.init)(INIT_KEY, X, T, LABELS)["params"]


@pytest.fixture(scope="module")
def trained_params(boxed_params):
    return adam_steps(VALUE_AND_GRAD, nn.unbox(boxed_params))


def test_preconditioning_values_by_hand():
    # sigma_data = 0.5, t = 0.25: V = 0.75^2 * 0.25 + 0.25 = 0.390625, sqrt(V) = 0.625.
    coefficients = dual_unet.attenuation_preconditioning(jnp.array([0.25]), sigma_data=0.5)
    expected = [1 / 0.625, -0.75 * 0.25 / 0.390625, 0.5 * math.sqrt(0.25 / 0.390625),
                0.5 / 0.390625, 0.75 * 0.5 / 0.625]  # 1.6, -0.48, 0.4, 1.28, 0.6
    np.testing.assert_allclose(np.concatenate(coefficients), expected, rtol=1e-6)
    # sigma_data = 1: the reference code's c_skip1, c_out1, c_skip2, c_out2 in t^2 - t + 1.
    t = np.array([0.0, 0.1, 0.5, 0.9, 1.0])
    d = t**2 - t + 1
    reference = [1 / np.sqrt((1 - t) ** 2 + t), (t - 1) / d, np.sqrt(t / d), np.sqrt(t) / d,
                 (1 - t) / np.sqrt(d)]
    for ours, theirs in zip(dual_unet.attenuation_preconditioning(jnp.asarray(t)), reference):
        np.testing.assert_allclose(ours, theirs, rtol=1e-6, atol=1e-7)


def test_init_output_is_the_gaussian_posterior_mean(boxed_params):
    # Zero heads leave the skip terms, which are E[c | x_t] and E[eps | x_t] for x0 ~ N(0, 1):
    # E[x0 | x_t] = (1 - t) x_t / V and E[eps | x_t] = sqrt(t) x_t / V, V = (1 - t)^2 + t.
    c, eps = APPLY({"params": nn.unbox(boxed_params)}, X, T, LABELS)
    assert c.shape == eps.shape == X.shape and c.dtype == eps.dtype == jnp.float32
    t = np.asarray(T)[:, None, None, None]
    variance = (1 - t) ** 2 + t
    np.testing.assert_allclose(c, -(1 - t) / variance * X, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(eps, np.sqrt(t) / variance * X, rtol=1e-5, atol=1e-6)
    # The two linear guesses are consistent through x_t = (1 - t) x0 + sqrt(t) eps.
    np.testing.assert_allclose(attenuation_eps_from_c(X, c, T), eps, rtol=1e-4, atol=1e-5)


def test_boundaries_are_exact_for_any_parameters(boxed_params):
    # t = 0: c = -x_t; t = 1: eps = x_t, whatever the network outputs.
    c, eps = APPLY({"params": random_params(boxed_params)}, X, jnp.array([0.0, 1.0]), LABELS)
    np.testing.assert_array_equal(c[0], -X[0])
    np.testing.assert_array_equal(eps[1], X[1])
    assert np.max(np.abs(c[1])) > 0 and np.max(np.abs(eps[0] - X[0])) > 0


def test_outputs_compose_skip_and_scaled_raw_network_outputs(boxed_params):
    params = {"params": random_params(boxed_params)}
    raw_c, raw_eps = fast_jit(dual_unet.create(**TINY, precondition=False).apply)(
        params, X, T, LABELS)
    c, eps = APPLY(params, X, T, LABELS)
    _, skip_c, out_c, skip_eps, out_eps = [
        np.asarray(v)[:, None, None, None] for v in dual_unet.attenuation_preconditioning(T)]
    np.testing.assert_allclose(c, skip_c * X + out_c * raw_c, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(eps, skip_eps * X + out_eps * raw_eps, rtol=1e-5, atol=1e-5)


def test_every_parameter_has_logical_axis_names(boxed_params):
    assert_logical_axes(boxed_params)


def test_a_few_adam_steps_update_every_parameter(boxed_params, trained_params):
    assert_every_leaf_changed(nn.unbox(boxed_params), trained_params)


def test_null_class_differs_from_a_real_class_after_training(trained_params):
    variables = {"params": trained_params}
    real = APPLY(variables, X, T, jnp.array([1, 1]))
    null = APPLY(variables, X, T, jnp.array([NUM_CLASSES] * 2))
    assert np.max(np.abs(real[0] - null[0])) > 1e-4
    assert np.max(np.abs(real[1] - null[1])) > 1e-4


def test_remat_gives_identical_outputs_and_gradients(trained_params):
    remat_model = dual_unet.create(**TINY, remat=True)
    plain = VALUE_AND_GRAD(trained_params, KEY)
    remat = fast_jit(jax.value_and_grad(attenuation_loss(remat_model)))(trained_params, KEY)
    assert_same_value_and_grad(remat, plain)


def test_bfloat16_forward_is_close_and_softmax_is_float32(trained_params):
    bf16_model = dual_unet.create(**TINY, dtype=jnp.bfloat16)
    f32 = APPLY({"params": trained_params}, X, T, LABELS)
    bf16, state = fast_jit(lambda p: bf16_model.apply(
        {"params": p}, X, T, LABELS, mutable=["intermediates"]))(trained_params)
    assert_bfloat16_close(bf16, f32)
    weights = jax.tree_util.tree_leaves(state["intermediates"])
    # The 2 gates' spatial softmax (the attention blocks attend through
    # jax.nn.dot_product_attention, whose float32 softmax test_attention.py checks).
    assert len(weights) == 2
    assert all(w.dtype == jnp.float32 for w in weights)


def test_paper_preset_parameter_count():
    model = dual_unet.create(**dual_unet.PRESETS["attenuation_cifar10"])
    count = unet.count_parameters(model, (1, 32, 32, 3))
    assert count == 216_139_408 == dual_unet.PRESET_PARAMETER_COUNTS["attenuation_cifar10"]


def test_bad_arguments_raise_value_error(boxed_params):
    with pytest.raises(ValueError, match="sigma_data and min_time must be positive"):
        dual_unet.create(**TINY, sigma_data=0.0).apply({"params": boxed_params}, X, T, LABELS)
    with pytest.raises(ValueError, match="Unknown AttenuationUNet arguments"):
        dual_unet.create(learn_sigma=True)
    with pytest.raises(ValueError, match="divisible by 2"):
        MODEL.apply({"params": boxed_params}, X[:, :15], T, LABELS)
