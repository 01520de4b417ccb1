"""Sampler benchmark on a trained model: quality against network calls (NFE) for every sampler
and time grid of the method, from the EMA parameters of a workdir's latest checkpoint.

Quality is benchmarks/digit_quality.py's FD8 (a Frechet distance in 8x8 grey-level features of
the built-in digits; the stand-in until the evaluation issue's offline metric lands) and, for
class-conditional models, the share of samples a digit classifier reads as their label. The
reference is the best of the method's samplers at 250 steps; the table marks the variants whose
FD8 is within the tolerance of it (FD8 <= reference * (1 + rel) + abs) and names the cheapest.

Usage (after training the default run into the workdir; --config takes the overrides the run
was trained with, as in jaxdiff.main):
    python -m benchmarks.trained_samplers --config=configs/ddpm.py --workdir=/tmp/runs/ddpm
    python -m benchmarks.trained_samplers --config=configs/cold.py --workdir=/tmp/runs/cold
Cold diffusion has no grid or solver to choose: it reports FD8 and the class shares for the
(start_noise, step_noise) pairs in --cold_noise.
"""

import copy
import re
import time

import jax
from absl import app, flags
from ml_collections import config_flags

from benchmarks import digit_quality
from jaxdiff import methods
from jaxdiff.core.samplers import GAUSSIAN_SAMPLERS, num_evaluations, steps_for_evaluations
from jaxdiff.core.time_grids import GRIDS
from jaxdiff.methods.attenuation import SAMPLERS as ATTENUATION_SAMPLERS
from jaxdiff.methods.gaussian import base_schedule
from jaxdiff.train import loop, prepare, sampling

# The config as jaxdiff.main reads it: configs/<method>.py[:preset], overrides as
# --config.a.b=value (e.g. --config.model.num_classes=0, as the workdir was trained).
_CONFIG = config_flags.DEFINE_config_file("config", None, "configs/<method>.py[:preset]")
_WORKDIR = flags.DEFINE_string("workdir", "", "the trained run's directory")
_NFE = flags.DEFINE_string("nfe", "10,25", "comma-separated NFE budgets")
_SAMPLERS = flags.DEFINE_string("samplers", "", "comma-separated; default: all of the method's")
_GRIDS = flags.DEFINE_string("grids", ",".join(GRIDS), "comma-separated time grids")
_REFERENCE_STEPS = flags.DEFINE_integer("reference_steps", 250, "NFE of the references")
_NUM_SAMPLES = flags.DEFINE_integer("num_samples", 300, "samples per variant")
_COLD_NOISE = flags.DEFINE_string(
    "cold_noise", "0.002:0,0.05:0,0.1:0,0.2:0,0.002:0.02,0.002:0.05,0.05:0.05",
    "cold diffusion: start_noise:step_noise pairs to compare")
_RELATIVE_TOLERANCE = flags.DEFINE_float("relative_tolerance", 0.1, "rel of the tolerance")
_ABSOLUTE_TOLERANCE = flags.DEFINE_float("absolute_tolerance", 0.02, "abs of the tolerance")
_SEED = flags.DEFINE_integer("seed", 0, "sampling seed")
_PLOT = flags.DEFINE_string("plot", "", "PNG of FD8 against NFE ('' for none)")
_FROM_TABLE = flags.DEFINE_string("from_table", "", "plot a table this script printed before "
                                  "(with --plot), instead of sampling")


def variants(config, budgets, reference_steps, samplers="", grids=GRIDS):
    """(label, method overrides, is_reference) of every sampler x grid x NFE of the method (or
    of the samplers named)."""
    name = config.method.name
    if name == "cold":
        return []
    samplers = (samplers.split(",") if samplers else
                ATTENUATION_SAMPLERS if name == "attenuation" else GAUSSIAN_SAMPLERS)
    settings = methods.settings_type(name).from_section(config.method)
    on_chain = name != "attenuation" and settings.is_discrete()  # Heun's last call is saved
    rows = []
    for sampler in samplers:
        steps = steps_for_evaluations(sampler, reference_steps, on_chain)
        rows.append((f"{sampler} uniform", dict(sampler=sampler, time_grid="uniform",
                                                sample_steps=steps), True))
        for grid in grids:
            for nfe in budgets:
                rows.append((f"{sampler} {grid}", dict(
                    sampler=sampler, time_grid=grid,
                    sample_steps=steps_for_evaluations(sampler, nfe, on_chain)), False))
    return rows


def evaluate(config, stage, ema_params, overrides, num_samples, seed):
    """(FD8, accuracy or None, shares, NFE, seconds) of the method with `overrides`."""
    variant = copy.deepcopy(config)
    variant.method.update(overrides)
    method = loop.with_reference_images(variant, methods.build(variant), stage.data,
                                        stage.mix_data)
    sampler = sampling.make_sampler(method, stage.run.mesh, num_samples)
    start = time.perf_counter()
    images = sampling.highest_resolution(sampler(ema_params, jax.random.PRNGKey(seed)))
    seconds = time.perf_counter() - start
    labels = sampling.sample_labels(method, num_samples)
    quality = digit_quality.score(images, labels)
    return quality, nfe_of(variant), seconds


def nfe_of(config) -> int:
    """Network calls of the configured sampler (core.samplers.num_evaluations)."""
    settings = methods.settings_type(config.method.name).from_section(config.method)
    if config.method.name == "cold":
        return settings.operator.num_steps
    if config.method.name == "attenuation":
        return settings.sample_steps
    schedule = base_schedule(settings)
    return num_evaluations(settings.sampler,
                           settings.sampling_times(schedule, settings.sample_steps),
                           schedule.logsnr_fn)


def main(argv):
    del argv
    if _FROM_TABLE.value:
        plot(read_table(_FROM_TABLE.value), _PLOT.value or "trained_samplers.png",
             _FROM_TABLE.value)
        return
    if _CONFIG.value is None or not _WORKDIR.value:
        raise SystemExit("trained_samplers: give --config and --workdir (or --from_table).")
    config_name = flags.FLAGS["config"].serialize().partition("=")[2]
    stage = prepare.prepare(_CONFIG.value, _WORKDIR.value, "sample")[-1]
    config = stage.config
    step, ema_params = loop.latest_ema_params(stage.workdir, stage.run)
    num_samples, seed = _NUM_SAMPLES.value, _SEED.value
    print(f"{config_name} at step {step}, {num_samples} samples, seed {seed}")
    rows = []
    if config.method.name == "cold":
        for pair in _COLD_NOISE.value.split(","):
            start_noise, step_noise = (float(value) for value in pair.split(":"))
            rows.append((f"noise start {start_noise:g} step {step_noise:g}",) + evaluate(
                config, stage, ema_params, dict(start_noise=start_noise, step_noise=step_noise),
                num_samples, seed) + (False,))
    budgets = [int(n) for n in _NFE.value.split(",")]
    for label, overrides, is_reference in variants(config, budgets, _REFERENCE_STEPS.value,
                                                   _SAMPLERS.value, _GRIDS.value.split(",")):
        rows.append((label,) + evaluate(config, stage, ema_params, overrides, num_samples,
                                        seed) + (is_reference,))
    print_table(rows)
    if _PLOT.value:
        plot([(label, nfe, quality["fd8"], is_reference)
              for label, quality, nfe, _, is_reference in rows], _PLOT.value, config_name)


TABLE_ROW = re.compile(r"^(\S+) (\S+) +(\d+) +([0-9.]+) +(?:[0-9.]+%)? +[0-9.]+ +(?: *\d+){10}"
                       r" *(ref|ok)?$")


def read_table(path):
    """(label, NFE, FD8, is_reference) of the sampler rows of a table printed by print_table."""
    rows = []
    for line in open(path):
        match = TABLE_ROW.match(line.strip())
        if match:
            sampler, grid, nfe, fd8, mark = match.groups()
            rows.append((f"{sampler} {grid}", int(nfe), float(fd8), mark == "ref"))
    return rows


def plot(rows, path, title):
    """FD8 against NFE, one panel per sampler, one line per grid, the sampler's 250-step
    reference dashed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [row for row in rows if len(row[0].split()) == 2]  # "<sampler> <grid>" rows only
    if not rows:
        print(f"\nNo sampler-and-grid rows to plot (cold diffusion has none); {path} not written.")
        return
    samplers = list(dict.fromkeys(label.split()[0] for label, *_ in rows))
    figure, axes = plt.subplots(1, len(samplers), squeeze=False,
                                figsize=(3.6 * len(samplers), 3.2), sharey=True)
    for axis, sampler in zip(axes.flat, samplers):
        for grid in dict.fromkeys(label.split()[1] for label, *_ in rows
                                  if label.startswith(sampler + " ")):
            points = sorted((nfe, fd8) for label, nfe, fd8, is_reference in rows
                            if label == f"{sampler} {grid}" and not is_reference)
            if points:
                axis.plot(*zip(*points), marker="o", label=grid)
        for label, nfe, fd8, is_reference in rows:
            if is_reference and label.startswith(sampler + " "):
                axis.axhline(fd8, color="grey", linestyle="--", label=f"{nfe} NFE")
        axis.set(xscale="log", title=sampler, xlabel="NFE", ylabel="FD8")
        axis.legend(fontsize=7)
    figure.suptitle(title, fontsize=9)
    figure.tight_layout()
    figure.savefig(path, dpi=90)
    print(f"\nPlot: {path}")


def print_table(rows):
    references = [quality["fd8"] for _, quality, _, _, is_reference in rows if is_reference]
    threshold = (min(references) * (1 + _RELATIVE_TOLERANCE.value) + _ABSOLUTE_TOLERANCE.value
                 if references else None)
    print(f"{'variant':28s} {'NFE':>4s} {'FD8':>7s} {'accuracy':>8s} {'s':>6s}  class shares %")
    for label, quality, nfe, seconds, is_reference in rows:
        accuracy = quality.get("accuracy")
        mark = "ref" if is_reference else ("ok" if threshold and quality["fd8"] <= threshold
                                           else "")
        shares = " ".join(f"{100 * share:3.0f}" for share in quality["shares"])
        print(f"{label:28s} {nfe:4d} {quality['fd8']:7.3f} "
              f"{'' if accuracy is None else f'{100 * accuracy:7.1f}%':>8s} {seconds:6.1f}  "
              f"{shares}  {mark}")
    if threshold is not None:
        passing = [(nfe, quality["fd8"], label) for label, quality, nfe, _, is_reference in rows
                   if not is_reference and quality["fd8"] <= threshold]
        print(f"\nReference FD8 {min(references):.3f} (best at {_REFERENCE_STEPS.value} steps); "
              f"tolerance FD8 <= {threshold:.3f}.")
        if passing:
            nfe, fd8, label = min(passing)
            print(f"Cheapest within tolerance: {label} at NFE {nfe} (FD8 {fd8:.3f}).")
        else:
            print("No variant within tolerance at these NFE budgets.")


if __name__ == "__main__":
    app.run(main)
