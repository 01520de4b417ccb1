"""Noise schedules: discrete DDPM betas and continuous logSNR(t) families.

Conventions (see DESIGN.md): continuous time t in [0, 1], t = 0 is data and t = 1 the prior.
logSNR = log(alpha^2 / sigma^2); in the variance-preserving (VP) case alpha^2 = sigmoid(logSNR)
and sigma^2 = sigmoid(-logSNR).

A *schedule* is any callable ``logsnr_fn(t) -> logSNR``, decreasing in t. Continuous families are
plain functions of t (bind their settings with ``functools.partial``); a discrete DDPM table of T
steps is exposed through the same interface by ``discrete_logsnr_fn``, where step index i
(0-based) sits at t = (i + 1) / T and t = 0 is the clean data (logSNR = +inf).

Discrete tables are built once on the host in float64 NumPy (a cumulative product of 1000 float32
factors loses about 5 significant digits), and become float32 jnp arrays when used on device.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np

# ----------------------------------------------------------------------------------------------
# Discrete-time schedules (Ho et al. 2020; Nichol & Dhariwal 2021).


def linear_betas(num_steps: int) -> np.ndarray:
    """DDPM linear betas from 1e-4 to 0.02 (Ho et al. 2020), scaled by 1000 / T.

    The 1000 / T factor (Nichol & Dhariwal 2021) keeps the total noise of the chain roughly the
    same when T differs from the paper's 1000.
    """
    scale = 1000.0 / num_steps
    return np.linspace(scale * 1e-4, scale * 0.02, num_steps, dtype=np.float64)


def cosine_betas(num_steps: int, s: float = 0.008, max_beta: float = 0.999) -> np.ndarray:
    """Improved-DDPM cosine betas (Nichol & Dhariwal 2021, eq. 17).

    alpha_bar(t) = f(t) / f(0) with f(t) = cos^2(((t / T) + s) / (1 + s) * pi / 2), and
    beta_t = min(1 - alpha_bar(t) / alpha_bar(t - 1), max_beta) for t = 1..T.
    """

    def f(step):
        return np.cos((step / num_steps + s) / (1.0 + s) * np.pi / 2.0) ** 2

    steps = np.arange(num_steps + 1, dtype=np.float64)
    alpha_bar = f(steps) / f(0.0)
    return np.minimum(1.0 - alpha_bar[1:] / alpha_bar[:-1], max_beta)


def alphas_cumprod(betas: np.ndarray) -> np.ndarray:
    """alpha_bar_t = prod_{s <= t} (1 - beta_s)."""
    return np.cumprod(1.0 - np.asarray(betas, dtype=np.float64))


def respaced_timesteps(num_steps: int, keep: int) -> np.ndarray:
    """Indices of `keep` of the `num_steps` steps, evenly spaced from 0 to T - 1 (both kept).

    This is the single-section case of improved DDPM's timestep respacing.
    """
    if not 1 <= keep <= num_steps:
        raise ValueError(f"Cannot keep {keep} of {num_steps} timesteps; need 1 <= keep <= T.")
    if keep == 1:
        return np.array([num_steps - 1])
    stride = (num_steps - 1) / (keep - 1)
    return np.array([round(i * stride) for i in range(keep)], dtype=np.int64)


def respace_betas(alpha_bar: np.ndarray, timesteps: np.ndarray) -> np.ndarray:
    """Betas of the respaced chain that visits only `timesteps` (Nichol & Dhariwal 2021, 4).

    beta'_k = 1 - alpha_bar[t_k] / alpha_bar[t_{k-1}], with alpha_bar before the first kept step
    equal to 1, so the respaced chain has exactly the original alpha_bar at every kept step.
    """
    kept = np.asarray(alpha_bar, dtype=np.float64)[np.asarray(timesteps)]
    previous = np.concatenate([[1.0], kept[:-1]])
    return 1.0 - kept / previous


def logsnr_from_alphas_cumprod(alpha_bar):
    """logSNR = log(alpha_bar / (1 - alpha_bar)), in float64 for NumPy input."""
    if isinstance(alpha_bar, np.ndarray):
        return np.log(alpha_bar) - np.log1p(-alpha_bar)
    return jnp.log(alpha_bar) - jnp.log1p(-alpha_bar)


def discrete_logsnr_fn(alpha_bar: np.ndarray):
    """A discrete T-step table as a schedule ``t -> logSNR`` on the grid t = (i + 1) / T.

    t = 0 (no noise) maps to logSNR = +inf, i.e. alpha = 1, sigma = 0. Times off the grid are
    rounded to the nearest grid point.
    """
    num_steps = len(alpha_bar)
    table = np.concatenate([[np.inf], logsnr_from_alphas_cumprod(np.asarray(alpha_bar))])
    table = jnp.asarray(table, dtype=jnp.float32)

    def logsnr_fn(t):
        index = jnp.clip(jnp.round(jnp.asarray(t) * num_steps).astype(jnp.int32), 0, num_steps)
        return table[index]

    return logsnr_fn


def discrete_times(timesteps: np.ndarray, num_steps: int) -> np.ndarray:
    """Continuous times t = (i + 1) / T of discrete step indices i."""
    return (np.asarray(timesteps, dtype=np.float64) + 1.0) / num_steps


# ----------------------------------------------------------------------------------------------
# Continuous-time logSNR schedules (Kingma et al. 2021; Hoogeboom et al. 2023; Gu et al. 2023).


def cosine_logsnr(t, logsnr_min: float = -15.0, logsnr_max: float = 15.0):
    """Cosine schedule in logSNR form, clipped to [logsnr_min, logsnr_max].

    logSNR(t) = -2 log tan(pi t / 2) is the continuous cosine schedule (alpha = cos(pi t / 2)).
    The clip is made by squeezing t into [t_lo, t_hi] with t_lo = atan(exp(-logsnr_max / 2)) and
    t_hi = atan(exp(-logsnr_min / 2)) (in units of the angle), so the endpoints are exactly
    logsnr_max at t = 0 and logsnr_min at t = 1 and the curve stays smooth (Hoogeboom et al.
    2023, "simple diffusion", appendix). Example: logSNR(0.5) = 0, logSNR(0.25) = 1.7611832.
    """
    angle_lo = math.atan(math.exp(-0.5 * logsnr_max))
    angle_hi = math.atan(math.exp(-0.5 * logsnr_min))
    return -2.0 * jnp.log(jnp.tan(angle_lo + jnp.asarray(t) * (angle_hi - angle_lo)))


def resolution_shift(logsnr, resolution: float, base_resolution: float, power: float = 2.0):
    """Shift a schedule for a larger image: SNR is divided by (resolution / base_resolution)^power.

    logSNR_shifted = logSNR - power * log(resolution / base_resolution).

    With power = 2 this is simple diffusion's shift logSNR + 2 log(noise_d / image_d)
    (Hoogeboom et al. 2023, sec. 3.1; image_d = resolution, noise_d = base_resolution): a
    256 px image noised like a 64 px one keeps the same SNR per 4x4 block. Matryoshka diffusion
    (Gu et al. 2023) applies it per pyramid level with a configurable power.
    """
    return logsnr - power * math.log(resolution / base_resolution)


def interpolated_resolution_shift(logsnr, t, resolution: float, base_resolution: float,
                                  prior_base_resolution: float, power: float = 2.0):
    """A shift whose base resolution moves with t (Hoogeboom et al. 2023, sec. 3.1):

    t * shift(logSNR; prior_base_resolution) + (1 - t) * shift(logSNR; base_resolution),
    so near the prior (t -> 1) the schedule is the one shifted for prior_base_resolution (global
    structure) and near the data (t -> 0) the one shifted for base_resolution (detail).
    Example: the cosine at t = 0.5 for 512 px, base 256, prior base 32 gives -3.4657359.
    """
    at_prior = resolution_shift(logsnr, resolution, prior_base_resolution, power)
    at_data = resolution_shift(logsnr, resolution, base_resolution, power)
    return t * at_prior + (1.0 - t) * at_data


# ----------------------------------------------------------------------------------------------
# From logSNR or alpha_bar to the coefficients of x_t = alpha x0 + sigma eps.


def alpha_sigma_from_logsnr(logsnr):
    """Variance-preserving coefficients: alpha^2 = sigmoid(logSNR), sigma^2 = sigmoid(-logSNR)."""
    return jnp.sqrt(jax.nn.sigmoid(logsnr)), jnp.sqrt(jax.nn.sigmoid(-logsnr))


def alpha_sigma_from_alphas_cumprod(alpha_bar):
    """alpha = sqrt(alpha_bar), sigma = sqrt(1 - alpha_bar)."""
    return jnp.sqrt(alpha_bar), jnp.sqrt(1.0 - alpha_bar)
