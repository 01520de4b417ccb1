"""Flags and entry of the planner: `python -m jaxdiff.plan` and `python -m jaxdiff.main
--mode=plan` (jaxdiff/plan/__init__.py has the usage)."""

import json
import os

import jax
from absl import flags

from jaxdiff.plan import compile as compile_lib
from jaxdiff.plan import planner, report
from jaxdiff.plan.targets import parse_target

_TARGET = flags.DEFINE_string("target", "tpu:v5p:2x2x2",
                              "Plan mode: tpu:<chip>:<topology>[*slices] or "
                              "gpu:<chip>:<gpus>[x<hosts>] (jaxdiff/plan/targets.py).")
_PER_CHIP_BATCH = flags.DEFINE_integer("per_chip_batch", None,
                                       "Plan mode: images per chip per microbatch (default: "
                                       "the config's batch_size / (grad_accum_steps x chips)); "
                                       "with --find_batch, where the search starts.")
_GRAD_ACCUM = flags.DEFINE_integer("grad_accum", None, "Plan mode: accumulation steps "
                                   "(default: the config's, or with --find_batch what reaches "
                                   "its global batch).")
_FIND_BATCH = flags.DEFINE_bool("find_batch", False,
                                "Plan mode: find the largest per-chip batch that fits.")
_BATCH_TOLERANCE = flags.DEFINE_float("batch_tolerance", 0.0,
                                      "Plan mode, --find_batch: stop when the smallest refused "
                                      "batch is at most this fraction of the largest fitting "
                                      "one above it (0: the exact largest).")
_SAMPLER = flags.DEFINE_bool("plan_sampler", True,
                             "Plan mode: also compile the sampler (one sample per chip).")
_UTILISATION = flags.DEFINE_float("utilisation", planner.DEFAULT_UTILISATION,
                                  "Plan mode: fraction of peak FLOP/s for the step-time "
                                  "estimate.")
_OUTPUT = flags.DEFINE_string("plan_output", None, "Plan mode: also write the plan as JSON here.")


def use_host_backend() -> None:
    """Plans compile for abstract devices; the process's own backend stays the CPU, so that
    libtpu or the CUDA plugin installed for planning never claims a local accelerator, and
    libtpu may be loaded by several planning processes at once (it otherwise locks
    /tmp/libtpu_lockfile for one)."""
    os.environ.setdefault("ALLOW_MULTIPLE_LIBTPU_LOAD", "1")
    jax.config.update("jax_platforms", "cpu")


def run(config, config_name: str) -> planner.Plan:
    """Plan `config` on --target (planner.py) and print the report; ValueError in one sentence
    for a bad flag or config."""
    use_host_backend()
    if not 0 < _UTILISATION.value <= 1:
        raise ValueError(f"--utilisation must be in (0, 1], got {_UTILISATION.value}.")
    if not 0 <= _BATCH_TOLERANCE.value < 1:
        raise ValueError(f"--batch_tolerance must be in [0, 1), got {_BATCH_TOLERANCE.value}.")
    target = parse_target(_TARGET.value)
    devices = target.devices()
    tried = []
    if _FIND_BATCH.value:
        print(f"finding the largest per-chip batch on {target.spec}:", flush=True)
        start = _PER_CHIP_BATCH.value or planner.search_start(config, target)
        batch, stage, compiled, tried = planner.find_batch(config, target, devices, start,
                                                           _BATCH_TOLERANCE.value)
        accum = _GRAD_ACCUM.value or planner.accumulation_for(config, target, max(batch, 1))
    else:
        accum = _GRAD_ACCUM.value or config.grad_accum_steps
        batch = _PER_CHIP_BATCH.value or planner.config_per_chip_batch(config, target, accum)
        stage, compiled = planner.compile_step(config, target, devices, batch, accum)
    plan = planner.Plan(config_name, target, batch, accum,
                        compile_lib.state_bytes(stage.run.abstract_state), compiled, tried)
    if _SAMPLER.value:
        plan.sampler = planner.plan_sampler(stage.config, stage, target)
        plan.sample_steps = int(stage.config.method.get("sample_steps", 0))
    print(report.format_plan(plan, stage.config, _UTILISATION.value), flush=True)
    if _OUTPUT.value:
        with open(_OUTPUT.value, "w") as file:
            json.dump(report.plan_record(plan, _UTILISATION.value), file, indent=1)
    return plan
