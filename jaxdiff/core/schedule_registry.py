"""The one schedule vocabulary of the Gaussian methods (DDPM, simple diffusion, MDM).

Every Gaussian method names its noise schedule with the same fields:

    schedule                   "linear_betas" | "cosine_betas"  a discrete T-step chain
                               "cosine"                         the continuous clipped cosine
    num_timesteps              T of a discrete chain
    logsnr_min, logsnr_max     the clip of the continuous cosine
    shift_base_resolution      resolution shift: the schedule is the base one at this side and
                               shifted for any other side s (schedules.resolution_shift)
    prior_shift_base_resolution  if set, the base side moves with t from shift_base_resolution
                               at the data to this side at the prior (simple diffusion's
                               interpolated schedule, schedules.interpolated_resolution_shift)
    shift_power                the power p of the shift, logSNR - p log(s / base)

The families (formulas in schedules.py):
  linear_betas  Ho et al. 2020: betas from 1e-4 to 0.02, scaled by 1000 / T.
  cosine_betas  Nichol & Dhariwal 2021, eq. 17 (ml-mdm's DeepFloyd-style cosine).
  cosine        logSNR(t) = -2 log tan(pi t / 2) clipped to [logsnr_min, logsnr_max] (Kingma et
                al. 2021; Hoogeboom et al. 2023).

A `Schedule` carries logSNR(t) and how time is drawn in training and gridded for sampling.
"""

import dataclasses
from typing import Callable, Optional

import jax
import jax.numpy as jnp
import numpy as np

from jaxdiff.core import schedules
from jaxdiff.core.time_grids import respaced_time_grid, snap_to_chain, time_grid

DISCRETE_SCHEDULES = {"linear_betas": schedules.linear_betas,
                      "cosine_betas": schedules.cosine_betas}
CONTINUOUS_SCHEDULES = ("cosine",)
SCHEDULE_NAMES = tuple(DISCRETE_SCHEDULES) + CONTINUOUS_SCHEDULES


@dataclasses.dataclass(frozen=True, eq=False)
class Schedule:
    """A logSNR schedule and how time is drawn for training and gridded for sampling.

    num_timesteps = None: continuous time, t ~ U(0, 1) in training; sampling grids end at t = 0.
    num_timesteps = T: a discrete chain; training draws the step i uniformly in 0..T-1 (Ho et
    al. 2020, Algorithm 1) at t = (i + 1) / T, and sampling runs on a respaced chain of
    `num_steps` kept steps (Nichol & Dhariwal 2021): the grid's times snapped to the chain
    (time_grids.snap_to_chain; "uniform" is time_grids.respaced_time_grid).
    alphas_cumprod is the chain's alpha_bar table; a shifted schedule has none (its logSNR is
    no longer the table's).
    """

    logsnr_fn: Callable
    num_timesteps: Optional[int] = None
    alphas_cumprod: Optional[np.ndarray] = None  # the table of an unshifted discrete chain

    def training_times(self, rng, batch_size: int):
        if self.num_timesteps is None:
            return jax.random.uniform(rng, (batch_size,), jnp.float32)
        steps = jax.random.randint(rng, (batch_size,), 0, self.num_timesteps)
        return (steps + 1.0) / self.num_timesteps

    def sampling_times(self, num_steps: int, grid: str = "uniform", power: float = 2.0,
                       rho: float = 7.0) -> np.ndarray:
        """The `grid` of num_steps steps on this schedule (core/time_grids.py)."""
        if self.num_timesteps is None:
            return time_grid(grid, num_steps, self.logsnr_fn, power=power, rho=rho)
        if grid == "uniform":
            return respaced_time_grid(self.num_timesteps, num_steps)
        # Laid out on the chain's logSNR interpolated linearly between its steps, then snapped.
        chain_times = np.arange(1, self.num_timesteps + 1) / self.num_timesteps
        chain_logsnr = np.asarray(self.logsnr_fn(jnp.asarray(chain_times, jnp.float32)))
        interpolated = lambda t: jnp.interp(t, chain_times, chain_logsnr)
        return snap_to_chain(time_grid(grid, num_steps, interpolated,
                                       t_end=1.0 / self.num_timesteps, power=power, rho=rho),
                             self.num_timesteps)

    def shifted(self, resolution: int, base_resolution: int, power: float,
                prior_base_resolution: Optional[int] = None) -> "Schedule":
        """This schedule shifted for images of side `resolution` (module docstring); itself
        when there is nothing to shift."""
        if prior_base_resolution is None:
            if resolution == base_resolution:
                return self
            logsnr_fn = lambda t: schedules.resolution_shift(self.logsnr_fn(t), resolution,
                                                             base_resolution, power)
        else:
            logsnr_fn = lambda t: schedules.interpolated_resolution_shift(
                self.logsnr_fn(t), t, resolution, base_resolution, prior_base_resolution, power)
        return Schedule(logsnr_fn, self.num_timesteps)


def make_schedule(name: str, *, num_timesteps: int = 1000, logsnr_min: float = -15.0,
                  logsnr_max: float = 15.0) -> Schedule:
    """The named base schedule (module docstring); ValueError in one sentence if it cannot be
    built."""
    if name not in SCHEDULE_NAMES:
        raise ValueError(f"Unknown schedule {name!r}; expected one of {list(SCHEDULE_NAMES)}.")
    if name in CONTINUOUS_SCHEDULES:
        if not logsnr_min < logsnr_max:
            raise ValueError(f"logsnr_min ({logsnr_min}) must be below logsnr_max "
                             f"({logsnr_max}).")
        return Schedule(lambda t: schedules.cosine_logsnr(t, logsnr_min, logsnr_max))
    if not (isinstance(num_timesteps, int) and num_timesteps >= 1):
        raise ValueError(f"num_timesteps must be a positive integer, got {num_timesteps!r}.")
    betas = DISCRETE_SCHEDULES[name](num_timesteps)
    if np.any(betas >= 1.0):
        raise ValueError(f"The {name} schedule with {num_timesteps} timesteps has betas >= 1 "
                         "(linear betas end at 20 / T); use more timesteps.")
    alpha_bar = schedules.alphas_cumprod(betas)
    return Schedule(schedules.discrete_logsnr_fn(alpha_bar), num_timesteps, alpha_bar)

