"""Samplers for the Gaussian process and for analytic attenuation, each one ``lax.scan``.

Shared design
-------------
* ``times`` is a 1-D array of K + 1 times from the prior down to the data, e.g. [1, ..., 0]; the
  sampler takes K steps t_k -> t_{k+1}. Grids: ``time_grid`` (continuous, optionally denser near
  the data) and ``respaced_time_grid`` (a respaced discrete DDPM chain over
  ``schedules.discrete_logsnr_fn``). The grid is a traced argument: a new grid of the same length
  reuses the compiled program.
* The state ``x_T`` is a pytree of image batches (Matryoshka diffusion: a list of images, highest
  resolution first). ``logsnr_fn`` is one schedule for every leaf or a pytree of schedules with
  the state's structure (one per resolution). ``denoise(x_t, t)`` receives the whole state and t
  of shape (B,) and returns a pytree like the state (see each sampler for pairs).
* Randomness: step k draws its noise from ``fold_in(rng, k)``, split over the leaves.
* ``x0_transform`` (e.g. ``guidance.clip_x0`` or ``guidance.dynamic_threshold``) is applied to
  each leaf's clean-image estimate; the noise estimate is then recomputed from it.
* The functions are pure and traceable; wrap the call in ``jax.jit`` with the network parameters
  as an argument of the jitted function (so they are not baked in as constants), e.g.
  ``jax.jit(lambda params, rng, x: ddim_sample(lambda x, t: apply(params, x, t), rng, x,
  logsnr_fn, times))``. Stochastic samplers take ``rng``; deterministic ones do not.

Gaussian samplers (x_t = alpha_t x0 + sigma_t eps, variance preserving, logSNR from the schedule):
``ddpm_sample`` (ancestral), ``ddim_sample`` and ``dpm_solver_pp_2m_sample``.
Analytic attenuation (x_t = (1 - t) x0 + sqrt(t) eps, Huang et al. 2023, arXiv 2306.13720):
``attenuation_sample`` (stochastic) and ``attenuation_ode_sample`` (deterministic).
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxdiff.core.predictions import (
    attenuation_eps_from_c,
    eps_from_x0,
    to_x0_eps,
)
from jaxdiff.core.processes import (
    attenuation_posterior,
    gaussian_posterior,
    gaussian_transition_variance,
    learned_range_log_variance,
)
from jaxdiff.core.schedules import alpha_sigma_from_logsnr, discrete_times, respaced_timesteps

GAUSSIAN_SAMPLERS = ("ancestral", "ddim", "dpm_solver_pp")
DDPM_VARIANCES = ("fixedsmall", "fixedlarge", "learned_range")

# ----------------------------------------------------------------------------------------------
# Time grids.


def time_grid(num_steps: int, power: float = 1.0) -> np.ndarray:
    """num_steps + 1 times t_k = (1 - k / num_steps)^power from 1 down to 0.

    power = 1 is the uniform grid of constant step 1 / num_steps (the analytic-attenuation
    paper's sampler; Huang et al. 2023); power > 1 puts more steps near the data.
    """
    if num_steps < 1:
        raise ValueError(f"A time grid needs at least one step, got num_steps={num_steps}.")
    if power <= 0:
        raise ValueError(f"The time-grid power must be positive, got {power}.")
    return (1.0 - np.arange(num_steps + 1) / num_steps) ** power


def respaced_time_grid(num_timesteps: int, keep: int) -> np.ndarray:
    """Times of a respaced T-step DDPM chain keeping `keep` steps, then t = 0 (the data).

    The kept step indices (schedules.respaced_timesteps) map to t = (i + 1) / T
    (schedules.discrete_times), so with schedules.discrete_logsnr_fn every step lands exactly
    on the table and the respaced betas come out of the logSNR differences (improved DDPM).
    """
    kept = discrete_times(respaced_timesteps(num_timesteps, keep), num_timesteps)
    return np.concatenate([kept[::-1], [0.0]])


# ----------------------------------------------------------------------------------------------
# Shared machinery.


def _checked_times(times):
    times = jnp.asarray(times, dtype=jnp.float32)
    if times.ndim != 1 or times.shape[0] < 2:
        raise ValueError(f"times must be a 1-D grid of at least 2 times, got shape {times.shape}.")
    if not isinstance(times, jax.core.Tracer) and not bool(jnp.all(jnp.diff(times) < 0)):
        raise ValueError("times must decrease strictly, from the prior towards the data.")
    return times


def _scan_steps(step, initial_carry, times):
    """Run ``step(carry, (k, t, s)) -> carry`` over the K steps of the grid as one lax.scan."""
    num_steps = times.shape[0] - 1
    xs = (jnp.arange(num_steps), times[:-1], times[1:])
    carry, _ = jax.lax.scan(lambda c, x: (step(c, x), None), initial_carry, xs)
    return carry


def _denoise_leaves(denoise, treedef, x_leaves, t):
    """Call denoise once on the whole state at time t (broadcast to shape (B,))."""
    return denoise(treedef.unflatten(x_leaves), jnp.full((x_leaves[0].shape[0],), t))


def _leaf_noise(rng, step_index, leaves):
    keys = jax.random.split(jax.random.fold_in(rng, step_index), len(leaves))
    return [jax.random.normal(key, leaf.shape, leaf.dtype) for key, leaf in zip(keys, leaves)]


class _GaussianLeafStep(NamedTuple):
    """What one step t -> s knows about one leaf of the state."""

    x: jax.Array
    x0: jax.Array  # clean-image estimate (after x0_transform)
    eps: jax.Array  # noise estimate consistent with x0
    logsnr_t: jax.Array
    logsnr_s: jax.Array
    alpha_s: jax.Array
    sigma_t: jax.Array
    sigma_s: jax.Array


def _gaussian_leaf_steps(outputs, x_leaves, schedules, t, s, parameterization, x0_transform):
    """Per leaf: logSNRs, alpha/sigma and (x0_hat, eps_hat) from the network output.

    With an x0_transform, x0_hat is transformed and eps_hat recomputed from it (as improved
    DDPM does after clipping).
    """
    steps = []
    for x, output, logsnr_fn in zip(x_leaves, outputs, schedules):
        logsnr_t, logsnr_s = logsnr_fn(t), logsnr_fn(s)
        alpha_t, sigma_t = alpha_sigma_from_logsnr(logsnr_t)
        alpha_s, sigma_s = alpha_sigma_from_logsnr(logsnr_s)
        x0, eps = to_x0_eps(parameterization, x, output, alpha_t, sigma_t)
        if x0_transform is not None:
            x0 = x0_transform(x0)
            eps = eps_from_x0(x, x0, alpha_t, sigma_t)
        steps.append(_GaussianLeafStep(x, x0, eps, logsnr_t, logsnr_s, alpha_s, sigma_t,
                                       sigma_s))
    return steps


def _gaussian_setup(x_T, logsnr_fn, times):
    """Leaves, treedef, one schedule per leaf and the checked grid."""
    leaves, treedef = jax.tree.flatten(x_T)
    schedules = ([logsnr_fn] * len(leaves) if callable(logsnr_fn)
                 else treedef.flatten_up_to(logsnr_fn))
    return leaves, treedef, schedules, _checked_times(times)


# ----------------------------------------------------------------------------------------------
# Gaussian process: ancestral DDPM, DDIM, DPM-Solver++(2M).


def ddim_sigma(logsnr_t, logsnr_s, eta):
    """DDIM's noise scale (Song et al. 2021, eq. 16) for a step t -> s, written in logSNR.

    sigma = eta sqrt((1 - abar_s) / (1 - abar_t)) sqrt(1 - abar_t / abar_s)
          = eta sqrt(r sigma_s^2), r = 1 - SNR_t / SNR_s,
    i.e. eta times the standard deviation of the posterior q(x_s | x_t, x0). Example: linear
    betas, T = 1000, eta = 1, step 499 -> 479 gives 0.4198452.
    """
    _, sigma_s = alpha_sigma_from_logsnr(logsnr_s)
    return eta * jnp.sqrt(-jnp.expm1(logsnr_t - logsnr_s) * sigma_s**2)


def ddpm_sample(denoise, rng, x_T, logsnr_fn, times, parameterization="eps",
                variance="fixedsmall", x0_transform=None):
    """Ancestral sampling (Ho et al. 2020, Algorithm 2; Nichol & Dhariwal 2021) on a time grid.

    Each step t -> s draws x_s ~ N(mu, Sigma) with mu the posterior mean of q(x_s | x_t, x0_hat)
    (processes.gaussian_posterior) and Sigma one of
      "fixedsmall":    beta_tilde = (1 - SNR_t / SNR_s) sigma_s^2, the posterior variance;
      "fixedlarge":    beta = 1 - alpha_t^2 / alpha_s^2 (processes.gaussian_transition_variance);
      "learned_range": exp(f log beta + (1 - f) log beta_tilde), f = (v + 1) / 2, where denoise
                       returns the pair (prediction, variance_output) of pytrees and v is the
                       variance output in [-1, 1] (improved DDPM, eq. 15).
    On a respaced discrete grid beta and beta_tilde are the respaced ones. The last step (into
    the end of the grid, normally t = 0) returns the mean without noise.
    """
    if variance not in DDPM_VARIANCES:
        raise ValueError(f"Unknown DDPM variance {variance!r}; expected one of {DDPM_VARIANCES}.")
    leaves, treedef, schedules, times = _gaussian_setup(x_T, logsnr_fn, times)
    last_step = times.shape[0] - 2

    def step(x_leaves, step_inputs):
        k, t, s = step_inputs
        output = _denoise_leaves(denoise, treedef, x_leaves, t)
        if variance == "learned_range":
            prediction, variance_output = output
            variance_leaves = treedef.flatten_up_to(variance_output)
        else:
            prediction, variance_leaves = output, [None] * len(x_leaves)
        leaf_steps = _gaussian_leaf_steps(treedef.flatten_up_to(prediction), x_leaves,
                                          schedules, t, s, parameterization, x0_transform)
        new_leaves = []
        for leaf, v, z in zip(leaf_steps, variance_leaves, _leaf_noise(rng, k, x_leaves)):
            mean, beta_tilde = gaussian_posterior(leaf.x, leaf.x0, leaf.logsnr_t, leaf.logsnr_s)
            beta = gaussian_transition_variance(leaf.logsnr_t, leaf.logsnr_s)
            if variance == "fixedsmall":
                std = jnp.sqrt(beta_tilde)
            elif variance == "fixedlarge":
                std = jnp.sqrt(beta)
            else:
                std = jnp.exp(0.5 * learned_range_log_variance(v, jnp.log(beta),
                                                               jnp.log(beta_tilde)))
            # The last step returns the mean; `where` (not a product) also discards the
            # -inf log(beta_tilde) of a step into the data.
            new_leaves.append(jnp.where(k == last_step, mean, mean + std * z))
        return new_leaves

    return treedef.unflatten(_scan_steps(step, leaves, times))


def ddim_sample(denoise, rng, x_T, logsnr_fn, times, parameterization="eps", eta=0.0,
                x0_transform=None):
    """DDIM (Song et al. 2021, eq. 12) on a time grid; eta = 0 deterministic, 1 = ancestral.

    x_s = alpha_s x0_hat + sqrt(sigma_s^2 - sigma_eta^2) eps_hat + sigma_eta z with
    sigma_eta = ddim_sigma(logSNR_t, logSNR_s, eta). With eta = 1 this is exactly ddpm_sample
    with "fixedsmall" (same mean, same variance, same noise). The last step returns the mean
    (the noise term is dropped, as in ddpm_sample).
    rng may be None when eta = 0.
    """
    eta_is_zero = not isinstance(eta, jax.core.Tracer) and eta == 0
    if not isinstance(eta, jax.core.Tracer) and eta < 0:
        raise ValueError(f"DDIM eta must be non-negative, got {eta}.")
    if rng is None and not eta_is_zero:
        raise ValueError("DDIM with eta > 0 draws noise and needs an rng key, got None.")
    leaves, treedef, schedules, times = _gaussian_setup(x_T, logsnr_fn, times)
    last_step = times.shape[0] - 2

    def step(x_leaves, step_inputs):
        k, t, s = step_inputs
        outputs = treedef.flatten_up_to(_denoise_leaves(denoise, treedef, x_leaves, t))
        leaf_steps = _gaussian_leaf_steps(outputs, x_leaves, schedules, t, s, parameterization,
                                          x0_transform)
        noises = ([jnp.zeros_like(x) for x in x_leaves] if eta_is_zero
                  else _leaf_noise(rng, k, x_leaves))
        new_leaves = []
        for leaf, z in zip(leaf_steps, noises):
            noise_std = ddim_sigma(leaf.logsnr_t, leaf.logsnr_s, eta)
            eps_scale = jnp.sqrt(jnp.maximum(leaf.sigma_s**2 - noise_std**2, 0.0))
            mean = leaf.alpha_s * leaf.x0 + eps_scale * leaf.eps
            new_leaves.append(jnp.where(k == last_step, mean, mean + noise_std * z))
        return new_leaves

    return treedef.unflatten(_scan_steps(step, leaves, times))


def dpm_solver_pp_2m_sample(denoise, x_T, logsnr_fn, times, parameterization="eps",
                            x0_transform=None, lower_order_final=True):
    """DPM-Solver++(2M) (Lu et al. 2022, "DPM-Solver++", Algorithm 2): multistep, data prediction.

    In lambda = logSNR / 2 with h = lambda_s - lambda_t:
        first step:  x_s = (sigma_s / sigma_t) x_t - alpha_s (e^{-h} - 1) x0_hat_t
        later steps: D = (1 + 1 / (2 r)) x0_hat_t - (1 / (2 r)) x0_hat_prev, r = h_prev / h,
                     x_s = (sigma_s / sigma_t) x_t - alpha_s (e^{-h} - 1) D.
    A step into logSNR = +inf (a discrete grid's t = 0) is first order and returns x0_hat.
    lower_order_final: the last step is first order too (the paper's advice for few steps): on a
    grid uniform in t the last step is much longer in lambda than the one before it, and the
    second-order term h / (2 h_prev) would then overshoot (10 steps from the exact Gaussian
    denoiser: 2.3x the data variance with it, within a few percent without).
    """
    leaves, treedef, schedules, times = _gaussian_setup(x_T, logsnr_fn, times)
    last_step = times.shape[0] - 2

    def step(carry, step_inputs):
        k, t, s = step_inputs
        x_leaves, previous_x0, previous_h = carry
        outputs = treedef.flatten_up_to(_denoise_leaves(denoise, treedef, x_leaves, t))
        leaf_steps = _gaussian_leaf_steps(outputs, x_leaves, schedules, t, s, parameterization,
                                          x0_transform)
        new_leaves, new_h = [], []
        for leaf, x0_prev, h_prev in zip(leaf_steps, previous_x0, previous_h):
            h = 0.5 * (leaf.logsnr_s - leaf.logsnr_t)
            # 1 / (2 r) = h / (2 h_prev); the first step, a step to +inf and (by default) the
            # last step are first order.
            second_order = (k > 0) & jnp.isfinite(h)
            if lower_order_final:
                second_order &= k < last_step
            correction = jnp.where(second_order, h / (2.0 * h_prev), 0.0)
            d = leaf.x0 + correction * (leaf.x0 - x0_prev)
            new_leaves.append(leaf.sigma_s / leaf.sigma_t * leaf.x
                              - leaf.alpha_s * jnp.expm1(-h) * d)
            new_h.append(h)
        return new_leaves, [leaf.x0 for leaf in leaf_steps], new_h

    initial = (leaves, [jnp.zeros_like(x) for x in leaves], [jnp.ones(()) for _ in leaves])
    final_leaves, _, _ = _scan_steps(step, initial, times)
    return treedef.unflatten(final_leaves)


# ----------------------------------------------------------------------------------------------
# Analytic attenuation (Huang et al. 2023, arXiv 2306.13720). denoise returns the pair (c, eps)
# of pytrees shaped like the state; x0_hat = -c.


def _attenuation_c_eps(x_t, c, eps, t, x0_transform):
    """The (c, eps) estimates of one leaf; with a transform, both are rebuilt from the new x0."""
    if x0_transform is None:
        return c, eps
    c = -x0_transform(-c)
    return c, attenuation_eps_from_c(x_t, c, t)


def _attenuation_scan(denoise, x_T, times, x0_transform, update, rng=None):
    """Shared loop: per leaf ``update(x, c, eps, t, s, noise) -> x_s`` (noise None without rng)."""
    leaves, treedef = jax.tree.flatten(x_T)
    times = _checked_times(times)

    def step(x_leaves, step_inputs):
        k, t, s = step_inputs
        c_tree, eps_tree = _denoise_leaves(denoise, treedef, x_leaves, t)
        noises = [None] * len(x_leaves) if rng is None else _leaf_noise(rng, k, x_leaves)
        new_leaves = []
        for x, c, eps, z in zip(x_leaves, treedef.flatten_up_to(c_tree),
                                treedef.flatten_up_to(eps_tree), noises):
            c, eps = _attenuation_c_eps(x, c, eps, t, x0_transform)
            new_leaves.append(update(x, c, eps, t, s, z))
        return new_leaves

    return treedef.unflatten(_scan_steps(step, leaves, times))


def attenuation_sample(denoise, rng, x_T, times, x0_transform=None):
    """Stochastic sampler of analytic attenuation: draw from the Brownian-bridge posterior.

    x_{t-d} ~ N(x_t - c d - (d / sqrt(t)) eps, d (t - d) / t) with (c, eps) = denoise(x_t, t)
    (processes.attenuation_posterior; Huang et al. 2023, sec. 3). The variance vanishes on the
    step into t = 0, which returns x_t - c t - sqrt(t) eps = x0_hat. Use time_grid(10) for the
    paper's 10 steps.
    """

    def update(x, c, eps, t, s, noise):
        mean, variance = attenuation_posterior(x, c, eps, t, t - s)
        return mean + jnp.sqrt(variance) * noise

    return _attenuation_scan(denoise, x_T, times, x0_transform, update, rng)


def attenuation_ode_sample(denoise, x_T, times, x0_transform=None):
    """Deterministic (DDIM-like) sampler of analytic attenuation.

    Keeping the predicted noise fixed along the path, x_s = x0 + c s + sqrt(s) eps, so
        x_s = x_t - c (t - s) - (sqrt(t) - sqrt(s)) eps
    (Huang et al. 2023, deterministic sampling); the step into t = 0 returns x0_hat.
    """

    def update(x, c, eps, t, s, noise):
        del noise  # deterministic
        return x - c * (t - s) - (jnp.sqrt(t) - jnp.sqrt(s)) * eps

    return _attenuation_scan(denoise, x_T, times, x0_transform, update)
