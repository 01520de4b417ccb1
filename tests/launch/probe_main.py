"""Stands in for `python -m jaxdiff.main` in the launch tests.

It parses the arguments a launcher passes with jaxdiff.main's own absl flags (an unknown flag
fails), runs jaxdiff.main's distributed initialisation, and writes what this process got to
WORKDIR/probe.<process index>.json: its process index and count, the parsed workdir and config,
and the launch environment.
"""

import json
import os
import sys

if sys.argv[1:3] != ["-m", "jaxdiff.main"]:
    sys.exit(f"probe_main.py expects '-m jaxdiff.main ...', got {sys.argv[1:3]}.")
sys.path.insert(0, os.getcwd())  # as `python -m` does: the launchers run from the repository root

import jax  # noqa: E402
from absl import flags  # noqa: E402

from jaxdiff import main  # noqa: E402

flags.FLAGS(["jaxdiff.main", *sys.argv[3:]])
main.initialize_distributed(main._COORDINATOR.value, main._NUM_PROCESSES.value,
                            main._PROCESS_ID.value)

report = json.dumps({
    "process_index": jax.process_index(),
    "process_count": jax.process_count(),
    "workdir": main._WORKDIR.value,
    "config": main._CONFIG.value.to_dict(),
    "env": {name: os.environ.get(name) for name in (
        "XLA_FLAGS", "XLA_PYTHON_CLIENT_MEM_FRACTION", "NCCL_DEBUG", "JAX_LOCAL_DEVICE_IDS",
        "SLURM_PROCID", "SLURM_LOCALID")},
})
os.makedirs(main._WORKDIR.value, exist_ok=True)
with open(os.path.join(main._WORKDIR.value, f"probe.{jax.process_index()}.json"), "w") as f:
    f.write(report)
