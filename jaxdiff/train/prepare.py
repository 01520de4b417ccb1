"""A run's setup, done once before anything compiles: the checks within and across the config's
sections, and what the run is made of (method, validated data, mesh and abstract train state),
returned so that the run uses them instead of building them again.

    prepare(config, workdir, mode) -> [Stage, ...]   one per training stage (train/stages.py)

Each failure is a ValueError of one sentence naming the field: the train fields (loop.py,
state.py, sharding.py), the method and model fields (methods.build), the data configs, the
model's classes against the dataset's, the second image stream against the method, and the
network against the image side (loop.abstract_init traces the network), the batch against the
method's smallest batch. An existing checkpoint is checked by the loop before anything compiles
or is written (checkpoint.IncompatibleCheckpoint).
"""

import dataclasses
import os
from typing import Any, Optional, Sequence

import jax
import ml_collections
import numpy as np

from jaxdiff import data, methods
from jaxdiff.methods.base import Method
from jaxdiff.metrics import evaluate
from jaxdiff.text.config import batch_text
from jaxdiff.train import loop
from jaxdiff.train.stages import stage_runs

MODES = ("train", "sample", "eval")


@dataclasses.dataclass(frozen=True)
class Stage:
    """One training stage (the whole run when the config has no stages), ready to run.

    data / mix_data: what data.validate_data_config returned for config.data / config.mix_data
    ((records, DatasetSpec, options)); None where the mode reads no data."""

    config: ml_collections.ConfigDict
    workdir: str
    method: Method
    run: loop.Setup
    data: Optional[tuple]
    mix_data: Optional[tuple]


def prepare(config, workdir: str, mode: str,
            devices: Optional[Sequence[Any]] = None) -> list[Stage]:
    """Every stage of the run in `workdir` (made absolute), checked and built (module
    docstring)."""
    if mode not in MODES:
        raise ValueError(f"Unknown mode {mode!r}; choose one of {MODES}.")
    devices = list(devices or jax.devices())
    workdir = absolute_workdir(workdir)
    return [prepare_stage(stage_config, stage_workdir, mode, devices)
            for stage_config, stage_workdir in stage_runs(config, workdir)]


def absolute_workdir(workdir: str) -> str:
    """A local path made absolute (orbax refuses relative checkpoint paths); a URL (gs://...)
    unchanged."""
    return workdir if "://" in workdir else os.path.abspath(workdir)


def prepare_stage(config, workdir: str, mode: str, devices: Sequence[Any],
                  read_data: bool = True) -> Stage:
    """One stage, checked and built; read_data=False leaves the data configs unopened (a
    dataset the user has not prepared here), and the stage's data None."""
    loop.validate_config(config, len(devices), jax.process_count())
    if mode == "eval":
        evaluate.check_eval_config(config.eval, config.data, needs_weights=True)
    method = methods.build(config)
    check_batch(config, method)
    check_mix_data(config, method)
    validated = mix_validated = None
    if read_data and (mode == "train" or method.reference_images):
        validated = data.validate_data_config(config.data, global_batch_size=config.batch_size,
                                              process_count=jax.process_count())
        check_classes(method, validated[1])
        data.check_text_data(validated[1], batch_text(config.get("text")))
        if config.get("mix_data") is not None:
            mix_validated = data.validate_data_config(
                config.mix_data, global_batch_size=config.batch_size,
                process_count=jax.process_count())
    run = loop.setup(config, method, devices)  # traces the network on the configured side
    return Stage(config, workdir, method, run, validated, mix_validated)


def abstract_batch(config, method: Method, sharding=None) -> dict:
    """ShapeDtypeStructs of one global batch of config.batch_size as the data pipeline makes it
    (optionally with a sharding): uint8 images (each of the method's image keys), labels and,
    for a text-conditioned method, tokens or float16 embeddings with their mask."""
    side, size = config.data.resolution, config.batch_size

    def struct(shape, dtype):
        return jax.ShapeDtypeStruct(shape, dtype, sharding=sharding)

    batch = {key: struct((size, side, side, 3), np.uint8) for key in method.image_keys}
    batch["label"] = struct((size,), np.int32)
    if method.text is not None:
        length = method.text.max_length
        batch["mask"] = struct((size, length), np.bool_)
        if method.text.encoder == "trained":
            batch["tokens"] = struct((size, length), np.int32)
        else:
            batch["embeddings"] = struct((size, length, method.text.embed_dim), np.float16)
    return batch


def check_classes(method: Method, spec: data.DatasetSpec) -> None:
    """A class-conditional network needs the dataset's classes, one embedding each."""
    classes = method.num_classes
    if classes == 0 or classes == spec.num_classes:
        return
    if spec.num_classes == 0:
        raise ValueError(f"config.model.num_classes is {classes}, but {spec.name} has no "
                         "labels: set config.model.num_classes=0 (an unconditional model).")
    raise ValueError(f"config.model.num_classes is {classes}, but {spec.name} has "
                     f"{spec.num_classes} classes: set it to {spec.num_classes}, or to 0 for an "
                     "unconditional model.")


def check_batch(config, method: Method) -> None:
    """Each microbatch is at least the smallest batch the method's loss takes."""
    microbatch = config.batch_size // config.grad_accum_steps
    if microbatch < method.min_batch_size:
        raise ValueError(f"config.batch_size / grad_accum_steps is {microbatch}, below the "
                         f"{method.min_batch_size} samples the {method.name} method's settings "
                         "need in a batch (e.g. method.mixed_ratio).")


def check_mix_data(config, method: Method) -> None:
    """config.mix_data is given exactly when the method reads a second image stream, at the
    image side of config.data."""
    needs = "mix_image" in method.image_keys
    given = config.get("mix_data") is not None
    if needs and not given:
        raise ValueError(f"Method {method.name!r} blends every image with one of a second "
                         "dataset: set config.mix_data (a data config, e.g. "
                         "name='folder:/path').")
    if given and not needs:
        raise ValueError(f"config.mix_data is set, but method {method.name!r} reads no second "
                         "image stream (only cold diffusion's 'mix' degradation does): remove it.")
    if given:
        data.check_mix_config(config.data, config.mix_data)
