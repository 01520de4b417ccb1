"""DDPM / improved DDPM / DDIM (Ho et al. 2020; Nichol & Dhariwal 2021; Song et al. 2021) on the
UNet of jaxdiff.models.unet.

Training (Ho et al. 2020, Algorithm 1): a step i ~ U{0..T-1} per sample, t = (i + 1) / T,
x_t = sqrt(abar_i) x0 + sqrt(1 - abar_i) eps on the linear or cosine beta table, and the MSE of
the parameterization's target (eps, x0 or v). With variance "learned_range" the UNet outputs 2C
channels (the prediction, then the interpolation v of eq. 15 of Nichol & Dhariwal) and the loss is
their L_hybrid = L_simple + lambda L_vlb (core.losses.hybrid_loss, lambda = vlb_weight).
Class-conditional UNets are trained with label dropout for classifier-free guidance.

Sampling: ancestral (Ho et al. 2020, Algorithm 2, with the fixedsmall / fixedlarge / learned
variance), DDIM(eta) (Song et al. 2021) or DPM-Solver++(2M), on the chain respaced to
`sample_steps` steps (Nichol & Dhariwal 2021, sec. 4), with classifier-free guidance and
clipping or dynamic thresholding of the x0 estimate. Samples are clipped to [-1, 1].

Config fields read (defaults in brackets):
  data.resolution                  image side (required)
  model.name ["unet"], model.preset ["tiny"], other model.* fields override the preset's
      constructor arguments (jaxdiff.models.unet); learn_sigma is set from method.variance.
  method.num_timesteps [1000]      T of the discrete chain
  method.beta_schedule ["linear"]  "linear" (Ho et al.) or "cosine" (Nichol & Dhariwal)
  method.parameterization ["eps"]  "eps", "x0" or "v"
  method.variance ["fixedsmall"]   "fixedsmall", "fixedlarge" or "learned_range"
  method.vlb_weight [0.001]        lambda of L_hybrid (learned_range only)
  method.label_dropout [0.1]       probability of the null class in training (class-conditional)
  method.sampler ["ancestral"]     "ancestral", "ddim" or "dpm_solver_pp"
  method.sample_steps [100]        kept steps of the respaced chain
  method.eta [0.0]                 DDIM eta
  method.guidance_scale [1.0]      classifier-free guidance w (1 = plain conditional)
  method.x0_transform ["clip"]     "none", "clip" or "dynamic" (Imagen thresholding)
  method.threshold_quantile [0.995]  dynamic thresholding percentile
"""

import jax
import jax.numpy as jnp

from jaxdiff.core.losses import denoising_loss, hybrid_loss
from jaxdiff.core.predictions import PARAMETERIZATIONS
from jaxdiff.core.samplers import DDPM_VARIANCES
from jaxdiff.core.schedules import discrete_logsnr_fn
from jaxdiff.methods import common, register
from jaxdiff.methods.base import Method

DEFAULTS = dict(common.SAMPLER_DEFAULTS, num_timesteps=1000, beta_schedule="linear",
                parameterization="eps", variance="fixedsmall", vlb_weight=0.001,
                label_dropout=0.1)


def build(config) -> Method:
    """The DDPM method described by config (see the module docstring for the fields)."""
    values = common.settings(config, DEFAULTS)
    parameterization, variance = values["parameterization"], values["variance"]
    common.check_choice("parameterization", parameterization, PARAMETERIZATIONS)
    common.check_choice("variance", variance, DDPM_VARIANCES)
    common.check_range("label_dropout", values["label_dropout"], 0.0, 1.0)
    common.check_range("vlb_weight", values["vlb_weight"], low=0.0)
    sampling = common.SamplerSettings.from_settings(values)
    num_timesteps = values["num_timesteps"]
    alpha_bar = common.discrete_alphas_cumprod(values["beta_schedule"], num_timesteps)
    schedule = common.GaussianSchedule(discrete_logsnr_fn(alpha_bar), num_timesteps)
    times = schedule.sampling_times(sampling.num_steps)

    learned = variance == "learned_range"
    model = common.create_model(config, "unet", learn_sigma=learned)
    resolution = common.image_resolution(config)
    channels = model.out_channels
    num_classes = common.num_classes_of(model)

    def split_variance(output):
        """(prediction, variance output v) from the 2C channels of a learned-variance UNet."""
        return output[..., :channels], output[..., channels:]

    def loss_fn(apply_fn, params, batch, rng):
        x0 = batch["image"]
        t, logsnr, noise, x_t, output = common.gaussian_training_forward(
            apply_fn, params, batch, rng, schedule, num_classes, values["label_dropout"])
        if not learned:
            loss = jnp.mean(denoising_loss(parameterization, output, x0, noise, logsnr))
            return loss, {"mse": loss}
        prediction, variance_output = split_variance(output)
        steps = jnp.round(t * num_timesteps).astype(jnp.int32) - 1
        per_sample, vlb = hybrid_loss(parameterization, prediction, variance_output, x0, noise,
                                      x_t, steps, alpha_bar, values["vlb_weight"])
        mse = jnp.mean(denoising_loss(parameterization, prediction, x0, noise, logsnr))
        return jnp.mean(per_sample), {"mse": mse, "vlb_bits_per_dim": jnp.mean(vlb)}

    ancestral_learned = learned and sampling.sampler == "ancestral"
    if ancestral_learned:
        postprocess = split_variance
    elif learned:
        postprocess = lambda output: split_variance(output)[0]
    else:
        postprocess = lambda output: output

    def sample_fn(apply_fn, params, rng, num_samples, labels=None):
        label_key, noise_key, sample_key = jax.random.split(rng, 3)
        labels = common.sampling_labels(label_key, labels, num_samples, num_classes)
        denoise = common.network_denoiser(apply_fn, params, labels, num_classes,
                                          sampling.guidance_scale, postprocess,
                                          variance_output=ancestral_learned)
        x_T = jax.random.normal(noise_key, (num_samples, resolution, resolution, channels))
        samples = common.gaussian_sample(sampling, denoise, sample_key, x_T, schedule.logsnr_fn,
                                         times, parameterization, variance)
        return common.to_image_range(samples)

    example = jnp.zeros((1, resolution, resolution, channels), jnp.float32)
    return Method("ddpm", model, common.init_fn_for(model, example), loss_fn, sample_fn)


register("ddpm", build, DEFAULTS)
