"""A toy method, model, data pipeline and config for the train-system tests and benchmark.

The model has a few hundred parameters built from the shared logically-partitioned layers; the
method is an eps-prediction loss on the variance-preserving cosine path x_t = cos(pi t / 2) x0 +
sin(pi t / 2) eps; the data is a grain pipeline over fixed random images whose state
checkpoints. A batch whose labels are all -1 makes the loss NaN (non-finite tests).
"""

import json
import os
import subprocess
import sys
import time

import flax.linen as nn
import grain
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from jaxdiff import data, methods
from jaxdiff.methods.base import Method
from jaxdiff.methods.settings import Settings
from jaxdiff.models import layers
from jaxdiff.train import defaults

RESOLUTION = 8
NAME = "toy"


class ToyDenoiser(nn.Module):
    """conv(3 -> 8) + time embedding -> SiLU -> conv(8 -> 3): 459 parameters."""

    features: int = 8
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x, t, labels=None, context=None, train=False):
        del labels, context, train
        h = layers.Conv(self.features, dtype=self.dtype)(x)
        h = h + layers.Dense(self.features, dtype=self.dtype)(t[:, None, None, None])
        return layers.Conv(x.shape[-1], dtype=self.dtype)(nn.silu(h)).astype(jnp.float32)


def vp_cosine(t):
    """(alpha_t, sigma_t) = (cos(pi t / 2), sin(pi t / 2)), shaped to broadcast over NHWC."""
    angle = (0.5 * jnp.pi * t)[:, None, None, None]
    return jnp.cos(angle), jnp.sin(angle)


def toy_loss(apply_fn, params, batch, rng):
    x0 = batch["image"]
    t_key, noise_key = jax.random.split(rng)
    t = jax.random.uniform(t_key, (x0.shape[0],))
    eps = jax.random.normal(noise_key, x0.shape)
    alpha, sigma = vp_cosine(t)
    prediction = apply_fn({"params": params}, alpha * x0 + sigma * eps, t)
    mse = jnp.mean((prediction - eps) ** 2)
    poison = jnp.where(jnp.all(batch["label"] == -1), jnp.nan, 0.0)
    return mse + poison, {"mse": mse}


def toy_sample(apply_fn, params, rng, num_samples, labels=None):
    """One x0 estimate from pure noise at t = 0.9 (a toy, not a real sampler)."""
    del labels
    x = jax.random.normal(rng, (num_samples, RESOLUTION, RESOLUTION, 3))
    t = jnp.full((num_samples,), 0.9)
    alpha, sigma = vp_cosine(t)
    return jnp.clip((x - sigma * apply_fn({"params": params}, x, t)) / alpha, -1.0, 1.0)


def build_toy_method(inputs) -> Method:
    model = ToyDenoiser(features=inputs.model["features"], dtype=jnp.dtype(inputs.model["dtype"]))

    def init_fn(rng):
        return model.init(rng, jnp.zeros((1, RESOLUTION, RESOLUTION, 3)), jnp.zeros((1,)))

    return Method(name=NAME, model=model, init_fn=init_fn, loss_fn=toy_loss,
                  sample_fn=toy_sample)


methods.register(NAME, Settings, build_toy_method)


def toy_images(num_images: int = 64, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(
        0, 256, (num_images, RESOLUTION, RESOLUTION, 3), dtype=np.uint8)


def toy_iterator(global_batch_size: int, process_index: int = 0, process_count: int = 1,
                 seed: int = 0, poison_batches=(), delay: float = 0.0):
    """A grain iterator of process-local batches: global batch k is a seeded draw of the toy
    images, and process i gets its rows [i * B / n, (i + 1) * B / n). Batches whose index is in
    `poison_batches` have all labels -1; `delay` seconds of sleep per batch slow a run down for
    the signal tests."""
    images = toy_images()
    local = global_batch_size // process_count

    def make_batch(index):
        time.sleep(delay)
        rows = np.random.default_rng([seed, index]).choice(len(images), global_batch_size)
        rows = rows[process_index * local:(process_index + 1) * local]
        label = np.full((local,), -1 if index in poison_batches else 0, np.int32)
        return {"image": images[rows], "label": label}

    dataset = grain.MapDataset.range(10**9).map(make_batch)
    return iter(dataset.to_iter_dataset())


def toy_config(**overrides) -> ml_collections.ConfigDict:
    """The train defaults shrunk for the toy, then flat overrides {"a.b": value}."""
    config = defaults.train_config()
    config.update(dict(num_steps=6, batch_size=8, ema_decay=0.9, log_every=1,
                       max_nonfinite_streak=3))
    config.optimizer.update(dict(learning_rate=1e-2, warmup_steps=2, schedule="cosine",
                                 b2=0.99, weight_decay=1e-4))
    config.checkpoint.every = 2
    config.sample.update(dict(every=0, num_samples=4))
    config.model = dict(features=8, dtype="float32")
    config.method = dict(name=NAME)
    config.data = data.default_data_config()
    config.data.update(dict(name="builtin:digits", resolution=RESOLUTION))
    config.update_from_flattened_dict(overrides)
    return config

WORKER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "train_worker.py")
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def start_worker(spec: dict, num_devices: int) -> subprocess.Popen:
    """train_worker.py in a fresh process with `num_devices` forced CPU devices."""
    env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=REPO_ROOT,
               XLA_FLAGS=f"--xla_force_host_platform_device_count={num_devices}")
    return subprocess.Popen([sys.executable, WORKER, json.dumps(spec)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def wait_for_checkpoint(workdir, step, process, timeout=90.0):
    """Polls until checkpoint `step` is committed (orbax renames the tmp dir when done)."""
    path = os.path.join(workdir, "checkpoints", str(step))
    deadline = time.monotonic() + timeout
    while not os.path.isdir(path):
        assert process.poll() is None, process.stderr.read()[-3000:]
        assert time.monotonic() < deadline, f"no checkpoint {step} after {timeout} s"
        time.sleep(0.05)


def finish(process: subprocess.Popen, timeout: float = 120) -> int:
    """Waits for a worker; its stderr tail is in the assertion message if it failed."""
    _, stderr = process.communicate(timeout=timeout)
    assert process.returncode == 0, stderr[-3000:]
    return process.returncode


def load_worker_output(out: str, process_index: int = 0) -> tuple[dict, dict]:
    with open(f"{out}.{process_index}.json") as f:
        record = json.load(f)
    with np.load(f"{out}.{process_index}.npz") as arrays:
        return record, dict(arrays)


def flat_params(params) -> dict:
    """{path: host array} in the naming train_worker.py uses."""
    flat = jax.tree_util.tree_flatten_with_path(params)[0]
    return {jax.tree_util.keystr(path): np.asarray(leaf) for path, leaf in flat}
