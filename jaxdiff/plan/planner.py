"""The plan of one config on one target: the train step compiled at a per-chip batch (or the
largest that fits, `find_batch`), the sampler at the configured NFE, and the report.

Batch. A plan at b images per chip with A accumulation steps compiles the step of the global
batch b x chips x A (config.batch_size) in A microbatches; b defaults to the config's
batch_size / (grad_accum_steps x chips). find_batch compiles at 1 and 2 images per chip with
A = 1, extrapolates the peak linearly (peak(b) = fixed + b x per-image) to the largest b under
the HBM, then compiles there and one above to confirm (a few compiles, not a bisection of
many); the accumulation that reaches the config's global batch at that b is
ceil(batch_size / (b x chips)).

Step-time estimate. t = FLOPs per chip / (peak bf16 FLOP/s x utilisation), images/s = global
batch / t: an estimate from the FLOP count and a stated utilisation (default 0.4, typical of
convolution UNets), labelled as such; not a measurement.
"""

import copy
import dataclasses
import math
from typing import Optional

from jaxdiff.plan import compile as compile_lib
from jaxdiff.plan.targets import Target

DEFAULT_UTILISATION = 0.4
MAX_FIND_COMPILES = 8


@dataclasses.dataclass
class Plan:
    config_name: str
    target: Target
    per_chip_batch: int
    accum_steps: int
    state: dict                                  # per-chip params / ema / optimizer bytes
    step: compile_lib.CompiledPlan
    tried: list                                  # find_batch: (per-chip batch, fits, peak)
    sampler: Optional[compile_lib.CompiledPlan] = None
    sample_steps: int = 0

    @property
    def global_batch(self) -> int:
        return self.per_chip_batch * self.target.num_chips * self.accum_steps


def with_batch(config, target: Target, per_chip_batch: int, accum_steps: int):
    """A copy of config whose step takes per_chip_batch images per chip in accum_steps
    microbatches."""
    if per_chip_batch < 1 or accum_steps < 1:
        raise ValueError(f"The per-chip batch ({per_chip_batch}) and accumulation steps "
                         f"({accum_steps}) must be positive.")
    config = copy.deepcopy(config)
    with config.unlocked():
        config.batch_size = per_chip_batch * target.num_chips * accum_steps
        config.grad_accum_steps = accum_steps
    return config


def config_per_chip_batch(config, target: Target, accum_steps: int) -> int:
    """The config's global batch as images per chip per microbatch with accum_steps
    microbatches; one sentence when they do not divide."""
    per_step = accum_steps * target.num_chips
    if config.batch_size % per_step:
        raise ValueError(f"config.batch_size {config.batch_size} is not a multiple of "
                         f"accumulation steps x chips = {accum_steps} x {target.num_chips} on "
                         f"{target.spec}: give --per_chip_batch.")
    return config.batch_size // per_step


def compile_step(config, target: Target, devices: list, per_chip_batch: int,
                 accum_steps: int):
    """(stage, CompiledPlan) of the train step at that batch."""
    config = with_batch(config, target, per_chip_batch, accum_steps)
    stage = compile_lib.prepare_run(config, devices)
    traced = compile_lib.trace_train_step(config, stage)
    images = config.batch_size
    return stage, compile_lib.compile_traced(traced, target, "train step", images)


def find_batch(config, target: Target, devices: list, log=print):
    """(per-chip batch, stage, CompiledPlan, tried) of the largest per-chip batch whose step
    fits (module docstring); per-chip batch 0 when not even one image fits."""
    stages = {}

    def compile_at(batch):
        stages[batch], compiled = compile_step(config, target, devices, batch, 1)
        log(f"  {batch} image(s) per chip: "
            + (f"fits, peak {compiled.peak_bytes / 2**30:.2f} GiB" if compiled.fits else
               f"does not fit ({compiled.refusal})")
            + f" [{compiled.compile_seconds:.0f} s compile]")
        return compiled

    best, results = largest_fitting(compile_at, target.chip.hbm_bytes)
    tried = [(b, c.fits, c.peak_bytes) for b, c in sorted(results.items())]
    shown = best or min(results)
    return best, stages[shown], results[shown], tried


def largest_fitting(compile_at, hbm_bytes: int, max_compiles: int = MAX_FIND_COMPILES):
    """(largest fitting batch or 0, {batch: CompiledPlan}) from compile_at(batch): 1, then 2,
    then the linear extrapolation of the last two fitting peaks to hbm_bytes, kept between the
    largest fitting and the smallest refused batch, until they are neighbours."""
    results = {}
    for _ in range(max_compiles):
        fitting = sorted(b for b, c in results.items() if c.fits)
        refused = sorted(b for b, c in results.items() if not c.fits)
        best = fitting[-1] if fitting else 0
        ceiling = refused[0] if refused else None
        if ceiling is not None and ceiling <= best + 1:
            break
        if len(fitting) < 2:
            guess = best + 1
        else:
            low, high = (results[b].peak_bytes for b in fitting[-2:])
            slope = (high - low) / (fitting[-1] - fitting[-2])
            guess = (best + int((hbm_bytes - high) // slope)) if slope > 0 else 2 * best
            guess = max(best + 1, guess if ceiling is None else min(guess, ceiling - 1))
        results[guess] = compile_at(guess)
    fitting = [b for b, c in results.items() if c.fits]
    return (max(fitting) if fitting else 0), results


def accumulation_for(config, target: Target, per_chip_batch: int) -> int:
    """Accumulation steps that reach at least the config's global batch at that per-chip
    batch."""
    return max(1, math.ceil(config.batch_size / (per_chip_batch * target.num_chips)))


def plan_sampler(config, stage, target: Target):
    """The sampler for one sample per chip, compiled."""
    traced = compile_lib.trace_sampler(config, stage, target.num_chips)
    return compile_lib.compile_traced(traced, target, "sampler", target.num_chips)
