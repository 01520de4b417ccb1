"""The sampler skeleton's pieces: x0 transforms from the settings, the noise start, and the
skeleton's order of events."""

import jax
import jax.numpy as jnp
import numpy as np

from jaxdiff.core import guidance
from jaxdiff.methods import sampler
from jaxdiff.methods.conditioning import Conditioning
from jaxdiff.methods.settings import GuidanceSettings


def test_x0_transforms_from_the_settings():
    assert sampler.x0_transform(GuidanceSettings(x0_transform="none")) is None
    assert sampler.x0_transform(GuidanceSettings(x0_transform="clip")) is guidance.clip_x0
    x0 = jnp.array([[-3.0, -1.5, 0.0, 0.5, 2.0]])
    dynamic = sampler.x0_transform(GuidanceSettings(x0_transform="dynamic",
                                                     threshold_quantile=0.9))
    np.testing.assert_allclose(dynamic(x0), guidance.dynamic_threshold(x0, 0.9))


def test_noise_start_of_one_image_or_a_pyramid():
    start = sampler.gaussian_noise_start(lambda n: (n, 4, 4, 3))
    assert start(jax.random.PRNGKey(0), 5).shape == (5, 4, 4, 3)
    pyramid = sampler.gaussian_noise_start(lambda n: [(n, 8, 8, 3), (n, 4, 4, 3)])(
        jax.random.PRNGKey(0), 2000)
    assert [x.shape for x in pyramid] == [(2000, 8, 8, 3), (2000, 4, 4, 3)]
    for level in pyramid:  # N(0, 1) per level, independent levels
        assert abs(float(level.mean())) < 0.01 and abs(float(level.std()) - 1.0) < 0.01
    assert abs(float(jnp.mean(pyramid[0][:, :4, :4] * pyramid[1]))) < 0.01


def test_the_skeleton_labels_denoises_and_clips():
    """Labels given reach the network, the start and the run's output pass through, and the
    samples are clipped to [-1, 1]."""
    seen = {}

    def apply_fn(variables, x, t, labels=None, train=False):
        seen["labels"] = labels
        return 3.0 * x

    sample_fn = sampler.make_sample_fn(
        conditioning=Conditioning(4), start_fn=lambda rng, n: jnp.full((n, 2), 0.5),
        run_fn=lambda denoise, rng, start: denoise(start, jnp.zeros((start.shape[0],))))
    samples = sample_fn(apply_fn, {}, jax.random.PRNGKey(0), 3, jnp.array([0, 1, 3]))
    np.testing.assert_array_equal(seen["labels"], [0, 1, 3])
    np.testing.assert_allclose(samples, np.ones((3, 2)))


def test_guidance_band_from_the_settings():
    """No band by default; with [-1, 2] on logSNR = 10 - 20 t the band is 0.4 <= t <= 0.55."""
    assert sampler.guidance_band(GuidanceSettings(), lambda t: t) is None
    band = sampler.guidance_band(GuidanceSettings(guidance_logsnr_min=-1.0,
                                                  guidance_logsnr_max=2.0),
                                 lambda t: 10.0 - 20.0 * t)
    np.testing.assert_array_equal(band(jnp.array([0.3, 0.4, 0.5, 0.55, 0.6])),
                                  [False, True, True, True, False])
