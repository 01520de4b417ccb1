"""Model benchmark: parameters, training FLOPs per image and peak memory per device of every
preset of every model module (unet, dual_unet, nested_unet, uvit), on a mesh of forced CPU
devices, without running a step.

For each preset at its resolution it builds one train step (forward, a stand-in squared loss on
every output, backward, AdamW update) with parameters and optimizer moments FSDP-sharded by the
logical-axis rules of jaxdiff/train/sharding.py and the batch split over every device, then:
  params          count from `jax.eval_shape` of the initialisation (nothing allocated)
  GFLOP/img       compiled mode: the partitioned program's `cost_analysis()["flops"]` (one
                  device) x devices / batch; lowered mode: the unpartitioned module's
                  `Lowered.cost_analysis()["flops"]` / batch (no compilation: for presets too
                  large to compile on this machine). Both count XLA's HLO flops of one train
                  step (a multiply-add is 2 flops); remat's recomputation is in the remat figure.
                  The U-ViT's transformer loop is unrolled for this (BENCHMARK_OVERRIDES).
  MiB/device      compiled mode only: `memory_analysis()` of the partitioned program,
                  arguments + outputs - donated aliases + temporaries, without and with remat.
                  Caveat: XLA:CPU does not turn remat into a lower peak (its scheduler
                  recomputes early; a 20-layer jax.checkpoint MLP shows 240 MiB of temporaries
                  against 164 MiB without), so on this CPU mesh the remat column is not lower;
                  the saving only shows where XLA schedules for memory (GPU/TPU backends).

Usage (the forced device count must be set before jax is imported, which this script does):
    python benchmarks/models.py                        # the tiny presets, compiled
    python benchmarks/models.py --presets mdm_64,simple_diffusion_128 --batch 8
    python benchmarks/models.py --paper --mode lower   # every paper preset, lowered only
    python benchmarks/models.py --modules nested_unet --markdown
"""

import argparse
import os
import sys
import time

DEFAULT_DEVICES = 8


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--modules", default="unet,dual_unet,nested_unet,uvit",
                        help="comma-separated model modules")
    parser.add_argument("--presets", default="",
                        help="comma-separated preset names (default: the tiny presets, or the "
                        "paper presets with --paper)")
    parser.add_argument("--paper", action="store_true", help="benchmark the non-tiny presets")
    parser.add_argument("--mode", choices=("compile", "lower"), default="compile",
                        help="compile: FLOPs and memory of the partitioned program; lower: FLOPs "
                        "of the lowered module only (fast, for paper-scale presets)")
    parser.add_argument("--batch", type=int, default=DEFAULT_DEVICES,
                        help="global batch size (a multiple of the device count)")
    parser.add_argument("--devices", type=int, default=DEFAULT_DEVICES,
                        help="number of forced host (CPU) devices")
    parser.add_argument("--fsdp", type=int, default=-1,
                        help="size of the fsdp mesh axis (-1: all devices, pure FSDP)")
    parser.add_argument("--no-remat", action="store_true",
                        help="skip the second compilation with remat=True")
    parser.add_argument("--markdown", action="store_true", help="print a markdown table")
    return parser.parse_args(argv)


ARGS = parse_args() if __name__ == "__main__" else None
if ARGS is not None:
    os.environ["JAX_PLATFORMS"] = "cpu"
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                               f" --xla_force_host_platform_device_count={ARGS.devices}").strip()

import flax.linen as nn  # noqa: E402  (after XLA_FLAGS)
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402

from jaxdiff.models import dual_unet, nested_unet, unet, uvit  # noqa: E402
from jaxdiff.train import sharding  # noqa: E402

MODULES = {"unet": unet, "dual_unet": dual_unet, "nested_unet": nested_unet, "uvit": uvit}

# Image sides of the presets whose modules do not list them (the datasets of their papers).
RESOLUTIONS = {
    ("unet", "tiny"): 16, ("unet", "ddpm_cifar10"): 32, ("unet", "iddpm_cifar10"): 32,
    ("unet", "adm_imagenet64"): 64,
    ("dual_unet", "tiny"): 16, ("dual_unet", "attenuation_cifar10"): 32,
}

# Constructor overrides for the benchmark: XLA's cost analysis counts a loop body once, so the
# U-ViT's scanned transformer is unrolled to count all of its blocks (same parameters and math).
BENCHMARK_OVERRIDES = {"uvit": {"unroll_transformer": True}}

# Text context (L, D) given to models built with use_context.
CONTEXT_SHAPE = nested_unet.PAPER_CONTEXT_SHAPE


def preset_resolution(module_name: str, preset: str):
    """The image side (or, for nested_unet, the sides of the pyramid) of a preset."""
    module = MODULES[module_name]
    known = getattr(module, "PRESET_RESOLUTIONS", {})
    if preset in known:
        return known[preset]
    if (module_name, preset) in RESOLUTIONS:
        return RESOLUTIONS[(module_name, preset)]
    raise ValueError(f"No resolution is known for preset {preset!r} of {module_name}; add it "
                     "to RESOLUTIONS in benchmarks/models.py.")


def abstract_batch(model, module_name: str, resolution, batch: int):
    """ShapeDtypeStructs (x, t, call kwargs) of one global batch."""
    if module_name == "nested_unet":
        return nested_unet.abstract_inputs(model, resolution, batch, CONTEXT_SHAPE)
    x = jax.ShapeDtypeStruct((batch, resolution, resolution, 3), jnp.float32)
    t = jax.ShapeDtypeStruct((batch,), jnp.float32)
    kwargs = {}
    if model.num_classes:
        kwargs["labels"] = jax.ShapeDtypeStruct((batch,), jnp.int32)
    if model.use_context:
        kwargs["context"] = jax.ShapeDtypeStruct((batch,) + CONTEXT_SHAPE, jnp.float32)
    return x, t, kwargs


def count(tree) -> int:
    return int(sum(np.prod(leaf.shape) for leaf in jax.tree_util.tree_leaves(tree)))


def lower_train_step(model, inputs, mesh):
    """Lower one train step for abstract inputs, FSDP-sharded on `mesh`, allocating nothing.

    Returns (lowered, abstract params, their NamedShardings)."""
    x, t, kwargs = inputs
    boxed = jax.eval_shape(lambda x, t, kw: model.init(jax.random.key(0), x, t, **kw),
                           x, t, kwargs)["params"]
    params = nn.unbox(boxed)
    params_sharding = sharding.param_shardings(boxed, mesh, sharding.DEFAULT_RULES)
    tx = optax.adamw(1e-4, weight_decay=0.01)
    opt_state = jax.eval_shape(tx.init, params)
    opt_sharding = sharding.opt_state_shardings(tx, params, params_sharding, mesh)

    def train_step(params, opt_state, batch):
        def loss_fn(params):
            outputs = model.apply({"params": params}, batch["x"], batch["t"], train=True,
                                  rngs={"dropout": jax.random.key(1)}, **batch["kwargs"])
            return sum(jnp.mean(jnp.square(out)) for out in jax.tree_util.tree_leaves(outputs))
        loss, grads = jax.value_and_grad(loss_fn)(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    batch = {"x": x, "t": t, "kwargs": kwargs}
    data = sharding.batch_sharding(mesh)
    step = jax.jit(train_step, in_shardings=(params_sharding, opt_sharding, data),
                   out_shardings=(params_sharding, opt_sharding, sharding.replicated(mesh)),
                   donate_argnums=(0, 1))
    return step.lower(params, opt_state, batch), params, params_sharding


def peak_bytes(compiled) -> int:
    """Arguments + outputs - donated aliases + temporaries of one device's program."""
    stats = compiled.memory_analysis()
    return (stats.argument_size_in_bytes + stats.output_size_in_bytes
            - stats.alias_size_in_bytes + stats.temp_size_in_bytes)


def benchmark(module_name: str, preset: str, args, mesh) -> dict:
    """One table row: params, GFLOP/img, MiB/device without and with remat, seconds."""
    module = MODULES[module_name]
    resolution = preset_resolution(module_name, preset)
    start = time.time()
    row = {"module": module_name, "preset": preset, "resolution": resolution}
    for remat in (False,) if args.no_remat else (False, True):
        model = module.create(**module.PRESETS[preset], remat=remat,
                              **BENCHMARK_OVERRIDES.get(module_name, {}))
        inputs = abstract_batch(model, module_name, resolution, args.batch)
        lowered, params, _ = lower_train_step(model, inputs, mesh)
        row["params"] = count(params)
        suffix = "_remat" if remat else ""
        if args.mode == "lower":
            row["gflops" + suffix] = lowered.cost_analysis()["flops"] / args.batch / 1e9
            continue
        compiled = lowered.compile()
        flops = compiled.cost_analysis()["flops"] * mesh.devices.size
        row["gflops" + suffix] = flops / args.batch / 1e9
        row["mib" + suffix] = peak_bytes(compiled) / 2**20
    row["seconds"] = time.time() - start
    return row


def format_rows(rows, args) -> str:
    columns = [("module", "module"), ("preset", "preset"), ("resolution", "resolution"),
               ("params", "params"), ("gflops", "GFLOP/img"), ("gflops_remat", "remat GFLOP/img"),
               ("mib", "MiB/device"), ("mib_remat", "remat MiB/device"), ("seconds", "s")]
    columns = [(key, title) for key, title in columns if any(key in row for row in rows)]

    def cell(row, key):
        value = row.get(key, "")
        if key == "params":
            return f"{value:,}"
        if isinstance(value, float):
            return f"{value:.1f}" if key != "gflops" and key != "gflops_remat" else f"{value:.3g}"
        if isinstance(value, tuple):
            return "/".join(str(v) for v in value)
        return str(value)

    lines = [[title for _, title in columns]] + [[cell(r, k) for k, _ in columns] for r in rows]
    if args.markdown:
        out = ["| " + " | ".join(lines[0]) + " |", "|" + "---|" * len(columns)]
        return "\n".join(out + ["| " + " | ".join(line) + " |" for line in lines[1:]])
    widths = [max(len(line[i]) for line in lines) for i in range(len(columns))]
    return "\n".join("  ".join(v.rjust(w) for v, w in zip(line, widths)) for line in lines)


def selected_presets(args):
    """(module name, preset) pairs chosen by --modules, --presets and --paper."""
    names = [m for m in args.modules.split(",") if m]
    unknown = sorted(set(names) - set(MODULES))
    if unknown:
        raise ValueError(f"Unknown modules {unknown}; choose from {sorted(MODULES)}.")
    wanted = {p for p in args.presets.split(",") if p}
    pairs = []
    for name in names:
        for preset in MODULES[name].PRESETS:
            if wanted:
                chosen = preset in wanted
            else:
                chosen = preset.startswith("tiny") != args.paper
            if chosen:
                pairs.append((name, preset))
    missing = wanted - {preset for _, preset in pairs}
    if missing:
        raise ValueError(f"Unknown presets {sorted(missing)} for modules {names}.")
    return pairs


def main(args):
    if args.batch % args.devices:
        raise ValueError(f"--batch ({args.batch}) must be a multiple of --devices "
                         f"({args.devices}).")
    mesh = sharding.create_mesh({"data": -1, "fsdp": args.fsdp if args.fsdp > 0 else
                                 args.devices})
    print(f"# {args.mode} mode, batch {args.batch}, mesh {dict(mesh.shape)} of "
          f"{jax.devices()[0].platform} devices", flush=True)
    rows = []
    for module_name, preset in selected_presets(args):
        rows.append(benchmark(module_name, preset, args, mesh))
        print("# " + format_rows(rows[-1:], args).splitlines()[-1], flush=True)
    print(format_rows(rows, args))


if __name__ == "__main__":
    sys.exit(main(ARGS))
