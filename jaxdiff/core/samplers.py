"""Samplers for the Gaussian process, each one ``lax.scan``, and the scan helpers they share.

Shared design
-------------
* ``times`` is a 1-D array of K + 1 times from the prior down to the data, e.g. [1, ..., 0]; the
  sampler takes K steps t_k -> t_{k+1}. The grids (uniform, power, logSNR, Karras, respaced
  chains) are in core/time_grids.py. The grid is a traced argument: a new grid of the same
  length reuses the compiled program.
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
``ddpm_sample`` (ancestral), ``ddim_sample``, ``dpm_solver_pp_sample`` (2M and 3M) and
``heun_sample`` (EDM). The analytic-attenuation samplers are in attenuation_samplers.py and share
the scan helpers below (checked_times, scan_steps, denoise_leaves, leaf_noise).
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxdiff.core.predictions import eps_from_x0, to_x0_eps
from jaxdiff.core.processes import (
    gaussian_posterior,
    gaussian_transition_variance,
    learned_range_log_variance,
)
from jaxdiff.core.schedules import alpha_sigma_from_logsnr

GAUSSIAN_SAMPLERS = ("ancestral", "ddim", "dpm_solver_pp", "dpm_solver_pp_3m", "heun")
DDPM_VARIANCES = ("fixedsmall", "fixedlarge", "learned_range")

# ----------------------------------------------------------------------------------------------
# Shared machinery.


def checked_times(times):
    times = jnp.asarray(times, dtype=jnp.float32)
    if times.ndim != 1 or times.shape[0] < 2:
        raise ValueError(f"times must be a 1-D grid of at least 2 times, got shape {times.shape}.")
    if not isinstance(times, jax.core.Tracer) and not bool(jnp.all(jnp.diff(times) < 0)):
        raise ValueError("times must decrease strictly, from the prior towards the data.")
    return times


def scan_steps(step, initial_carry, times):
    """Run ``step(carry, (k, t, s)) -> carry`` over the K steps of the grid as one lax.scan."""
    num_steps = times.shape[0] - 1
    xs = (jnp.arange(num_steps), times[:-1], times[1:])
    carry, _ = jax.lax.scan(lambda c, x: (step(c, x), None), initial_carry, xs)
    return carry


def denoise_leaves(denoise, treedef, x_leaves, t):
    """Call denoise once on the whole state at time t (broadcast to shape (B,))."""
    return denoise(treedef.unflatten(x_leaves), jnp.full((x_leaves[0].shape[0],), t))


def leaf_noise(rng, step_index, leaves):
    keys = jax.random.split(jax.random.fold_in(rng, step_index), len(leaves))
    return [jax.random.normal(key, leaf.shape, leaf.dtype) for key, leaf in zip(keys, leaves)]


class _GaussianLeafStep(NamedTuple):
    """What one step t -> s knows about one leaf of the state."""

    x: jax.Array
    x0: jax.Array  # clean-image estimate (after x0_transform)
    eps: jax.Array  # noise estimate consistent with x0
    logsnr_t: jax.Array
    logsnr_s: jax.Array
    alpha_t: jax.Array
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
        steps.append(_GaussianLeafStep(x, x0, eps, logsnr_t, logsnr_s, alpha_t, alpha_s, sigma_t,
                                       sigma_s))
    return steps


def _gaussian_setup(x_T, logsnr_fn, times):
    """Leaves, treedef, one schedule per leaf and the checked grid."""
    leaves, treedef = jax.tree.flatten(x_T)
    schedules = ([logsnr_fn] * len(leaves) if callable(logsnr_fn)
                 else treedef.flatten_up_to(logsnr_fn))
    return leaves, treedef, schedules, checked_times(times)


# ----------------------------------------------------------------------------------------------
# Gaussian process: ancestral DDPM, DDIM, DPM-Solver++(2M, 3M), EDM's Heun.


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
        output = denoise_leaves(denoise, treedef, x_leaves, t)
        if variance == "learned_range":
            prediction, variance_output = output
            variance_leaves = treedef.flatten_up_to(variance_output)
        else:
            prediction, variance_leaves = output, [None] * len(x_leaves)
        leaf_steps = _gaussian_leaf_steps(treedef.flatten_up_to(prediction), x_leaves,
                                          schedules, t, s, parameterization, x0_transform)
        new_leaves = []
        for leaf, v, z in zip(leaf_steps, variance_leaves, leaf_noise(rng, k, x_leaves)):
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

    return treedef.unflatten(scan_steps(step, leaves, times))


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
        outputs = treedef.flatten_up_to(denoise_leaves(denoise, treedef, x_leaves, t))
        leaf_steps = _gaussian_leaf_steps(outputs, x_leaves, schedules, t, s, parameterization,
                                          x0_transform)
        noises = ([jnp.zeros_like(x) for x in x_leaves] if eta_is_zero
                  else leaf_noise(rng, k, x_leaves))
        new_leaves = []
        for leaf, z in zip(leaf_steps, noises):
            noise_std = ddim_sigma(leaf.logsnr_t, leaf.logsnr_s, eta)
            eps_scale = jnp.sqrt(jnp.maximum(leaf.sigma_s**2 - noise_std**2, 0.0))
            mean = leaf.alpha_s * leaf.x0 + eps_scale * leaf.eps
            new_leaves.append(jnp.where(k == last_step, mean, mean + noise_std * z))
        return new_leaves

    return treedef.unflatten(scan_steps(step, leaves, times))


def _multistep_order(k, num_steps, h, max_order, lower_order_final):
    """The order of DPM-Solver++ step k: at most k + 1 (the history it has), 1 into logSNR =
    +inf, and with lower_order_final at most num_steps - k (the last step first order, the one
    before it at most second order)."""
    order = jnp.minimum(max_order, k + 1)
    if lower_order_final:
        order = jnp.minimum(order, num_steps - k)
    return jnp.where(jnp.isfinite(h), order, 1)


def dpm_solver_pp_sample(denoise, x_T, logsnr_fn, times, parameterization="eps",
                         x0_transform=None, order=2, lower_order_final=True):
    """DPM-Solver++(2M) and (3M) (Lu et al. 2022, "DPM-Solver++", Algorithm 2 and its third-order
    multistep update): data prediction, multistep.

    In lambda = logSNR / 2, with h = lambda_s - lambda_t for the step t -> s, h_0 and h_1 the
    two steps before it, r_0 = h_0 / h, r_1 = h_1 / h, and m_0, m_1, m_2 the x0 estimates at t
    and the two previous times:
        x_s = (sigma_s / sigma_t) x_t - alpha_s phi_1 m_0 + correction,
        phi_1 = e^{-h} - 1,  phi_2 = phi_1 / h + 1,  phi_3 = phi_2 / h - 1/2;
        first order:   correction = 0 (DDIM);
        second order:  correction = -alpha_s phi_1 D_0 / 2,  D_0 = (m_0 - m_1) / r_0;
        third order:   correction = alpha_s (phi_2 D_1 - phi_3 D_2) with D_1 = D_0 + r_0 /
                       (r_0 + r_1) (D_0 - D_1'), D_2 = (D_0 - D_1') / (r_0 + r_1),
                       D_1' = (m_1 - m_2) / r_1.
    The first steps use the orders their history allows. A step into logSNR = +inf (a discrete
    grid's t = 0) is first order and returns x0_hat. lower_order_final (the paper's advice for
    few steps): the last step is first order and the one before at most second: on a grid
    uniform in t the last step is much longer in lambda than the one before it, and a
    higher-order term would then overshoot (10 steps from the exact Gaussian denoiser: 2.3x
    the data variance with a second-order last step, within a few percent without).
    """
    if order not in (2, 3):
        raise ValueError(f"DPM-Solver++ here is multistep of order 2 or 3, got {order}.")
    leaves, treedef, schedules, times = _gaussian_setup(x_T, logsnr_fn, times)
    num_steps = times.shape[0] - 1

    def step(carry, step_inputs):
        k, t, s = step_inputs
        x_leaves, history = carry  # history: per leaf (m_1, m_2, h_0, h_1)
        outputs = treedef.flatten_up_to(denoise_leaves(denoise, treedef, x_leaves, t))
        leaf_steps = _gaussian_leaf_steps(outputs, x_leaves, schedules, t, s, parameterization,
                                          x0_transform)
        new_leaves, new_history = [], []
        for leaf, (m1, m2, h0, h1) in zip(leaf_steps, history):
            m0, h = leaf.x0, 0.5 * (leaf.logsnr_s - leaf.logsnr_t)
            step_order = _multistep_order(k, num_steps, h, order, lower_order_final)
            phi1 = jnp.expm1(-h)
            phi2 = phi1 / h + 1.0
            phi3 = phi2 / h - 0.5
            r0, r1 = h0 / h, h1 / h
            d0, d0_previous = (m0 - m1) / r0, (m1 - m2) / r1
            second = -0.5 * phi1 * d0
            third = (phi2 * (d0 + r0 / (r0 + r1) * (d0 - d0_previous))
                     - phi3 * (d0 - d0_previous) / (r0 + r1))
            # `where` (not a product) discards the unused orders' inf / nan at the first steps.
            correction = jnp.where(step_order >= 3, third, jnp.where(step_order == 2, second, 0.0))
            new_leaves.append(leaf.sigma_s / leaf.sigma_t * leaf.x
                              - leaf.alpha_s * phi1 * m0 + leaf.alpha_s * correction)
            new_history.append((m0, m1, h, h0))
        return new_leaves, new_history

    history = [(jnp.zeros_like(x), jnp.zeros_like(x), jnp.ones(()), jnp.ones(()))
               for x in leaves]
    final_leaves, _ = scan_steps(step, (leaves, history), times)
    return treedef.unflatten(final_leaves)


def heun_sample(denoise, x_T, logsnr_fn, times, parameterization="eps", x0_transform=None):
    """EDM's deterministic Heun sampler (Karras et al. 2022, Algorithm 1 with S_churn = 0) on the
    VP process.

    In EDM's variables sigma~ = sigma / alpha = exp(-logSNR / 2) and x~ = x / alpha the
    probability-flow ODE is dx~ / dsigma~ = (x~ - x0_hat) / sigma~ = eps_hat. A step t -> s:
        Euler:  x~' = x~_t + (sigma~_s - sigma~_t) eps_hat(x_t, t)
        Heun:   x~_s = x~_t + (sigma~_s - sigma~_t) (eps_hat(x_t, t) + eps_hat(x'_s, s)) / 2,
    and x = alpha x~. As in EDM, a step into sigma = 0 (logSNR = +inf: a discrete chain's
    t = 0) stays Euler, since eps_hat is undefined there. The first step, out of the prior, is
    Euler too: EDM starts at sigma~ = 80, but here x_T ~ N(0, I) sits at sigma~(1) (1808 on the
    cosine clipped at logSNR -15, about 2e4 on a 1000-step cosine chain), and over a step that
    long Heun's correction scales a small difference of two eps estimates by sigma~(1) (on a
    chain, +4% of the data variance at 40 steps; Euler there is exact as sigma~(1) -> inf).
    Network calls: 2K - 1, or 2K - 2 when the grid ends at sigma = 0 (num_evaluations).
    """
    leaves, treedef, schedules, times = _gaussian_setup(x_T, logsnr_fn, times)

    def step(x_leaves, step_inputs):
        k, t, s = step_inputs
        outputs = treedef.flatten_up_to(denoise_leaves(denoise, treedef, x_leaves, t))
        first = _gaussian_leaf_steps(outputs, x_leaves, schedules, t, s, parameterization,
                                     x0_transform)
        euler = [_edm_move(leaf, leaf.eps) for leaf in first]

        def heun():
            outputs = treedef.flatten_up_to(denoise_leaves(denoise, treedef, euler, s))
            second = _gaussian_leaf_steps(outputs, euler, schedules, s, s, parameterization,
                                          x0_transform)
            return [_edm_move(leaf, 0.5 * (leaf.eps + later.eps))
                    for leaf, later in zip(first, second)]

        return jax.lax.cond((k > 0) & jnp.isfinite(first[0].logsnr_s), heun, lambda: euler)

    return treedef.unflatten(scan_steps(step, leaves, times))


def _edm_move(leaf, eps):
    """x_s = alpha_s (x~_t + (sigma~_s - sigma~_t) eps), x~_t = x_t / alpha_t, sigma~ = sigma /
    alpha; written as alpha_s (x_t - sigma_t eps) / alpha_t + sigma_s eps (finite at
    alpha_s -> 0 and exact at sigma_s = 0)."""
    return leaf.alpha_s * (leaf.x - leaf.sigma_t * eps) / leaf.alpha_t + leaf.sigma_s * eps


def num_evaluations(sampler: str, times, logsnr_fn) -> int:
    """Network calls (NFE) of a Gaussian sampler on a grid: one per step, two per Heun step
    but the first and one into sigma = 0 (heun_sample). logsnr_fn: the schedule (of the first
    leaf)."""
    num_steps = len(times) - 1
    if sampler != "heun" or num_steps == 1:
        return num_steps
    ends_at_zero_sigma = not np.isfinite(float(logsnr_fn(jnp.float32(times[-1]))))
    return 2 * num_steps - 1 - int(ends_at_zero_sigma)


def steps_for_evaluations(sampler: str, nfe: int, ends_at_zero_sigma: bool) -> int:
    """The most steps whose num_evaluations is at most nfe (Heun: 2K - 1 calls, 2K - 2 on a grid
    ending at sigma = 0; the others K)."""
    if sampler != "heun":
        return nfe
    return max(1, (nfe + 1 + int(ends_at_zero_sigma)) // 2)
