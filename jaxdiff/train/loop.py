"""The train loop, written once for every method (big_vision / vdm style):

    host batch (uint8, process-local) -> global jax.Array -> jitted step -> every k steps:
    progress line and metrics (process 0), checkpoint (async), sample grid from the EMA params.

Config fields read here (besides `optimizer`, see state.py, and `mesh` / `sharding`, see
sharding.py):
    seed                    root key of the run (init and per-step keys)
    num_steps               total train steps (batches)
    batch_size              global batch size
    grad_accum_steps        microbatches per step (batch_size / grad_accum_steps per microbatch)
    ema_decay               EMA decay of the parameters used for sampling
    log_every               steps between progress lines / TensorBoard scalars
    max_nonfinite_streak    stop at the first log step at which the last max_nonfinite_streak
                            or more updates were all skipped (non-finite loss or gradient); the
                            streak is read with the logged metrics, so no step waits for the host
    init_from               "" or a workdir whose latest checkpoint's params start this run
    checkpoint.every, checkpoint.keep, checkpoint.async_save
    sample.every, sample.num_samples, sample.seed   (sample.every = 0: no sampling in training)
    eval.*                  sample-quality evaluation every eval.every steps (metrics/evaluate.py)
    model, method           must match a checkpoint that is resumed (checkpoint.py)
"""

import dataclasses
import datetime
import functools
import time
from typing import Any, Iterator, Optional, Sequence

import flax.linen as nn
import jax
import numpy as np
from absl import logging
from clu import parameter_overview
from etils import epath

from jaxdiff import data
from jaxdiff.methods.base import Method
from jaxdiff.metrics import evaluate
from jaxdiff.text.config import check_text_config
from jaxdiff.train import checkpoint as checkpoint_lib
from jaxdiff.train import metrics as metrics_lib
from jaxdiff.train import sampling
from jaxdiff.train import sharding as sharding_lib
from jaxdiff.train import state as state_lib
from jaxdiff.train import step as step_lib


class NonFiniteError(RuntimeError):
    """Raised when too many consecutive updates had a non-finite loss or gradient."""


@dataclasses.dataclass
class TrainResult:
    state: state_lib.TrainState
    logged: list  # [{"step": int, **scalar metrics}] at every log step (all processes)
    preempted: bool
    evaluations: list  # [{"step": int, **evaluate results}] of this call's evaluations


def validate_config(config, num_devices: int, process_count: int) -> None:
    """Fails with one sentence on a config that cannot run on this topology."""
    mesh_shape = sharding_lib.resolve_mesh_shape(dict(config.mesh), num_devices)
    sharding_lib.rules_from_config(config.sharding.rules)
    state_lib.check_optimizer_config(config.optimizer)
    state_lib.check_ema_decay(config.ema_decay)
    evaluate.check_eval_config(config.eval, config.data, needs_weights=config.eval.every > 0)
    if config.get("text") is not None:
        check_text_config(config.text)
        check_prompt_encoder(config)
    batch_ways = num_devices // mesh_shape[sharding_lib.MESH_AXES.index("tensor")]
    if config.batch_size <= 0 or config.batch_size % (config.grad_accum_steps * batch_ways):
        raise ValueError(f"batch_size {config.batch_size} must be a positive multiple of "
                         f"grad_accum_steps x data x fsdp devices = {config.grad_accum_steps} x "
                         f"{batch_ways}.")
    if config.batch_size % process_count:
        raise ValueError(f"batch_size {config.batch_size} is not divisible by the "
                         f"{process_count} processes.")
    for name in ("num_steps", "log_every", "checkpoint.every", "checkpoint.keep",
                 "max_nonfinite_streak"):
        value = functools.reduce(lambda section, part: section[part], name.split("."), config)
        if value <= 0:
            raise ValueError(f"config.{name} must be positive, got {value}.")


def check_prompt_encoder(config) -> None:
    """A run on precomputed embeddings that samples prompts (grids with non-empty
    text.prompts) or evaluates (from the data's captions) needs the T5 that embeds them."""
    text = config.text
    prompts = config.sample.every > 0 and any(prompt.strip() for prompt in text.prompts)
    if text.encoder == "embeddings" and not text.t5_path and (prompts or config.eval.every > 0):
        raise ValueError("config.text.t5_path must name the T5 checkpoint that made the "
                         "embeddings: the sample grids' prompts and the evaluation's captions "
                         "are embedded with it.")


@dataclasses.dataclass
class Setup:
    """What training and sampling share: mesh, optimizer, shardings, the abstract state."""

    mesh: Any
    tx: Any
    schedule: Any
    state_shardings: Any
    abstract_state: Any   # ShapeDtypeStructs with target shardings (restore target)
    meta: dict            # checkpoint metadata of this run


def setup(config, method: Method, devices: Optional[Sequence[Any]] = None) -> Setup:
    """Mesh (over `devices`, default all), optimizer and the sharded abstract train state,
    computed without allocating."""
    mesh = sharding_lib.create_mesh(dict(config.mesh), devices)
    rules = sharding_lib.rules_from_config(config.sharding.rules)
    init_key = jax.random.fold_in(jax.random.PRNGKey(config.seed), 0)
    abstract_variables = abstract_init(config, method, init_key)
    params_sharding = sharding_lib.param_shardings(abstract_variables["params"], mesh, rules)
    abstract_params = nn.meta.unbox(abstract_variables["params"])
    schedule = state_lib.learning_rate_schedule(config.optimizer, config.num_steps)
    tx = state_lib.create_optimizer(config.optimizer, config.num_steps)
    replicated = sharding_lib.replicated(mesh)
    state_shardings = state_lib.TrainState(
        step=replicated, params=params_sharding, ema_params=params_sharding,
        opt_state=sharding_lib.opt_state_shardings(tx, abstract_params, params_sharding, mesh),
        rng=replicated, nonfinite_streak=replicated, nonfinite_total=replicated)
    abstract_state = jax.eval_shape(
        lambda p: state_lib.create_train_state(p, tx, init_key), abstract_params)
    return Setup(mesh=mesh, tx=tx, schedule=schedule, state_shardings=state_shardings,
                 abstract_state=checkpoint_lib.with_shardings(abstract_state, state_shardings),
                 meta=checkpoint_lib.run_metadata(config.to_json_best_effort(),
                                                   abstract_params))


def abstract_init(config, method: Method, init_key):
    """The model's variables as ShapeDtypeStructs (jax.eval_shape: the network traces an image
    of the configured side, allocating nothing); a network that refuses that side is one
    sentence naming data.resolution."""
    try:
        return jax.eval_shape(method.init_fn, init_key)
    except ValueError as error:
        raise ValueError(f"The {type(method.model).__name__} network does not take images of "
                         f"data.resolution {config.data.resolution}: {error}") from None


def initial_state(config, method: Method, run: Setup) -> state_lib.TrainState:
    """A fresh state, initialised directly with its shardings (the root key split into an init
    key, fold_in(root, 0), and the train key, fold_in(root, 1))."""
    root = jax.random.PRNGKey(config.seed)

    def create():
        params = nn.meta.unbox(method.init_fn(jax.random.fold_in(root, 0))["params"])
        return state_lib.create_train_state(params, run.tx, jax.random.fold_in(root, 1))

    return jax.jit(create, out_shardings=run.state_shardings)()


def to_global_batch(local_batch: dict, sharding) -> dict:
    """Process-local numpy rows -> one global jax.Array per leaf, split as `sharding`."""
    return jax.tree.map(
        lambda x: jax.make_array_from_process_local_data(sharding, np.asarray(x)), local_batch)


def format_progress(step: int, num_steps: int, loss: float, steps_per_s: float,
                    batch_size: int) -> str:
    eta = datetime.timedelta(seconds=round((num_steps - step) / max(steps_per_s, 1e-9)))
    return (f"step {step}/{num_steps}  loss {loss:.5f}  {steps_per_s:.2f} steps/s  "
            f"{steps_per_s * batch_size:.1f} images/s  ETA {eta}")


def with_reference_images(config, method: Method, validated=None,
                          mix_validated=None) -> Method:
    """The method ready to sample: a method whose sampler starts from training images
    (Method.reference_images > 0, cold diffusion) gets them read from config.data (and
    config.mix_data; `validated` / `mix_validated` as in data.create_iterator) with the run's
    seed, the same on every process; any other method is returned as it is."""
    if not method.reference_images:
        return method
    images = data.read_reference_images(config.data, method.reference_images, seed=config.seed,
                                        mix_config=config.get("mix_data"), validated=validated,
                                        mix_validated=mix_validated)
    return method.attach_reference(images, jax.random.PRNGKey(config.seed))


class IntervalLog:
    """Progress lines and TensorBoard scalars every log_every steps, with the images/s of the
    train steps since the last log (time spent sampling is not counted)."""

    def __init__(self, config, writer):
        self.config, self.writer, self.logged = config, writer, []
        self.start, self.steps = time.perf_counter(), 0

    def step(self, step: int, metrics: dict) -> None:
        self.steps += 1
        config = self.config
        if step % config.log_every and step != config.num_steps:
            return
        scalars = {k: float(v) for k, v in jax.device_get(metrics).items()}
        check_nonfinite(int(scalars["nonfinite_streak"]), step, config)
        steps_per_s = self.steps / (time.perf_counter() - self.start)
        scalars.update(steps_per_s=steps_per_s, images_per_s=steps_per_s * config.batch_size)
        self.writer.write_scalars(step, scalars)
        if jax.process_index() == 0:
            logging.info(format_progress(step, config.num_steps, scalars["loss"], steps_per_s,
                                         config.batch_size))
        self.logged.append({"step": step, **scalars})
        self.start, self.steps = time.perf_counter(), 0

    def pause(self, seconds: float) -> None:
        self.start += seconds


def train(config, workdir: str, method: Method, iterator: Iterator[dict],
          devices: Optional[Sequence[Any]] = None, run: Optional[Setup] = None,
          data_sources: tuple = (None, None)) -> TrainResult:
    """Trains `method` on batches from `iterator` (process-local {"image": uint8, "label"}; a
    grain iterator whose state is checkpointed) on `devices` (default all), resuming from
    `<workdir>/checkpoints`, and records the config in <workdir>/config.json once the
    checkpoint there (if any) is known to fit. `run` is setup(config, method, devices) when
    train/prepare.py built it (having validated the config); data_sources are what
    data.validate_data_config returned for config.data and config.mix_data, if known."""
    if run is None:
        validate_config(config, len(devices or jax.devices()), jax.process_count())
        run = setup(config, method, devices)
    workdir = epath.Path(workdir)
    checkpointer = checkpoint_lib.Checkpointer(str(workdir / "checkpoints"),
                                               keep=config.checkpoint.keep,
                                               async_save=config.checkpoint.async_save)
    state = restore_or_initialize(config, method, run, checkpointer, iterator)
    write_config(config, workdir)
    writer = metrics_lib.create_writer(str(workdir / "tensorboard"), jax.process_index())
    if int(state.step) == 0:
        log_parameters(state.params, writer)
    train_step = step_lib.jit_train_step(
        step_lib.make_train_step(method, run.tx, run.schedule,
                                 accum_steps=config.grad_accum_steps,
                                 ema_decay=config.ema_decay, mesh=run.mesh),
        run.state_shardings, run.mesh)
    sampling_method = with_reference_images(config, method, *data_sources)
    grids = SampleGrids(config, sampling_method, run.mesh, workdir,
                        writer) if config.sample.every else None
    batch_sharding = sharding_lib.batch_sharding(run.mesh)
    watch = checkpoint_lib.PreemptionWatch(checkpointer.manager)
    log, preempted, evaluations = IntervalLog(config, writer), False, []
    # made after the log: its set-up time (in the first eval_seconds) is paused like the rest
    evaluator = make_evaluator(config, sampling_method, run.mesh, grids)
    try:
        for step in range(int(state.step) + 1, config.num_steps + 1):
            state, metrics = train_step(state, to_global_batch(next(iterator), batch_sharding))
            log.step(step, metrics)
            preempted = watch.reached(step)
            if preempted or step % config.checkpoint.every == 0 or step == config.num_steps:
                checkpointer.save(step, state, iterator, run.meta)
            if preempted:
                logging.warning("Preemption at step %d: checkpoint saved, stopping.", step)
                break
            if grids is not None and step % config.sample.every == 0:
                log.pause(grids.write(step, state.ema_params))
            if evaluator is not None and step % config.eval.every == 0:
                evaluations.append({"step": step, **evaluator.evaluate(state.ema_params)})
                evaluate.record(workdir, step, evaluations[-1], writer)
                log.pause(evaluations[-1]["eval_seconds"])
    finally:
        checkpointer.wait()
        checkpointer.close()
        watch.close()
        writer.close()
    return TrainResult(state=state, logged=log.logged, preempted=preempted,
                       evaluations=evaluations)


def make_evaluator(config, method: Method, mesh, grids) -> Optional[evaluate.Evaluator]:
    """The in-loop evaluator (None when eval.every is 0 or above num_steps: the run never
    evaluates); it reuses the sample grids' compiled sampler when that draws eval.batch_size
    samples of a model without text."""
    if not 0 < config.eval.every <= config.num_steps:
        return None
    shared = (grids.sampler if grids is not None and method.text is None
              and config.eval.batch_size == config.sample.num_samples else None)
    return evaluate.Evaluator(config, method, mesh, sampler=shared)


def write_config(config, workdir: epath.Path) -> None:
    """<workdir>/config.json: the resolved config (process 0)."""
    if jax.process_index() == 0:
        workdir.mkdir(parents=True, exist_ok=True)
        (workdir / "config.json").write_text(config.to_json_best_effort(indent=2))


def log_parameters(params, writer) -> None:
    """The parameter overview, in the log and TensorBoard (process 0)."""
    if jax.process_index() == 0:
        overview = parameter_overview.get_parameter_overview(params)
        logging.info("Parameters:\n%s", overview)
        writer.write_text(0, "parameters", overview)


class SampleGrids:
    """EMA sample grids in training: <workdir>/samples/step_<step>.png (with its prompts in
    step_<step>.txt for a text-conditioned network) and TensorBoard."""

    def __init__(self, config, method: Method, mesh, workdir: epath.Path, writer):
        num_samples = config.sample.num_samples
        self.prompts = sampling.sample_prompts(config, method, num_samples)
        self.sampler = sampling.make_sampler(method, mesh, num_samples,
                                             sampling.sampler_inputs(config, method,
                                                                     num_samples))
        self.key = jax.random.PRNGKey(config.sample.seed)
        self.columns = sampling.grid_columns(method, num_samples, self.prompts)
        self.workdir, self.writer = workdir, writer

    def write(self, step: int, ema_params) -> float:
        """Samples and writes the grid of `step`; returns the seconds it took."""
        start = time.perf_counter()
        samples = sampling.highest_resolution(self.sampler(ema_params, self.key))
        if jax.process_index() == 0:
            grid = sampling.write_grid(self.workdir / "samples" / f"step_{step:08d}.png",
                                       samples, self.columns, self.prompts)
            self.writer.write_images(step, {"samples": grid})
            if self.prompts is not None:
                self.writer.write_text(step, "sample_prompts", "\n".join(self.prompts))
        return time.perf_counter() - start


def check_nonfinite(streak: int, step: int, config) -> None:
    if streak >= config.max_nonfinite_streak:
        raise NonFiniteError(
            f"Stopping at step {step}: the last {streak} updates had a non-finite loss or "
            f"gradient (max_nonfinite_streak = {config.max_nonfinite_streak}); lower the "
            "learning rate or resume from an earlier checkpoint.")


def restore_or_initialize(config, method: Method, run: Setup,
                          checkpointer: checkpoint_lib.Checkpointer,
                          iterator: Optional[Any]) -> state_lib.TrainState:
    """Resume from the workdir's latest checkpoint (state and data position) if there is one,
    else start fresh, with the parameters of `config.init_from`'s latest checkpoint if set."""
    latest = checkpointer.latest_step()
    if latest is not None:
        checkpointer.check_compatible(latest, run.meta)
        logging.info("Resuming from step %d in %s.", latest, checkpointer.directory)
        return checkpointer.restore(latest, run.abstract_state, iterator)
    initial_params = (checkpoint_lib.read_init_params(config.init_from, run.meta,
                                                      run.abstract_state.params)
                      if config.init_from else None)
    state = initial_state(config, method, run)
    if initial_params is not None:
        state = state.replace(params=initial_params[0], ema_params=initial_params[1])
    return state


def checkpoint_ema_params(workdir, run: Setup, which: str = "latest"):
    """(step, EMA parameters) of the latest checkpoint in <workdir>/checkpoints (which =
    "latest") or of each one in step order ("all"), each checked to be compatible with the
    run's setup; IncompatibleCheckpoint when there is none."""
    directory = epath.Path(workdir) / "checkpoints"
    checkpointer = checkpoint_lib.Checkpointer(str(directory), keep=1, read_only=True)
    steps = sorted(checkpointer.manager.all_steps())
    if not steps:
        raise checkpoint_lib.IncompatibleCheckpoint(
            f"There is no checkpoint to read in {directory}.")
    try:
        for step in steps if which == "all" else steps[-1:]:
            checkpointer.check_compatible(step, run.meta)
            yield step, checkpointer.restore(step, run.abstract_state).ema_params
    finally:
        checkpointer.close()


def latest_ema_params(workdir, run: Setup):
    """(step, EMA parameters) of the latest checkpoint (checkpoint_ema_params), its reader
    closed before returning."""
    checkpoints = checkpoint_ema_params(workdir, run)
    try:
        return next(checkpoints)
    finally:
        checkpoints.close()


def sample_from_checkpoint(config, workdir: str, method: Method, num_samples: int,
                           devices: Optional[Sequence[Any]] = None,
                           run: Optional[Setup] = None,
                           data_sources: tuple = (None, None),
                           prompts: Optional[list] = None) -> epath.Path:
    """`--mode=sample`: samples from the EMA parameters of the workdir's latest checkpoint
    (seed config.sample.seed), written by process 0 to <workdir>/samples; returns the .npz
    path. `run` and `data_sources` as in train; `prompts` (text-conditioned networks) in turn,
    default config.text.prompts."""
    workdir = epath.Path(workdir)
    run = run or setup(config, method, devices)
    step, ema_params = latest_ema_params(workdir, run)
    method = with_reference_images(config, method, *data_sources)
    prompts = sampling.sample_prompts(config, method, num_samples, prompts)
    sampler = sampling.make_sampler(method, run.mesh, num_samples,
                                    sampling.sampler_inputs(config, method, num_samples, prompts))
    samples = sampling.highest_resolution(
        sampler(ema_params, jax.random.PRNGKey(config.sample.seed)))
    if jax.process_index() == 0:
        sampling.save_samples(workdir / "samples", step, samples,
                              sampling.sample_labels(method, num_samples),
                              sampling.grid_columns(method, num_samples, prompts), prompts)
    return sampling.sample_file(workdir / "samples", step, ".npz")
