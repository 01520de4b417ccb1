"""Sampling from a train state: the jitted sampler, host copies of the samples, PNG grids
(in training, every `sample.every` steps) and `--mode=sample` from the latest checkpoint.

A class-conditional network samples the classes in turn, one class per grid column. A
text-conditioned one samples the prompts in turn (config.text.prompts, or --prompt in sample
mode; the empty caption when there is none), one prompt per column, guided away from
config.text.negative_prompt; the prompts of a grid are written beside it (<grid>.txt, one line
per sample in grid order) and to TensorBoard.
"""

from typing import Any, Optional

import jax
import numpy as np
from absl import logging
from etils import epath
from jax.experimental import multihost_utils

from jaxdiff.methods.base import Method
from jaxdiff.text.prompts import encode_prompts
from jaxdiff.train import images as images_lib
from jaxdiff.train import sharding as sharding_lib

# A conditional grid puts one class (or prompt) per column when there are at most this many.
MAX_CLASS_COLUMNS = 16


def sample_labels(method: Method, num_samples: int):
    """Classes 0, 1, ..., C-1, 0, 1, ... for a class-conditional network (C classes), so that a
    grid of C columns shows one class per column; None for an unconditional one."""
    num_classes = method.num_classes
    return np.arange(num_samples, dtype=np.int32) % num_classes if num_classes else None


def sample_prompts(config, method: Method, num_samples: int,
                   prompts: Optional[list] = None) -> Optional[list]:
    """`prompts` (default config.text.prompts, or the empty caption) cycled over num_samples
    samples for a text-conditioned network; None for one without text."""
    if method.text is None:
        if prompts:
            raise ValueError("Prompts were given, but this run is not text-conditioned "
                             "(config.text.encoder is 'none').")
        return None
    prompts = list(prompts or config.text.prompts) or [""]
    return [prompts[index % len(prompts)] for index in range(num_samples)]


def sampler_inputs(config, method: Method, num_samples: int,
                   prompts: Optional[list] = None) -> dict:
    """The conditioning keywords of Method.sample for num_samples samples: labels in turn, the
    prompts' text in turn and the negative prompt's (config.text.negative_prompt)."""
    inputs = {"labels": sample_labels(method, num_samples)}
    prompts = sample_prompts(config, method, num_samples, prompts)
    if prompts is not None:
        inputs["text"] = prompt_text(config, method, prompts)
        if config.text.negative_prompt:
            inputs["negative_text"] = prompt_text(
                config, method, [config.text.negative_prompt] * num_samples)
    return inputs


def prompt_text(config, method: Method, prompts: list) -> dict:
    """The text of `prompts`: encode_prompts of each non-empty one, and the empty caption of
    training's dropout (conditioning.TextSpec.null) for each empty one, so that "" means "no
    caption" for precomputed embeddings too (and needs no T5)."""
    empty = np.array([not prompt.strip() for prompt in prompts])
    text = {key: np.array(value) for key, value in method.text.null(len(prompts)).items()}
    if not empty.all():
        encoded = encode_prompts(config.text, [p for p, e in zip(prompts, empty) if not e])
        for key in text:
            text[key][~empty] = encoded[key]
    return text


def grid_columns(method: Method, num_samples: int, prompts: Optional[list] = None):
    """One column per class, or per distinct prompt, when there are at most
    MAX_CLASS_COLUMNS of them; else None (a square grid)."""
    if prompts is not None:
        distinct = len(dict.fromkeys(prompts))
        return distinct if 1 < distinct <= min(MAX_CLASS_COLUMNS, num_samples) else None
    num_classes = method.num_classes
    return num_classes if 0 < num_classes <= min(MAX_CLASS_COLUMNS, num_samples) else None


def make_sampler(method: Method, mesh, num_samples: int, inputs: Optional[dict] = None):
    """jitted (params, rng) -> samples with the conditioning `inputs` (sampler_inputs; default
    the classes in turn). The samples are split over the mesh's batch devices when they divide
    num_samples, so that each chip computes its share of the sampler's steps (XLA propagates
    the output sharding back through the scan); otherwise every device computes them all."""
    inputs = inputs if inputs is not None else {"labels": sample_labels(method, num_samples)}
    split = num_samples % sharding_lib.batch_devices(mesh) == 0
    return jax.jit(lambda params, rng: method.sample(params, rng, num_samples, **inputs),
                   out_shardings=(sharding_lib.batch_sharding(mesh) if split
                                  else sharding_lib.replicated(mesh)))


def highest_resolution(samples: Any) -> np.ndarray:
    """Host copy of a method's samples; multi-resolution methods return a list, highest first."""
    first = samples[0] if isinstance(samples, (list, tuple)) else samples
    return np.asarray(multihost_utils.process_allgather(first, tiled=True))


def write_grid(path: epath.Path, samples: np.ndarray, columns=None,
               prompts: Optional[list] = None) -> np.ndarray:
    """Saves samples in [-1, 1] as one PNG grid (`columns` wide, default square), with the
    prompts beside it (path.txt, one per sample in grid order), and returns the grid."""
    grid = images_lib.image_grid(images_lib.to_uint8(samples), columns=columns)
    path.parent.mkdir(parents=True, exist_ok=True)
    images_lib.save_png(path, grid)
    if prompts is not None:
        path.with_suffix(".txt").write_text("".join(f"{prompt}\n" for prompt in prompts))
    return grid


def sample_file(directory: epath.Path, step: int, suffix: str) -> epath.Path:
    return directory / f"samples_{step:08d}{suffix}"


def save_samples(directory: epath.Path, step: int, samples: np.ndarray, labels=None,
                 columns=None, prompts: Optional[list] = None) -> None:
    """`--mode=sample` output: samples_<step>.png (grid, `columns` wide; with the prompts in
    samples_<step>.txt) and samples_<step>.npz (key "images": uint8 (N, H, W, 3); "labels":
    int32 (N,) for a class-conditional network; "prompts": str (N,) for a text-conditioned
    one)."""
    write_grid(sample_file(directory, step, ".png"), samples, columns, prompts)
    npz_path = sample_file(directory, step, ".npz")
    arrays = {"images": images_lib.to_uint8(samples)}
    if labels is not None:
        arrays["labels"] = labels
    if prompts is not None:
        arrays["prompts"] = np.array(prompts, dtype=str)
    with npz_path.open("wb") as f:
        np.savez(f, **arrays)
    logging.info("Wrote %d samples of step %d to %s.", len(samples), step, npz_path)
