"""Simple diffusion (Hoogeboom, Heek & Salimans 2023, "simple diffusion: End-to-end diffusion for
high resolution images", arXiv 2301.11093) on the U-ViT of jaxdiff.models.uvit.

Continuous time t ~ U(0, 1), x_t = alpha_t x0 + sigma_t eps with the cosine logSNR
(schedules.cosine_logsnr, clipped to [logsnr_min, logsnr_max]) shifted for the image side d:
  shift_base_resolution = noise_d:   logSNR(t) + 2 log(noise_d / d) (sec. 3.1; 0 = unshifted),
  prior_shift_base_resolution = noise_d_low, shift_base_resolution = noise_d_high: the
      interpolated schedule t * shifted(noise_d_low) + (1 - t) * shifted(noise_d_high) (sec. 3.1).
The loss is the weighted MSE of the v (default) or eps target, optionally the multi-scale loss
(sec. 3.3: sum over s in {min_res, ..., d} of (1 / s) times the MSE of the s x s average-pooled
error, core.losses.multiscale_mse), weighted by "uniform", "min_snr" (gamma) or "sigmoid"
(bias) of logSNR. Class labels are dropped with probability label_dropout for guidance.
Samplers: ancestral, DDIM(eta) or DPM-Solver++(2M) on sample_steps uniform steps of t; samples
are clipped to [-1, 1].

Config: data.resolution (the image side d), model.* (a uvit preset or architecture) and the
method fields of SimpleDiffusionSettings:
"""

import dataclasses

import jax.numpy as jnp

from jaxdiff.checks import boolean, number_in, one_of
from jaxdiff.core.losses import (WEIGHTINGS, denoising_loss, loss_weight, multiscale_mse,
                                 multiscale_resolutions)
from jaxdiff.core.predictions import target_from_x0_eps
from jaxdiff.core.schedules import alpha_sigma_from_logsnr
from jaxdiff.methods import register
from jaxdiff.methods.base import BuildInputs, Method
from jaxdiff.methods.gaussian import base_schedule, gaussian_training_forward, shift_for
from jaxdiff.methods.network import conditioning_of, create_network, init_fn_for, network_of
from jaxdiff.methods.sampler import (gaussian_noise_start, gaussian_run_fn, guidance_band,
                                     make_sample_fn)
from jaxdiff.methods.settings import GaussianSettings, replace_default, setting


@dataclasses.dataclass(frozen=True)
class SimpleDiffusionSettings(GaussianSettings):
    shift_base_resolution: int = replace_default(GaussianSettings, "shift_base_resolution", 64)
    parameterization: str = replace_default(GaussianSettings, "parameterization", "v")
    loss_weighting: str = setting("uniform", "'uniform', 'min_snr' or 'sigmoid' of logSNR",
                                  one_of(*WEIGHTINGS))
    min_snr_gamma: float = setting(5.0, "gamma of the min-SNR weighting", number_in(0.0))
    sigmoid_bias: float = setting(0.0, "bias of the sigmoid weighting", number_in())
    multiscale_loss: bool = setting(False, "the multi-scale loss of sec. 3.3", boolean)
    multiscale_min_resolution: int = setting(32, "lowest side of the multi-scale loss",
                                             number_in(1, integer=True))


__doc__ = (__doc__ or "") + SimpleDiffusionSettings.describe()


def build(inputs: BuildInputs) -> Method:
    """The simple-diffusion method of the inputs (module docstring)."""
    settings, resolution = inputs.settings, inputs.resolution
    parameterization = settings.parameterization
    schedule = shift_for(base_schedule(settings), settings, resolution, resolution)
    multiscale, min_resolution = settings.multiscale_loss, settings.multiscale_min_resolution
    if multiscale:
        multiscale_resolutions(resolution, min_resolution)  # raises unless d = min_res * 2^k

    model = create_network(inputs, "uvit")
    channels = network_of(model).out_channels
    conditioning = conditioning_of(inputs, model)

    def loss_fn(apply_fn, params, batch, rng):
        x0 = batch["image"]
        _, logsnr, noise, _, output = gaussian_training_forward(
            apply_fn, params, batch, rng, schedule, conditioning, settings)
        weight = loss_weight(settings.loss_weighting, logsnr, parameterization,
                             settings.min_snr_gamma, settings.sigmoid_bias)
        if multiscale:
            alpha, sigma = alpha_sigma_from_logsnr(logsnr)
            target = target_from_x0_eps(parameterization, x0, noise, alpha, sigma)
            per_sample = multiscale_mse(output, target, min_resolution, weight)
        else:
            per_sample = denoising_loss(parameterization, output, x0, noise, logsnr, weight)
        mse = jnp.mean(denoising_loss(parameterization, output, x0, noise, logsnr))
        return jnp.mean(per_sample), {"mse": mse}

    sample_fn = make_sample_fn(
        conditioning=conditioning, guidance_scale=settings.guidance_scale,
        guidance_band=guidance_band(settings, schedule.logsnr_fn),
        start_fn=gaussian_noise_start(lambda n: (n, resolution, resolution, channels)),
        run_fn=gaussian_run_fn(settings, schedule.logsnr_fn,
                               settings.sampling_times(schedule, settings.sample_steps)))
    return Method("simple_diffusion", model,
                  init_fn_for(model, resolution, channels, conditioning), loss_fn, sample_fn,
                  num_classes=conditioning.num_classes, text=conditioning.text)


register("simple_diffusion", SimpleDiffusionSettings, build)
