"""Compile targets of the planner: named TPU slices and GPU meshes as abstract devices, with the
figures of one chip that the report compares against.

    tpu:<chip>:<AxB[xC]>[*<slices>]   e.g. tpu:v5p:2x2x2, tpu:v5e:16x16, tpu:v6e:8x8*2
    gpu:<chip>:<gpus>[x<hosts>]       e.g. gpu:h100:8, gpu:h100:8x4 (4 hosts of 8 GPUs)

TPU slices come from libtpu (`jax.experimental.topologies.get_topology_desc`): its compiler
runs here with no TPU attached and refuses a program that needs more than the chip's HBM
(RESOURCE_EXHAUSTED). Topology sizes count chips (`v5p:2x2x2` is 8 chips; the `v5p-16` names
of Cloud TPU count TensorCores and are not accepted). GPU meshes come from the CUDA PJRT plugin
given a GPU target description (TargetConfig text below): XLA:GPU compiles for that device and
reports memory but no cost analysis, and does not refuse a program that exceeds the memory, so
the planner compares the peak with the HBM itself.

Chip figures (per chip, vendor data sheets): HBM capacity and the peak dense bfloat16 matmul
rate, which the step-time estimate divides by.
    TPU v4     32 GiB    275 TFLOP/s   (megacore: one device per chip)
    TPU v5e    16 GiB    197 TFLOP/s
    TPU v5p    95 GiB    459 TFLOP/s
    TPU v6e    32 GiB    918 TFLOP/s
    H100 SXM   79.1 GiB  989 TFLOP/s   (132 SMs, compute capability 9.0; the memory CUDA reports)
    H200 SXM   141 GB    989 TFLOP/s   (132 SMs, compute capability 9.0)
    A100 SXM   80 GB     312 TFLOP/s   (108 SMs, compute capability 8.0)
"""

import dataclasses
import re
from typing import Any

GIB = 2 ** 30


@dataclasses.dataclass(frozen=True)
class Chip:
    name: str
    hbm_bytes: int
    peak_flops: float     # dense bfloat16, per chip per second
    sm_count: int = 0     # GPUs: streaming multiprocessors
    compute_capability: tuple = ()  # GPUs: (major, minor)
    device_name: str = ""  # GPUs: the device description XLA is given


TPU_CHIPS = {
    "v4": Chip("TPU v4", 32 * GIB, 275e12),
    "v5e": Chip("TPU v5e", 16 * GIB, 197e12),
    "v5p": Chip("TPU v5p", 95 * GIB, 459e12),
    "v6e": Chip("TPU v6e", 32 * GIB, 918e12),
}
GPU_CHIPS = {
    "h100": Chip("H100 SXM 80GB", 84_942_979_072, 989e12, 132, (9, 0), "NVIDIA H100 80GB HBM3"),
    "h200": Chip("H200 SXM 141GB", 141 * 10 ** 9, 989e12, 132, (9, 0), "NVIDIA H200"),
    "a100": Chip("A100 SXM 80GB", 80 * 10 ** 9, 312e12, 108, (8, 0), "NVIDIA A100-SXM4-80GB"),
}


@dataclasses.dataclass(frozen=True)
class Target:
    """A parsed target: platform ("tpu" or "gpu"), chip, topology and slice / host count."""

    spec: str
    platform: str
    chip: Chip
    topology: str
    groups: int   # TPU: slices; GPU: hosts

    @property
    def num_chips(self) -> int:
        per_group = 1
        for size in self.topology.split("x"):
            per_group *= int(size)
        return per_group * self.groups

    def devices(self) -> list:
        """The target's abstract devices (nothing is attached; compiling for them needs libtpu
        or the CUDA plugin installed: pip install 'jaxdiff[plan]')."""
        from jax.experimental import topologies
        try:
            if self.platform == "tpu":
                chip = self.spec.split(":")[1]
                options: dict[str, Any] = {"chip_config_name": "megacore"} if chip == "v4" else {}
                if self.groups > 1:
                    options["num_slices"] = self.groups
                description = topologies.get_topology_desc(
                    topology_name=f"{chip}:{self.topology}", platform="tpu", **options)
            else:
                description = topologies.get_topology_desc(
                    topology_name="cuda", platform="cuda", topology=f"1x{self.groups}x"
                    f"{self.topology}", target_config=gpu_target_config(self.chip))
        except (RuntimeError, ValueError) as error:
            package = "libtpu" if self.platform == "tpu" else "the CUDA PJRT plugin"
            raise ValueError(f"Cannot make the devices of {self.spec} ({package} is needed: pip "
                             f"install 'jaxdiff[plan]'): {str(error).splitlines()[0]}") from None
        return list(description.devices)


def parse_target(spec: str) -> Target:
    """A Target from its name (module docstring); one sentence for a name it does not know."""
    tpu = re.fullmatch(r"tpu:(v4|v5e|v5p|v6e):(\d+(?:x\d+){1,2})(?:\*(\d+))?", spec)
    if tpu:
        return Target(spec, "tpu", TPU_CHIPS[tpu[1]], tpu[2], int(tpu[3] or 1))
    gpu = re.fullmatch(r"gpu:(h100|h200|a100):(\d+)(?:x(\d+))?", spec)
    if gpu:
        return Target(spec, "gpu", GPU_CHIPS[gpu[1]], gpu[2], int(gpu[3] or 1))
    raise ValueError(f"Unknown target {spec!r}: expected tpu:<{'|'.join(TPU_CHIPS)}>:<AxB[xC]>"
                     f"[*slices] (sizes in chips, e.g. tpu:v5p:2x2x2) or "
                     f"gpu:<{'|'.join(GPU_CHIPS)}>:<gpus per host>[x<hosts>] (e.g. gpu:h100:8).")


def gpu_target_config(chip: Chip) -> str:
    """The GpuTargetConfigProto text XLA:GPU compiles for: the device's limits (Hopper / Ampere
    data: 1024 threads per block, 32-thread warps, 48 KiB static / up to 227 KiB opt-in shared
    memory per block, 64 Ki registers per SM), its SM count, memory size and compute
    capability."""
    major, minor = chip.compute_capability
    return f"""gpu_device_info {{
  threads_per_block_limit: 1024
  threads_per_warp: 32
  shared_memory_per_block: 49152
  shared_memory_per_block_optin: {232448 if major >= 9 else 166912}
  shared_memory_per_core: {233472 if major >= 9 else 167936}
  threads_per_core_limit: 2048
  core_count: {chip.sm_count}
  fpus_per_core: {128 if major >= 9 else 64}
  block_dim_limit_x: 2147483647
  block_dim_limit_y: 65535
  block_dim_limit_z: 65535
  device_memory_size: {chip.hbm_bytes}
  registers_per_core_limit: 65536
  registers_per_block_limit: 65536
  cuda_compute_capability {{ major: {major} minor: {minor} }}
}}
platform_name: "CUDA"
dnn_version_info {{ major: 9 minor: 10 }}
device_description_str: "{chip.device_name}"
"""
