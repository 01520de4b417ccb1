"""Command-line entry point.

    python -m jaxdiff.main --config=configs/mdm.py[:preset] [--workdir=DIR]
        [--mode=train|sample|eval] [--config.a.b=value ...]
    --mode=eval [--checkpoints=latest|all] [--images=FOLDER_OR_NPZ]: sample-quality scores
        (train/evaluation.py, config.eval)
    --mode=convert --convert_input='/data/cc12m/{00000..01242}.tar' --convert_output=DIR:
        img2dataset / webdataset tars to caption shards, every process its share, resumable
        (data/shards.py)
    --mode=embed --embed_output=DIR: caption shards (data.name 'shards:DIR') with frozen T5
        embeddings added, every process its share, resumable (text/embed.py)
    --mode=sample [--prompt="a red seven" --prompt=... | --prompt_file=FILE]
        [--negative_prompt=TEXT] [--guidance_scale=W]: samples of a text-conditioned run, the
        prompts in turn (default config.text.prompts), guided away from the negative prompt
    --mode=plan --target=tpu:v5p:2x2x2|gpu:h100:8|... [--per_chip_batch=B] [--find_batch
        [--batch_tolerance=F]]:
        the train step and sampler compiled for that TPU slice or GPU mesh on this machine,
        with per-chip memory, FLOPs and the largest batch (jaxdiff/plan)

The workdir (local or gs://, default runs/<config file name>[_<preset>]) receives config.json
(the resolved config), checkpoints/, tensorboard/ and samples/. Everything that can fail
before compiling is checked first (train/prepare.py), each failure in one sentence.
Multi-process runs call jax.distributed.initialize: explicitly with --coordinator_address,
--num_processes and --process_id, or automatically on a TPU pod slice, under SLURM or Open MPI
with more than one task.
"""

import glob
import importlib.util
import logging as python_logging
import os

import jax
from absl import app, flags, logging
from etils import epath
from ml_collections import config_flags

from jaxdiff import data
from jaxdiff.data.shards import convert
from jaxdiff.plan import cli as plan_cli
from jaxdiff.text.config import batch_text
from jaxdiff.text.embed import embed_from_config
from jaxdiff.text.prompts import read_prompt_file
from jaxdiff.train import checkpoint, evaluation, loop, prepare

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Config file, optionally with a preset: configs/x.py:preset.",
    lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Run directory; default runs/<config name>.")
_MODE = flags.DEFINE_enum("mode", "train", prepare.MODES + ("convert", "embed", "plan"),
                          "Train, sample from the latest checkpoint, evaluate (score "
                          "checkpoints or images against the data), convert webdataset tars "
                          "to caption shards, or embed the captions of data.name 'shards:DIR' "
                          "with the T5 of config.text.t5_path.")
_CONVERT_INPUT = flags.DEFINE_string("convert_input", None,
                                     "Convert mode: the tar shards (braces and globs).")
_CONVERT_OUTPUT = flags.DEFINE_string("convert_output", None,
                                      "Convert mode: the directory of the caption shards.")
_EMBED_OUTPUT = flags.DEFINE_string("embed_output", None,
                                    "Embed mode: the directory of the embedded shards.")
_CHECKPOINTS = flags.DEFINE_enum("checkpoints", "latest", evaluation.WHICH,
                                 "Eval mode: score the latest checkpoint or every one.")
_IMAGES = flags.DEFINE_string("images", None, "Eval mode: score this folder or .npz of images "
                              "instead of a checkpoint's samples.")
_NUM_SAMPLES = flags.DEFINE_integer("num_samples", None,
                                    "Samples to write in sample mode; default "
                                    "config.sample.num_samples.")
_PROMPTS = flags.DEFINE_multi_string("prompt", None, "Sample mode: a prompt (repeat the flag "
                                     "for several); default config.text.prompts.")
_PROMPT_FILE = flags.DEFINE_string("prompt_file", None,
                                   "Sample mode: a text file of prompts, one per line.")
_NEGATIVE_PROMPT = flags.DEFINE_string("negative_prompt", None,
                                       "The text guidance steers away from; sets "
                                       "config.text.negative_prompt.")
_GUIDANCE_SCALE = flags.DEFINE_float("guidance_scale", None,
                                     "Classifier-free guidance w; sets "
                                     "config.method.guidance_scale.")
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


def run(stages: list, mode: str, num_samples=None, checkpoints="latest", images=None,
        prompts=None):
    """Trains every stage in order (train/stages.py; one stage without config.stages) and
    returns the last loop.train result; or samples from the last stage's latest checkpoint and
    returns the path of the .npz (`prompts` in turn for a text-conditioned run); or (eval)
    returns the scores of the last stage's checkpoints (`checkpoints`: latest or all) or of
    `images`. `stages` come from prepare.prepare, which
    checked and built them."""
    if mode == "eval":
        last = stages[-1]
        if images:
            return evaluation.score_images(last.config, last.workdir, images, last.run)
        return evaluation.evaluate_checkpoints(last.config, last.workdir, last.method,
                                               last.run, checkpoints,
                                               (last.data, last.mix_data))
    if mode == "sample":
        last = stages[-1]
        num_samples = num_samples or (len(prompts) if prompts else
                                      last.config.sample.num_samples)
        return loop.sample_from_checkpoint(last.config, last.workdir, last.method, num_samples,
                                           run=last.run, data_sources=(last.data, last.mix_data),
                                           prompts=prompts)
    for stage in stages:
        result = train_stage(stage)
        if result.preempted:
            break
    return result


def train_stage(stage) -> loop.TrainResult:
    """loop.train of one prepared stage, fed by the data it validated."""
    config = stage.config
    iterator = data.create_iterator(
        config.data, global_batch_size=config.batch_size, seed=config.seed,
        process_index=jax.process_index(), process_count=jax.process_count(),
        mix_config=config.get("mix_data"), validated=stage.data, mix_validated=stage.mix_data,
        text=batch_text(config.get("text")))
    try:
        return loop.train(config, stage.workdir, stage.method, iterator, run=stage.run,
                          data_sources=(stage.data, stage.mix_data))
    finally:
        iterator.close()


class QuietCheckpointLogs(python_logging.Filter):
    """Drops orbax's per-checkpoint INFO lines (dozens per save); its warnings stay."""

    def filter(self, record):
        return record.levelno >= python_logging.WARNING or "/orbax/" not in record.pathname


def sampling_flags(config, mode: str) -> list:
    """Applies --negative_prompt and --guidance_scale to the config; returns the prompts of
    --prompt and --prompt_file (sample mode only; empty when neither is given)."""
    if _NEGATIVE_PROMPT.value is not None:
        if "text" not in config:
            raise ValueError("--negative_prompt needs a config with a text section.")
        config.text.negative_prompt = _NEGATIVE_PROMPT.value
    if _GUIDANCE_SCALE.value is not None:
        if "guidance_scale" not in config.method:
            raise ValueError(f"--guidance_scale: method {config.method.name!r} has no "
                             "classifier-free guidance.")
        config.method.guidance_scale = _GUIDANCE_SCALE.value
    prompts = list(_PROMPTS.value or [])
    if _PROMPT_FILE.value:
        prompts += read_prompt_file(_PROMPT_FILE.value)
    if prompts and mode != "sample":
        raise ValueError("--prompt and --prompt_file are for --mode=sample (training grids take "
                         "config.text.prompts).")
    return prompts


def prepare_text_data(mode: str, config) -> None:
    """--mode=convert (data/shards.py) or --mode=embed (text/embed.py): this process's share
    of the shards, the others' done by the other processes of the job."""
    needed = ({"--convert_input": _CONVERT_INPUT.value, "--convert_output": _CONVERT_OUTPUT.value}
              if mode == "convert" else {"--embed_output": _EMBED_OUTPUT.value})
    missing = [name for name, value in needed.items() if not value]
    if missing:
        raise SystemExit(f"jaxdiff: --mode={mode} needs {' and '.join(missing)}.")
    try:
        if mode == "convert":
            convert(_CONVERT_INPUT.value, _CONVERT_OUTPUT.value, jax.process_index(),
                    jax.process_count())
        else:
            embed_from_config(config, _EMBED_OUTPUT.value)
    except ValueError as error:
        raise SystemExit(f"jaxdiff: {error}") from None


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}.")
    logging.get_absl_handler().addFilter(QuietCheckpointLogs())
    config_argument = flags.FLAGS["config"].serialize().partition("=")[2]
    if _MODE.value == "plan":  # compiles for abstract devices: no jax.distributed, no workdir
        try:
            plan_cli.run(_CONFIG.value, config_argument)
        except ValueError as error:
            raise SystemExit(f"jaxdiff: {error}") from None
        return
    initialize_distributed(_COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value)
    workdir = _WORKDIR.value or default_workdir(config_argument)
    logging.info("jaxdiff %s: %d processes, %d devices, workdir %s.", _MODE.value,
                 jax.process_count(), jax.device_count(), workdir)
    workdir = prepare.absolute_workdir(workdir)
    if _MODE.value in ("convert", "embed"):
        prepare_text_data(_MODE.value, _CONFIG.value)
        return
    try:
        prompts = sampling_flags(_CONFIG.value, _MODE.value)
        stages = prepare.prepare(_CONFIG.value, workdir, _MODE.value)
    except ValueError as error:
        raise SystemExit(f"jaxdiff: {error}") from None
    if stages[0].workdir != workdir:  # a staged run: the whole config beside the stage folders
        loop.write_config(_CONFIG.value, epath.Path(workdir))
    # sample and eval modes' input errors (prompts, weights, reference or image files) are
    # sentences too
    expected = (ValueError if _MODE.value in ("eval", "sample")
                else checkpoint.IncompatibleCheckpoint)
    try:
        result = run(stages, _MODE.value, _NUM_SAMPLES.value, _CHECKPOINTS.value,
                     _IMAGES.value, prompts)
    except expected as error:
        raise SystemExit(f"jaxdiff: {error}") from None
    if _MODE.value == "train" and result.preempted:
        logging.warning("Stopped by preemption; run the same command again to resume.")


if __name__ == "__main__":
    flags.mark_flag_as_required("config")
    app.run(main)
