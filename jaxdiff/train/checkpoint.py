"""Checkpoints: an orbax CheckpointManager (async) holding, per step, three items:

    state  the TrainState (StandardSave / StandardRestore with target shardings, so a checkpoint
           saved on one mesh restores onto another)
    data   the grain data iterator state, one JSON file per process (grain's orbax handler)
    meta   JSON: the resolved config and the parameter shapes, to refuse a checkpoint that does
           not match the run (`compatibility_errors`)

A run resumes from the latest step in `<workdir>/checkpoints`; `init_from` copies the parameters
(and EMA parameters) of another run's latest checkpoint into a fresh state.
"""

import json
import signal
import threading
from typing import Any, Optional

import grain
import jax
import orbax.checkpoint as ocp
from absl import logging
from etils import epath

from jaxdiff.train.state import TrainState

# Config entries that must match between a checkpoint and the run that restores it; everything
# else (learning rate, number of steps, mesh, logging, loss weights, sampler settings) may change
# on resume or for sampling.
MATCHING_ENTRIES = ("model", "method.name")


class IncompatibleCheckpoint(ValueError):
    """A checkpoint that this run cannot use (missing, or of another model), in one sentence."""


def param_shapes(params: Any) -> dict[str, list]:
    """{"path/to/param": [shape..., dtype]} of a parameter tree (arrays or ShapeDtypeStructs)."""
    flat = jax.tree_util.tree_flatten_with_path(params)[0]
    return {jax.tree_util.keystr(path, simple=True, separator="/"):
            [*map(int, leaf.shape), str(leaf.dtype)] for path, leaf in flat}


def run_metadata(config_json: str, abstract_params: Any) -> dict:
    """The `meta` item: the resolved config (from its JSON) and the parameter shapes."""
    return {"config": json.loads(config_json), "param_shapes": param_shapes(abstract_params)}


def _differences(prefix: str, saved: Any, current: Any) -> list[str]:
    if isinstance(saved, dict) and isinstance(current, dict):
        out = []
        for key in sorted(set(saved) | set(current)):
            name = f"{prefix}.{key}" if prefix else str(key)
            if key not in saved:
                out.append(f"{name} is not in the checkpoint")
            elif key not in current:
                out.append(f"{name} is only in the checkpoint")
            else:
                out.extend(_differences(name, saved[key], current[key]))
        return out
    if _as_json_value(saved) != _as_json_value(current):
        return [f"{prefix}: checkpoint {saved!r}, run {current!r}"]
    return []


def _as_json_value(value: Any) -> Any:
    return list(map(_as_json_value, value)) if isinstance(value, (list, tuple)) else value


def _entry(config: dict, dotted: str) -> Any:
    for key in dotted.split("."):
        config = config.get(key) if isinstance(config, dict) else None
    return config


def compatibility_errors(saved_meta: dict, current_meta: dict,
                         entries: tuple = MATCHING_ENTRIES) -> list[str]:
    """What differs between a checkpoint's metadata and the current run: the config entries
    that must match, then the parameter shapes."""
    errors = []
    for entry in entries:
        errors += _differences(f"config.{entry}", _entry(saved_meta["config"], entry),
                               _entry(current_meta["config"], entry))
    errors += _differences("params", saved_meta["param_shapes"], current_meta["param_shapes"])
    return errors


def with_shardings(abstract_tree: Any, shardings: Any) -> Any:
    """ShapeDtypeStructs carrying the target shardings (the restore target)."""
    return jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s),
                        abstract_tree, shardings)


class Checkpointer:
    """Saves the steps the loop asks for, keeps the last `keep`, restores."""

    def __init__(self, directory: str, *, keep: int, async_save: bool = True,
                 read_only: bool = False):
        self.directory = epath.Path(directory)
        options = ocp.CheckpointManagerOptions(max_to_keep=keep, read_only=read_only,
                                               create=not read_only,
                                               enable_async_checkpointing=async_save)
        self.manager = ocp.CheckpointManager(self.directory, options=options)

    def latest_step(self) -> Optional[int]:
        return self.manager.latest_step()

    def save(self, step: int, state: TrainState, iterator: Any, meta: dict) -> None:
        """Starts an async save of `state`, the iterator state and `meta` as `step`."""
        self.manager.save(step, args=ocp.args.Composite(
            state=ocp.args.StandardSave(state),
            data=grain.checkpoint.CheckpointSave(iterator),
            meta=ocp.args.JsonSave(meta)), force=True)

    def read_meta(self, step: int) -> dict:
        return self.manager.restore(step, args=ocp.args.Composite(
            meta=ocp.args.JsonRestore())).meta

    def check_compatible(self, step: int, current_meta: dict) -> None:
        errors = compatibility_errors(self.read_meta(step), current_meta)
        if errors:
            raise IncompatibleCheckpoint(
                f"The checkpoint at step {step} in {self.directory} does not match this run: "
                f"{'; '.join(errors)}.")

    def restore(self, step: int, target_state: TrainState,
                iterator: Optional[Any] = None) -> TrainState:
        """The state of `step` placed as `target_state` (ShapeDtypeStructs with shardings);
        the iterator, if given, is moved to its saved position in place."""
        items = {"state": ocp.args.StandardRestore(target_state)}
        if iterator is not None:
            items["data"] = grain.checkpoint.CheckpointRestore(iterator)
        return self.manager.restore(step, args=ocp.args.Composite(**items)).state

    def restore_params(self, step: int, target_params: Any) -> tuple[Any, Any]:
        """(params, ema_params) of `step`, placed as `target_params`, nothing else read."""
        target = {"params": target_params, "ema_params": target_params}
        restore_args = jax.tree.map(
            lambda a: ocp.ArrayRestoreArgs(sharding=a.sharding, global_shape=a.shape,
                                           dtype=a.dtype), target)
        restored = self.manager.restore(step, args=ocp.args.Composite(
            state=ocp.args.PyTreeRestore(item=target, restore_args=restore_args,
                                         partial_restore=True))).state
        return restored["params"], restored["ema_params"]

    def wait(self) -> None:
        self.manager.wait_until_finished()

    def close(self) -> None:
        self.manager.close()


def read_init_params(init_from: str, current_meta: dict, target_params: Any) -> tuple[Any, Any]:
    """(params, ema_params) of the latest checkpoint of the workdir `init_from`, placed as
    target_params; IncompatibleCheckpoint if there is none or its parameters differ."""
    source = Checkpointer(str(epath.Path(init_from) / "checkpoints"), keep=1, read_only=True)
    try:
        step = source.latest_step()
        if step is None:
            raise IncompatibleCheckpoint(f"init_from {init_from!r} has no checkpoint.")
        errors = compatibility_errors(source.read_meta(step), current_meta, entries=())
        if errors:
            raise IncompatibleCheckpoint(f"init_from {init_from!r} has other parameters: "
                                         f"{'; '.join(errors)}.")
        params_and_ema = source.restore_params(step, target_params)
    finally:
        source.close()
    logging.info("Parameters initialised from %s step %d.", init_from, step)
    return params_and_ema


class PreemptionWatch:
    """Tells the loop when to save and stop: on SIGTERM in a single-process run (a handler
    installed while the loop runs, from the main thread), and at the preemption sync point that
    JAX's distributed runtime agrees on in a multi-process run (the runtime itself listens for
    the signal there)."""

    def __init__(self, manager: ocp.CheckpointManager):
        self._manager = manager
        self._signalled = False
        self._multi_process = jax.process_count() > 1
        self._previous = None
        if not self._multi_process and threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGTERM, self._on_signal)

    def _on_signal(self, signum, frame):
        del signum, frame
        self._signalled = True

    def reached(self, step: int) -> bool:
        if self._multi_process:
            return self._manager.reached_preemption(step)
        return self._signalled

    def close(self) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)
