"""Matryoshka diffusion (Gu et al. 2023, "Matryoshka Diffusion Models", arXiv 2310.15111;
reference apple/ml-mdm) on the NestedUNet of jaxdiff.models.nested_unet.

The image x (side d, the highest active level) becomes the pyramid [D^{f_k}(x)] of average-pooled
copies (processes.image_pyramid), one per active level, highest resolution first; the level
sides come from the network (NestedUNet.level_sides). All levels share the time t and get
independent noise, each with its own schedule, the base schedule shifted for its side s_k
(schedules.resolution_shift):
    logSNR_k(t) = logSNR_base(t) - shift_power * log(s_k / shift_base_resolution),
so that the higher resolutions are noised more at the same t (MDM sec. 3.1; ml-mdm's shifted
schedule). The loss is the nested loss sum_k w_k L_k (core.losses.nested_denoising_loss) of the
v (default), eps or x0 targets.

Mixed resolution (MDM sec. 3.3, ml-mdm's mixed_ratio): with mixed_ratio "a:b" (one number per
active level) level k is trained on the first b_k = floor(B * c_k) samples of the batch,
c = cumsum(ratio) / sum(ratio), so "2:1" trains the outer level on 2/3 of the batch and the
inner one on all of it; the NestedUNet runs each level on its prefix
(nested_unet.mixed_resolution_pyramid), and each level's loss is the mean over its own rows
(mask m_i = [i < b_k] with weight B / b_k, nested_unet.mixed_resolution_mask).

Progressive training is a change of config: `active_levels` = n trains and samples only the n
innermost levels of the same network (NestedUNet.innermost_apply; the outer levels are unused
and get zero gradients), with data.resolution the side of the highest active level. A 64 px
stage (active_levels 1, data.resolution 64) and then the 64 -> 256 stage (active_levels 2,
data.resolution 256, init_from the first stage) share one parameter tree.

Sampling runs any Gaussian sampler jointly over the pyramid (a list state, one schedule per
level); CLIP thresholding is ml-mdm's default. Returns the list of levels, highest first, clipped
to [-1, 1].

Config: data.resolution (the side of the highest active level), model.* (a nested_unet preset
or architecture) and the method fields of MDMSettings:
"""

import dataclasses
import math

import jax.numpy as jnp
import numpy as np

from jaxdiff.checks import fail, number_in
from jaxdiff.core.losses import denoising_loss, nested_denoising_loss
from jaxdiff.core.processes import corrupt_pyramid, image_pyramid, pyramid_logsnrs, pyramid_noise
from jaxdiff.methods import register
from jaxdiff.methods.base import BuildInputs, Method
from jaxdiff.methods.conditioning import Conditioning
from jaxdiff.methods.gaussian import base_schedule, shift_for
from jaxdiff.methods.network import (conditioning_of, create_network, init_fn_for, loss_keys,
                                     network_of, training_apply)
from jaxdiff.methods.sampler import (gaussian_noise_start, gaussian_run_fn, guidance_band,
                                     make_sample_fn)
from jaxdiff.methods.settings import GaussianSettings, replace_default, setting
from jaxdiff.models.nested_unet import mixed_resolution_mask, mixed_resolution_pyramid


def parse_ratio(mixed_ratio: str) -> list:
    """"2:1" -> [2.0, 1.0]; ValueError unless positive numbers joined by ':'."""
    try:
        parts = [float(part) for part in str(mixed_ratio).split(":")]
    except ValueError:
        parts = []
    if not parts or min(parts) <= 0:
        raise ValueError(f"method.mixed_ratio must be positive numbers joined by ':', one per "
                         f"active level (e.g. '2:1'), got {mixed_ratio!r}.")
    return parts


def check_ratio(name, value) -> None:
    """A mixed ratio is '' (full batches) or positive numbers joined by ':'."""
    if not isinstance(value, str):
        fail(name, "a string such as '2:1' ('' for full batches)", value)
    if value:
        parse_ratio(value)


def check_weights(name, value) -> None:
    """Level weights are a sequence of non-negative numbers."""
    if not isinstance(value, (tuple, list)) or any(
            isinstance(w, bool) or not isinstance(w, (int, float)) or not w >= 0 for w in value):
        fail(name, "a sequence of non-negative numbers, one per active level", value)


@dataclasses.dataclass(frozen=True)
class MDMSettings(GaussianSettings):
    schedule: str = replace_default(GaussianSettings, "schedule", "cosine_betas")
    parameterization: str = replace_default(GaussianSettings, "parameterization", "v")
    active_levels: int = setting(0, "innermost levels trained and sampled; 0 = all",
                                 number_in(0, integer=True))
    level_weights: tuple = setting((), "one loss weight per active level, highest first; "
                                   "() = all 1", check_weights)
    mixed_ratio: str = setting("", "per-level batch fractions, e.g. '2:1'; '' = full batches",
                               check_ratio)


__doc__ = (__doc__ or "") + MDMSettings.describe()


def mixed_batch_sizes(mixed_ratio: str, num_levels: int, batch_size: int) -> list:
    """Per-level batch sizes floor(B c_k), c = cumsum(ratio) / sum(ratio) (ml-mdm mixed_ratio);
    all B when mixed_ratio is empty. Example: "2:1" with B = 6 gives [4, 6]."""
    if not mixed_ratio:
        return [batch_size] * num_levels
    fractions = np.cumsum(parse_ratio(mixed_ratio))
    sizes = [int(math.floor(batch_size * f / fractions[-1] + 1e-9)) for f in fractions]
    if sizes[0] < 1:
        raise ValueError(f"method.mixed_ratio {mixed_ratio!r} leaves the outer level no sample "
                         f"of a batch of {batch_size}.")
    return sizes


def active_levels(settings: MDMSettings, model) -> int:
    """The number of active levels, checked against the network and the per-level settings."""
    active = settings.active_levels or model.depth
    if active > model.depth:
        raise ValueError(f"method.active_levels must be 0 (all) or at most the network's "
                         f"{model.depth} levels, got {active}.")
    if settings.level_weights and len(settings.level_weights) != active:
        raise ValueError(f"method.level_weights needs one weight per active level ({active}), "
                         f"got {settings.level_weights}.")
    if settings.mixed_ratio and len(parse_ratio(settings.mixed_ratio)) != active:
        raise ValueError(f"method.mixed_ratio needs one number per active level ({active}), "
                         f"got {settings.mixed_ratio!r}.")
    return active


def level_sides(resolution: int, model, active: int) -> tuple:
    """The side of every level of the network when the highest active level has the image
    side; ValueError naming data.resolution when it does not divide into the levels."""
    try:
        return model.level_sides(resolution, model.depth - active)
    except ValueError:
        factor = model.innermost(active).level_factors[-1]
        raise ValueError(f"data.resolution {resolution} is not divisible by {factor}, the "
                         "factor between the highest and the innermost active level.") from None


def smallest_batch(mixed_ratio: str) -> int:
    """The smallest batch in which the outer level gets a sample (mixed_batch_sizes)."""
    if not mixed_ratio:
        return 1
    fractions = np.cumsum(parse_ratio(mixed_ratio))
    return int(math.ceil(fractions[-1] / fractions[0] - 1e-9))


def build(inputs: BuildInputs) -> Method:
    """The Matryoshka diffusion method of the inputs (module docstring)."""
    settings, resolution = inputs.settings, inputs.resolution
    model = create_network(inputs, "nested_unet")
    conditioning = conditioning_of(inputs, model)
    network = network_of(model)
    active = active_levels(settings, network)
    all_sides = level_sides(resolution, network, active)
    sides = all_sides[network.depth - active:]
    base = base_schedule(settings)
    level_schedules = [shift_for(base, settings, side, sides[-1]) for side in sides]
    logsnr_fns = [schedule.logsnr_fn for schedule in level_schedules]
    output_schedule = level_schedules[0]  # the highest resolution's: the grid and guidance's
    loss_fn = nested_loss_fn(settings, base, logsnr_fns, sides, conditioning)

    def active_apply(apply_fn):
        """The network of the active levels: apply_fn itself when every level is active, else
        the NestedUNet's innermost levels (a whole-model apply_fn cannot take a partial
        pyramid), which take the whole model's variables."""
        return apply_fn if active == network.depth else model.innermost_apply(active)

    channels = network.out_channels
    sample_pyramid = make_sample_fn(
        conditioning=conditioning, guidance_scale=settings.guidance_scale,
        guidance_band=guidance_band(settings, output_schedule.logsnr_fn),
        start_fn=gaussian_noise_start(lambda n: [(n, side, side, channels) for side in sides]),
        run_fn=gaussian_run_fn(settings, logsnr_fns,
                               settings.sampling_times(output_schedule, settings.sample_steps)))
    return Method(
        "mdm", model, init_fn_for(model, list(all_sides), channels, conditioning),
        loss_fn=lambda apply_fn, *args: loss_fn(active_apply(apply_fn), *args),
        sample_fn=lambda apply_fn, *args, **kwargs: sample_pyramid(active_apply(apply_fn), *args,
                                                               **kwargs),
        num_classes=conditioning.num_classes, text=conditioning.text,
        min_batch_size=smallest_batch(settings.mixed_ratio))


def nested_loss_fn(settings: MDMSettings, base, logsnr_fns, sides,
                   conditioning: Conditioning):
    """loss_fn(apply_fn of the active levels, params, batch, rng): the nested loss on mixed
    batches (module docstring)."""
    parameterization = settings.parameterization
    level_weights = tuple(settings.level_weights) or (1.0,) * len(sides)
    factors = [sides[0] // side for side in sides]

    def loss_fn(apply_fn, params, batch, rng):
        x0 = batch["image"]
        batch_size = x0.shape[0]
        keys = loss_keys(rng)
        given = conditioning.training(keys.labels, batch, settings.label_dropout,
                                      settings.caption_dropout)
        pyramid = image_pyramid(x0, factors)
        noises = pyramid_noise(keys.noise, pyramid)
        t = base.training_times(keys.time, batch_size)
        logsnrs = pyramid_logsnrs(logsnr_fns, t)
        sizes = mixed_batch_sizes(settings.mixed_ratio, len(sides), batch_size)
        x_t = mixed_resolution_pyramid(corrupt_pyramid(pyramid, noises, logsnrs), sizes)
        outputs = training_apply(apply_fn, params, x_t, t, given, keys.dropout)
        # Each level's output covers its first `size` rows; pad to B and weight the rows so
        # that the batch mean is the mean over the level's own rows.
        padded = [jnp.pad(out, ((0, batch_size - out.shape[0]),) + ((0, 0),) * 3)
                  for out in outputs]
        row_weights = [mixed_resolution_mask(batch_size, size) * (batch_size / size)
                       for size in sizes]
        per_sample = nested_denoising_loss(parameterization, padded, pyramid, noises, logsnrs,
                                           level_weights, row_weights)
        metrics = {
            f"mse_{side}px": jnp.mean(denoising_loss(parameterization, out, x[:size],
                                                     noise[:size], logsnr[:size]))
            for side, out, x, noise, logsnr, size in zip(sides, outputs, pyramid, noises,
                                                         logsnrs, sizes)}
        return jnp.mean(per_sample), metrics

    return loss_fn


register("mdm", MDMSettings, build)
