"""Sample grids: images in [-1, 1] -> uint8 -> one tiled PNG."""

import io
import math

import numpy as np
from etils import epath
from PIL import Image


def to_uint8(images: np.ndarray) -> np.ndarray:
    """[-1, 1] floats -> uint8 pixels round((x + 1) * 127.5), clipped to [0, 255]."""
    return np.clip(np.round((np.asarray(images, np.float32) + 1.0) * 127.5), 0, 255).astype(
        np.uint8)


def image_grid(images: np.ndarray, padding: int = 1, columns=None) -> np.ndarray:
    """(N, H, W, C) uint8 -> one (rows*(H+p)+p, cols*(W+p)+p, C) image with cols = `columns`
    (default ceil(sqrt N)), tiles in row-major order on a black background."""
    n, h, w, c = images.shape
    cols = columns or math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    grid = np.zeros((rows * (h + padding) + padding, cols * (w + padding) + padding, c),
                    np.uint8)
    for index, image in enumerate(images):
        top = padding + (index // cols) * (h + padding)
        left = padding + (index % cols) * (w + padding)
        grid[top:top + h, left:left + w] = image
    return grid


def save_png(path: epath.Path, image: np.ndarray) -> None:
    """Writes an (H, W, 3) or (H, W, 1) uint8 image (local path or gs://)."""
    buffer = io.BytesIO()
    Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image).save(buffer, format="PNG")
    epath.Path(path).write_bytes(buffer.getvalue())
