"""Compile the real train step (and the sampler) of a config for a target's abstract devices and
read per-chip memory and FLOPs from the compiler.

The program is the one `train` runs: the run is prepared by train/prepare.py (mesh, method,
sharded abstract train state) over the target's devices, the step is step.make_train_step
jitted by step.jit_train_step with the state donated, and the batch is the data pipeline's
(uint8 images, labels, text) sharded over every device. Nothing is allocated: the state and
batch are ShapeDtypeStructs.

Per chip (each figure is the most loaded chip's; FSDP shards are equal):
    state bytes     parameters, EMA and optimizer state, from each leaf's shard shape
    memory          the compiled program's memory_analysis(): arguments, outputs, aliased
                    (donated) bytes and temporaries; peak = arguments + outputs - aliased +
                    temporaries (the live set XLA plans: the donated state is reused in place)
    fits            peak <= HBM, on TPU also the compiler's acceptance: libtpu refuses a
                    program whose temporaries exceed the HBM (RESOURCE_EXHAUSTED, its sentence
                    is kept), but it compares only the temporaries (it accepted the 128 px
                    U-ViT at 42 images per v5p chip, a peak of 101.9 GiB with the arguments),
                    so the peak check is the stricter; GPU: the peak check alone
    FLOPs           flops.count_flops on the step's jaxpr (scan bodies x length, remat
                    recomputation included); the independent count: XLA's cost analysis of the
                    program as written (the lowered, unpartitioned HLO, every op, scan bodies
                    once) scan-corrected by the jaxpr count of the repeated iterations; and the
                    compiled program's cost_analysis() per chip (TPU only), which counts what
                    XLA's optimisations left
"""

import dataclasses
import math
import re
import time
from typing import Any, Optional

import jax
import numpy as np

from jaxdiff.plan import flops as flops_lib
from jaxdiff.plan.targets import Target
from jaxdiff.train import prepare, sampling
from jaxdiff.train import sharding as sharding_lib
from jaxdiff.train import step as step_lib


@dataclasses.dataclass
class CompiledPlan:
    """What one compile of one program for one target measured (per chip unless named)."""

    program: str              # "train step" or "sampler"
    images: int               # images the program processes (global batch or samples)
    fits: bool
    refusal: str              # the compiler's sentence when it refused the program, else ""
    memory: dict              # argument / output / alias / temp / peak bytes ({} if refused)
    flops: flops_lib.FlopCount  # whole program, all chips (jaxpr count)
    hlo_flops: float            # the lowered program's cost analysis, whole, scan bodies once
    xla_flops: Optional[float]  # the compiled program's, per chip, scan bodies once
    compile_seconds: float
    needed_bytes: Optional[int] = None  # a refused TPU program: its peak from the compiler's
                                        # figure (needed_bytes below)

    @property
    def peak_bytes(self) -> Optional[int]:
        return self.memory.get("peak")

    @property
    def search_bytes(self) -> Optional[int]:
        """The peak, or for a refused program without one the bytes the compiler said it
        needed: the memory figure the batch search draws its line through."""
        return self.peak_bytes or self.needed_bytes

    @property
    def repeated_flops(self) -> float:
        """The jaxpr FLOPs of the loop iterations after each loop's first."""
        return self.flops.flops - self.flops.flops_bodies_once

    @property
    def corrected_hlo_flops(self) -> float:
        """The lowered program's FLOPs with each repeated loop iteration added."""
        return self.hlo_flops + self.repeated_flops

    def corrected_xla_flops(self, num_chips: int) -> Optional[float]:
        """The compiled program's FLOPs on all chips with each repeated iteration added."""
        if self.xla_flops is None:
            return None
        return self.xla_flops * num_chips + self.repeated_flops


def shard_bytes(tree: Any) -> int:
    """Bytes one chip holds of a tree of sharded ShapeDtypeStructs (the largest shard)."""
    total = 0
    for leaf in jax.tree.leaves(tree):
        shape = leaf.sharding.shard_shape(leaf.shape) if leaf.sharding is not None else leaf.shape
        total += math.prod(shape) * np.dtype(leaf.dtype).itemsize
    return total


def state_bytes(abstract_state) -> dict:
    return {"params": shard_bytes(abstract_state.params),
            "ema": shard_bytes(abstract_state.ema_params),
            "optimizer": shard_bytes(abstract_state.opt_state)}


def compile_traced(traced, target: Target, program: str, images: int,
                   argument_bytes: int = 0) -> CompiledPlan:
    """Compile a jax `Traced` program for the target and read its memory and FLOPs;
    argument_bytes (per chip) completes the peak of a refused program whose compiler figure
    counts only temporaries."""
    count = flops_lib.count_jaxpr(traced.jaxpr.jaxpr)
    start = time.perf_counter()
    lowered = traced.lower()
    hlo_flops = lowered_flops(lowered)
    try:
        compiled = lowered.compile()
    except Exception as error:  # XlaRuntimeError; its class is not public API
        if "RESOURCE_EXHAUSTED" not in str(error):
            raise
        refusal = refusal_sentence(str(error))
        return CompiledPlan(program, images, False, refusal, {}, count, hlo_flops, None,
                            time.perf_counter() - start, needed_bytes(refusal, argument_bytes))
    seconds = time.perf_counter() - start
    stats = compiled.memory_analysis()
    memory = dict(argument=stats.argument_size_in_bytes, output=stats.output_size_in_bytes,
                  alias=stats.alias_size_in_bytes, temp=stats.temp_size_in_bytes)
    memory["peak"] = memory["argument"] + memory["output"] - memory["alias"] + memory["temp"]
    cost = first_cost(compiled.cost_analysis()) if target.platform == "tpu" else None
    xla_flops = float(cost["flops"]) if cost and "flops" in cost else None
    fits = memory["peak"] <= target.chip.hbm_bytes
    refusal = "" if fits else (f"peak {memory['peak'] / 2**30:.1f} GiB is over the "
                               f"{target.chip.hbm_bytes / 2**30:.1f} GiB of a {target.chip.name}")
    return CompiledPlan(program, images, fits, refusal, memory, count, hlo_flops, xla_flops,
                        seconds)


def lowered_flops(lowered) -> float:
    """FLOPs of the lowered (unoptimised, unpartitioned) program by XLA's HloCostAnalysis, run
    by the CPU client: the TPU and CUDA clients of abstract topologies do not offer it
    (Lowered.cost_analysis raises or returns None there). jax exposes this call only through
    Lowered.cost_analysis, so it is reached in jax._src."""
    from jax._src import xla_bridge
    from jax._src.lib import _jax
    module = lowered.compiler_ir("hlo").as_hlo_module()
    return float(_jax.hlo_module_cost_analysis(xla_bridge.get_backend("cpu"), module)["flops"])


def first_cost(cost):
    """A cost analysis as one dict (older jax returned a list of one)."""
    return cost[0] if isinstance(cost, (list, tuple)) else cost


def refusal_sentence(message: str) -> str:
    """The compiler's first line that says what ran out (RESOURCE_EXHAUSTED ...)."""
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    for line in lines:
        if "RESOURCE_EXHAUSTED" in line or "Ran out of memory" in line:
            return line[:300]
    return lines[0][:300]


def needed_bytes(refusal: str, argument_bytes: int = 0) -> Optional[int]:
    """The peak a refused TPU program needed, from the compiler's sentence, in XLA's binary
    units: "Used 41.20G of 15.75G hbm" is the whole; "... required for HLO temporaries
    (36.81G) exceeds available HBM (15.75G)" counts only temporaries, so argument_bytes (the
    program's inputs per chip) are added. None when the sentence gives no figure."""
    figure = re.search(r"(required for [^(]*\(|Used )([\d.]+)([KMGT]?)(?:i?B)?\b", refusal)
    if not figure:
        return None
    scale = 1024 ** "_KMGT".index(figure[3] or "_")
    temporaries_only = "temporaries" in figure[1]
    return int(float(figure[2]) * scale) + (argument_bytes if temporaries_only else 0)


def prepare_run(config, devices: list):
    """The run's stage (method, mesh, sharded abstract state) over the target's devices, its data
    left unopened."""
    return prepare.prepare_stage(config, "plan", "train", devices, read_data=False)


def trace_train_step(config, stage):
    """The train step as `train` jits it, traced for the abstract state and batch."""
    method, run = stage.method, stage.run
    train_step = step_lib.make_train_step(method, run.tx, run.schedule,
                                          accum_steps=config.grad_accum_steps,
                                          ema_decay=config.ema_decay, mesh=run.mesh)
    jitted = step_lib.jit_train_step(train_step, run.state_shardings, run.mesh)
    batch = prepare.abstract_batch(config, method, sharding_lib.batch_sharding(run.mesh))
    return jitted.trace(run.abstract_state, batch)


def trace_sampler(config, stage, num_samples: int):
    """The sampler of the run's sample grids (train/sampling.make_sampler) for num_samples
    samples at the configured sampler and steps, with the empty caption for a text model (the
    text's shape is what matters, so no T5 is loaded)."""
    method, run = stage.method, stage.run
    inputs = {"labels": sampling.sample_labels(method, num_samples)}
    if method.text is not None:
        inputs["text"] = method.text.null(num_samples)
    sampler = sampling.make_sampler(method, run.mesh, num_samples, inputs)
    rng = jax.ShapeDtypeStruct(run.abstract_state.rng.shape, run.abstract_state.rng.dtype,
                               sharding=sharding_lib.replicated(run.mesh))
    return sampler.trace(run.abstract_state.ema_params, rng)
