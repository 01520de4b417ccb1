"""The plan as text (the command's output) and as a JSON record (--plan_output, the README
table's source)."""

import sys

from jaxdiff.plan import compile as compile_lib
from jaxdiff.plan import planner

GIB = 2 ** 30


def gib(value) -> str:
    """Bytes in GiB (MiB below 1 GiB)."""
    if value is None:
        return "-"
    return f"{value / GIB:.2f} GiB" if value >= GIB else f"{value / 2**20:.1f} MiB"


def flop(value: float) -> str:
    """FLOPs in the largest unit that keeps the number at least 1 (TFLOP, GFLOP, MFLOP)."""
    for scale, unit in ((1e12, "TFLOP"), (1e9, "GFLOP"), (1e6, "MFLOP")):
        if value >= scale:
            return f"{value / scale:.2f} {unit}"
    return f"{value:.0f} FLOP"


def step_seconds(flops_per_chip: float, peak_flops: float, utilisation: float) -> float:
    """The estimate t = FLOPs per chip / (peak x utilisation) (planner docstring)."""
    return flops_per_chip / (peak_flops * utilisation)


def largest_found(tried: list) -> str:
    """The batch search's answer from its (batch, fits, bytes) tries: "N" when N + 1 was
    refused, "N (M refused)" when it stopped at a tolerance or its compile budget, ">= N" when
    nothing was refused."""
    best, refused = planner.bracket((b, fits) for b, fits, _ in tried)
    if refused is None:
        return f">= {best}"
    return str(best) if refused == best + 1 else f"{best} ({refused} refused)"


def describe_model(config) -> str:
    model = config.model
    return (f"{model.get('name', '?')} preset {model.get('preset', '?')}, compute "
            f"{model.get('dtype', 'float32')}, remat {model.get('remat', False)}, attention "
            f"{model.get('attention_implementation', None) or 'xla'}, optimizer moments "
            f"{config.optimizer.get('moment_dtype', 'float32')}")


def program_lines(compiled: compile_lib.CompiledPlan, plan: planner.Plan,
                  utilisation: float) -> list:
    target, chips = plan.target, plan.target.num_chips
    lines = []
    if compiled.fits:
        memory = compiled.memory
        lines.append(f"  fits: peak {gib(memory['peak'])} of {gib(target.chip.hbm_bytes)} per "
                     f"chip ({100 * memory['peak'] / target.chip.hbm_bytes:.0f} %): arguments "
                     f"{gib(memory['argument'])}, outputs {gib(memory['output'])}, aliased "
                     f"(donated) {gib(memory['alias'])}, temporaries {gib(memory['temp'])}")
    else:
        lines.append(f"  DOES NOT FIT: {compiled.refusal}")
    total = compiled.flops.flops
    lines.append(f"  FLOPs (matmuls and convolutions, loops counted per iteration): "
                 f"{flop(total)} per {compiled.program}, {flop(total / compiled.images)} per "
                 "image")
    lines.append(f"  independent count, XLA's cost analysis of the program as written (all ops, "
                 f"loops per iteration): {flop(compiled.corrected_hlo_flops)}, "
                 f"{compiled.corrected_hlo_flops / total:.3f} x the count above")
    corrected = compiled.corrected_xla_flops(chips)
    if corrected is not None:
        lines.append(f"  compiled program's cost analysis: {flop(compiled.xla_flops)} per chip "
                     f"with loop bodies counted once, {flop(corrected)} on all chips with every "
                     "iteration (after XLA's optimisations)")
    if compiled.flops.counted_once:
        lines.append(f"  note: {compiled.flops.counted_once} while loop(s) of unknown trip count "
                     "counted once")
    seconds = step_seconds(total / chips, target.chip.peak_flops, utilisation)
    lines.append(f"  estimate (not a measurement): {seconds:.4g} s per {compiled.program} at "
                 f"{utilisation:.0%} of {target.chip.peak_flops / 1e12:.0f} TFLOP/s per chip, "
                 f"{compiled.images / seconds:.1f} images/s")
    lines.append(f"  compiled in {compiled.compile_seconds:.0f} s")
    return lines


def format_plan(plan: planner.Plan, config, utilisation: float) -> str:
    target = plan.target
    lines = [f"plan: {plan.config_name} on {target.spec} ({target.num_chips} x "
             f"{target.chip.name}, {gib(target.chip.hbm_bytes)} HBM each)",
             f"model: {describe_model(config)}",
             f"mesh: {dict(config.mesh)} over {target.num_chips} chips"]
    for batch, fits, peak in plan.tried:
        lines.append(f"  tried {batch} image(s) per chip: "
                     + (f"fits, peak {gib(peak)}" if fits else "does not fit"
                        + (f", needs {gib(peak)}" if peak else "")))
    if plan.tried:
        lines.append(f"largest per-chip batch found: {largest_found(plan.tried)}")
    if plan.per_chip_batch == 0:
        lines.append("batch: not even 1 image per chip fits")
    else:
        lines.append(f"batch: {plan.per_chip_batch} image(s) per chip x {target.num_chips} chips "
                     f"x {plan.accum_steps} accumulation step(s) = {plan.global_batch} images "
                     "per step")
    state = plan.state
    lines.append(f"state per chip: parameters {gib(state['params'])}, EMA {gib(state['ema'])}, "
                 f"optimizer {gib(state['optimizer'])}")
    lines.append("train step:")
    lines += program_lines(plan.step, plan, utilisation)
    if plan.sampler is not None:
        lines.append(f"sampler ({config.method.get('sampler', '?')}, {plan.sample_steps} steps, "
                     f"{plan.sampler.images} samples, one per chip):")
        lines += program_lines(plan.sampler, plan, utilisation)
    return "\n".join(lines)


def plan_record(plan: planner.Plan, utilisation: float) -> dict:
    """The JSON record of a plan."""
    def program(compiled):
        if compiled is None:
            return None
        return dict(fits=compiled.fits, refusal=compiled.refusal, memory=compiled.memory,
                    images=compiled.images, flops=compiled.flops.flops,
                    flops_per_image=compiled.flops.flops / compiled.images,
                    hlo_flops_corrected=compiled.corrected_hlo_flops,
                    xla_flops_per_chip=compiled.xla_flops,
                    xla_flops_corrected=compiled.corrected_xla_flops(plan.target.num_chips),
                    compile_seconds=compiled.compile_seconds,
                    needed_bytes=None if compiled.fits else compiled.search_bytes)

    return dict(command=" ".join(["python -m jaxdiff.plan"] + sys.argv[1:]),
                config=plan.config_name, target=plan.target.spec, chips=plan.target.num_chips,
                hbm_bytes=plan.target.chip.hbm_bytes, per_chip_batch=plan.per_chip_batch,
                accum_steps=plan.accum_steps, global_batch=plan.global_batch, state=plan.state,
                tried=plan.tried, utilisation=utilisation, step=program(plan.step),
                sampler=program(plan.sampler), sample_steps=plan.sample_steps)
