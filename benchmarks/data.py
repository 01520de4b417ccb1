"""Images per second delivered by the input pipeline at 64, 256 and 1024 px with 0, 1, 2 workers.

    python -m benchmarks.data [--dataset=builtin:photos] [--batch_size=16] [--seconds=5]

Each setting builds an iterator, takes one batch (worker start-up, first decodes), then counts
the images delivered in `--seconds` of wall-clock time. The default data is the built-in photos
(random crops of 300 to 1411 px photographs, so every image is decoded, cropped and resized),
with upscaling allowed for 1024 px.
"""

import time

from absl import app, flags

from jaxdiff.data import create_iterator, default_data_config

DATASET = flags.DEFINE_string("dataset", "builtin:photos", "Data config name.")
BATCH_SIZE = flags.DEFINE_integer("batch_size", 16, "Images per batch.")
SECONDS = flags.DEFINE_float("seconds", 5.0, "Measuring time per setting.")
RESOLUTIONS = flags.DEFINE_list("resolutions", ["64", "256", "1024"], "Output sizes in pixels.")
WORKERS = flags.DEFINE_list("workers", ["0", "1", "2"], "Worker process counts.")


def images_per_second(name, resolution, num_workers, batch_size, seconds):
    config = default_data_config()
    config.name = name
    config.resolution = resolution
    config.allow_upscale = True
    config.num_workers = num_workers
    iterator = create_iterator(config, global_batch_size=batch_size, seed=0)
    next(iterator)
    delivered, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        delivered += next(iterator)["image"].shape[0]
    elapsed = time.perf_counter() - start
    iterator.close()
    return delivered / elapsed


def main(argv):
    del argv
    print(f"dataset {DATASET.value}, batch {BATCH_SIZE.value}, {SECONDS.value:g} s per setting")
    print(f"{'px':>6} {'workers':>8} {'images/s':>10}")
    for resolution in map(int, RESOLUTIONS.value):
        for workers in map(int, WORKERS.value):
            rate = images_per_second(
                DATASET.value, resolution, workers, BATCH_SIZE.value, SECONDS.value
            )
            print(f"{resolution:>6} {workers:>8} {rate:>10.1f}", flush=True)


if __name__ == "__main__":
    app.run(main)
