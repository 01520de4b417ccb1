"""What the Gaussian methods (DDPM, simple diffusion, MDM) share besides the sampler skeleton:
the schedule their settings name (core/schedule_registry.py), shifted for an image side, and
one training forward pass x_t = alpha_t x0 + sigma_t eps through the network."""

from typing import Any, NamedTuple

import jax

from jaxdiff.core.processes import gaussian_corrupt
from jaxdiff.core.schedule_registry import Schedule, make_schedule
from jaxdiff.methods.conditioning import Conditioning
from jaxdiff.methods.network import loss_keys, training_apply
from jaxdiff.methods.settings import GaussianSettings


def base_schedule(settings: GaussianSettings) -> Schedule:
    """The unshifted schedule the settings name."""
    return make_schedule(settings.schedule, num_timesteps=settings.num_timesteps,
                         logsnr_min=settings.logsnr_min, logsnr_max=settings.logsnr_max)


def shift_for(schedule: Schedule, settings: GaussianSettings, side: int,
              lowest_side: int) -> Schedule:
    """`schedule` shifted for images of side `side`: unshifted at settings.shift_base_resolution
    (0: at lowest_side, the network's lowest resolution), interpolated towards
    prior_shift_base_resolution when that is set."""
    return schedule.shifted(side, settings.shift_base_resolution or lowest_side,
                            settings.shift_power, settings.prior_shift_base_resolution or None)


class GaussianForward(NamedTuple):
    """One training forward pass of a Gaussian method: x_t = alpha_t x0 + sigma_t eps."""

    t: jax.Array
    logsnr: jax.Array
    noise: jax.Array
    x_t: jax.Array
    output: Any


def gaussian_training_forward(apply_fn, params, batch, rng, schedule: Schedule,
                              conditioning: Conditioning,
                              settings: GaussianSettings) -> GaussianForward:
    """Draw t (by the schedule) and eps, corrupt batch["image"], and run the network in training
    mode on x_t with the (dropped) labels and captions."""
    keys = loss_keys(rng)
    x0 = batch["image"]
    given = conditioning.training(keys.labels, batch, settings.label_dropout,
                                  settings.caption_dropout)
    t = schedule.training_times(keys.time, x0.shape[0])
    logsnr = schedule.logsnr_fn(t)
    noise = jax.random.normal(keys.noise, x0.shape, x0.dtype)
    x_t = gaussian_corrupt(x0, noise, logsnr)
    output = training_apply(apply_fn, params, x_t, t, given, keys.dropout)
    return GaussianForward(t, logsnr, noise, x_t, output)
