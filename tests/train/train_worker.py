"""Runs toy training in its own process for the kill / SIGTERM / multi-process tests.

Usage: python train_worker.py '<json spec>' with keys workdir, out (a path prefix), runs (a list
of num_steps; each later run resumes the same workdir), overrides (flat config overrides),
delay (seconds per batch), captions (true: the captioned digits through the real pipeline and
a toy text method, train_toy_text.py), and for multi-process runs num_processes, process_id, port.
Writes <out>.<process>.json (logged losses per run, preempted flags) and <out>.<process>.npz
(final parameters, gathered on every process).
"""

import json
import os
import sys

import jax
import numpy as np

spec = json.loads(sys.argv[1])
if spec.get("num_processes", 1) > 1:
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(coordinator_address=f"127.0.0.1:{spec['port']}",
                               num_processes=spec["num_processes"],
                               process_id=spec["process_id"])

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import train_toy as toy  # noqa: E402
from jax.experimental import multihost_utils  # noqa: E402

from jaxdiff import methods  # noqa: E402
from jaxdiff.train import loop  # noqa: E402

record = {"runs": [], "process_count": jax.process_count(), "device_count": jax.device_count()}
for num_steps in spec["runs"]:
    if spec.get("captions"):  # the captioned digits through the real pipeline, a text method
        import train_toy_text  # noqa: E402

        config = train_toy_text.toy_text_config(**spec.get("overrides", {}),
                                                num_steps=num_steps)
        iterator = train_toy_text.Slowed(train_toy_text.caption_iterator(
            config, jax.process_index(), jax.process_count()), spec.get("delay", 0.0))
    else:
        config = toy.toy_config(**spec.get("overrides", {}), num_steps=num_steps)
        iterator = toy.toy_iterator(config.batch_size, jax.process_index(),
                                    jax.process_count(), delay=spec.get("delay", 0.0))
    result = loop.train(config, spec["workdir"], methods.build(config), iterator)
    record["runs"].append({"losses": {d["step"]: d["loss"] for d in result.logged},
                           "preempted": result.preempted})
params = multihost_utils.process_allgather(result.state.params, tiled=True)
flat = jax.tree_util.tree_flatten_with_path(params)[0]
np.savez(f"{spec['out']}.{jax.process_index()}.npz",
         **{jax.tree_util.keystr(path): np.asarray(leaf) for path, leaf in flat})
with open(f"{spec['out']}.{jax.process_index()}.json", "w") as f:
    json.dump(record, f)
