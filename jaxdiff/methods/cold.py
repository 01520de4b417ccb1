"""Cold diffusion (Bansal et al. 2022, "Cold Diffusion: Inverting Arbitrary Image Transforms
Without Noise"; repo arpitbansal297/Cold-Diffusion-Models) with the UNet of jaxdiff.models.unet
as the restorer R.

Training: a step s ~ U{1..T} per sample, x_s = D(x0, s) for the configured degradation D
(core.degradations: blur, inpaint, pixelate, decolorize, mix), and the L1 (the paper's choice) or
L2 restoration loss ||R(x_s, s / T) - x0||. The network's time input is t = s / T in [0, 1].
Mixing blends each image with an image of a second dataset: the batch must carry it as
batch["mix_image"] (uint8 or float in [-1, 1], shaped like batch["image"]).

Sampling: Algorithm 1 ("naive") or Algorithm 2 ("improved") of the paper (core.cold_samplers)
from a start x_T:
  * when D(x0, T) is a flat colour per image (blur with final_mean, the paper's generation
    setting; pixelate with 2^T = resolution), x_T is a colour drawn from a Gaussian mixture fitted
    to the per-channel means of reference training images, filled in (the paper's blur
    generation, cold_samplers.blur_generation_start);
  * otherwise x_T = D(x_ref, T) of reference training images picked at random (for mix, with
    their reference second images): the paper's restoration tasks (deblurring, inpainting,
    super-resolution, colorization, demixing);
  then noise of std start_noise is added (the repo's generation noise; 0 disables it).
The reference images are `data_sample` given to `build`, or, when it is None,
num_reference_images images read from config.data (and config.mix_data for mix) through
jaxdiff.data, the same on every process. Samples are clipped to [-1, 1].

Config fields read (defaults in brackets):
  data.resolution                 image side (required); data.* to read reference images
  mix_data                        the second dataset's data config (mix only, when reading)
  seed [0]                        seed of the reference-image read and of the mixture fit
  model.name ["unet"], model.preset ["tiny"], other model.* fields override the preset
  method.degradation ["blur"]     "blur", "inpaint", "pixelate", "decolorize" or "mix"
  method.degradation_options [{}] keyword options of the degradation (core.degradations, e.g.
                                  num_steps, kernel_std, routine, final_mean)
  method.loss_norm ["l1"]         "l1" or "l2"
  method.algorithm ["improved"]   "improved" (Algorithm 2) or "naive" (Algorithm 1)
  method.start_noise [0.002]      std of the noise added to x_T
  method.num_reference_images [256]
  method.gmm_components [10], method.gmm_iterations [100]   the colour mixture (repo: 10)
"""

from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np

from jaxdiff.core import cold_samplers
from jaxdiff import data
from jaxdiff.core.degradations import (GaussianBlur, Pixelate, make_degradation, sample_steps,
                                       step_time)
from jaxdiff.core.losses import RESTORATION_NORMS, restoration_loss
from jaxdiff.methods import common, register
from jaxdiff.methods.base import Method

DEFAULTS = dict(degradation="blur", degradation_options={}, loss_norm="l1",
                algorithm="improved", start_noise=0.002, num_reference_images=256,
                gmm_components=10, gmm_iterations=100)


def model_range(images):
    """uint8 pixels -> float32 in [-1, 1] (data.to_model_input); float images are kept."""
    images = jnp.asarray(images)
    if images.dtype == jnp.uint8:
        return data.to_model_input(images)
    return images.astype(jnp.float32)


def has_flat_end(degradation, resolution: int) -> bool:
    """Whether D(x0, T) is a flat colour per image, so that a colour mixture can start sampling."""
    if isinstance(degradation, GaussianBlur):
        return degradation.final_mean
    if isinstance(degradation, Pixelate):
        return 2**degradation.num_steps == resolution
    return False


def read_reference_images(config, num_images: int, mix: bool) -> dict:
    """num_images images of config.data (and of config.mix_data when mix) through jaxdiff.data,
    read by every process alike (process 0 of 1), as a dict like a batch."""
    seed = int(config.get("seed", 0))
    sample = {}
    sources = [("image", "data")] + ([("mix_image", "mix_data")] if mix else [])
    for key, field in sources:
        if config.get(field) is None:
            raise ValueError(f"Cold diffusion needs reference images: pass data_sample to build "
                             f"or set config.{field}.")
        iterator = data.create_iterator(config[field], global_batch_size=num_images, seed=seed)
        sample[key] = np.asarray(next(iter(iterator))["image"])
    return sample


def build(config, data_sample: Optional[dict] = None) -> Method:
    """The cold-diffusion method described by config (see the module docstring).

    data_sample: reference training images {"image": (N, H, W, 3)[, "mix_image": same]}, uint8
    or float in [-1, 1], e.g. a few hundred images of the training stream; read from config.data
    when None.
    """
    values = common.settings(config, DEFAULTS)
    degradation = make_degradation(values["degradation"], **dict(values["degradation_options"]))
    common.check_choice("loss_norm", values["loss_norm"], RESTORATION_NORMS)
    common.check_choice("algorithm", values["algorithm"], cold_samplers.ALGORITHMS)
    common.check_range("start_noise", values["start_noise"], low=0.0)
    common.check_range("num_reference_images", values["num_reference_images"], low=1,
                       integer=True)
    num_steps = degradation.num_steps
    mix = values["degradation"] == "mix"

    model = common.create_model(config, "unet")
    resolution = common.image_resolution(config)
    channels = model.out_channels
    num_classes = common.num_classes_of(model)

    if data_sample is None:
        data_sample = read_reference_images(config, values["num_reference_images"], mix)
    reference = model_range(data_sample["image"])
    if reference.ndim != 4 or reference.shape[1:] != (resolution, resolution, channels):
        raise ValueError(f"data_sample['image'] must have shape (N, {resolution}, {resolution}, "
                         f"{channels}), got {reference.shape}.")
    reference_mix = None
    if mix:
        if "mix_image" not in data_sample:
            raise ValueError("Mixing needs data_sample['mix_image'], images of the second "
                             "dataset.")
        reference_mix = model_range(data_sample["mix_image"])
        if reference_mix.shape != reference.shape:
            raise ValueError("data_sample['mix_image'] must be shaped like data_sample['image'].")

    flat_start = has_flat_end(degradation, resolution)
    mixture = None
    if flat_start:
        fit_key = jax.random.PRNGKey(int(config.get("seed", 0)))
        mixture = cold_samplers.fit_gaussian_mixture(
            fit_key, cold_samplers.channel_means(reference), values["gmm_components"],
            values["gmm_iterations"])

    def loss_fn(apply_fn, params, batch, rng):
        x0 = batch["image"]
        step_key, aux_key, label_key, dropout_key = jax.random.split(rng, 4)
        labels = common.training_labels(label_key, batch, num_classes, 0.0)
        steps = sample_steps(step_key, x0.shape[0], num_steps)
        other = model_range(batch["mix_image"]) if "mix_image" in batch else None
        aux = degradation.sample_aux(aux_key, x0, other)
        x_s = degradation(x0, steps, aux)
        x0_hat = common.training_apply(apply_fn, params, x_s, step_time(steps, num_steps),
                                       labels, dropout_key)
        loss = jnp.mean(restoration_loss(x0_hat, x0, values["loss_norm"]))
        return loss, {"restoration_" + values["loss_norm"]: loss}

    def start(rng, num_samples):
        """(x_T, aux) for num_samples samples (module docstring)."""
        start_key, aux_key, noise_key = jax.random.split(rng, 3)
        if flat_start:
            x_T = cold_samplers.blur_generation_start(start_key, mixture, num_samples,
                                                      resolution, resolution,
                                                      values["start_noise"])
            return x_T, degradation.sample_aux(aux_key, x_T)
        count = reference.shape[0]
        picks = jax.random.choice(start_key, count, (num_samples,), replace=num_samples > count)
        x_ref = reference[picks]
        aux = degradation.sample_aux(aux_key, x_ref,
                                     None if reference_mix is None else reference_mix[picks])
        x_T = degradation(x_ref, num_steps, aux)
        return cold_samplers.perturb(noise_key, x_T, values["start_noise"]), aux

    def sample_fn(apply_fn, params, rng, num_samples, labels=None):
        label_key, start_key = jax.random.split(rng)
        labels = common.sampling_labels(label_key, labels, num_samples, num_classes)
        restore = common.network_denoiser(apply_fn, params, labels, num_classes)
        x_T, aux = start(start_key, num_samples)
        samples = cold_samplers.cold_sample(restore, degradation, x_T, num_steps, aux,
                                            values["algorithm"])
        return common.to_image_range(samples)

    example = jnp.zeros((1, resolution, resolution, channels), jnp.float32)
    return Method("cold", model, common.init_fn_for(model, example), loss_fn, sample_fn)


register("cold", build, DEFAULTS)
