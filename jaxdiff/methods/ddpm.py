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

Config: data.resolution (the image side), model.* (a unet preset or architecture;
learn_sigma is set from method.variance) and the method fields of DDPMSettings:
"""

import dataclasses

import jax.numpy as jnp

from jaxdiff.checks import number_in, one_of
from jaxdiff.core.losses import denoising_loss, hybrid_loss
from jaxdiff.core.samplers import DDPM_VARIANCES
from jaxdiff.methods import register
from jaxdiff.methods.base import BuildInputs, Method
from jaxdiff.methods.gaussian import base_schedule, gaussian_training_forward, shift_for
from jaxdiff.methods.network import conditioning_of, create_network, init_fn_for, network_of
from jaxdiff.methods.sampler import (gaussian_noise_start, gaussian_run_fn, guidance_band,
                                     make_sample_fn)
from jaxdiff.methods.settings import GaussianSettings, replace_default, setting


@dataclasses.dataclass(frozen=True)
class DDPMSettings(GaussianSettings):
    schedule: str = replace_default(GaussianSettings, "schedule", "linear_betas")
    variance: str = setting("fixedsmall", "'fixedsmall', 'fixedlarge' or 'learned_range' "
                            "(improved DDPM)", one_of(*DDPM_VARIANCES))
    vlb_weight: float = setting(0.001, "lambda of L_hybrid (learned_range only)",
                                number_in(0.0))

    def check_together(self) -> None:
        super().check_together()
        if not self.is_discrete():
            raise ValueError(f"method.schedule must be a discrete T-step chain for DDPM "
                             f"('linear_betas' or 'cosine_betas'), got {self.schedule!r}.")
        if self.variance == "learned_range" and (self.shift_base_resolution
                                                 or self.prior_shift_base_resolution):
            raise ValueError("method.variance 'learned_range' needs the unshifted chain: set "
                             "method.shift_base_resolution and prior_shift_base_resolution "
                             "to 0.")


__doc__ = (__doc__ or "") + DDPMSettings.describe()


def build(inputs: BuildInputs) -> Method:
    """The DDPM method of the inputs (module docstring)."""
    settings, resolution = inputs.settings, inputs.resolution
    parameterization, variance = settings.parameterization, settings.variance
    schedule = shift_for(base_schedule(settings), settings, resolution, resolution)
    num_timesteps = schedule.num_timesteps

    learned = variance == "learned_range"
    model = create_network(inputs, "unet", learn_sigma=learned)
    channels = network_of(model).out_channels
    conditioning = conditioning_of(inputs, model)

    def split_variance(output):
        """(prediction, variance output v) from the 2C channels of a learned-variance UNet."""
        return output[..., :channels], output[..., channels:]

    def loss_fn(apply_fn, params, batch, rng):
        x0 = batch["image"]
        t, logsnr, noise, x_t, output = gaussian_training_forward(
            apply_fn, params, batch, rng, schedule, conditioning, settings)
        if not learned:
            loss = jnp.mean(denoising_loss(parameterization, output, x0, noise, logsnr))
            return loss, {"mse": loss}
        prediction, variance_output = split_variance(output)
        steps = jnp.round(t * num_timesteps).astype(jnp.int32) - 1
        per_sample, vlb = hybrid_loss(parameterization, prediction, variance_output, x0, noise,
                                      x_t, steps, schedule.alphas_cumprod, settings.vlb_weight)
        mse = jnp.mean(denoising_loss(parameterization, prediction, x0, noise, logsnr))
        return jnp.mean(per_sample), {"mse": mse, "vlb_bits_per_dim": jnp.mean(vlb)}

    ancestral_learned = learned and settings.sampler == "ancestral"
    if ancestral_learned:
        postprocess = split_variance
    elif learned:
        postprocess = lambda output: split_variance(output)[0]
    else:
        postprocess = None

    sample_fn = make_sample_fn(
        conditioning=conditioning, guidance_scale=settings.guidance_scale,
        guidance_band=guidance_band(settings, schedule.logsnr_fn),
        start_fn=gaussian_noise_start(lambda n: (n, resolution, resolution, channels)),
        run_fn=gaussian_run_fn(settings, schedule.logsnr_fn,
                               settings.sampling_times(schedule, settings.sample_steps), variance),
        postprocess=postprocess, variance_output=ancestral_learned)
    return Method("ddpm", model, init_fn_for(model, resolution, channels, conditioning),
                  loss_fn, sample_fn, num_classes=conditioning.num_classes,
                  text=conditioning.text)


register("ddpm", DDPMSettings, build)
