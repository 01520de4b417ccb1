"""Activation memory by channel count on a TPU slice and on H100s, compiled on this machine:
why a 1024 px image costs a TPU chip more than an H100 (README, "Planning a pod run").

One block of a 1024 px network level, conv 3x3 -> SiLU -> residual, in bfloat16, one image
per chip, is compiled for each target (jaxdiff.plan.targets) at each channel count; the table
gives the compiler's temporaries over the bytes of one activation (1024 x 1024 x channels x 2).
TPU vector registers hold 128 lanes along the minor (channel) axis, so a block with fewer
channels is laid out padded to 128 inside the program.

    python benchmarks/plan_channels.py [--channels 32 64 128 256]
"""

import argparse

import jax
import jax.numpy as jnp
from jax.sharding import NamedSharding, PartitionSpec

from jaxdiff.plan import cli
from jaxdiff.plan.targets import parse_target

SIDE = 1024
TARGETS = ("tpu:v5p:2x2x1", "gpu:h100:4")


def block(x, kernel):
    y = jax.lax.conv_general_dilated(x, kernel, (1, 1), "SAME",
                                     dimension_numbers=("NHWC", "HWIO", "NHWC"))
    return jax.nn.silu(y) + x


def temporaries_per_activation(spec: str, channels: int) -> float:
    target = parse_target(spec)
    mesh = jax.sharding.Mesh(target.devices(), ("chips",))
    split = NamedSharding(mesh, PartitionSpec("chips"))
    whole = NamedSharding(mesh, PartitionSpec())
    x = jax.ShapeDtypeStruct((target.num_chips, SIDE, SIDE, channels), jnp.bfloat16,
                             sharding=split)
    kernel = jax.ShapeDtypeStruct((3, 3, channels, channels), jnp.bfloat16, sharding=whole)
    compiled = jax.jit(block, out_shardings=split).trace(x, kernel).lower().compile()
    return compiled.memory_analysis().temp_size_in_bytes / (SIDE * SIDE * channels * 2)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--channels", type=int, nargs="+", default=[32, 64, 128, 256])
    args = parser.parse_args()
    cli.use_host_backend()
    print("| channels | " + " | ".join(f"{spec} temporaries / activation" for spec in TARGETS)
          + " |")
    print("|---|" + "---|" * len(TARGETS))
    for channels in args.channels:
        ratios = [temporaries_per_activation(spec, channels) for spec in TARGETS]
        print(f"| {channels} | " + " | ".join(f"{ratio:.2f}" for ratio in ratios) + " |",
              flush=True)


if __name__ == "__main__":
    main()
