"""Classifier-free guidance and x0 thresholding, checked against hand-computed values."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdiff.core import guidance

NUM_CLASSES = 10


def test_guidance_combine_hand_value():
    np.testing.assert_allclose(guidance.guidance_combine(0.1, 0.3, 7.5), 1.6, rtol=1e-6)


def fake_conditional_model(calls):
    """eps = 0.1 for the null label, 0.1 + 0.02 * label otherwise; counts its calls."""

    def conditional_denoise(x_t, t, labels):
        calls.append(x_t.shape[0])
        per_sample = jnp.where(labels == NUM_CLASSES, 0.1, 0.1 + 0.02 * labels)
        assert t.shape == labels.shape
        return jnp.broadcast_to(per_sample[:, None, None, None], x_t.shape)

    return conditional_denoise


def test_classifier_free_guidance_one_batched_call():
    calls = []
    labels = jnp.array([0, 5], dtype=jnp.int32)
    denoise = guidance.classifier_free_guidance(
        fake_conditional_model(calls), labels, jnp.full_like(labels, NUM_CLASSES), 7.5)
    out = denoise(jnp.zeros((2, 2, 2, 1)), jnp.array([0.5, 0.5]))
    assert calls == [4]  # one call on the doubled batch
    # label 0: eps_c = eps_u = 0.1 -> 0.1; label 5: eps_c = 0.2 -> 0.1 + 7.5 * 0.1 = 0.85.
    np.testing.assert_allclose(out[:, 0, 0, 0], [0.1, 0.85], rtol=1e-6)
    assert out.shape == (2, 2, 2, 1)


def test_classifier_free_guidance_on_pytrees_and_learned_variance():
    def conditional_denoise(x_t, t, conditioning):
        labels = conditioning["label"]
        eps = jnp.where(labels == NUM_CLASSES, 0.1, 0.3)[:, None, None, None]
        variance = jnp.where(labels == NUM_CLASSES, -1.0, 0.5)[:, None, None, None]
        predictions = [jnp.broadcast_to(eps, x.shape) for x in x_t]
        return predictions, [jnp.broadcast_to(variance, x.shape) for x in x_t]

    conditioning = {"label": jnp.array([3], dtype=jnp.int32)}
    null = {"label": jnp.array([NUM_CLASSES], dtype=jnp.int32)}
    denoise = guidance.classifier_free_guidance(conditional_denoise, conditioning, null, 7.5,
                                                variance_output=True)
    state = [jnp.zeros((1, 4, 4, 1)), jnp.zeros((1, 2, 2, 1))]
    prediction, variance = denoise(state, jnp.array([0.3]))
    for leaf, shape in zip(prediction, [(1, 4, 4, 1), (1, 2, 2, 1)]):
        assert leaf.shape == shape
        np.testing.assert_allclose(leaf, 1.6, rtol=1e-6)
    for leaf in variance:
        np.testing.assert_allclose(leaf, 0.5)  # the conditional half's variance output


def test_clip_x0():
    np.testing.assert_allclose(guidance.clip_x0(jnp.array([-3.0, -0.5, 0.2, 1.7])),
                               [-1.0, -0.5, 0.2, 1.0])


def test_dynamic_threshold_hand_values():
    x0 = jnp.array([[-3.0, -1.5, 0.0, 0.5, 2.0]])
    # |x0| sorted [0, 0.5, 1.5, 2, 3]; the 0.995 quantile interpolates at 3.98: 2 + 0.98 = 2.98.
    np.testing.assert_allclose(guidance.dynamic_threshold(x0, 0.995),
                               [[-1.0, -0.5033557, 0.0, 0.1677852, 0.6711409]], rtol=1e-6)


def test_dynamic_threshold_is_per_sample_and_leaves_small_values():
    x0 = jnp.array([[[[0.5]], [[-0.9]]], [[[4.0]], [[-2.0]]]])  # (2, 2, 1, 1)
    out = jax.jit(lambda x: guidance.dynamic_threshold(x, 1.0))(x0)
    # Sample 0: s = max(0.9, 1) = 1, unchanged; sample 1: s = 4, divided by 4.
    np.testing.assert_allclose(out[0], x0[0])
    np.testing.assert_allclose(out[1], x0[1] / 4.0)


def test_dynamic_threshold_rejects_bad_quantile():
    with pytest.raises(ValueError, match="quantile"):
        guidance.dynamic_threshold(jnp.zeros((1, 3)), 1.5)


def test_guidance_on_an_interval_of_noise_levels():
    """In the band (0.2 <= t <= 0.6) the guided 0.85, outside the conditional 0.2; a step with
    no sample in the band runs only the conditional call (cond evaluated eagerly here: the
    calls show which branch ran)."""
    labels = jnp.array([5, 5, 5], dtype=jnp.int32)

    def make(calls):
        return guidance.classifier_free_guidance(
            fake_conditional_model(calls), labels, jnp.full_like(labels, NUM_CLASSES), 7.5,
            in_band=lambda t: (t >= 0.2) & (t <= 0.6))

    x = jnp.zeros((3, 1, 1, 1))
    out = jax.jit(make([]))(x, jnp.array([0.1, 0.4, 0.9]))
    np.testing.assert_allclose(out[:, 0, 0, 0], [0.2, 0.85, 0.2], rtol=1e-6)
    calls = []
    with jax.disable_jit():
        out = make(calls)(x, jnp.array([0.9, 0.9, 0.9]))
    assert calls == [3]  # the conditional batch only
    np.testing.assert_allclose(out[:, 0, 0, 0], [0.2, 0.2, 0.2], rtol=1e-6)
