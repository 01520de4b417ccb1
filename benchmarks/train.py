"""Images/s of the full train loop next to the bare jitted train step, for a small config.

    python -m benchmarks.train [--method=ddpm] [--preset=tiny] [--resolution=16]
        [--batch_size=16] [--interval=100] [--repeats=5] [--rounds=3]

Three rates are measured, each as the best of `repeats` timed intervals of `interval` steps:
  bare step        the jitted step alone on one fixed device batch (no data loading, logging or
                   checkpoints);
  loop, in memory  `jaxdiff.train.loop.train` fed by a grain iterator that repeats one host
                   batch: the loop's own work (host-to-device batches, metrics, preemption and
                   checkpoint checks), timed on its logged intervals after the first (which holds
                   the compilation), with log_every = interval;
  loop, pipeline   the same loop fed by the default data pipeline (8 px digits upscaled to
                   `resolution`).
The three are measured in turn, `rounds` times, and each keeps its best rate, so a slow phase of
the machine does not land on one of them only. Overhead = 1 - loop rate / bare rate; the target
is under 5 %. On a CPU-only machine the pipeline's decoding and resizing compete with the step
for the same cores (on GPU/TPU hosts they run beside the device); benchmarks/data.py measures
the pipeline alone.

It also prints the step's XLA FLOPs per image (`cost_analysis`, a multiply-add is 2 flops) and
its peak memory per device (`memory_analysis`: arguments + outputs - donated + temporaries).
"""

import tempfile
import time

import grain
import jax
from absl import app, flags

from benchmarks.models import peak_bytes
from jaxdiff import data, methods
from jaxdiff.train import defaults, loop, sharding, step

_METHOD = flags.DEFINE_string("method", "ddpm", "Registered method name.")
_PRESET = flags.DEFINE_string("preset", "tiny", "Model preset of the method's network.")
_RESOLUTION = flags.DEFINE_integer("resolution", 16, "Image side.")
_BATCH = flags.DEFINE_integer("batch_size", 16, "Global batch size.")
_INTERVAL = flags.DEFINE_integer("interval", 10, "Steps per timed interval.")
_REPEATS = flags.DEFINE_integer("repeats", 5, "Timed intervals; the best one counts.")
_ROUNDS = flags.DEFINE_integer("rounds", 3, "Times the three rates are measured in turn.")


def benchmark_config():
    config = defaults.train_config()
    config.update(dict(num_steps=_INTERVAL.value * (_REPEATS.value + 1),
                       batch_size=_BATCH.value, log_every=_INTERVAL.value))
    config.checkpoint.every = 10**9  # only the final save, after the last timed interval
    config.sample.every = 0
    config.model = dict(preset=_PRESET.value)
    config.method = dict(name=_METHOD.value)
    config.data = data.default_data_config()
    config.data.resolution = _RESOLUTION.value
    return config


class BareStep:
    """The jitted step compiled once on one fixed device batch."""

    def __init__(self, config, method):
        run = loop.setup(config, method)
        self.state = loop.initial_state(config, method, run)
        train_step = step.jit_train_step(
            step.make_train_step(method, run.tx, run.schedule,
                                 accum_steps=config.grad_accum_steps,
                                 ema_decay=config.ema_decay, mesh=run.mesh),
            run.state_shardings, run.mesh)
        host_batch = next(data.create_iterator(config.data, global_batch_size=config.batch_size,
                                               seed=0))
        self.batch = loop.to_global_batch(host_batch, sharding.batch_sharding(run.mesh))
        self.compiled = train_step.lower(self.state, self.batch).compile()
        self.state, metrics = self.compiled(self.state, self.batch)  # warm up
        jax.block_until_ready(metrics)

    def flops_per_image(self, batch_size: int) -> float:
        return self.compiled.cost_analysis()["flops"] * jax.device_count() / batch_size

    def rate(self) -> float:
        """Best steps/s over `repeats` intervals of `interval` steps."""
        rates = []
        for _ in range(_REPEATS.value):
            start = time.perf_counter()
            for _ in range(_INTERVAL.value):
                self.state, metrics = self.compiled(self.state, self.batch)
            jax.block_until_ready((self.state, metrics))
            rates.append(_INTERVAL.value / (time.perf_counter() - start))
        return max(rates)


def memory_iterator(config):
    """A checkpointable grain iterator that yields one pipeline batch again and again."""
    batch = next(data.create_iterator(config.data, global_batch_size=config.batch_size, seed=0))
    no_threads = grain.ReadOptions(num_threads=0, prefetch_buffer_size=0)
    return iter(grain.MapDataset.source([batch]).repeat().to_iter_dataset(no_threads))


def loop_rate(config, method, iterator) -> float:
    """Best steps/s of the loop's logged intervals after the first."""
    with tempfile.TemporaryDirectory() as workdir:
        result = loop.train(config, workdir, method, iterator)
    return max(d["steps_per_s"] for d in result.logged[1:])


def main(argv):
    del argv
    config = benchmark_config()
    method = methods.build(config)
    bare_step = BareStep(config, method)
    rounds = {"bare": [], "memory": [], "pipeline": []}
    for _ in range(_ROUNDS.value):
        rounds["bare"].append(bare_step.rate())
        rounds["memory"].append(loop_rate(config, method, memory_iterator(config)))
        rounds["pipeline"].append(loop_rate(config, method, data.create_iterator(
            config.data, global_batch_size=config.batch_size, seed=0)))
    best = {name: max(rates) for name, rates in rounds.items()}
    overhead = {name: 100 * (1 - best[name] / best["bare"]) for name in ("memory", "pipeline")}
    print(f"{_METHOD.value} {_PRESET.value} {_RESOLUTION.value}px batch {config.batch_size} "
          f"on {jax.device_count()} {jax.devices()[0].platform} device(s): "
          f"{bare_step.flops_per_image(config.batch_size) / 1e9:.3f} GFLOP/image per step, "
          f"peak {peak_bytes(bare_step.compiled) / 2**20:.1f} MiB/device")
    labels = {"bare": "bare jitted step             ", "memory": "train loop, batches in memory",
              "pipeline": "train loop, data pipeline    "}
    for name, label in labels.items():
        per_round = " / ".join(f"{rate * config.batch_size:.0f}" for rate in rounds[name])
        line = f"{label}: {best[name] * config.batch_size:9.1f} images/s"
        if name != "bare":
            line += f"  overhead {overhead[name]:6.2f} %"
        print(f"{line}  (rounds: {per_round})")


if __name__ == "__main__":
    app.run(main)
