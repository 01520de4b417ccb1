"""benchmarks/train.py runs end to end and prints its rates, FLOPs and memory consistently."""

import os
import re
import subprocess
import sys

import train_toy as toy


def test_train_benchmark_prints_loop_and_bare_step_rates():
    env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=toy.REPO_ROOT, XLA_FLAGS="")
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks.train", "--interval=3", "--repeats=1", "--rounds=1",
         "--batch_size=4", "--resolution=8"],
        env=env, capture_output=True, text=True, timeout=300, cwd=toy.REPO_ROOT)
    assert result.returncode == 0, result.stderr[-3000:]
    header, bare, memory, pipeline = result.stdout.strip().splitlines()[-4:]
    assert re.search(r"batch 4 on 1 cpu device\(s\): [0-9.]+ GFLOP/image per step, "
                     r"peak [0-9.]+ MiB/device", header), header
    rates = [float(re.search(r": +([0-9.]+) images/s", line).group(1))
             for line in (bare, memory, pipeline)]
    assert all(rate > 0 for rate in rates)
    for line, rate in ((memory, rates[1]), (pipeline, rates[2])):
        overhead = float(re.search(r"overhead +(-?[0-9.]+) %", line).group(1))
        assert abs(overhead - 100 * (1 - rate / rates[0])) < 0.5  # rates print rounded
