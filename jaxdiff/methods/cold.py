"""Cold diffusion (Bansal et al. 2022, "Cold Diffusion: Inverting Arbitrary Image Transforms
Without Noise"; repo arpitbansal297/Cold-Diffusion-Models) with the UNet of jaxdiff.models.unet
as the restorer R.

Training: a step s ~ U{1..T} per sample, x_s = D(x0, s) for the configured degradation D
(core.degradations: blur, inpaint, pixelate, decolorize, mix), and the L1 (the paper's choice) or
L2 restoration loss ||R(x_s, s / T) - x0||. The network's time input is t = s / T in [0, 1].
Mixing blends each image with an image of a second dataset: the batch carries it as
batch["mix_image"] (config.mix_data, zipped into the data stream).

Sampling: Algorithm 1 ("naive") or Algorithm 2 ("improved") of the paper (core.cold_samplers)
from a start x_T:
  * when D(x0, T) is a flat colour per image (blur with final_mean, the paper's generation
    setting; pixelate with 2^T = resolution), x_T is a colour drawn from a Gaussian mixture fitted
    to the per-channel means of reference training images, filled in (the paper's blur
    generation, cold_samplers.blur_generation_start);
  * otherwise x_T = D(x_ref, T) of reference training images picked at random (for mix, with
    their reference second images): the paper's restoration tasks (deblurring, inpainting,
    super-resolution, colorization, demixing);
  then noise of std start_noise is added (the repo's generation noise; 0 disables it), and
  noise of std step_noise after every step but the last (cold_samplers.cold_sample).
The reference images come through the Method's data hook: `reference_images` =
num_reference_images, and the loop calls `attach_reference(images, rng)` with that many training
images (and second images for mix), which fits the mixture and returns the method ready to
sample. Building the method reads nothing. Samples are clipped to [-1, 1].

Config: data.resolution (the image side), config.mix_data (mix only), model.* (a unet preset or
architecture) and the method fields of ColdSettings:
"""

import dataclasses
import functools

import jax
import jax.numpy as jnp

from jaxdiff.checks import number_in, one_of
from jaxdiff.core import cold_samplers
from jaxdiff.core.degradations import (DEGRADATIONS, GaussianBlur, Pixelate, draw_training_steps,
                                       make_degradation, step_time)
from jaxdiff.core.losses import RESTORATION_NORMS, restoration_loss
from jaxdiff.methods import register
from jaxdiff.methods.base import BuildInputs, Method, model_batch
from jaxdiff.methods.network import (conditioning_of, create_network, init_fn_for, loss_keys,
                                     training_apply)
from jaxdiff.methods.sampler import make_sample_fn
from jaxdiff.methods.settings import Settings, setting


@dataclasses.dataclass(frozen=True)
class ColdSettings(Settings):
    degradation: str = setting("blur", "the degradation D", one_of(*DEGRADATIONS))
    degradation_options: dict = setting({}, "keyword options of the degradation "
                                        "(core.degradations, e.g. num_steps, kernel_std, "
                                        "routine, final_mean)")
    loss_norm: str = setting("l1", "'l1' (the paper's) or 'l2'", one_of(*RESTORATION_NORMS))
    algorithm: str = setting("improved", "'improved' (Algorithm 2) or 'naive' (Algorithm 1)",
                             one_of(*cold_samplers.ALGORITHMS))
    start_noise: float = setting(0.002, "std of the noise added to x_T", number_in(0.0))
    step_noise: float = setting(0.0, "std of the noise added after every sampling step but the "
                                "last", number_in(0.0))
    num_reference_images: int = setting(256, "training images the sampler starts from",
                                        number_in(1, integer=True))
    gmm_components: int = setting(10, "components of the colour mixture (the repo's 10)",
                                  number_in(1, integer=True))
    gmm_iterations: int = setting(100, "EM iterations of the colour mixture",
                                  number_in(1, integer=True))

    def check_together(self) -> None:
        try:
            self.operator  # noqa: B018 (building the degradation checks its options)
        except ValueError as error:
            raise ValueError(f"method.degradation_options: {error}") from None

    @functools.cached_property
    def operator(self):
        """The degradation D these settings name, built once."""
        return make_degradation(self.degradation, **dict(self.degradation_options))


__doc__ = (__doc__ or "") + ColdSettings.describe()


def has_flat_end(degradation, resolution: int) -> bool:
    """Whether D(x0, T) is a flat colour per image, so that a colour mixture can start sampling."""
    if isinstance(degradation, GaussianBlur):
        return degradation.final_mean
    if isinstance(degradation, Pixelate):
        return 2**degradation.num_steps == resolution
    return False


def build(inputs: BuildInputs) -> Method:
    """The cold-diffusion method of the inputs (module docstring); it samples once
    attach_reference has been given reference images."""
    settings, resolution = inputs.settings, inputs.resolution
    degradation = settings.operator
    num_steps = degradation.num_steps
    image_keys = ("image", "mix_image") if settings.degradation == "mix" else ("image",)
    if inputs.text.get("encoder", "none") != "none":
        raise ValueError("Cold diffusion restores degraded images and is not text-conditioned "
                         "here: set config.text.encoder='none'.")
    model = create_network(inputs, "unet")
    conditioning = conditioning_of(inputs, model)

    def loss_fn(apply_fn, params, batch, rng):
        x0 = batch["image"]
        keys = loss_keys(rng)
        given = conditioning.training(keys.labels, batch, 0.0, 0.0)
        steps = draw_training_steps(keys.time, x0.shape[0], num_steps)
        aux = degradation.sample_aux(keys.noise, x0, batch.get("mix_image"))
        x0_hat = training_apply(apply_fn, params, degradation(x0, steps, aux),
                                step_time(steps, num_steps), given, keys.dropout)
        loss = jnp.mean(restoration_loss(x0_hat, x0, settings.loss_norm))
        return loss, {"restoration_" + settings.loss_norm: loss}

    def sample_before_reference(*args, **kwargs):
        raise ValueError("Cold diffusion starts sampling from training images: call "
                         "Method.attach_reference(images, rng) first (the train loop does, "
                         "through loop.with_reference_images).")

    def attach_reference(images: dict, rng) -> Method:
        reference = checked_reference(images, image_keys, model.out_channels, resolution)
        start_fn = sampling_start(settings, degradation, reference, resolution, rng)
        sample_fn = make_sample_fn(
            conditioning=conditioning, start_fn=start_fn,
            run_fn=lambda restore, rng, start: cold_samplers.cold_sample(
                restore, degradation, start[0], num_steps, start[1], settings.algorithm, rng,
                settings.step_noise))
        return dataclasses.replace(method, sample_fn=sample_fn, reference_images=0,
                                   attach_reference=None)

    method = Method("cold", model, init_fn_for(model, resolution, model.out_channels), loss_fn,
                    sample_before_reference, num_classes=conditioning.num_classes,
                    image_keys=image_keys, reference_images=settings.num_reference_images,
                    attach_reference=attach_reference)
    return method


def checked_reference(images: dict, image_keys, channels: int, resolution: int) -> dict:
    """The reference images in the model range, checked to be (N, resolution, resolution, C)
    and to hold every image key the method reads."""
    shape = (resolution, resolution, channels)
    for key in image_keys:
        if key not in images:
            raise ValueError(f"The reference images need {key!r} (mixing needs images of the "
                             "second dataset too).")
        if jnp.ndim(images[key]) != 4 or tuple(jnp.shape(images[key]))[1:] != shape:
            raise ValueError(f"Reference images[{key!r}] must have shape (N, {resolution}, "
                             f"{resolution}, {channels}), got {jnp.shape(images[key])}.")
    return model_batch({key: jnp.asarray(images[key]) for key in image_keys}, image_keys)


def sampling_start(settings: ColdSettings, degradation, reference: dict, resolution: int, rng):
    """start_fn(rng, num_samples) -> (x_T, aux) from the reference images (module docstring);
    rng seeds the colour mixture's fit."""
    if has_flat_end(degradation, resolution):
        mixture = cold_samplers.fit_gaussian_mixture(
            rng, cold_samplers.channel_means(reference["image"]), settings.gmm_components,
            settings.gmm_iterations)

        def flat_start(rng, num_samples):
            start_key, aux_key = jax.random.split(rng)
            x_T = cold_samplers.blur_generation_start(start_key, mixture, num_samples,
                                                      resolution, resolution,
                                                      settings.start_noise)
            return x_T, degradation.sample_aux(aux_key, x_T)

        return flat_start

    def restoration_start(rng, num_samples):
        pick_key, aux_key, noise_key = jax.random.split(rng, 3)
        count = reference["image"].shape[0]
        picks = jax.random.choice(pick_key, count, (num_samples,), replace=num_samples > count)
        x_ref = reference["image"][picks]
        other = reference["mix_image"][picks] if "mix_image" in reference else None
        aux = degradation.sample_aux(aux_key, x_ref, other)
        x_T = degradation(x_ref, degradation.num_steps, aux)
        return cold_samplers.perturb(noise_key, x_T, settings.start_noise), aux

    return restoration_start


register("cold", ColdSettings, build)
