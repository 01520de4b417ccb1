"""Sampling from a train state: the jitted sampler, host copies of the samples, PNG grids
(in training, every `sample.every` steps) and `--mode=sample` from the latest checkpoint."""

from typing import Any

import jax
import numpy as np
from absl import logging
from etils import epath
from jax.experimental import multihost_utils

from jaxdiff.methods.base import Method
from jaxdiff.train import images as images_lib
from jaxdiff.train import sharding as sharding_lib


def make_sampler(method: Method, mesh, num_samples: int):
    """jitted (params, rng) -> samples, replicated on every device of `mesh`."""
    return jax.jit(lambda params, rng: method.sample(params, rng, num_samples),
                   out_shardings=sharding_lib.replicated(mesh))


def highest_resolution(samples: Any) -> np.ndarray:
    """Host copy of a method's samples; multi-resolution methods return a list, highest first."""
    first = samples[0] if isinstance(samples, (list, tuple)) else samples
    return np.asarray(multihost_utils.process_allgather(first, tiled=True))


def write_grid(path: epath.Path, samples: np.ndarray) -> np.ndarray:
    """Saves samples in [-1, 1] as one PNG grid and returns the grid."""
    grid = images_lib.image_grid(images_lib.to_uint8(samples))
    path.parent.mkdir(parents=True, exist_ok=True)
    images_lib.save_png(path, grid)
    return grid


def sample_file(directory: epath.Path, step: int, suffix: str) -> epath.Path:
    return directory / f"samples_{step:08d}{suffix}"


def save_samples(directory: epath.Path, step: int, samples: np.ndarray) -> None:
    """`--mode=sample` output: samples_<step>.png (grid) and samples_<step>.npz (key "images":
    uint8 (N, H, W, 3))."""
    write_grid(sample_file(directory, step, ".png"), samples)
    npz_path = sample_file(directory, step, ".npz")
    with npz_path.open("wb") as f:
        np.savez(f, images=images_lib.to_uint8(samples))
    logging.info("Wrote %d samples of step %d to %s.", len(samples), step, npz_path)
