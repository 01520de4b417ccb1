"""Images/s of the full train loop next to the bare jitted train step, for a small config.

    python -m benchmarks.train [--method=ddpm] [--preset=tiny] [--resolution=16]
        [--batch_size=16] [--interval=10] [--repeats=5]

Both rates are the best of `repeats` timed intervals of `interval` steps, so that other load on
the machine does not decide the comparison. The bare step runs on one fixed device batch (no
data loading, logging or checkpoints); the loop runs `jaxdiff.train.loop.train` on the default
data pipeline (8 px digits upscaled to `resolution`) with log_every = interval, and its
intervals are the logged ones after the first (which holds the compilation). Loop overhead =
1 - loop rate / bare rate; the target is under 5 %.

The loop is timed twice: fed by the data pipeline, and fed by a grain iterator that repeats one
host batch from memory. The second isolates the loop's own work (host-to-device batches,
metrics, preemption and checkpoint checks); the difference between the two is the pipeline's
decoding and resizing, which on a CPU-only machine competes with the train step for the same
cores (on GPU/TPU hosts it runs beside the device). benchmarks/data.py measures the pipeline.
"""

import tempfile
import time

import grain
import jax
from absl import app, flags

from jaxdiff import data, methods
from jaxdiff.train import defaults, loop, sharding, step

_METHOD = flags.DEFINE_string("method", "ddpm", "Registered method name.")
_PRESET = flags.DEFINE_string("preset", "tiny", "Model preset of the method's network.")
_RESOLUTION = flags.DEFINE_integer("resolution", 16, "Image side.")
_BATCH = flags.DEFINE_integer("batch_size", 16, "Global batch size.")
_INTERVAL = flags.DEFINE_integer("interval", 10, "Steps per timed interval.")
_REPEATS = flags.DEFINE_integer("repeats", 5, "Timed intervals; the best one counts.")


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


def bare_step_rate(config, method) -> float:
    """Best steps/s of the jitted step alone on one fixed batch."""
    run = loop.setup(config, method)
    state = loop.initial_state(config, method, run)
    train_step = step.jit_train_step(
        step.make_train_step(method, run.tx, run.schedule, accum_steps=config.grad_accum_steps,
                             ema_decay=config.ema_decay, mesh=run.mesh),
        run.state_shardings, run.mesh)
    host_batch = next(data.create_iterator(config.data, global_batch_size=config.batch_size,
                                           seed=0))
    batch = loop.to_global_batch(host_batch, sharding.batch_sharding(run.mesh))
    state, metrics = train_step(state, batch)  # compile
    jax.block_until_ready(metrics)
    rates = []
    for _ in range(_REPEATS.value):
        start = time.perf_counter()
        for _ in range(_INTERVAL.value):
            state, metrics = train_step(state, batch)
        jax.block_until_ready((state, metrics))
        rates.append(_INTERVAL.value / (time.perf_counter() - start))
    return max(rates)


def memory_iterator(config):
    """A checkpointable grain iterator that yields one pipeline batch again and again."""
    batch = next(data.create_iterator(config.data, global_batch_size=config.batch_size, seed=0))
    return iter(grain.MapDataset.source([batch]).repeat().to_iter_dataset())


def loop_rate(config, method, iterator) -> float:
    """Best steps/s of the loop's logged intervals after the first."""
    with tempfile.TemporaryDirectory() as workdir:
        result = loop.train(config, workdir, method, iterator)
    return max(d["steps_per_s"] for d in result.logged[1:])


def main(argv):
    del argv
    config = benchmark_config()
    method = methods.build(config)
    bare = bare_step_rate(config, method)
    from_memory = loop_rate(config, method, memory_iterator(config))
    from_pipeline = loop_rate(config, method, data.create_iterator(
        config.data, global_batch_size=config.batch_size, seed=0))
    print(f"{_METHOD.value} {_PRESET.value} {_RESOLUTION.value}px batch {config.batch_size} "
          f"on {jax.device_count()} {jax.devices()[0].platform} device(s)")
    print(f"bare jitted step             : {bare * config.batch_size:9.1f} images/s")
    print(f"train loop, batches in memory: {from_memory * config.batch_size:9.1f} images/s  "
          f"loop overhead {100 * (1 - from_memory / bare):6.2f} %")
    print(f"train loop, data pipeline    : {from_pipeline * config.batch_size:9.1f} images/s  "
          f"loop + pipeline overhead {100 * (1 - from_pipeline / bare):6.2f} %")


if __name__ == "__main__":
    app.run(main)
