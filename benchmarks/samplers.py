"""Sampler benchmark: quality against network calls (NFE) for every sampler and time grid,
driven by the exact denoiser of data with fine structure.

The data: every pixel i.i.d. from a Gaussian mixture with narrow components (weights 0.3, 0.5,
0.2, means -0.6, 0.1, 0.7, stds 0.05, 0.08, 0.04 on the data range [-1, 1]), whose optimal
denoiser is known in closed form (core/analytic.mixture_denoiser). Each sample is assigned to
its nearest component; quality is
    spread error   max over components of |std of its samples / true std - 1|
    share error    max over components of |share of samples / weight - 1|
(0 for the data law; a sampler that blurs the detail shows a spread error above 0, one that
collapses it a spread error near 1); the summary ranks by the larger of the two. Processes:
the VP process on the clipped continuous cosine (simple diffusion, MDM) and on the 1000-step
cosine-beta chain (DDPM), and analytic attenuation.

Usage:
    python -m benchmarks.samplers                       # the table, and samplers.png
    python -m benchmarks.samplers --nfe 10,20 --samples 20000 --plot=
"""

import argparse
import sys
import time

import jax
import numpy as np

from jaxdiff.core import analytic, attenuation_samplers, samplers
from jaxdiff.core.processes import attenuation_logsnr
from jaxdiff.core.samplers import GAUSSIAN_SAMPLERS
from jaxdiff.core.schedule_registry import make_schedule
from jaxdiff.core.time_grids import GRIDS, time_grid
from jaxdiff.methods.attenuation import SAMPLERS as ATTENUATION_SAMPLERS

WEIGHTS = np.array([0.3, 0.5, 0.2])
MEANS = np.array([-0.6, 0.1, 0.7])
STDS = np.array([0.05, 0.08, 0.04])
GRID_VARIANTS = [("uniform", {}), ("power", {"power": 2.0}), ("power", {"power": 4.0}),
                 ("logsnr", {}), ("karras", {"rho": 7.0})]
assert {name for name, _ in GRID_VARIANTS} == set(GRIDS)
PROCESSES = {"cosine": GAUSSIAN_SAMPLERS, "cosine_betas": GAUSSIAN_SAMPLERS,
             "attenuation": ATTENUATION_SAMPLERS}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nfe", default="5,10,20,50,250", help="comma-separated NFE budgets")
    parser.add_argument("--samples", type=int, default=20000, help="pixels sampled per run")
    parser.add_argument("--processes", default=",".join(PROCESSES))
    parser.add_argument("--plot", default="samplers.png", help="PNG path ('' for none)")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def quality(samples) -> tuple:
    """(spread error, share error) of mixture samples (module docstring)."""
    values = np.asarray(samples, np.float64).ravel()
    nearest = np.argmin(np.abs(values[:, None] - MEANS[None]), axis=1)
    shares = np.array([np.mean(nearest == k) for k in range(len(MEANS))])
    spreads = np.array([values[nearest == k].std() / STDS[k] if np.any(nearest == k) else 0.0
                        for k in range(len(MEANS))])
    return float(np.max(np.abs(spreads - 1.0))), float(np.max(np.abs(shares / WEIGHTS - 1.0)))


def sampler_run(process: str, sampler: str):
    """(run(times, x, rng) -> samples, logsnr_fn, t_end, chain steps or None) for a process."""
    variances = STDS**2
    if process == "attenuation":
        denoise = analytic.attenuation_mixture_denoiser(WEIGHTS, MEANS, variances)
        if sampler == "stochastic":
            run = lambda times, x, rng: attenuation_samplers.attenuation_sample(
                denoise, rng, x, times)
        else:
            run = lambda times, x, rng: attenuation_samplers.attenuation_ode_sample(
                denoise, x, times)
        return run, attenuation_logsnr, 1e-4, None
    schedule = make_schedule(process)
    logsnr_fn = schedule.logsnr_fn
    denoise = analytic.mixture_denoiser(WEIGHTS, MEANS, variances, logsnr_fn)
    runs = {
        "ancestral": lambda times, x, rng: samplers.ddpm_sample(denoise, rng, x, logsnr_fn,
                                                                times),
        "ddim": lambda times, x, rng: samplers.ddim_sample(denoise, None, x, logsnr_fn, times),
        "dpm_solver_pp": lambda times, x, rng: samplers.dpm_solver_pp_sample(
            denoise, x, logsnr_fn, times, order=2),
        "dpm_solver_pp_3m": lambda times, x, rng: samplers.dpm_solver_pp_sample(
            denoise, x, logsnr_fn, times, order=3),
        "heun": lambda times, x, rng: samplers.heun_sample(denoise, x, logsnr_fn, times),
    }
    return runs[sampler], schedule, 0.0, schedule.num_timesteps


def grid_for(process, schedule_or_logsnr, t_end, name, options, steps):
    if process == "attenuation":
        return time_grid(name, steps, schedule_or_logsnr, t_end=t_end, **options)
    return schedule_or_logsnr.sampling_times(steps, name, **options)


def measure(args):
    """Rows (process, sampler, grid label, NFE, spread error, share error, seconds)."""
    budgets = [int(n) for n in args.nfe.split(",")]
    rows = []
    x = jax.random.normal(jax.random.PRNGKey(args.seed), (args.samples, 1, 1, 1))
    rng = jax.random.PRNGKey(args.seed + 1)
    for process in args.processes.split(","):
        for sampler in PROCESSES[process]:
            run, schedule, t_end, chain = sampler_run(process, sampler)
            jitted = jax.jit(run)
            for name, options in GRID_VARIANTS:
                label = name + "".join(f" {key}={value:g}" for key, value in options.items())
                for nfe in budgets:
                    steps = samplers.steps_for_evaluations(sampler, nfe, chain is not None)
                    try:
                        times = grid_for(process, schedule, t_end, name, options, steps)
                    except ValueError as error:  # e.g. more steps than a grid can space
                        print(f"# {process} {sampler} {label} NFE {nfe}: {error}",
                              file=sys.stderr)
                        continue
                    start = time.perf_counter()
                    spread, share = quality(jax.block_until_ready(jitted(times, x, rng)))
                    seconds = time.perf_counter() - start
                    used = (steps if process == "attenuation" else
                            samplers.num_evaluations(sampler, times, schedule.logsnr_fn))
                    rows.append((process, sampler, label, used, spread, share, seconds))
    return rows


def print_table(rows):
    print(f"{'process':13s} {'sampler':17s} {'grid':14s} {'NFE':>4s} {'spread err':>10s} "
          f"{'share err':>9s}")
    for process, sampler, label, nfe, spread, share, _ in rows:
        print(f"{process:13s} {sampler:17s} {label:14s} {nfe:4d} {100 * spread:9.1f}% "
              f"{100 * share:8.1f}%")
    print("\nBest grid per sampler and NFE (lowest max(spread error, share error)):")
    best = {}
    for process, sampler, label, nfe, spread, share, _ in rows:
        key, error = (process, sampler, nfe), max(spread, share)
        if key not in best or error < best[key][1]:
            best[key] = (label, error)
    for (process, sampler, nfe), (label, error) in sorted(best.items()):
        print(f"  {process:13s} {sampler:17s} NFE {nfe:4d}: {label:14s} {100 * error:5.1f}%")


def plot(rows, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pairs = sorted({(process, sampler) for process, sampler, *_ in rows})
    columns = 4
    figure, axes = plt.subplots(-(-len(pairs) // columns), columns, squeeze=False,
                                figsize=(4 * columns, 3 * -(-len(pairs) // columns)))
    for axis, (process, sampler) in zip(axes.flat, pairs):
        for label in dict.fromkeys(row[2] for row in rows):
            points = [(nfe, spread) for p, s, g, nfe, spread, *_ in rows
                      if (p, s, g) == (process, sampler, label)]
            if points:
                axis.plot(*zip(*points), marker="o", label=label)
        axis.set(xscale="log", yscale="log", title=f"{process}: {sampler}", xlabel="NFE",
                 ylabel="spread error")
        axis.grid(True, which="both", alpha=0.3)
    for axis in list(axes.flat)[len(pairs):]:
        axis.axis("off")
    axes.flat[0].legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=90)
    print(f"\nPlot: {path}")


def main(argv=None):
    args = parse_args(argv)
    start = time.perf_counter()
    rows = measure(args)
    print_table(rows)
    if args.plot:
        plot(rows, args.plot)
    print(f"{len(rows)} runs of {args.samples} samples in {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
