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
from jaxdiff.plan.planner import MAX_FIND_COMPILES, largest_fitting
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
    # The compiler's figure of what it needed (its temporaries) feeds the batch search.
    assert target.chip.hbm_bytes < compiled.needed_bytes == compiled.search_bytes


@pytest.mark.parametrize("sentence, needed", [
    ("RESOURCE_EXHAUSTED: Ran out of memory on HBM, the total memory required for HLO "
     "temporaries (36.81G) exceeds available HBM (15.75G).", 36.81 * 2 ** 30),
    ("RESOURCE_EXHAUSTED: Ran out of memory in memory space hbm. Used 41.20G of 15.75G hbm. "
     "Exceeded hbm capacity by 25.45G.", 41.2 * 2 ** 30),
    ("RESOURCE_EXHAUSTED: Used 512.0M of 16.00G hbm.", 512 * 2 ** 20),
    ("RESOURCE_EXHAUSTED: out of memory", None)])
def test_the_bytes_a_refused_program_needed_are_read_from_the_compilers_sentence(sentence,
                                                                                needed):
    """A figure of temporaries alone gets the program's arguments added; a whole one not."""
    arguments = 3 * 2 ** 30
    expected = needed and int(needed) + (arguments if "temporaries" in sentence else 0)
    assert compile_lib.needed_bytes(sentence, arguments) == expected


def test_a_gpu_mesh_reports_memory_and_no_cost_analysis():
    target, compiled = compile_on("gpu:h100:8", conv, (64, 32, 32, 128), (3, 3, 128, 128))
    assert compiled.fits and compiled.xla_flops is None
    assert compiled.memory["output"] == 64 // 8 * 32 * 32 * 128 * 4
    assert compiled.flops.flops == 2 * 64 * 32 * 32 * 9 * 128 * 128


class FakeCompile:
    """A program whose peak is peak(batch); a refused one reports what it needed when
    `says_needed`, as the TPU compiler does."""

    def __init__(self, peak, hbm, says_needed=True):
        self.peak, self.hbm, self.says_needed, self.batches = peak, hbm, says_needed, []

    def __call__(self, batch):
        self.batches.append(batch)
        peak = self.peak(batch)
        fits = peak <= self.hbm
        return compile_lib.CompiledPlan("step", batch, fits, "" if fits else "too big",
                                        {"peak": peak} if fits else {}, None, 0.0, None, 0.0,
                                        None if fits or not self.says_needed else peak)


def linear(fixed, per_image):
    return lambda batch: fixed + per_image * batch


@pytest.mark.parametrize("says_needed", [True, False])
@pytest.mark.parametrize("fixed, per_image, start, expected", [
    (10, 3, 1, 30), (10, 100, 1, 0), (10, 45, 1, 2), (0, 1, 1, 100), (99, 1, 1, 1),
    (10, 3, 16, 30), (10, 3, 64, 30), (10, 0.5, 4, 180), (1, 40, 8, 2)])
def test_largest_fitting_batch_of_a_linear_peak_in_a_few_compiles(fixed, per_image, start,
                                                                  expected, says_needed):
    fake = FakeCompile(linear(fixed, per_image), hbm=100, says_needed=says_needed)
    best, results = largest_fitting(fake, 100, start)
    assert best == expected and len(fake.batches) <= 6
    assert expected == 0 or not fake(expected + 1).fits


@pytest.mark.parametrize("start", [1, 16, 128])
def test_largest_fitting_batch_of_a_curved_peak_with_tile_padding(start):
    """A peak like the TPU's: fixed buffers, the batch padded to tiles of 8, and per-image
    memory that grows more slowly at large batches (the scheduler overlaps more): the search
    still ends on neighbours, the largest fitting batch, within MAX_FIND_COMPILES."""
    def peak(batch):
        tiles = -(-batch // 8) * 8
        return 0.7 + 0.11 * min(tiles, 16) + 0.03 * max(tiles - 16, 0) ** 0.9

    answer = max(b for b in range(1, 100_000) if peak(b) <= 95)
    fake = FakeCompile(peak, hbm=95)
    best, results = largest_fitting(fake, 95, start)
    assert best == answer and not results[best + 1].fits
    assert len(fake.batches) <= MAX_FIND_COMPILES


@pytest.mark.parametrize("tolerance", [0.02, 0.1])
def test_a_batch_tolerance_stops_the_search_at_a_bracket_that_narrow(tolerance):
    fake = FakeCompile(lambda batch: 3 + 0.01 * batch ** 1.1, hbm=95)
    exact = max(b for b in range(1, 100_000) if fake.peak(b) <= 95)
    best, results = largest_fitting(fake, 95, 16, tolerance)
    refused = min(b for b, c in results.items() if not c.fits)
    assert (1 - tolerance) * exact <= best <= exact < refused <= best * (1 + tolerance)
    exact_search = FakeCompile(fake.peak, hbm=95)
    assert largest_fitting(exact_search, 95, 16)[0] == exact
    assert len(fake.batches) <= len(exact_search.batches)


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


@pytest.mark.parametrize("flags, best, refused", [
    ([], 5120, 5121),                                              # exact
    (["--per_chip_batch=9000", "--batch_tolerance=0.1"], 5120, None)])  # refused start
def test_find_batch_through_the_command_on_a_known_memory_curve(tmp_path, flags, best, refused):
    """--find_batch for the tiny DDPM UNet on four v5e chips (16 GiB each), every try traced
    for real and 'compiled' on a peak of 1 GiB + 3 MiB per image per chip
    (plan_with_memory_curve.py): the answer is (16 - 1) GiB / 3 MiB = 5120 images per chip;
    the plan is that batch, the refused neighbour bounds it (within the tolerance), and one
    accumulation step reaches the config's global batch of 32."""
    output = tmp_path / "plan.json"
    result = subprocess.run(
        [sys.executable, os.path.join(REPO, "tests", "plan", "plan_with_memory_curve.py"),
         str(2 ** 30), str(3 * 2 ** 20), "--config=configs/ddpm.py", "--target=tpu:v5e:2x2",
         "--find_batch", "--noplan_sampler", f"--plan_output={output}", *flags],
        cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    plan = json.loads(output.read_text())
    fitting = [b for b, fits, _ in plan["tried"] if fits]
    ceiling = min(b for b, fits, _ in plan["tried"] if not fits)
    assert plan["per_chip_batch"] == max(fitting) and best - 512 <= max(fitting) <= best
    assert ceiling == refused if refused else best < ceiling <= 1.1 * max(fitting)
    assert len(plan["tried"]) <= 6
    assert plan["step"]["memory"]["peak"] == 2 ** 30 + 3 * 2 ** 20 * plan["per_chip_batch"]
    assert (plan["accum_steps"], plan["global_batch"]) == (1, 4 * plan["per_chip_batch"])
    assert "largest per-chip batch found: " in result.stdout
    needed = [needed for _, fits, needed in plan["tried"] if not fits]
    assert all(value > plan["hbm_bytes"] for value in needed)
    assert plan["step"]["needed_bytes"] is None


def test_a_refused_plan_records_what_it_needed(tmp_path):
    """A plan over the HBM (9000 images per v5e chip on the curve of the test above: 1 GiB +
    27000 MiB) is recorded as not fitting with the bytes it needed, which the README's table
    prints in place of the peak."""
    output = tmp_path / "plan.json"
    result = subprocess.run(
        [sys.executable, os.path.join(REPO, "tests", "plan", "plan_with_memory_curve.py"),
         str(2 ** 30), str(3 * 2 ** 20), "--config=configs/ddpm.py", "--target=tpu:v5e:2x2",
         "--per_chip_batch=9000", "--noplan_sampler", f"--plan_output={output}"],
        cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    step = json.loads(output.read_text())["step"]
    assert not step["fits"]
    assert abs(step["needed_bytes"] - (2 ** 30 + 9000 * 3 * 2 ** 20)) < 2 ** 30 / 1000
    assert "DOES NOT FIT: RESOURCE_EXHAUSTED" in result.stdout


def test_plan_command_refuses_a_bad_target_in_one_sentence():
    result = subprocess.run(
        [sys.executable, "-m", "jaxdiff.plan", "--config=configs/ddpm.py", "--target=tpu:v5p-8"],
        cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1].startswith(
        "jaxdiff plan: Unknown target 'tpu:v5p-8': expected tpu:")
