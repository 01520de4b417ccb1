"""Simple diffusion method: training on the tiny U-ViT, schedules, sampling against the exact
Gaussian denoiser."""


import jax
import jax.numpy as jnp
import numpy as np
import pytest
from methods_testing import (DATA_MEAN, DATA_STD, DATA_VARIANCE, analytic_apply,
                             assert_gaussian_moments, assert_learns, make_config, random_images,
                             sample)

from jaxdiff import methods
from jaxdiff.core import schedules
from jaxdiff.core.analytic import gaussian_denoiser
from jaxdiff.methods import simple_diffusion
from jaxdiff.methods.gaussian import base_schedule, shift_for

RESOLUTION = 16
TINY = {"preset": "tiny"}


def config(model=TINY, **method_fields):
    return make_config("simple_diffusion", RESOLUTION, model, **method_fields)


def test_training_multiscale_min_snr_class_conditional():
    """Multi-scale v loss with min-SNR weights and labels: finite, reaches every parameter, and
    Adam steps on a fixed batch and key lower it."""
    method = methods.build(config(
        {"preset": "tiny", "num_classes": 10, "channels": (16,), "num_res_blocks": (1,),
         "dropout": (0.1,), "transformer_depth": 1},
        multiscale_loss=True, multiscale_min_resolution=4, loss_weighting="min_snr"))
    images = random_images(jax.random.PRNGKey(3), (4, RESOLUTION, RESOLUTION, 3))
    metrics, _ = assert_learns(method, {"image": images, "label": jnp.arange(4)})
    assert float(metrics["mse"]) > 0.0


def test_schedules_hand_values():
    """Hoogeboom et al. 2023 sec. 3.1: shifting 64 -> 256 at t = 0.5 gives SNR 1/16; the
    interpolated schedule (d = 512, low 32, high 256) at t = 0.5 gives -3.4657359; unshifted,
    the cosine at t = 0.25 is 1.7611832."""
    def logsnr(resolution, **fields):
        method_settings = simple_diffusion.SimpleDiffusionSettings(**fields)
        return shift_for(base_schedule(method_settings), method_settings, resolution,
                         resolution).logsnr_fn

    np.testing.assert_allclose(logsnr(256, shift_base_resolution=64)(0.5), -np.log(16.0),
                               rtol=1e-6)
    interpolated = logsnr(512, shift_base_resolution=256, prior_shift_base_resolution=32)
    np.testing.assert_allclose(interpolated(0.5), -3.4657359, rtol=1e-6)
    np.testing.assert_allclose(logsnr(512, shift_base_resolution=0)(0.25), 1.7611832, rtol=1e-6)


@pytest.mark.parametrize("fields", [
    dict(sampler="ancestral", parameterization="v", sample_steps=1024),
    dict(sampler="ddim", parameterization="eps", sample_steps=512),
    dict(sampler="dpm_solver_pp", parameterization="v", sample_steps=512),
    dict(sampler="heun", parameterization="v", time_grid="logsnr", sample_steps=100),
    dict(sampler="dpm_solver_pp_3m", parameterization="eps", time_grid="karras", sample_steps=100),
])
def test_samples_follow_the_data_with_the_exact_denoiser(fields):
    """64 samples of 16x16x3 with the schedule shifted 8 -> 16 px reproduce the per-channel mean
    (within 0.01) and std (within 5%) of N(m, s^2) data; the statistical error is about 0.001 and
    0.6%. The uniform t grids' own bias on this data, measured beforehand: at most 2.1% in std
    (DDIM, 512 steps), 3.6% for ancestral at 512 steps (hence 1024) and 0.7% for DPM-Solver++;
    at 32 steps it is 25%, 19% and 50%."""
    method = methods.build(config(shift_base_resolution=8, x0_transform="none", **fields))
    logsnr_fn = lambda t: schedules.resolution_shift(schedules.cosine_logsnr(t), RESOLUTION, 8)  # noqa: E731
    denoise = gaussian_denoiser(DATA_MEAN, DATA_VARIANCE, logsnr_fn, fields["parameterization"])
    samples = sample(method, 64, analytic_apply(denoise))
    assert samples.shape == (64, RESOLUTION, RESOLUTION, 3)
    assert_gaussian_moments(samples, DATA_MEAN, DATA_STD, 0.01, 0.05)


def test_guided_sampling_of_a_label_free_denoiser_is_unguided():
    """With classes and guidance scale 4, a network that ignores labels samples exactly as the
    unconditional method (guidance combines two equal outputs)."""
    logsnr_fn = lambda t: schedules.resolution_shift(schedules.cosine_logsnr(t), RESOLUTION, 64)  # noqa: E731
    apply_fn = analytic_apply(gaussian_denoiser(DATA_MEAN, DATA_VARIANCE, logsnr_fn, "v"))
    plain = methods.build(config(sample_steps=16, sampler="ddim"))
    guided = methods.build(config({"preset": "tiny", "num_classes": 4}, sample_steps=16,
                                           sampler="ddim", guidance_scale=4.0))
    np.testing.assert_allclose(sample(guided, 8, apply_fn), sample(plain, 8, apply_fn),
                               atol=1e-5)


@pytest.mark.parametrize("fields, message", [
    (dict(schedule="sigmoid"), "method.schedule must be one of"),
    (dict(loss_weighting="snr"), "method.loss_weighting must be one of"),
    (dict(multiscale_loss=True, multiscale_min_resolution=3), "power of two"),
    (dict(logsnr_min=5.0, logsnr_max=-5.0), "logsnr_min"),
    (dict(sampler="euler"), "method.sampler must be one of"),
    (dict(guidance_scale=-1.0), "guidance_scale"),
    (dict(shift=2), "Unknown method field"),
])
def test_bad_config_values_raise_one_clear_error(fields, message):
    with pytest.raises(ValueError, match=message):
        methods.build(config(**fields))


def test_the_configured_time_grid_reaches_the_sampler():
    """The times the network sees are the configured grid's: power 2 over 2 steps of the
    unshifted 16 px schedule is [1, 0.25] (then the data, which needs no call)."""
    seen = []

    def recording(x, t):
        jax.debug.callback(lambda t: seen.append(float(t[0])), t)
        return jnp.zeros_like(x)

    method = methods.build(config(sampler="dpm_solver_pp", time_grid="power", grid_power=2.0,
                                  sample_steps=2, shift_base_resolution=RESOLUTION))
    jax.block_until_ready(sample(method, 2, analytic_apply(recording)))
    np.testing.assert_allclose(seen, [1.0, 0.25], atol=1e-6)
