"""Metric writing: TensorBoard event files (tensorboardX, no TensorFlow needed) plus log lines,
from process 0 only; other processes get a writer that drops everything.

The methods follow clu's MetricWriter interface (write_scalars / write_images, step first). clu's
writers themselves cannot be used here: `import clu.metric_writers` imports TensorFlow (its
package __init__ loads the TF summary writer), which this project does not install.
"""

from typing import Mapping

import numpy as np
import tensorboardX
from absl import logging


class MetricWriter:
    """Writes scalars and images to TensorBoard under `logdir` and scalars to the log."""

    def __init__(self, logdir: str):
        self._writer = tensorboardX.SummaryWriter(logdir=str(logdir))

    def write_scalars(self, step: int, scalars: Mapping[str, float]) -> None:
        for name, value in scalars.items():
            self._writer.add_scalar(name, float(value), step)
        logging.info("step %d: %s", step,
                     ", ".join(f"{name}={float(value):.6g}" for name, value in scalars.items()))

    def write_images(self, step: int, images: Mapping[str, np.ndarray]) -> None:
        """images: name -> (H, W, C) uint8."""
        for name, image in images.items():
            self._writer.add_image(name, image, step, dataformats="HWC")

    def write_text(self, step: int, name: str, text: str) -> None:
        self._writer.add_text(name, text, step)

    def flush(self) -> None:
        self._writer.flush()

    def close(self) -> None:
        self._writer.close()


class NullWriter:
    """The writer of processes other than 0."""

    def write_scalars(self, step, scalars):
        del step, scalars

    def write_images(self, step, images):
        del step, images

    def write_text(self, step, name, text):
        del step, name, text

    def flush(self):
        pass

    def close(self):
        pass


def create_writer(logdir: str, process_index: int):
    return MetricWriter(logdir) if process_index == 0 else NullWriter()
