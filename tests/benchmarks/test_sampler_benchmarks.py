"""benchmarks/samplers.py prints its table and writes its plot from one command, and its figures
rank the grids as the exact-denoiser tests do; benchmarks/trained_samplers.py runs on a
checkpoint."""

import os
import re
import subprocess
import sys

import train_toy as toy

ENV = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=toy.REPO_ROOT, XLA_FLAGS="")


def run(*args, timeout=600):
    result = subprocess.run([sys.executable, "-m", *args], env=ENV, capture_output=True,
                            text=True, timeout=timeout, cwd=toy.REPO_ROOT)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def test_sampler_benchmark_table_and_plot(tmp_path):
    plot = tmp_path / "samplers.png"
    out = run("benchmarks.samplers", "--nfe=10,50", "--samples=4000",
              "--processes=cosine,attenuation", f"--plot={plot}")
    rows = {(m.group(1), m.group(2), m.group(3).strip(), int(m.group(4))): float(m.group(5))
            for m in re.finditer(r"^(cosine|attenuation) +(\S+) +(.+?) +(\d+) +([0-9.]+)% +"
                                 r"[0-9.]+%$", out, re.MULTILINE)}
    assert len(rows) == (5 + 2) * 5 * 2  # samplers x grid variants x budgets
    # 10 NFE of DPM-Solver++(2M): the power-4 grid keeps the detail the uniform grid blurs.
    assert (rows[("cosine", "dpm_solver_pp", "power power=4", 10)] < 15
            < rows[("cosine", "dpm_solver_pp", "uniform", 10)])
    assert "Best grid per sampler and NFE" in out
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_trained_sampler_benchmark_on_a_checkpoint(tmp_path):
    workdir = tmp_path / "ddpm"
    run("jaxdiff.main", "--config=configs/ddpm.py", f"--workdir={workdir}",
        "--config.num_steps=2", "--config.batch_size=8", "--config.sample.every=0",
        "--config.checkpoint.every=2")
    out = run("benchmarks.trained_samplers", "--config=configs/ddpm.py", f"--workdir={workdir}",
              "--samplers=dpm_solver_pp,heun", "--grids=karras", "--nfe=4",
              "--reference_steps=6", "--num_samples=16", f"--plot={tmp_path / 'run.png'}")
    table = [line for line in out.splitlines() if re.match(r"^(dpm_solver_pp|heun) ", line)]
    # References at NFE 6 (Heun: 4 steps, 2 * 4 - 2 calls on the chain), then NFE 4 on karras.
    assert [line.split()[:3] for line in table] == [
        ["dpm_solver_pp", "uniform", "6"], ["dpm_solver_pp", "karras", "4"],
        ["heun", "uniform", "6"], ["heun", "karras", "4"]]
    assert re.search(r"Reference FD8 [0-9.]+ \(best at 6 steps\)", out)
    # The plot, and the same plot again from the printed table.
    saved = tmp_path / "table.txt"
    saved.write_text(out)
    run("benchmarks.trained_samplers", f"--from_table={saved}", f"--plot={tmp_path / 'again.png'}")
    for name in ("run.png", "again.png"):
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
