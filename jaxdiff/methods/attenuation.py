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

Sampling from x_1 ~ N(0, I) on the reference code's grid: sample_steps times spaced linearly
from 1 down to sample_t_min (its sigma_min^2 = 1e-4), then 0; "stochastic" draws each step from
the Brownian-bridge posterior (samplers.attenuation_sample), "deterministic" keeps the predicted
noise fixed along the path (samplers.attenuation_ode_sample); the x0 estimate is clipped to
[-1, 1] as in the reference (clip_x_start). Samples are clipped to [-1, 1].

Config fields read (defaults in brackets):
  data.resolution                  image side (required)
  model.name ["dual_unet"], model.preset ["tiny"], other model.* fields override the preset
  method.t_min [1e-4]              smallest training time, also the loss weights' clamp
  method.weighted_loss [True]      the reference code's time weights (weighting_loss)
  method.label_dropout [0.1]
  method.sampler ["stochastic"]    "stochastic" or "deterministic"
  method.sample_steps [10]         the paper's few-step sampling
  method.sample_t_min [1e-4]       last non-zero time of the sampling grid
  method.guidance_scale [1.0], method.x0_transform ["clip"], method.threshold_quantile [0.995]
"""

import jax
import jax.numpy as jnp
import numpy as np

from jaxdiff.core.losses import attenuation_loss
from jaxdiff.core.processes import attenuation_corrupt
from jaxdiff.core.samplers import attenuation_ode_sample, attenuation_sample
from jaxdiff.methods import common, register
from jaxdiff.methods.base import Method

SAMPLERS = ("stochastic", "deterministic")

DEFAULTS = dict(t_min=1e-4, weighted_loss=True, label_dropout=0.1, sampler="stochastic",
                sample_steps=10, sample_t_min=1e-4, guidance_scale=1.0, x0_transform="clip",
                threshold_quantile=0.995)


def sampling_grid(num_steps: int, t_min: float) -> np.ndarray:
    """[linspace(1, t_min, num_steps), 0]: num_steps steps, the last one from t_min to 0 (one
    step straight from 1 to 0 when num_steps = 1), as the reference code's samplers."""
    common.check_range("sample_steps", num_steps, low=1, integer=True)
    if not 0.0 < t_min < 1.0:
        raise ValueError(f"sample_t_min must lie in (0, 1), got {t_min!r}.")
    return np.concatenate([np.linspace(1.0, t_min, num_steps), [0.0]])


def build(config) -> Method:
    """The analytic-attenuation method described by config (see the module docstring)."""
    values = common.settings(config, DEFAULTS)
    t_min = values["t_min"]
    if not 0.0 < t_min < 1.0:
        raise ValueError(f"t_min must lie in (0, 1), got {t_min!r}.")
    common.check_range("label_dropout", values["label_dropout"], 0.0, 1.0)
    common.check_choice("sampler", values["sampler"], SAMPLERS)
    common.check_range("guidance_scale", values["guidance_scale"], low=0.0)
    transform = common.x0_transform(values["x0_transform"], values["threshold_quantile"])
    times = sampling_grid(values["sample_steps"], values["sample_t_min"])
    weighted = bool(values["weighted_loss"])

    model = common.create_model(config, "dual_unet")
    resolution = common.image_resolution(config)
    channels = model.out_channels
    num_classes = common.num_classes_of(model)

    def loss_fn(apply_fn, params, batch, rng):
        x0 = batch["image"]
        label_key, time_key, noise_key, dropout_key = jax.random.split(rng, 4)
        labels = common.training_labels(label_key, batch, num_classes, values["label_dropout"])
        t = t_min + (1.0 - t_min) * jax.random.uniform(time_key, (x0.shape[0],))
        noise = jax.random.normal(noise_key, x0.shape, x0.dtype)
        x_t = attenuation_corrupt(x0, noise, t)
        c_hat, eps_hat = common.training_apply(apply_fn, params, x_t, t, labels, dropout_key)
        loss = jnp.mean(attenuation_loss(c_hat, eps_hat, x0, noise, t, weighted, clamp=t_min))
        return loss, {"mse_x0": jnp.mean(jnp.square(-c_hat - x0)),
                      "mse_eps": jnp.mean(jnp.square(eps_hat - noise))}

    def sample_fn(apply_fn, params, rng, num_samples, labels=None):
        label_key, noise_key, sample_key = jax.random.split(rng, 3)
        labels = common.sampling_labels(label_key, labels, num_samples, num_classes)
        denoise = common.network_denoiser(apply_fn, params, labels, num_classes,
                                          values["guidance_scale"])
        x_1 = jax.random.normal(noise_key, (num_samples, resolution, resolution, channels))
        if values["sampler"] == "stochastic":
            samples = attenuation_sample(denoise, sample_key, x_1, times, transform)
        else:
            samples = attenuation_ode_sample(denoise, x_1, times, transform)
        return common.to_image_range(samples)

    example = jnp.zeros((1, resolution, resolution, channels), jnp.float32)
    return Method("attenuation", model, common.init_fn_for(model, example), loss_fn, sample_fn)


register("attenuation", build, DEFAULTS)
