"""Sampling from a train state: the jitted sampler, host copies of the samples, PNG grids
(in training, every `sample.every` steps) and `--mode=sample` from the latest checkpoint.
A class-conditional network samples the classes in turn, one class per grid column."""

from typing import Any

import jax
import numpy as np
from absl import logging
from etils import epath
from jax.experimental import multihost_utils

from jaxdiff.methods.base import Method
from jaxdiff.train import images as images_lib
from jaxdiff.train import sharding as sharding_lib

# A class-conditional grid puts one class per column when there are at most this many classes.
MAX_CLASS_COLUMNS = 16


def sample_labels(method: Method, num_samples: int):
    """Classes 0, 1, ..., C-1, 0, 1, ... for a class-conditional network (C classes), so that a
    grid of C columns shows one class per column; None for an unconditional one."""
    num_classes = method.num_classes
    return np.arange(num_samples, dtype=np.int32) % num_classes if num_classes else None


def grid_columns(method: Method, num_samples: int):
    """C columns for a class-conditional network of C <= MAX_CLASS_COLUMNS classes, else None
    (a square grid)."""
    num_classes = method.num_classes
    return num_classes if 0 < num_classes <= min(MAX_CLASS_COLUMNS, num_samples) else None


def make_sampler(method: Method, mesh, num_samples: int):
    """jitted (params, rng) -> samples with `sample_labels`, replicated on every device of
    `mesh`."""
    labels = sample_labels(method, num_samples)
    return jax.jit(lambda params, rng: method.sample(params, rng, num_samples, labels),
                   out_shardings=sharding_lib.replicated(mesh))


def highest_resolution(samples: Any) -> np.ndarray:
    """Host copy of a method's samples; multi-resolution methods return a list, highest first."""
    first = samples[0] if isinstance(samples, (list, tuple)) else samples
    return np.asarray(multihost_utils.process_allgather(first, tiled=True))


def write_grid(path: epath.Path, samples: np.ndarray, columns=None) -> np.ndarray:
    """Saves samples in [-1, 1] as one PNG grid (`columns` wide, default square) and returns the
    grid."""
    grid = images_lib.image_grid(images_lib.to_uint8(samples), columns=columns)
    path.parent.mkdir(parents=True, exist_ok=True)
    images_lib.save_png(path, grid)
    return grid


def sample_file(directory: epath.Path, step: int, suffix: str) -> epath.Path:
    return directory / f"samples_{step:08d}{suffix}"


def save_samples(directory: epath.Path, step: int, samples: np.ndarray, labels=None,
                 columns=None) -> None:
    """`--mode=sample` output: samples_<step>.png (grid, `columns` wide) and samples_<step>.npz
    (key "images": uint8 (N, H, W, 3); "labels": int32 (N,) for a class-conditional network)."""
    write_grid(sample_file(directory, step, ".png"), samples, columns)
    npz_path = sample_file(directory, step, ".npz")
    arrays = {"images": images_lib.to_uint8(samples)}
    if labels is not None:
        arrays["labels"] = labels
    with npz_path.open("wb") as f:
        np.savez(f, **arrays)
    logging.info("Wrote %d samples of step %d to %s.", len(samples), step, npz_path)
