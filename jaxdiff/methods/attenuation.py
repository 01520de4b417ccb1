"""Diffusion with analytic image attenuation (Huang et al. 2023, "Decoupled diffusion models",
arXiv 2306.13720; reference code GuHuangAI/ADM-Public, ddm/ddm_const.py) on the dual-decoder
UNet of jaxdiff.models.dual_unet.

Forward process x_t = x0 + c t + sqrt(t) eps with the attenuation c = -x0, i.e.
x_t = (1 - t) x0 + sqrt(t) eps, so x_1 = eps. The network returns the pair (c_hat, eps_hat).
Training draws t = t_min + (1 - t_min) u, u ~ U(0, 1) (the reference code's smallest time
eps = 1e-4, which keeps t away from 0) and minimises
    w_c(t) ||c_hat - c||^2 + w_eps(t) ||eps_hat - eps||^2
with the reference weights w_c = (t^2 - t + 1) / t, w_eps = (t^2 - t + 1) / (1 - t)
(core.losses.attenuation_loss; weighted=False gives both weights 1).

Sampling from x_1 ~ N(0, I) on the configured grid (core/time_grids.py) down to sample_t_min
(the reference code's sigma_min^2 = 1e-4), then 0; "uniform" is the reference code's grid,
sample_steps times spaced linearly from 1 to sample_t_min; the logsnr and karras grids use
logSNR = log((1 - t)^2 / t) (processes.attenuation_logsnr). "stochastic" draws each step from
the Brownian-bridge posterior (samplers.attenuation_sample), "deterministic" keeps the predicted
noise fixed along the path (samplers.attenuation_ode_sample); the x0 estimate is clipped to
[-1, 1] as in the reference (clip_x_start). Samples are clipped to [-1, 1].

Config: data.resolution (the image side), model.* (a dual_unet preset or architecture) and the
method fields of AttenuationSettings:
"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from jaxdiff.checks import boolean, number_in, one_of
from jaxdiff.core.attenuation_samplers import attenuation_ode_sample, attenuation_sample
from jaxdiff.core.losses import attenuation_loss
from jaxdiff.core.processes import attenuation_corrupt, attenuation_logsnr
from jaxdiff.core.time_grids import time_grid
from jaxdiff.methods import register
from jaxdiff.methods.base import BuildInputs, Method
from jaxdiff.methods.network import (conditioning_of, create_network, init_fn_for, loss_keys,
                                     network_of, training_apply)
from jaxdiff.methods.sampler import (gaussian_noise_start, guidance_band, make_sample_fn,
                                     x0_transform)
from jaxdiff.methods.settings import GuidanceSettings, TimeGridSettings, setting

SAMPLERS = ("stochastic", "deterministic")


@dataclasses.dataclass(frozen=True)
class AttenuationSettings(GuidanceSettings, TimeGridSettings):
    t_min: float = setting(1e-4, "smallest training time, also the loss weights' clamp",
                           number_in(0.0, 1.0, low_open=True, high_open=True))
    weighted_loss: bool = setting(True, "the reference code's time weights (weighting_loss)",
                                  boolean)
    sampler: str = setting("stochastic", "'stochastic' or 'deterministic'", one_of(*SAMPLERS))
    sample_steps: int = setting(10, "sampler steps (the paper's few-step sampling)",
                                number_in(1, integer=True))
    sample_t_min: float = setting(1e-4, "last non-zero time of the sampling grid",
                                  number_in(0.0, 1.0, low_open=True, high_open=True))


__doc__ = (__doc__ or "") + AttenuationSettings.describe()


def sampling_grid(settings: AttenuationSettings) -> np.ndarray:
    """The configured grid of sample_steps steps: to sample_t_min, then 0 (module docstring)."""
    return time_grid(settings.time_grid, settings.sample_steps, attenuation_logsnr,
                     t_end=settings.sample_t_min, power=settings.grid_power,
                     rho=settings.grid_rho)


def build(inputs: BuildInputs) -> Method:
    """The analytic-attenuation method of the inputs (module docstring)."""
    settings, resolution = inputs.settings, inputs.resolution
    t_min = settings.t_min
    transform = x0_transform(settings)
    times = sampling_grid(settings)

    model = create_network(inputs, "dual_unet")
    channels = network_of(model).out_channels
    conditioning = conditioning_of(inputs, model)

    def loss_fn(apply_fn, params, batch, rng):
        x0 = batch["image"]
        keys = loss_keys(rng)
        given = conditioning.training(keys.labels, batch, settings.label_dropout,
                                      settings.caption_dropout)
        t = t_min + (1.0 - t_min) * jax.random.uniform(keys.time, (x0.shape[0],))
        noise = jax.random.normal(keys.noise, x0.shape, x0.dtype)
        x_t = attenuation_corrupt(x0, noise, t)
        c_hat, eps_hat = training_apply(apply_fn, params, x_t, t, given, keys.dropout)
        loss = jnp.mean(attenuation_loss(c_hat, eps_hat, x0, noise, t, settings.weighted_loss,
                                         clamp=t_min))
        return loss, {"mse_x0": jnp.mean(jnp.square(-c_hat - x0)),
                      "mse_eps": jnp.mean(jnp.square(eps_hat - noise))}

    def run_fn(denoise, rng, x_1):
        if settings.sampler == "stochastic":
            return attenuation_sample(denoise, rng, x_1, times, transform)
        return attenuation_ode_sample(denoise, x_1, times, transform)

    sample_fn = make_sample_fn(
        conditioning=conditioning, guidance_scale=settings.guidance_scale,
        guidance_band=guidance_band(settings, attenuation_logsnr),
        start_fn=gaussian_noise_start(lambda n: (n, resolution, resolution, channels)),
        run_fn=run_fn)
    return Method("attenuation", model, init_fn_for(model, resolution, channels, conditioning),
                  loss_fn, sample_fn, num_classes=conditioning.num_classes,
                  text=conditioning.text)


register("attenuation", AttenuationSettings, build)
