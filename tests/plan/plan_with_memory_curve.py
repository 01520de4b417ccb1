"""`python -m jaxdiff.plan` with the compiler replaced by a known memory curve, so that a test
can follow --find_batch through the whole command (flags, the prepared run, the traced step,
the search, the report and the JSON record) without the minutes that real compiles at
thousands of images per chip take; the real compiles are tested in test_plan_compile.py.

    python tests/plan/plan_with_memory_curve.py FIXED_BYTES PER_IMAGE_BYTES [plan flags ...]

A program at b images per chip peaks at FIXED + b x PER_IMAGE bytes; over the chip's HBM it is
refused with that figure as the bytes it needed, as libtpu's compiler refuses one.
"""

import sys

from absl import app, flags

from jaxdiff.plan import __main__ as plan_main
from jaxdiff.plan import compile as compile_lib
from jaxdiff.plan import flops as flops_lib


def compile_on_curve(fixed: int, per_image: int):
    def compile_traced(traced, target, program, images, argument_bytes=0):
        count = flops_lib.count_jaxpr(traced.jaxpr.jaxpr)
        peak = fixed + per_image * (images // target.num_chips)
        fits = peak <= target.chip.hbm_bytes
        memory = dict(argument=0, output=0, alias=0, temp=peak, peak=peak) if fits else {}
        refusal = "" if fits else f"RESOURCE_EXHAUSTED: Used {peak / 2**30:.3f}G of HBM."
        return compile_lib.CompiledPlan(program, images, fits, refusal, memory, count,
                                        count.flops, None, 0.0,
                                        None if fits else compile_lib.needed_bytes(
                                            refusal, argument_bytes))
    return compile_traced


if __name__ == "__main__":
    compile_lib.compile_traced = compile_on_curve(int(sys.argv[1]), int(sys.argv[2]))
    flags.mark_flag_as_required("config")
    app.run(plan_main.main, argv=[sys.argv[0]] + sys.argv[3:])
