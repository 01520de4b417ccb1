"""Simple diffusion (Hoogeboom, Heek & Salimans 2023, "simple diffusion: End-to-end diffusion for
high resolution images", arXiv 2301.11093) on the U-ViT of jaxdiff.models.uvit.

Continuous time t ~ U(0, 1), x_t = alpha_t x0 + sigma_t eps with the cosine logSNR
(schedules.cosine_logsnr, clipped to [logsnr_min, logsnr_max]) either
  "cosine":              unshifted,
  "shifted_cosine":      shifted for the image size d: logSNR(t) + 2 log(noise_d / d) (sec. 3.1),
  "interpolated_cosine": t * shifted(noise_d_low) + (1 - t) * shifted(noise_d_high) (sec. 3.1).
The loss is the weighted MSE of the v (default) or eps target, optionally the multi-scale loss
(sec. 3.3: sum over s in {min_res, ..., d} of (1 / s) times the MSE of the s x s average-pooled
error, core.losses.multiscale_mse), weighted by "uniform", "min_snr" (gamma) or "sigmoid"
(bias) of logSNR. Class labels are dropped with probability label_dropout for guidance.
Samplers: ancestral, DDIM(eta) or DPM-Solver++(2M) on sample_steps uniform steps of t; samples
are clipped to [-1, 1].

Config fields read (defaults in brackets):
  data.resolution                      the image side d (required)
  model.name ["uvit"], model.preset ["tiny"], other model.* fields override the preset
  method.schedule ["shifted_cosine"]   "cosine", "shifted_cosine" or "interpolated_cosine"
  method.noise_d [64]                  base resolution of the shifted schedule
  method.noise_d_low [32], method.noise_d_high [256]   the interpolated schedule's two shifts
  method.logsnr_min [-15.0], method.logsnr_max [15.0]  clip of the cosine logSNR
  method.parameterization ["v"]        "v", "eps" or "x0"
  method.loss_weighting ["uniform"]    "uniform", "min_snr" or "sigmoid"
  method.min_snr_gamma [5.0], method.sigmoid_bias [0.0]
  method.multiscale_loss [False], method.multiscale_min_resolution [32]
  method.label_dropout [0.1]
  method.sampler ["ancestral"], method.sample_steps [100], method.eta [0.0],
  method.guidance_scale [1.0], method.x0_transform ["clip"], method.threshold_quantile [0.995]
"""

import functools

import jax
import jax.numpy as jnp

from jaxdiff.core import schedules
from jaxdiff.core.losses import (WEIGHTINGS, denoising_loss, loss_weight, multiscale_mse,
                                 multiscale_resolutions)
from jaxdiff.core.predictions import PARAMETERIZATIONS, target_from_x0_eps
from jaxdiff.core.schedules import alpha_sigma_from_logsnr
from jaxdiff.methods import common, register
from jaxdiff.methods.base import Method

SCHEDULES = ("cosine", "shifted_cosine", "interpolated_cosine")

DEFAULTS = dict(common.SAMPLER_DEFAULTS, schedule="shifted_cosine", noise_d=64, noise_d_low=32,
                noise_d_high=256, logsnr_min=-15.0, logsnr_max=15.0, parameterization="v",
                loss_weighting="uniform", min_snr_gamma=5.0, sigmoid_bias=0.0,
                multiscale_loss=False, multiscale_min_resolution=32, label_dropout=0.1)


def logsnr_schedule(name: str, image_d: int, values: dict):
    """The logSNR(t) of the named schedule for images of side image_d (module docstring)."""
    common.check_choice("schedule", name, SCHEDULES)
    clip = dict(logsnr_min=values["logsnr_min"], logsnr_max=values["logsnr_max"])
    if not clip["logsnr_min"] < clip["logsnr_max"]:
        raise ValueError(f"logsnr_min ({clip['logsnr_min']}) must be below logsnr_max "
                         f"({clip['logsnr_max']}).")
    if name == "cosine":
        return functools.partial(schedules.cosine_logsnr, **clip)
    if name == "shifted_cosine":
        common.check_range("noise_d", values["noise_d"], low=1)
        return functools.partial(schedules.shifted_cosine_logsnr, image_d=image_d,
                                 noise_d=values["noise_d"], **clip)
    common.check_range("noise_d_low", values["noise_d_low"], low=1)
    common.check_range("noise_d_high", values["noise_d_high"], low=1)
    return functools.partial(schedules.interpolated_cosine_logsnr, image_d=image_d,
                             noise_d_low=values["noise_d_low"],
                             noise_d_high=values["noise_d_high"], **clip)


def build(config) -> Method:
    """The simple-diffusion method described by config (see the module docstring)."""
    values = common.settings(config, DEFAULTS)
    parameterization = values["parameterization"]
    common.check_choice("parameterization", parameterization, PARAMETERIZATIONS)
    common.check_choice("loss_weighting", values["loss_weighting"], WEIGHTINGS)
    common.check_range("label_dropout", values["label_dropout"], 0.0, 1.0)
    sampling = common.SamplerSettings.from_settings(values)
    resolution = common.image_resolution(config)
    schedule = common.GaussianSchedule(logsnr_schedule(values["schedule"], resolution, values))
    multiscale = bool(values["multiscale_loss"])
    min_resolution = values["multiscale_min_resolution"]
    if multiscale:
        multiscale_resolutions(resolution, min_resolution)  # raises unless d = min_res * 2^k
    times = schedule.sampling_times(sampling.num_steps)

    model = common.create_model(config, "uvit")
    channels = model.out_channels
    num_classes = common.num_classes_of(model)

    def loss_fn(apply_fn, params, batch, rng):
        x0 = batch["image"]
        _, logsnr, noise, _, output = common.gaussian_training_forward(
            apply_fn, params, batch, rng, schedule, num_classes, values["label_dropout"])
        weight = loss_weight(values["loss_weighting"], logsnr, parameterization,
                             values["min_snr_gamma"], values["sigmoid_bias"])
        if multiscale:
            alpha, sigma = alpha_sigma_from_logsnr(logsnr)
            target = target_from_x0_eps(parameterization, x0, noise, alpha, sigma)
            per_sample = multiscale_mse(output, target, min_resolution, weight)
        else:
            per_sample = denoising_loss(parameterization, output, x0, noise, logsnr, weight)
        mse = jnp.mean(denoising_loss(parameterization, output, x0, noise, logsnr))
        return jnp.mean(per_sample), {"mse": mse}

    def sample_fn(apply_fn, params, rng, num_samples, labels=None):
        label_key, noise_key, sample_key = jax.random.split(rng, 3)
        labels = common.sampling_labels(label_key, labels, num_samples, num_classes)
        denoise = common.network_denoiser(apply_fn, params, labels, num_classes,
                                          sampling.guidance_scale)
        x_T = jax.random.normal(noise_key, (num_samples, resolution, resolution, channels))
        samples = common.gaussian_sample(sampling, denoise, sample_key, x_T, schedule.logsnr_fn,
                                         times, parameterization)
        return common.to_image_range(samples)

    example = jnp.zeros((1, resolution, resolution, channels), jnp.float32)
    return Method("simple_diffusion", model, common.init_fn_for(model, example), loss_fn,
                  sample_fn)


register("simple_diffusion", build, DEFAULTS)
