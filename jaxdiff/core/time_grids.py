"""Time grids: where a sampler evaluates the denoiser between the prior (t = 1) and the data.

A grid is a 1-D NumPy array of K + 1 decreasing times [1, ..., 0]: the sampler takes the K
steps t_k -> t_{k+1}. Every sampler (Gaussian, Matryoshka joint, analytic attenuation) takes
one, and every grid below works with every schedule:

    uniform  t_k = 1 - (1 - t_end) k / n          constant steps in t (DDPM, DDIM, the
                                                  attenuation paper's sampler)
    power    t_k = t_end + (1 - t_end)(1 - k / n)^p   p > 1 packs the steps towards the data
    logsnr   logSNR_k uniform between the ends     (Lu et al. 2022, DPM-Solver's
                                                  "logSNR" grid)
    karras   sigma_k = (sigma_a^(1/rho) + k / n (sigma_b^(1/rho) - sigma_a^(1/rho)))^rho
             with sigma = exp(-logSNR / 2)         (Karras et al. 2022, "EDM", eq. 5; rho = 7)

`t_end` is the smallest non-zero time the sampler should visit: 0 when logSNR(0) is finite (a
clipped continuous schedule: the grid ends at 0 after n = K steps), otherwise (a discrete chain
at 1 / T, analytic attenuation at its t_min) the grid reaches t_end in n = K - 1 steps and its
last step goes to 0. The logSNR and Karras grids are laid out between logSNR_a = max(logSNR(1),
-2 log 80) and logSNR_b = logSNR(t_end): noise levels above EDM's sigma_max = 80 (the signal
1/80 of the noise) are not worth a step of their own, and attenuation's logSNR(1) is -inf. Their
first time is then put back at 1, the prior the start is drawn from.

On a discrete T-step chain the times are snapped to the chain's steps t = (i + 1) / T
(`snap_to_chain`); there `uniform` is improved DDPM's respacing (Nichol & Dhariwal 2021,
sec. 4; `respaced_time_grid`), so every grid is a respaced chain.
"""

from typing import Callable, Optional

import jax.numpy as jnp
import numpy as np

from jaxdiff.core.schedules import discrete_times, respaced_timesteps

GRIDS = ("uniform", "power", "logsnr", "karras")
EDM_SIGMA_MAX = 80.0  # Karras et al. 2022, Table 1


def respaced_time_grid(num_timesteps: int, keep: int) -> np.ndarray:
    """Times of a respaced T-step DDPM chain keeping `keep` steps, then t = 0 (the data).

    The kept step indices (schedules.respaced_timesteps) map to t = (i + 1) / T
    (schedules.discrete_times), so with schedules.discrete_logsnr_fn every step lands exactly
    on the table and the respaced betas come out of the logSNR differences (improved DDPM).
    """
    kept = discrete_times(respaced_timesteps(num_timesteps, keep), num_timesteps)
    return np.concatenate([kept[::-1], [0.0]])


def times_at_logsnr(logsnr_fn: Callable, targets, iterations: int = 60) -> np.ndarray:
    """The times where a decreasing schedule reaches the target logSNRs, by bisection on [0, 1]
    (any schedule: shifted, interpolated, a discrete table)."""
    targets = jnp.asarray(targets, jnp.float32)
    low, high = jnp.zeros_like(targets), jnp.ones_like(targets)
    for _ in range(iterations):
        middle = 0.5 * (low + high)
        above = logsnr_fn(middle) > targets  # still too close to the data: move right
        low, high = jnp.where(above, middle, low), jnp.where(above, high, middle)
    return np.asarray(0.5 * (low + high), np.float64)


def _fractions(num_points: int) -> np.ndarray:
    """k / n for k = 0..n, n = num_points - 1 (a single point: [0])."""
    return np.arange(num_points) / max(num_points - 1, 1)


def time_grid(kind: str, num_steps: int, logsnr_fn: Optional[Callable] = None, *,
              t_end: float = 0.0, power: float = 2.0, rho: float = 7.0) -> np.ndarray:
    """The `kind` grid of num_steps steps (module docstring); logsnr_fn is needed by the logsnr
    and karras grids."""
    if kind not in GRIDS:
        raise ValueError(f"Unknown time grid {kind!r}; expected one of {list(GRIDS)}.")
    if num_steps < 1:
        raise ValueError(f"A time grid needs at least one step, got num_steps={num_steps}.")
    if not 0.0 <= t_end < 1.0:
        raise ValueError(f"t_end must be in [0, 1), got {t_end}.")
    num_points = num_steps + 1 if t_end == 0.0 else num_steps
    u = _fractions(num_points)
    if kind == "uniform":
        times = 1.0 - (1.0 - t_end) * u
    elif kind == "power":
        if power <= 0:
            raise ValueError(f"The time-grid power must be positive, got {power}.")
        times = t_end + (1.0 - t_end) * (1.0 - u) ** power
    else:
        if logsnr_fn is None:
            raise ValueError(f"The {kind} grid is laid out in logSNR and needs the schedule.")
        start = max(float(logsnr_fn(jnp.float32(1.0))), -2.0 * np.log(EDM_SIGMA_MAX))
        end = float(logsnr_fn(jnp.float32(t_end)))
        if kind == "logsnr":
            logsnrs = start + (end - start) * u
        else:
            if rho <= 0:
                raise ValueError(f"The Karras grid's rho must be positive, got {rho}.")
            sigma_a, sigma_b = np.exp(-0.5 * start) ** (1 / rho), np.exp(-0.5 * end) ** (1 / rho)
            logsnrs = -2.0 * rho * np.log(sigma_a + (sigma_b - sigma_a) * u)
        times = times_at_logsnr(logsnr_fn, logsnrs)
        times[0], times[-1] = 1.0, t_end
    if t_end > 0.0:
        times = np.concatenate([times, [0.0]])
    if not np.all(np.diff(times) < 0):
        raise ValueError(f"The {kind} grid of {num_steps} steps does not decrease strictly "
                         f"(times {np.round(times, 6).tolist()}); use fewer steps.")
    return times


def snap_to_chain(times: np.ndarray, num_timesteps: int) -> np.ndarray:
    """A grid moved onto a T-step chain: each non-zero t to the nearest step t = (i + 1) / T,
    nudged so the steps stay distinct (a grid dense near the data would otherwise repeat the
    first steps), then t = 0."""
    steps = np.clip(np.rint(np.asarray(times[:-1]) * num_timesteps) - 1, 0, num_timesteps - 1)
    steps = steps.astype(np.int64)
    if len(steps) > num_timesteps:
        raise ValueError(f"Cannot take {len(steps)} distinct steps on a {num_timesteps}-step "
                         "chain.")
    for k in range(1, len(steps)):  # distinct, decreasing ...
        steps[k] = min(steps[k], steps[k - 1] - 1)
    for k in range(len(steps) - 1, -1, -1):  # ... and never below step 0
        steps[k] = max(steps[k], len(steps) - 1 - k)
    return np.concatenate([discrete_times(steps, num_timesteps), [0.0]])
