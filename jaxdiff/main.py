"""Command-line entry point.

    python -m jaxdiff.main --config=configs/mdm.py[:preset] [--workdir=DIR] [--mode=train|sample]
        [--config.a.b=value ...]

The workdir (local or gs://, default runs/<config file name>[_<preset>]) receives config.json
(the resolved config), checkpoints/, tensorboard/ and samples/. Multi-process runs call
jax.distributed.initialize: explicitly with --coordinator_address/--num_processes/--process_id,
or automatically on a TPU pod slice, under SLURM or Open MPI with more than one task.
"""

import glob
import importlib.util
import logging as python_logging
import os

import jax
from absl import app, flags, logging
from etils import epath
from ml_collections import config_flags

from jaxdiff import data, methods
from jaxdiff.train import loop, stages

MODES = ("train", "sample")

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Config file, optionally with a preset: configs/x.py:preset.",
    lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Run directory; default runs/<config name>.")
_MODE = flags.DEFINE_enum("mode", "train", MODES, "Train, or sample from the latest checkpoint.")
_NUM_SAMPLES = flags.DEFINE_integer("num_samples", None,
                                    "Samples to write in sample mode; default "
                                    "config.sample.num_samples.")
_COORDINATOR = flags.DEFINE_string("coordinator_address", None,
                                   "host:port of process 0 for jax.distributed.")
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None, "Processes in the run.")
_PROCESS_ID = flags.DEFINE_integer("process_id", None, "This process's index.")


def default_workdir(config_argument: str) -> str:
    """'configs/mdm.py:tiny' -> 'runs/mdm_tiny'; 'configs/mdm.py' -> 'runs/mdm'."""
    path, _, preset = config_argument.partition(":")
    name = os.path.splitext(os.path.basename(path))[0]
    return os.path.join("runs", f"{name}_{preset}" if preset else name)


def cluster_detected(env, device_files=()) -> bool:
    """True in a multi-process launch that jax.distributed.initialize() configures itself.

    `device_files` are the accelerator device nodes present (glob of /dev/accel* and
    /dev/vfio/<n>): a Cloud TPU VM has them, and there JAX finds the slice's workers through the
    metadata server (TPU_WORKER_HOSTNAMES is set only on GKE), so every TPU VM initializes;
    on a single-host VM that is a one-process cluster.
    """
    def count(name):
        return int(env.get(name, "1") or "1")
    return (("SLURM_JOB_ID" in env and count("SLURM_NTASKS") > 1)
            or count("OMPI_COMM_WORLD_SIZE") > 1
            or "," in env.get("TPU_WORKER_HOSTNAMES", "")
            or bool(device_files))


def tpu_device_files() -> list:
    """The TPU device nodes of this host: /dev/accel* (v2-v4) or /dev/vfio/<n> (v5e and later).

    Empty where libtpu is not installed, so a GPU host with VFIO devices is not taken for a TPU.
    """
    if importlib.util.find_spec("libtpu") is None:
        return []
    return glob.glob("/dev/accel*") + glob.glob("/dev/vfio/[0-9]*")


def initialize_distributed(coordinator_address, num_processes, process_id) -> None:
    explicit = (coordinator_address, num_processes, process_id)
    if any(value is not None for value in explicit):
        if any(value is None for value in explicit):
            raise ValueError("--coordinator_address, --num_processes and --process_id must be "
                             "given together.")
        jax.distributed.initialize(coordinator_address, num_processes, process_id)
    elif cluster_detected(os.environ, tpu_device_files()):
        jax.distributed.initialize()


def validate(config, mode: str) -> None:
    """Every check that can fail before anything compiles, each with one sentence; a config with
    stages is checked stage by stage."""
    if mode not in MODES:
        raise ValueError(f"Unknown mode {mode!r}; choose one of {MODES}.")
    for stage_config, _ in stages.stage_runs(config, ""):
        loop.validate_config(stage_config, jax.device_count(), jax.process_count())
        methods.build(stage_config)  # checks the method and model fields; compiles nothing
        if mode == "train":
            for section in ("data", "mix_data"):
                if stage_config.get(section) is not None:
                    data.validate_data_config(stage_config[section],
                                              global_batch_size=stage_config.batch_size,
                                              process_count=jax.process_count())


def absolute_workdir(workdir: str) -> str:
    """A local path made absolute; a URL (gs://...) unchanged."""
    return workdir if "://" in workdir else os.path.abspath(workdir)


def write_config(config, workdir: epath.Path) -> None:
    if jax.process_index() == 0:
        workdir.mkdir(parents=True, exist_ok=True)
        (workdir / "config.json").write_text(config.to_json_best_effort(indent=2))


def run(config, workdir: str, mode: str, num_samples=None):
    """Records the config, then trains every stage in order (train/stages.py; one stage without
    config.stages) and returns the last loop.train result, or samples from the last stage's
    latest checkpoint and returns the path of the .npz. Call `validate` first. A local workdir
    is made absolute (orbax refuses relative checkpoint paths)."""
    workdir = absolute_workdir(workdir)
    write_config(config, epath.Path(workdir))
    runs = stages.stage_runs(config, workdir)
    if mode == "sample":
        stage_config, stage_workdir = runs[-1]
        return loop.sample_from_checkpoint(stage_config, stage_workdir,
                                           methods.build(stage_config),
                                           num_samples or stage_config.sample.num_samples)
    for stage_config, stage_workdir in runs:
        if stage_workdir != workdir:
            write_config(stage_config, epath.Path(stage_workdir))
        iterator = data.create_iterator(
            stage_config.data, global_batch_size=stage_config.batch_size,
            seed=stage_config.seed, process_index=jax.process_index(),
            process_count=jax.process_count(), mix_config=stage_config.get("mix_data"))
        try:
            result = loop.train(stage_config, stage_workdir, methods.build(stage_config),
                                iterator)
        finally:
            iterator.close()
        if result.preempted:
            break
    return result


class QuietCheckpointLogs(python_logging.Filter):
    """Drops orbax's per-checkpoint INFO lines (dozens per save); its warnings stay."""

    def filter(self, record):
        return record.levelno >= python_logging.WARNING or "/orbax/" not in record.pathname


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}.")
    logging.get_absl_handler().addFilter(QuietCheckpointLogs())
    initialize_distributed(_COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value)
    config_argument = flags.FLAGS["config"].serialize().partition("=")[2]
    workdir = _WORKDIR.value or default_workdir(config_argument)
    logging.info("jaxdiff %s: %d processes, %d devices, workdir %s.", _MODE.value,
                 jax.process_count(), jax.device_count(), workdir)
    try:
        validate(_CONFIG.value, _MODE.value)
    except ValueError as error:
        raise SystemExit(f"jaxdiff: {error}") from None
    result = run(_CONFIG.value, workdir, _MODE.value, _NUM_SAMPLES.value)
    if _MODE.value == "train" and result.preempted:
        logging.warning("Stopped by preemption; run the same command again to resume.")


if __name__ == "__main__":
    flags.mark_flag_as_required("config")
    app.run(main)
