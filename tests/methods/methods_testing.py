"""Helpers shared by the method tests: configs, a short training run, analytic networks and
moment checks."""

import flax.linen as nn
import jax
import ml_collections
import numpy as np
import optax

# Gaussian data of the analytic tests: independent pixels, per-channel mean and std, small
# enough that clipping samples to [-1, 1] changes the moments by well under the tolerances.
DATA_MEAN = np.array([0.3, -0.2, 0.1], np.float32)
DATA_STD = np.array([0.25, 0.2, 0.3], np.float32)
DATA_VARIANCE = DATA_STD**2

# The UNet / dual UNet "tiny" preset cut to one level without attention: the same method code
# paths at about a quarter of the compile time.
SMALLEST_UNET = {"preset": "tiny", "channel_mult": (1,), "attention_resolutions": ()}


def make_config(method: str, resolution: int, model: dict, **method_fields):
    """A full config with data.resolution, model.* and method.* as given."""
    return ml_collections.ConfigDict({
        "seed": 0,
        "data": {"resolution": resolution},
        "model": dict(model),
        "method": dict(method_fields, name=method),
    })


def gaussian_images(rng, shape):
    """Images of the Gaussian data (channels last)."""
    return DATA_MEAN + DATA_STD * jax.random.normal(rng, shape)


def analytic_apply(denoise):
    """An apply_fn that ignores the parameters and labels and returns denoise(x, t)."""

    def apply_fn(variables, x, t, labels=None, context=None, train=False, rngs=None):
        del variables, labels, context, train, rngs
        return denoise(x, t)

    return apply_fn


def train(method, batch, num_steps: int = 4, learning_rate: float = 1e-3):
    """Adam steps on a fixed batch with one compiled step. Returns (losses, metrics of the first
    step, initial params, final params, gradients of the first step)."""
    params = nn.unbox(method.init_fn(jax.random.PRNGKey(0))["params"])
    tx = optax.adam(learning_rate)

    @jax.jit
    def step(params, opt_state, rng):
        (loss, metrics), grads = jax.value_and_grad(method.loss, has_aux=True)(params, batch, rng)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss, metrics, grads

    initial = params
    opt_state = tx.init(params)
    losses, first_metrics, first_grads = [], None, None
    rng = jax.random.PRNGKey(1)  # the same rng every step: the loss changes only by learning
    for _ in range(num_steps):
        params, opt_state, loss, metrics, grads = step(params, opt_state, rng)
        losses.append(float(loss))
        if first_metrics is None:
            first_metrics, first_grads = metrics, grads
    return losses, first_metrics, initial, params, first_grads


def assert_learns(method, batch, num_steps: int = 6):
    """A few Adam steps on a fixed batch and key: the loss is finite and falls, and every
    parameter moved (the gradient reached it). Returns the first step's metrics and gradients."""
    losses, metrics, before, after, grads = train(method, batch, num_steps)
    assert np.all(np.isfinite(losses)), losses
    assert losses[-1] < losses[0], losses
    assert unchanged_leaves(before, after) == []
    return metrics, grads


def random_images(rng, shape):
    """Uniform images in [-1, 1]."""
    return jax.random.uniform(rng, shape, minval=-1.0, maxval=1.0)


def unchanged_leaves(before, after):
    """Paths of the parameter leaves equal before and after training."""
    flat_before = jax.tree_util.tree_flatten_with_path(before)[0]
    flat_after = jax.tree.leaves(after)
    return [jax.tree_util.keystr(path) for (path, b), a in zip(flat_before, flat_after)
            if np.array_equal(np.asarray(b), np.asarray(a))]


def assert_gaussian_moments(samples, mean, std, mean_tol: float, std_rel_tol: float):
    """Per-channel mean within mean_tol and std within std_rel_tol (relative) of the target."""
    samples = np.asarray(samples, np.float64)
    flat = samples.reshape(-1, samples.shape[-1])
    np.testing.assert_allclose(flat.mean(axis=0), mean, atol=mean_tol)
    np.testing.assert_allclose(flat.std(axis=0), std, rtol=std_rel_tol)


def sample(method, num_samples: int, apply_fn, seed: int = 0, labels=None):
    """method.sample_fn under jit with a given apply_fn (params unused: an empty dict)."""
    run = jax.jit(lambda rng: method.sample_fn(apply_fn, {}, rng, num_samples, labels))
    return run(jax.random.PRNGKey(seed))

