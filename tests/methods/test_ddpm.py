"""DDPM method: training on the tiny UNet, sampling glue against the exact Gaussian denoiser."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from methods_testing import (DATA_MEAN, DATA_STD, DATA_VARIANCE, SMALLEST_UNET, analytic_apply,
                             assert_gaussian_moments, assert_learns, make_config, random_images,
                             sample)

from jaxdiff import methods
from jaxdiff.core.analytic import gaussian_denoiser
from jaxdiff.core.schedules import alphas_cumprod, discrete_logsnr_fn, linear_betas

RESOLUTION = 8
TINY = {"preset": "tiny"}


def config(model=TINY, **method_fields):
    return make_config("ddpm", RESOLUTION, model, **method_fields)


def test_training_learned_variance_class_conditional():
    """Hybrid loss with a learned variance and class labels: finite, gradients reach every
    parameter, and Adam steps on a fixed batch and key lower the loss."""
    method = methods.build(config(dict(SMALLEST_UNET, num_classes=10),
                               variance="learned_range", label_dropout=0.2))
    images = random_images(jax.random.PRNGKey(3), (4, RESOLUTION, RESOLUTION, 3))
    batch = {"image": images, "label": jnp.array([0, 1, 2, 3], jnp.int32)}
    metrics, grads = assert_learns(method, batch)
    assert float(metrics["vlb_bits_per_dim"]) > 0.0
    # The zero-initialised head gets a gradient at once (the rest through it, later).
    assert sum(float(jnp.abs(g).sum()) for g in jax.tree.leaves(grads["head"])) > 0.0


def exact_network(parameterization, learned_variance=False):
    """The exact denoiser of the default linear T = 1000 chain, as an apply_fn; with
    learned_variance it appends v = -1 channels (learned_range then equals fixedsmall)."""
    logsnr_fn = discrete_logsnr_fn(alphas_cumprod(linear_betas(1000)))
    denoise = gaussian_denoiser(DATA_MEAN, DATA_VARIANCE, logsnr_fn, parameterization)
    if not learned_variance:
        return analytic_apply(denoise)
    return analytic_apply(
        lambda x, t: jnp.concatenate([denoise(x, t), -jnp.ones_like(x)], axis=-1))


@pytest.mark.parametrize("fields", [
    dict(sampler="ancestral", parameterization="eps", sample_steps=1000),
    dict(sampler="ancestral", parameterization="v", variance="fixedlarge", sample_steps=250),
    dict(sampler="ddim", parameterization="x0", eta=0.0, sample_steps=500),
    dict(sampler="dpm_solver_pp", parameterization="eps", sample_steps=250),
    dict(sampler="heun", parameterization="eps", time_grid="karras", sample_steps=100),
    dict(sampler="dpm_solver_pp_3m", parameterization="v", time_grid="logsnr", sample_steps=100),
])
def test_samples_follow_the_data_with_the_exact_denoiser(fields):
    """200 samples of 8x8x3 reproduce the per-channel mean (within 0.01) and standard deviation
    (within 5%) of the N(m, s^2) data. Statistical error: about 0.001 in mean and 0.6% in std.
    The grids' own discretization bias on this data, measured beforehand, is at most 0.006 in
    mean and 2.2% (fixedsmall, full 1000-step chain; fixedlarge, 250 steps), 1.4% (DDIM, 500)
    and 1% (DPM-Solver++, 250) in std; with 50 steps it would be 20%, 10%, 13% and 14%."""
    method = methods.build(config(x0_transform="none", **fields))
    samples = sample(method, 200, exact_network(fields["parameterization"]))
    assert samples.shape == (200, RESOLUTION, RESOLUTION, 3)
    assert_gaussian_moments(samples, DATA_MEAN, DATA_STD, 0.01, 0.05)


def test_learned_range_at_minus_one_is_fixedsmall_and_guidance_of_a_label_free_denoiser():
    """The 2C-channel split: a variance output of -1 gives exactly beta_tilde, so the samples
    equal fixedsmall ones. A class-conditional model with guidance scale 3 whose network ignores
    labels gives the unguided samples (out_u + w (out_c - out_u) = out)."""
    fixed = methods.build(config(sample_steps=20, x0_transform="none"))
    learned = methods.build(config({"preset": "tiny", "num_classes": 5}, sample_steps=20,
                                x0_transform="none", variance="learned_range",
                                guidance_scale=3.0))
    reference = sample(fixed, 16, exact_network("eps"))
    # Same noise draws: the label key is split off first in both methods.
    guided = sample(learned, 16, exact_network("eps", learned_variance=True))
    np.testing.assert_allclose(guided, reference, atol=2e-5)


def test_label_free_sampling_rejects_labels_and_checks_their_shape():
    method = methods.build(config(sample_steps=2))
    with pytest.raises(ValueError, match="unconditional"):
        method.sample_fn(exact_network("eps"), {}, jax.random.PRNGKey(0), 2,
                         jnp.zeros((2,), jnp.int32))
    conditional = methods.build(config({"preset": "tiny", "num_classes": 3}, sample_steps=2))
    with pytest.raises(ValueError, match="shape"):
        conditional.sample_fn(exact_network("eps"), {}, jax.random.PRNGKey(0), 2,
                              jnp.zeros((3,), jnp.int32))


@pytest.mark.parametrize("fields, message", [
    (dict(variance="learned"), "method.variance must be one of"),
    (dict(parameterization="score"), "method.parameterization must be one of"),
    (dict(schedule="quadratic"), "method.schedule must be one of"),
    (dict(schedule="cosine"), "must be a discrete T-step chain"),
    (dict(sample_steps=1001), "cannot exceed the 1000 steps"),
    (dict(sampler="euler"), "method.sampler must be one of"),
    (dict(time_grid="cubic"), "method.time_grid must be one of"),
    (dict(guidance_logsnr_min=2.0, guidance_logsnr_max=1.0), "guidance_logsnr_min"),
    (dict(sample_steps=0), "sample_steps"),
    (dict(label_dropout=1.5), "label_dropout"),
    (dict(x0_transform="tanh"), "method.x0_transform must be one of"),
    (dict(num_timestep=10), "Unknown method field"),
])
def test_bad_config_values_raise_one_clear_error(fields, message):
    with pytest.raises(ValueError, match=message):
        methods.build(config(**fields))


def test_wrong_network_or_preset_raises():
    with pytest.raises(ValueError, match="needs the 'unet' network"):
        methods.build(config({"name": "uvit"}))
    with pytest.raises(ValueError, match="config.model.preset must be one of"):
        methods.build(config({"preset": "huge"}))
