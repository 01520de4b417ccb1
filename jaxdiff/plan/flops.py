"""Matmul and convolution FLOPs of a traced program, counted on its jaxpr, with every loop body
counted as often as it runs.

XLA's `cost_analysis()` counts the body of a `lax.scan` (a while loop) once, so a program whose
work sits in scans (gradient accumulation, U-ViT's scanned transformer, a sampler's steps)
reports a fraction of its FLOPs. This count walks the jaxpr instead:

    dot_general            2 * size(output) * prod(contracting dimensions)
    conv_general_dilated   2 * size(output) * prod(kernel spatial dims) * kernel input features
                           (the gradient convolutions have the same form, with the batch as
                           the contracted "feature"; grouped convolutions' kernels already hold
                           input features per group)
    scan                   body x length;  cond: the costliest branch;  while: body once
                           (its trip count is not static; `counted_once` reports such loops)
    any other primitive with sub-jaxprs (pjit, remat, custom_jvp / custom_vjp): their sum

A multiply-add is 2 FLOPs, as in XLA's count and the MFU convention (Chowdhery et al. 2022,
PaLM, appendix B). Elementwise work (norms, activations, the optimizer) is not counted; it is
a few percent of a convolution network's FLOPs. Rematerialised blocks appear twice in the
gradient's jaxpr (forward and recomputation), so the count of a remat program includes the
recomputation.
"""

import dataclasses
import math
from typing import Any, Callable

import jax
from jax.extend import core as jex_core


@dataclasses.dataclass
class FlopCount:
    """flops: every loop body as often as it runs; flops_bodies_once: every loop body once (what
    XLA's cost analysis sees); counted_once: while loops whose trip count is unknown."""

    flops: float = 0.0
    flops_bodies_once: float = 0.0
    counted_once: int = 0

    def add(self, other: "FlopCount", times: float = 1.0) -> None:
        self.flops += times * other.flops
        self.flops_bodies_once += other.flops_bodies_once
        self.counted_once += other.counted_once


def dot_general_flops(eqn) -> float:
    (contracting, _), _ = eqn.params["dimension_numbers"]
    lhs_shape = eqn.invars[0].aval.shape
    contracted = math.prod(lhs_shape[d] for d in contracting)
    return 2.0 * math.prod(eqn.outvars[0].aval.shape) * contracted


def conv_flops(eqn) -> float:
    rhs_spec = eqn.params["dimension_numbers"].rhs_spec  # (out feature, in feature, spatial...)
    rhs_shape = eqn.invars[1].aval.shape
    window = math.prod(rhs_shape[d] for d in rhs_spec[2:]) * rhs_shape[rhs_spec[1]]
    return 2.0 * math.prod(eqn.outvars[0].aval.shape) * window


LEAF_FLOPS = {"dot_general": dot_general_flops, "conv_general_dilated": conv_flops}


def sub_jaxprs(value) -> list:
    """The jaxprs held by one equation parameter (a jaxpr, a closed jaxpr or a tuple of them)."""
    if isinstance(value, jex_core.ClosedJaxpr):
        return [value.jaxpr]
    if isinstance(value, jex_core.Jaxpr):
        return [value]
    if isinstance(value, (tuple, list)):
        return [j for item in value for j in sub_jaxprs(item)]
    return []


def count_jaxpr(jaxpr) -> FlopCount:
    """The FlopCount of one jaxpr (module docstring)."""
    total = FlopCount()
    for eqn in jaxpr.eqns:
        name = eqn.primitive.name
        if name in LEAF_FLOPS:
            flops = LEAF_FLOPS[name](eqn)
            total.add(FlopCount(flops, flops))
        elif name == "cond":
            branches = [count_jaxpr(branch) for branch in sub_jaxprs(eqn.params["branches"])]
            total.add(max(branches, key=lambda count: count.flops))
        elif name == "scan":
            total.add(count_jaxpr(eqn.params["jaxpr"].jaxpr), times=eqn.params["length"])
        elif name == "while":
            body = count_jaxpr(eqn.params["body_jaxpr"].jaxpr)
            body.counted_once += 1
            total.add(body)
        else:
            for value in eqn.params.values():
                for sub in sub_jaxprs(value):
                    total.add(count_jaxpr(sub))
    return total


def count_flops(fn: Callable, *args: Any) -> FlopCount:
    """The FlopCount of fn(*args) (args may be ShapeDtypeStructs: only traced, nothing runs)."""
    return count_jaxpr(jax.make_jaxpr(fn)(*args).jaxpr)
