"""The one sampler skeleton every method uses, and the x0 transforms of its settings.

    sample_fn(apply_fn, params, rng, num_samples, labels=None, text=None, negative_text=None):
        conditioning, unconditional
                 <- the given labels (or classes drawn uniformly) and text (or the empty
                    caption); the null class and the negative text (methods/conditioning.py)
        denoise  <- the network as a denoiser, guided (methods/network.py)
        start    <- start_fn(key, num_samples)             (noise, a pyramid, a degraded image)
        samples  <- run_fn(denoise, key, start)             (a core sampler: one lax.scan)
        return samples clipped to [-1, 1]
"""

from typing import Any, Callable, Optional

import jax
import jax.numpy as jnp

from jaxdiff.core import guidance, samplers
from jaxdiff.core.processes import pyramid_noise
from jaxdiff.methods.conditioning import Conditioning
from jaxdiff.methods.network import network_denoiser


def x0_transform(settings) -> Optional[Callable]:
    """The x0 transform a GuidanceSettings names (guidance.x0_transform)."""
    return guidance.x0_transform(settings.x0_transform, settings.threshold_quantile)


def to_image_range(images):
    """Clip every leaf of a sampler's output to the image range [-1, 1]."""
    return jax.tree.map(lambda x: jnp.clip(x, -1.0, 1.0), images)


def guidance_band(settings, logsnr_fn: Callable) -> Optional[Callable]:
    """in_band(t): whether logSNR(t) of the output lies in the GuidanceSettings' interval
    [guidance_logsnr_min, guidance_logsnr_max]; None when that is the whole line."""
    low, high = settings.guidance_logsnr_min, settings.guidance_logsnr_max
    if low == -float("inf") and high == float("inf"):
        return None
    return lambda t: (logsnr_fn(t) >= low) & (logsnr_fn(t) <= high)


def make_sample_fn(*, conditioning: Conditioning, start_fn: Callable, run_fn: Callable,
                   guidance_scale: float = 1.0, postprocess: Callable[[Any], Any] = None,
                   variance_output: bool = False, guidance_band: Optional[Callable] = None):
    """The method's sample_fn (module docstring): start_fn(rng, num_samples) -> start state,
    run_fn(denoise, rng, start) -> samples; postprocess, variance_output and guidance_band as
    in network.network_denoiser."""

    def sample_fn(apply_fn, params, rng, num_samples, labels=None, text=None,
                  negative_text=None):
        label_key, start_key, sample_key = jax.random.split(rng, 3)
        given, unconditional = conditioning.sampling(label_key, num_samples, labels, text,
                                                     negative_text)
        denoise = network_denoiser(apply_fn, params, given, unconditional, guidance_scale,
                                   postprocess or (lambda output: output), variance_output,
                                   guidance_band)
        return to_image_range(run_fn(denoise, sample_key, start_fn(start_key, num_samples)))

    return sample_fn


def gaussian_run_fn(settings, logsnr_fn, times, variance: str = "fixedsmall"):
    """run_fn(denoise, rng, x_T) of the configured Gaussian sampler (a GaussianSettings) over
    the time grid: "ancestral" (samplers.ddpm_sample with `variance`; denoise returns the pair
    (prediction, variance output) for "learned_range"), "ddim" (eta), "dpm_solver_pp" (2M),
    "dpm_solver_pp_3m" or "heun". x_T may be a pytree, logsnr_fn then one schedule per leaf."""
    transform = x0_transform(settings)
    parameterization = settings.parameterization
    sampler = settings.sampler

    def run_fn(denoise, rng, x_T):
        if sampler == "ancestral":
            return samplers.ddpm_sample(denoise, rng, x_T, logsnr_fn, times, parameterization,
                                        variance, transform)
        if sampler == "ddim":
            return samplers.ddim_sample(denoise, rng, x_T, logsnr_fn, times, parameterization,
                                        settings.eta, transform)
        if sampler == "heun":
            return samplers.heun_sample(denoise, x_T, logsnr_fn, times, parameterization,
                                        transform)
        return samplers.dpm_solver_pp_sample(denoise, x_T, logsnr_fn, times, parameterization,
                                             transform, order=3 if sampler.endswith("3m") else 2)

    return run_fn


def gaussian_noise_start(shape_of: Callable[[int], Any]):
    """start_fn drawing N(0, I) of the shape(s) shape_of(num_samples) (a tuple, or a list of
    tuples: one leaf each, processes.pyramid_noise)."""

    def start_fn(rng, num_samples):
        shapes = shape_of(num_samples)
        if isinstance(shapes, list):
            return pyramid_noise(rng, [jax.ShapeDtypeStruct(shape, jnp.float32)
                                       for shape in shapes])
        return jax.random.normal(rng, shapes)

    return start_fn
