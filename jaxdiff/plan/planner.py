"""The plan of one config on one target: the train step compiled at a per-chip batch (or the
largest that fits, `find_batch`), the sampler at the configured NFE, and the report.

Batch. A plan at b images per chip with A accumulation steps compiles the step of the global
batch b x chips x A (config.batch_size) in A microbatches; b defaults to the config's
batch_size / (grad_accum_steps x chips). find_batch (largest_fitting) looks for the largest b
whose step fits with A = 1, from compiles alone:
  - it starts at the config's per-chip batch (or --per_chip_batch), a realistic size: at 1 or
    2 images the peak is mostly fixed buffers and tile padding, and a line through those two
    points predicted 884 images of DDPM CIFAR-10 at 95 GiB per v5p chip where 884 took 19.8;
  - from one known peak it guesses in proportion, b x HBM / peak(b), which for a peak of the
    form fixed + b x per-image never passes the answer when b fits;
  - from two or more it draws the line through the known peaks nearest the HBM (a refused
    TPU program's peak is the compiler's figure of what it needed, plus its arguments where
    that figure counts only temporaries; compile.needed_bytes)
    and takes the batch where the line meets the HBM, kept strictly between the largest
    fitting and the smallest refused batch; when two compiles have not halved the bracket
    the next one halves it instead, so a curve that is not a line still converges (regula
    falsi with a bisection safeguard);
  - it stops when the smallest refused batch is the largest fitting one plus 1 (or, with
    --batch_tolerance=f, at most f x the largest fitting batch above it, which saves the
    last few compiles of a large answer), or after MAX_FIND_COMPILES compiles; the report
    shows the bracket it reached.
The accumulation that reaches the config's global batch at the found b is
ceil(batch_size / (b x chips)). XLA's peak is not exactly monotone in b (layouts pad batch
dimensions to tiles, and the scheduler's choices change with sizes), so "largest" is the
largest of the batches compiled, with its refused neighbour as the evidence.

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
MAX_FIND_COMPILES = 10


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


def search_start(config, target: Target) -> int:
    """Where find_batch starts: the config's global batch per chip (in one microbatch), at
    least 1."""
    return max(1, config.batch_size // target.num_chips)


def compile_step(config, target: Target, devices: list, per_chip_batch: int,
                 accum_steps: int):
    """(stage, CompiledPlan) of the train step at that batch."""
    config = with_batch(config, target, per_chip_batch, accum_steps)
    stage = compile_lib.prepare_run(config, devices)
    traced = compile_lib.trace_train_step(config, stage)
    images = config.batch_size
    state = compile_lib.shard_bytes(stage.run.abstract_state)
    return stage, compile_lib.compile_traced(traced, target, "train step", images, state)


def print_now(line: str) -> None:
    print(line, flush=True)


def find_batch(config, target: Target, devices: list, start: int, tolerance: float = 0.0,
               log=print_now):
    """(per-chip batch, stage, CompiledPlan, tried) of the largest per-chip batch whose step
    fits (module docstring), searched from `start` to within `tolerance` (largest_fitting);
    per-chip batch 0 when not even one image fits. tried lists (per-chip batch, fits, peak or
    needed bytes) of every compile."""
    stages = {}

    def compile_at(batch):
        stages[batch], compiled = compile_step(config, target, devices, batch, 1)
        log(f"  {batch} image(s) per chip: "
            + (f"fits, peak {compiled.peak_bytes / 2**30:.2f} GiB" if compiled.fits else
               f"does not fit ({compiled.refusal})")
            + f" [{compiled.compile_seconds:.0f} s compile]")
        return compiled

    best, results = largest_fitting(compile_at, target.chip.hbm_bytes, start, tolerance)
    tried = [(b, c.fits, c.search_bytes) for b, c in sorted(results.items())]
    shown = best or min(results)
    return best, stages[shown], results[shown], tried


def largest_fitting(compile_at, hbm_bytes: int, start: int = 1, tolerance: float = 0.0,
                    max_compiles: int = MAX_FIND_COMPILES):
    """(largest fitting batch or 0, {batch: CompiledPlan}) from compile_at(batch), searched
    from `start` by the guesses of the module docstring, until the smallest refused batch is
    at most max(1, tolerance x the largest fitting one) above it."""
    results, widths = {}, []  # widths: the bracket's after each compile since the first refusal
    guess = max(1, start)
    for _ in range(max_compiles):
        results[guess] = compile_at(guess)
        best, ceiling = bracket_of(results)
        if ceiling is not None:
            if ceiling - best <= max(1, tolerance * best):
                break
            widths.append(ceiling - best)
        halve = len(widths) >= 3 and widths[-1] > widths[-3] / 2
        guess = next_guess(results, hbm_bytes, best, ceiling, halve)
    return bracket_of(results)[0], results


def bracket(tries) -> tuple:
    """(largest fitting batch or 0, smallest refused batch or None) of (batch, fits) pairs."""
    tries = list(tries)
    return (max((b for b, fits in tries if fits), default=0),
            min((b for b, fits in tries if not fits), default=None))


def bracket_of(results: dict) -> tuple:
    """bracket() of {batch: CompiledPlan}."""
    return bracket((b, c.fits) for b, c in results.items())


def next_guess(results: dict, hbm_bytes: int, best: int, ceiling, halve: bool) -> int:
    """The next batch to compile: on the line through the known peaks nearest the HBM, or the
    bracket's midpoint (module docstring); strictly between best and ceiling."""
    if ceiling is not None and halve:
        return (best + ceiling) // 2
    known = sorted((b, c.fits, c.search_bytes) for b, c in results.items() if c.search_bytes)
    below = [(b, peak) for b, fits, peak in known if fits]
    above = [(b, peak) for b, fits, peak in known if not fits]
    nearest = (below[-1:] + above[:1]) if below and above else (below[-2:] or above[:2])
    if len(nearest) == 2 and nearest[1][1] > nearest[0][1]:
        (b0, p0), (b1, p1) = nearest
        line = b0 + (hbm_bytes - p0) * (b1 - b0) / (p1 - p0)
    elif nearest:
        (b0, p0), = nearest[-1:]
        line = b0 * hbm_bytes / p0
    else:  # only refusals without a figure
        line = best + 1 if best else min(results) // 2
    guess = max(best + 1, int(line))
    return guess if ceiling is None else min(guess, ceiling - 1)


def accumulation_for(config, target: Target, per_chip_batch: int) -> int:
    """Accumulation steps that reach at least the config's global batch at that per-chip
    batch."""
    return max(1, math.ceil(config.batch_size / (per_chip_batch * target.num_chips)))


def plan_sampler(config, stage, target: Target):
    """The sampler for one sample per chip, compiled."""
    traced = compile_lib.trace_sampler(config, stage, target.num_chips)
    return compile_lib.compile_traced(traced, target, "sampler", target.num_chips)
