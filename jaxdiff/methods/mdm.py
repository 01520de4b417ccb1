"""Matryoshka diffusion (Gu et al. 2023, "Matryoshka Diffusion Models", arXiv 2310.15111;
reference apple/ml-mdm) on the NestedUNet of jaxdiff.models.nested_unet.

The image x (side d, the highest active level) becomes the pyramid [D^{f_k}(x)] of average-pooled
copies (processes.image_pyramid), one per active level, highest resolution first; the level
factors come from the model: level k + 1 is 2^(len(channels[k]) - 1) times smaller than level k.
All levels share the time t and get independent noise, each with its own schedule, the base
schedule shifted for its side s_k (schedules.resolution_shift):
    logSNR_k(t) = logSNR_base(t) - shift_power * log(s_k / shift_base_resolution),
so that the higher resolutions are noised more at the same t (MDM sec. 3.1; ml-mdm's shifted
schedule). The loss is the nested loss sum_k w_k L_k (core.losses.nested_denoising_loss) of the
v (default), eps or x0 targets.

Mixed resolution (MDM sec. 3.3, ml-mdm's mixed_ratio): with mixed_ratio "a:b" (one number per
active level) level k is trained on the first b_k = floor(B * c_k) samples of the batch,
c = cumsum(ratio) / sum(ratio), so "2:1" trains the outer level on 2/3 of the batch and the
inner one on all of it; the NestedUNet runs each level on its prefix, and each level's loss is
the mean over its own rows (mask m_i = [i < b_k] with weight B / b_k).

Progressive training is a change of config: `active_levels` = n trains and samples only the n
innermost levels of the same network (the parameters params["inner"]...; the outer levels are
unused and get zero gradients), with data.resolution the side of the highest active level. A
64 px stage (active_levels 1, data.resolution 64) and then the 64 -> 256 stage (active_levels 2,
data.resolution 256, init_from the first stage) share one parameter tree.

Sampling runs any Gaussian sampler jointly over the pyramid (a list state, one schedule per
level); CLIP thresholding is ml-mdm's default. Returns the list of levels, highest first, clipped
to [-1, 1].

Config fields read (defaults in brackets):
  data.resolution                    side of the highest active level (required)
  model.name ["nested_unet"], model.preset ["tiny"], other model.* fields override the preset
  method.active_levels [0]           number of innermost levels trained and sampled; 0 = all
  method.schedule ["cosine"]         base schedule: "cosine" or "linear" (discrete, T steps;
                                     ml-mdm's DEEPFLOYD cosine) or "continuous_cosine"
  method.num_timesteps [1000]        T of a discrete base schedule
  method.logsnr_min [-15.0], method.logsnr_max [15.0]   clip of "continuous_cosine"
  method.shift_power [2.0]           power of the per-level resolution shift
  method.shift_base_resolution [0]   side whose schedule is the base one; 0 = the innermost level
  method.parameterization ["v"]
  method.level_weights [()]          one loss weight per active level, highest first; () = all 1
  method.mixed_ratio [""]            e.g. "2:1": per-level batch fractions; "" = full batches
  method.label_dropout [0.1]
  method.sampler ["ancestral"], method.sample_steps [100], method.eta [0.0],
  method.guidance_scale [1.0], method.x0_transform ["clip"], method.threshold_quantile [0.995]
"""

import math

import jax
import jax.numpy as jnp
import numpy as np

from jaxdiff.core.losses import denoising_loss, nested_denoising_loss
from jaxdiff.core.predictions import PARAMETERIZATIONS
from jaxdiff.core.processes import (corrupt_pyramid, image_pyramid, pyramid_logsnrs,
                                    pyramid_noise)
from jaxdiff.core.schedules import resolution_shift
from jaxdiff.methods import common, register
from jaxdiff.methods.base import Method

DEFAULTS = dict(common.SAMPLER_DEFAULTS, active_levels=0, schedule="cosine", num_timesteps=1000,
                logsnr_min=-15.0, logsnr_max=15.0, shift_power=2.0, shift_base_resolution=0,
                parameterization="v", level_weights=(), mixed_ratio="", label_dropout=0.1)


def level_factors(channels) -> list:
    """Downsampling factor of every level relative to the outermost: f_0 = 1,
    f_{k+1} = f_k 2^(len(channels[k]) - 1)."""
    factors = [1]
    for level_channels in channels[:-1]:
        factors.append(factors[-1] * 2 ** (len(level_channels) - 1))
    return factors


def mixed_batch_sizes(mixed_ratio: str, num_levels: int, batch_size: int) -> list:
    """Per-level batch sizes floor(B c_k), c = cumsum(ratio) / sum(ratio) (ml-mdm mixed_ratio);
    all B when mixed_ratio is empty. Example: "2:1" with B = 6 gives [4, 6]."""
    if not mixed_ratio:
        return [batch_size] * num_levels
    fractions = np.cumsum(parse_ratio(mixed_ratio, num_levels))
    sizes = [int(math.floor(batch_size * f / fractions[-1] + 1e-9)) for f in fractions]
    if sizes[0] < 1:
        raise ValueError(f"mixed_ratio {mixed_ratio!r} leaves the outer level no sample of a "
                         f"batch of {batch_size}.")
    return sizes


def parse_ratio(mixed_ratio: str, num_levels: int) -> list:
    """"2:1" -> [2.0, 1.0], checked to have one positive number per level."""
    try:
        parts = [float(part) for part in str(mixed_ratio).split(":")]
    except ValueError:
        parts = []
    if len(parts) != num_levels or min(parts) <= 0:
        raise ValueError(f"mixed_ratio must be {num_levels} positive numbers joined by ':' (one "
                         f"per active level), got {mixed_ratio!r}.")
    return parts


def build(config) -> Method:
    """The Matryoshka diffusion method described by config (see the module docstring)."""
    values = common.settings(config, DEFAULTS)
    parameterization = values["parameterization"]
    common.check_choice("parameterization", parameterization, PARAMETERIZATIONS)
    common.check_range("label_dropout", values["label_dropout"], 0.0, 1.0)
    sampling = common.SamplerSettings.from_settings(values)
    schedule = common.base_schedule(values["schedule"], values["num_timesteps"],
                                    values["logsnr_min"], values["logsnr_max"])
    times = schedule.sampling_times(sampling.num_steps)

    model = common.create_model(config, "nested_unet")
    depth = model.depth
    active = values["active_levels"] or depth
    common.check_range("active_levels", active, 1, depth, integer=True)
    first = depth - active
    # The network of the active levels: the model itself, or its nested inner model (whose
    # parameters are params["inner"] applied `first` times).
    active_model = model if first == 0 else model.clone(
        channels=tuple(model.channels)[first:],
        num_res_blocks=tuple(model.num_res_blocks)[first:],
        attention_layers=tuple(model.attention_layers)[first:])

    resolution = common.image_resolution(config)
    factors = level_factors(tuple(active_model.channels))
    if resolution % factors[-1]:
        raise ValueError(f"data.resolution {resolution} is not divisible by the innermost level "
                         f"factor {factors[-1]}.")
    sides = [resolution // factor for factor in factors]
    base_side = values["shift_base_resolution"] or sides[-1]
    common.check_range("shift_base_resolution", base_side, low=1)
    level_schedules = [
        (lambda t, side=side: resolution_shift(schedule.logsnr_fn(t), side, base_side,
                                               values["shift_power"]))
        for side in sides]
    level_weights = tuple(values["level_weights"]) or (1.0,) * active
    if len(level_weights) != active:
        raise ValueError(f"level_weights needs one weight per active level ({active}), got "
                         f"{level_weights}.")
    if values["mixed_ratio"]:
        parse_ratio(values["mixed_ratio"], active)
    channels = model.out_channels
    num_classes = common.num_classes_of(model)

    def active_apply(apply_fn):
        """The apply of the active levels: apply_fn itself when every level is active."""
        if first == 0:
            return apply_fn

        def apply(variables, x, t, **kwargs):
            params = variables["params"]
            for _ in range(first):
                params = params["inner"]
            return active_model.apply({"params": params}, x, t, **kwargs)

        return apply

    def loss_fn(apply_fn, params, batch, rng):
        x0 = batch["image"]
        batch_size = x0.shape[0]
        label_key, time_key, noise_key, dropout_key = jax.random.split(rng, 4)
        labels = common.training_labels(label_key, batch, num_classes, values["label_dropout"])
        pyramid = image_pyramid(x0, factors)
        noises = pyramid_noise(noise_key, pyramid)
        t = schedule.training_times(time_key, batch_size)
        logsnrs = pyramid_logsnrs(level_schedules, t)
        x_t = corrupt_pyramid(pyramid, noises, logsnrs)
        sizes = mixed_batch_sizes(values["mixed_ratio"], active, batch_size)
        outputs = common.training_apply(active_apply(apply_fn), params,
                                        [x[:size] for x, size in zip(x_t, sizes)], t, labels,
                                        dropout_key)
        # Each level's output covers its first `size` rows; pad to B and weight the rows so
        # that the batch mean is the mean over the level's own rows.
        padded = [jnp.pad(out, ((0, batch_size - out.shape[0]),) + ((0, 0),) * 3)
                  for out in outputs]
        row_weights = [(jnp.arange(batch_size) < size) * (batch_size / size) for size in sizes]
        per_sample = nested_denoising_loss(parameterization, padded, pyramid, noises, logsnrs,
                                           level_weights, row_weights)
        metrics = {
            f"mse_{side}px": jnp.mean(denoising_loss(parameterization, out, x[:size],
                                                     noise[:size], logsnr[:size]))
            for side, out, x, noise, logsnr, size in zip(sides, outputs, pyramid, noises,
                                                         logsnrs, sizes)}
        return jnp.mean(per_sample), metrics

    def sample_fn(apply_fn, params, rng, num_samples, labels=None):
        label_key, noise_key, sample_key = jax.random.split(rng, 3)
        labels = common.sampling_labels(label_key, labels, num_samples, num_classes)
        denoise = common.network_denoiser(active_apply(apply_fn), params, labels, num_classes,
                                          sampling.guidance_scale)
        x_T = pyramid_noise(noise_key, [jnp.zeros((num_samples, side, side, channels))
                                        for side in sides])
        samples = common.gaussian_sample(sampling, denoise, sample_key, x_T, level_schedules,
                                         times, parameterization)
        return common.to_image_range(samples)

    # The whole network is initialised (inactive outer levels included), at the sides the
    # active levels imply for them.
    full_factors = level_factors(tuple(model.channels))
    outer_side = resolution * full_factors[first]
    example = [jnp.zeros((1, outer_side // f, outer_side // f, channels), jnp.float32)
               for f in full_factors]
    return Method("mdm", model, common.init_fn_for(model, example), loss_fn, sample_fn)


register("mdm", build, DEFAULTS)
