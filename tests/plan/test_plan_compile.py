"""Tests of the planner (jaxdiff/plan): programs compiled by libtpu's TPU compiler and XLA:GPU
for abstract devices, their memory and FLOPs against hand counts, the refusal of a program
over the HBM, the largest-batch search, and the plan command end to end."""

import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import pytest
from jax.sharding import NamedSharding, PartitionSpec

from jaxdiff.plan import compile as compile_lib
from jaxdiff.plan.planner import largest_fitting
from jaxdiff.plan.targets import parse_target

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def compile_on(spec, fn, *shapes):
    """fn compiled for the target's chips, its inputs' leading axis split over them."""
    target = parse_target(spec)
    mesh = jax.sharding.Mesh(target.devices(), ("chips",))
    split = NamedSharding(mesh, PartitionSpec("chips"))
    args = [jax.ShapeDtypeStruct(shape, jnp.float32, sharding=split if i == 0 else
                                 NamedSharding(mesh, PartitionSpec())) for i, shape in
            enumerate(shapes)]
    traced = jax.jit(fn, out_shardings=split).trace(*args)
    return target, compile_lib.compile_traced(traced, target, "program", shapes[0][0])


def conv(x, w):
    return jax.lax.conv_general_dilated(x, w, (1, 1), "SAME",
                                        dimension_numbers=("NHWC", "HWIO", "NHWC"))


def test_a_convolution_on_a_tpu_slice_against_its_hand_count():
    """64 images of 32 x 32 x 128 -> 128 channels, 3 x 3, split over 4 v5p chips: the jaxpr
    count is the convention's 2 x outputs x taps x input channels; XLA's per-chip count is a
    quarter of the taps that fall inside the image (it skips those on the zero padding: along
    each axis 3 x 32 - 2 of the 3 x 32 taps)."""
    batch, side, channels = 64, 32, 128
    hand = 2 * batch * side * side * 9 * channels * channels
    target, compiled = compile_on("tpu:v5p:2x2x1", conv, (batch, side, side, channels),
                                  (3, 3, channels, channels))
    assert compiled.fits and compiled.flops.flops == hand
    inside = 2 * batch * (3 * side - 2) ** 2 * channels * channels
    assert compiled.xla_flops * target.num_chips == pytest.approx(inside, rel=1e-3)
    image_bytes = side * side * channels * 4
    assert compiled.memory["argument"] >= batch // 4 * image_bytes
    assert compiled.memory["output"] == batch // 4 * image_bytes
    assert 0 < compiled.peak_bytes < target.chip.hbm_bytes


def test_scanned_layers_are_corrected_for_xla_counting_the_body_once():
    depth, rows, width = 12, 256, 512

    def stack(x, w):
        return jax.lax.scan(lambda h, _: (h @ w, None), x, None, length=depth)[0]

    target, compiled = compile_on("tpu:v5p:2x2x1", stack, (rows, width), (width, width))
    hand = depth * 2 * rows * width * width
    assert compiled.flops.flops == hand
    assert compiled.xla_flops * target.num_chips == pytest.approx(hand / depth, rel=0.05)
    assert compiled.corrected_xla_flops(target.num_chips) == pytest.approx(hand, rel=0.01)
    assert compiled.hlo_flops == pytest.approx(hand / depth, rel=0.05)
    assert compiled.corrected_hlo_flops == pytest.approx(hand, rel=0.01)


def test_a_program_over_the_hbm_is_refused_in_one_sentence():
    def huge(x):  # 1024 x 600000 x 16 float32 outputs and more temporaries: about 40 GB a chip
        return jnp.cumsum(jnp.broadcast_to(x[:, None, None], (x.shape[0], 600_000, 16)), axis=1)

    target, compiled = compile_on("tpu:v5e:2x2", huge, (1024,))
    assert not compiled.fits and compiled.memory == {}
    assert compiled.refusal.startswith("RESOURCE_EXHAUSTED") and "HBM" in compiled.refusal
    assert "\n" not in compiled.refusal


def test_a_gpu_mesh_reports_memory_and_no_cost_analysis():
    target, compiled = compile_on("gpu:h100:8", conv, (64, 32, 32, 128), (3, 3, 128, 128))
    assert compiled.fits and compiled.xla_flops is None
    assert compiled.memory["output"] == 64 // 8 * 32 * 32 * 128 * 4
    assert compiled.flops.flops == 2 * 64 * 32 * 32 * 9 * 128 * 128


class FakeCompile:
    """A program whose peak grows linearly with the batch: fixed + per_image x batch."""

    def __init__(self, fixed, per_image, hbm):
        self.fixed, self.per_image, self.hbm, self.batches = fixed, per_image, hbm, []

    def __call__(self, batch):
        self.batches.append(batch)
        peak = self.fixed + self.per_image * batch
        fits = peak <= self.hbm
        return compile_lib.CompiledPlan("step", batch, fits, "" if fits else "too big",
                                        {"peak": peak} if fits else {}, None, 0.0, None, 0.0)


@pytest.mark.parametrize("fixed, per_image, expected", [
    (10, 3, 30), (10, 100, 0), (10, 45, 2), (0, 1, 100), (99, 1, 1)])
def test_largest_fitting_batch_in_a_few_compiles(fixed, per_image, expected):
    fake = FakeCompile(fixed, per_image, hbm=100)
    best, results = largest_fitting(fake, 100)
    assert best == expected and len(fake.batches) <= 4
    assert expected == 0 or not fake(expected + 1).fits


def test_plan_command_for_a_tiny_unet_on_a_tpu_slice(tmp_path):
    """The whole command: the tiny DDPM UNet's real train step and sampler on v5p:2x2x1."""
    output = tmp_path / "plan.json"
    result = subprocess.run(
        [sys.executable, "-m", "jaxdiff.main", "--mode=plan", "--config=configs/ddpm.py",
         "--target=tpu:v5p:2x2x1", "--per_chip_batch=2", f"--plan_output={output}"],
        cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "train step:\n  fits: peak" in result.stdout
    assert "estimate (not a measurement)" in result.stdout
    plan = json.loads(output.read_text())
    assert (plan["chips"], plan["per_chip_batch"], plan["global_batch"]) == (4, 2, 8)
    step = plan["step"]
    assert step["fits"] and 0 < step["memory"]["peak"] < plan["hbm_bytes"]
    # The donated state comes back aliased: arguments hold the state and the batch.
    assert step["memory"]["alias"] >= plan["state"]["params"] + plan["state"]["ema"]
    # XLA's counts add the elementwise work and skip the taps on the convolutions' zero
    # padding (a third of them at the tiny UNet's 4 x 4 level).
    assert 0.85 * step["flops"] <= step["hlo_flops_corrected"] <= 1.3 * step["flops"]
    assert 0.85 * step["flops"] <= step["xla_flops_corrected"] <= 1.3 * step["flops"]
    assert plan["sampler"]["fits"] and plan["sample_steps"] > 0


def test_plan_command_refuses_a_bad_target_in_one_sentence():
    result = subprocess.run(
        [sys.executable, "-m", "jaxdiff.plan", "--config=configs/ddpm.py", "--target=tpu:v5p-8"],
        cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1].startswith(
        "jaxdiff plan: Unknown target 'tpu:v5p-8': expected tpu:")
