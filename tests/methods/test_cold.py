"""Cold diffusion method: training on the tiny UNet (mixing, with the second image stream),
generation from the colour mixture with the exact restorer, and restoration starts with an
oracle restorer."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from methods_testing import (DATA_MEAN, DATA_STD, SMALLEST_UNET, analytic_apply, assert_learns,
                             gaussian_images, make_config, random_images, sample)

from jaxdiff import methods

RESOLUTION = 8
TINY = {"preset": "tiny"}


def config(model=TINY, **method_fields):
    return make_config("cold", RESOLUTION, model, **method_fields)


def uint8_images(rng, count):
    return jax.random.randint(rng, (count, RESOLUTION, RESOLUTION, 3), 0, 256).astype(jnp.uint8)


def test_training_on_mixing_with_a_second_image_stream():
    """L1 restoration of images blended with batch["mix_image"] (uint8, as the loop supplies
    it): finite, reaches every parameter, and Adam steps on a fixed batch and key lower it."""
    keys = jax.random.split(jax.random.PRNGKey(0), 2)
    method = methods.build(config(SMALLEST_UNET, degradation="mix",
                                  degradation_options={"num_steps": 10}))
    assert method.image_keys == ("image", "mix_image")
    batch = {"image": random_images(keys[0], (4, RESOLUTION, RESOLUTION, 3)),
             "mix_image": uint8_images(keys[1], 4)}
    metrics, _ = assert_learns(method, batch)
    assert set(metrics) == {"restoration_l1"}


def test_generation_from_the_colour_mixture_with_the_exact_restorer():
    """Pixelate with 2^T = 8 px ends in one flat colour per image, so sampling starts from the
    Gaussian mixture fitted to the channel means of the reference images. For independent
    pixels of equal variance, E[x0 | 2^s-block averages] is the block average itself, so the
    identity is the exact restorer and the samples must be flat images whose colours follow the
    data's channel means: N(m, s^2 / 64) per channel. 512 samples from 256 reference images:
    mean within 0.01 (standard error 0.002-0.003 with the fit), std of the colours within 20%
    (statistical error 3% and 4% from the sample and the fit)."""
    reference = gaussian_images(jax.random.PRNGKey(1), (256, RESOLUTION, RESOLUTION, 3))
    method = methods.build(config(degradation="pixelate", degradation_options={"num_steps": 3}))
    method = method.attach_reference({"image": reference}, jax.random.PRNGKey(0))
    samples = np.asarray(sample(method, 512, analytic_apply(lambda x, t: x)), np.float64)
    colours = samples.mean(axis=(1, 2))
    np.testing.assert_allclose(colours.mean(axis=0), DATA_MEAN, atol=0.01)
    np.testing.assert_allclose(colours.std(axis=0), DATA_STD / RESOLUTION, rtol=0.2)
    # Flat up to the start noise (std 0.002; the largest deviation over ~10^5 pixels after the
    # sampler's steps is about 0.018 at several seeds).
    assert np.max(np.abs(samples - colours[:, None, None, :])) < 0.04


@pytest.mark.parametrize("degradation, options, algorithm", [
    ("decolorize", {"num_steps": 5}, "improved"),
    ("decolorize", {"num_steps": 5}, "naive"),
    ("inpaint", {"num_steps": 6, "random_centre": True}, "improved"),
    ("blur", {"num_steps": 6, "kernel_std": 0.5}, "improved"),
    ("mix", {"num_steps": 8}, "improved"),
])
def test_restoration_start_with_an_oracle_restorer(degradation, options, algorithm):
    """Restoration starts x_T = D(x_ref, T) (with the reference second image for mix): with one
    reference image X and a restorer that returns X, Algorithm 2 telescopes to
    x_T - D(X, T) + X = X exactly, which holds only if the start and its aux (hole centres,
    second image) are the ones the sampler's D uses; Algorithm 1 ends at D(X, 0) = X."""
    keys = jax.random.split(jax.random.PRNGKey(2))
    image = jax.random.uniform(keys[0], (1, RESOLUTION, RESOLUTION, 3), minval=-0.9, maxval=0.9)
    data_sample = {"image": jnp.repeat(image, 4, axis=0),
                   "mix_image": jnp.repeat(jax.random.uniform(keys[1], image.shape), 4, axis=0)}
    method = methods.build(config(degradation=degradation, degradation_options=options,
                                  algorithm=algorithm, start_noise=0.0))
    method = method.attach_reference(data_sample, jax.random.PRNGKey(0))
    oracle = analytic_apply(lambda x, t: jnp.broadcast_to(image, x.shape))
    samples = sample(method, 3, oracle)
    np.testing.assert_allclose(samples, jnp.broadcast_to(image, samples.shape), atol=1e-5)


def test_building_reads_no_data_and_sampling_needs_the_reference_images():
    """build reads nothing: the method asks for num_reference_images training images through
    Method.reference_images, and samples only once attach_reference has them."""
    method = methods.build(config(num_reference_images=16))
    assert method.reference_images == 16
    with pytest.raises(ValueError, match="attach_reference"):
        sample(method, 2, analytic_apply(lambda x, t: x))
    images = {"image": uint8_images(jax.random.PRNGKey(0), 16)}
    ready = method.attach_reference(images, jax.random.PRNGKey(1))
    assert ready.reference_images == 0
    samples = sample(ready, 2, analytic_apply(lambda x, t: x))
    assert samples.shape == (2, RESOLUTION, RESOLUTION, 3)
    assert np.all(np.isfinite(np.asarray(samples)))


@pytest.mark.parametrize("fields, message", [
    (dict(degradation="rotate"), "method.degradation must be one of"),
    (dict(degradation_options={"sigma": 1.0}), "Unknown option"),
    (dict(loss_norm="huber"), "method.loss_norm must be one of"),
    (dict(algorithm="fast"), "method.algorithm must be one of"),
    (dict(start_noise=-1.0), "start_noise"),
    (dict(steps=3), "Unknown method field"),
])
def test_bad_config_values_raise_one_clear_error(fields, message):
    with pytest.raises(ValueError, match=message):
        methods.build(config(**fields))


def test_bad_reference_images_raise_one_clear_error():
    key = jax.random.PRNGKey(0)
    with pytest.raises(ValueError, match="must have shape"):
        methods.build(config()).attach_reference({"image": jnp.zeros((4, 16, 16, 3))}, key)
    with pytest.raises(ValueError, match="mix_image"):
        methods.build(config(degradation="mix")).attach_reference(
            {"image": jnp.zeros((4, RESOLUTION, RESOLUTION, 3))}, key)
