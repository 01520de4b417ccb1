"""Samplers of analytic attenuation (Huang et al. 2023, arXiv 2306.13720), each one lax.scan:
x_t = (1 - t) x0 + sqrt(t) eps, and denoise(x_t, t) returns the pair (c, eps) of pytrees shaped
like the state, x0_hat = -c. ``attenuation_sample`` (stochastic) and ``attenuation_ode_sample``
(deterministic); the grid and state conventions are those of samplers.py.
"""

import jax
import jax.numpy as jnp

from jaxdiff.core.predictions import attenuation_eps_from_c
from jaxdiff.core.processes import attenuation_posterior
from jaxdiff.core.samplers import checked_times, denoise_leaves, leaf_noise, scan_steps


def _attenuation_c_eps(x_t, c, eps, t, x0_transform):
    """The (c, eps) estimates of one leaf; with a transform, both are rebuilt from the new x0."""
    if x0_transform is None:
        return c, eps
    c = -x0_transform(-c)
    return c, attenuation_eps_from_c(x_t, c, t)


def _attenuation_scan(denoise, x_T, times, x0_transform, update, rng=None):
    """Shared loop: per leaf ``update(x, c, eps, t, s, noise) -> x_s`` (noise None without rng)."""
    leaves, treedef = jax.tree.flatten(x_T)
    times = checked_times(times)

    def step(x_leaves, step_inputs):
        k, t, s = step_inputs
        c_tree, eps_tree = denoise_leaves(denoise, treedef, x_leaves, t)
        noises = [None] * len(x_leaves) if rng is None else leaf_noise(rng, k, x_leaves)
        new_leaves = []
        for x, c, eps, z in zip(x_leaves, treedef.flatten_up_to(c_tree),
                                treedef.flatten_up_to(eps_tree), noises):
            c, eps = _attenuation_c_eps(x, c, eps, t, x0_transform)
            new_leaves.append(update(x, c, eps, t, s, z))
        return new_leaves

    return treedef.unflatten(scan_steps(step, leaves, times))


def attenuation_sample(denoise, rng, x_T, times, x0_transform=None):
    """Stochastic sampler of analytic attenuation: draw from the Brownian-bridge posterior.

    x_{t-d} ~ N(x_t - c d - (d / sqrt(t)) eps, d (t - d) / t) with (c, eps) = denoise(x_t, t)
    (processes.attenuation_posterior; Huang et al. 2023, sec. 3). The variance vanishes on the
    step into t = 0, which returns x_t - c t - sqrt(t) eps = x0_hat. The paper's 10 steps:
    time_grids.time_grid("uniform", 10, t_end=1e-4).
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
