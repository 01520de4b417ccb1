"""Sampler benchmark on a trained model: quality against network calls (NFE) for every sampler
and time grid of the method, from the EMA parameters of a workdir's latest checkpoint.

Quality is benchmarks/digit_quality.py's FD8 (a Frechet distance in 8x8 grey-level features of
the built-in digits; the stand-in until the evaluation issue's offline metric lands) and, for
class-conditional models, the share of samples a digit classifier reads as their label. The
reference is the best of the method's samplers at 250 steps; the table marks the variants whose
FD8 is within the tolerance of it (FD8 <= reference * (1 + rel) + abs) and names the cheapest.

Usage (after training the default run into the workdir):
    python -m benchmarks.trained_samplers --config=configs/ddpm.py --workdir=/tmp/runs/ddpm
    python -m benchmarks.trained_samplers --config=configs/cold.py --workdir=/tmp/runs/cold
Cold diffusion has no grid or solver to choose: it reports FD8 and the class shares for the
(start_noise, step_noise) pairs in --cold_noise.
"""

import argparse
import ast
import copy
import re
import time

import jax

from benchmarks import digit_quality
from jaxdiff import methods
from jaxdiff.core.samplers import num_evaluations, steps_for_evaluations
from jaxdiff.methods.gaussian import base_schedule
from jaxdiff.train import loop, prepare, sampling

GAUSSIAN_SAMPLERS = ("ancestral", "ddim", "dpm_solver_pp", "dpm_solver_pp_3m", "heun")
ATTENUATION_SAMPLERS = ("stochastic", "deterministic")
GRIDS = ("uniform", "power", "logsnr", "karras")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default="", help="configs/<method>.py[:preset]")
    parser.add_argument("--workdir", default="")
    parser.add_argument("--nfe", default="10,25", help="comma-separated NFE budgets")
    parser.add_argument("--samplers", default="", help="comma-separated; default: all of the "
                        "method's")
    parser.add_argument("--grids", default=",".join(GRIDS), help="comma-separated time grids")
    parser.add_argument("--reference_steps", type=int, default=250)
    parser.add_argument("--num_samples", type=int, default=300)
    parser.add_argument("--cold_noise", default="0.002:0,0.05:0,0.1:0,0.2:0,0.002:0.02,"
                        "0.002:0.05,0.05:0.05", help="cold diffusion: start_noise:step_noise "
                        "pairs to compare")
    parser.add_argument("--relative_tolerance", type=float, default=0.1)
    parser.add_argument("--absolute_tolerance", type=float, default=0.02)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--plot", default="", help="PNG of FD8 against NFE ('' for none)")
    parser.add_argument("--from_table", default="", help="plot a table this script printed "
                        "before (with --plot), instead of sampling")
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                        help="config override as the workdir was trained, e.g. "
                        "model.num_classes=0 (repeatable)")
    return parser.parse_args(argv)


def load_config(spec: str, overrides=()):
    """get_config(preset) of configs/<file>.py[:preset], with FIELD=VALUE overrides (values
    read as Python literals where they parse, else as strings)."""
    path, _, preset = spec.partition(":")
    namespace = {}
    exec(compile(open(path).read(), path, "exec"), namespace)
    config = namespace["get_config"](preset or None)
    for override in overrides:
        field, _, text = override.partition("=")
        try:
            value = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            value = text
        *parents, leaf = field.split(".")
        section = config
        for parent in parents:
            section = section[parent]
        section[leaf] = value
    return config


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


def main(argv=None):
    args = parse_args(argv)
    if args.from_table:
        plot(read_table(args.from_table), args.plot or "trained_samplers.png", args.from_table)
        return
    if not (args.config and args.workdir):
        raise SystemExit("trained_samplers: give --config and --workdir (or --from_table).")
    config = load_config(args.config, args.set)
    stage = prepare.prepare(config, args.workdir, "sample")[-1]
    config = stage.config
    step, ema_params = loop.latest_ema_params(stage.workdir, stage.run)
    print(f"{args.config} at step {step}, {args.num_samples} samples, seed {args.seed}")
    budgets = [int(n) for n in args.nfe.split(",")]
    rows = []
    if config.method.name == "cold":
        for pair in args.cold_noise.split(","):
            start_noise, step_noise = (float(value) for value in pair.split(":"))
            rows.append((f"noise start {start_noise:g} step {step_noise:g}",) + evaluate(
                config, stage, ema_params, dict(start_noise=start_noise, step_noise=step_noise),
                args.num_samples, args.seed) + (False,))
    for label, overrides, is_reference in variants(config, budgets, args.reference_steps,
                                                   args.samplers, args.grids.split(",")):
        rows.append((label,) + evaluate(config, stage, ema_params, overrides,
                                        args.num_samples, args.seed) + (is_reference,))
    print_table(rows, args)
    if args.plot:
        plot([(label, nfe, quality["fd8"], is_reference)
              for label, quality, nfe, _, is_reference in rows], args.plot, args.config)


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


def print_table(rows, args):
    references = [quality["fd8"] for _, quality, _, _, is_reference in rows if is_reference]
    threshold = (min(references) * (1 + args.relative_tolerance) + args.absolute_tolerance
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
        print(f"\nReference FD8 {min(references):.3f} (best at {args.reference_steps} steps); "
              f"tolerance FD8 <= {threshold:.3f}.")
        if passing:
            nfe, fd8, label = min(passing)
            print(f"Cheapest within tolerance: {label} at NFE {nfe} (FD8 {fd8:.3f}).")
        else:
            print("No variant within tolerance at these NFE budgets.")


if __name__ == "__main__":
    main()
