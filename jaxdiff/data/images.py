"""Per-image host preprocessing: decoding to RGB uint8, square crops, antialiased resizing, flips.

Everything here runs on the host (numpy / Pillow) inside the grain pipeline; the [-1, 1] scaling
happens on device (`jaxdiff.data.to_model_input`).
"""

import io
import math

import numpy as np
from PIL import Image

# Pixels of a transparent image are composited over this background (white, as image viewers do).
_ALPHA_BACKGROUND = 255.0


class UnusableImage(Exception):
    """An image that cannot be used: unreadable, corrupt, or too small for the resolution."""


def _to_uint8(pixels):
    """Maps integer, boolean or float pixel values to uint8.

    uint8 is kept; 16-bit values map by v8 = round(v16 * 255 / 65535) = round(v16 / 257); other
    integers are taken as 8-bit when they fit in [0, 255] and as 16-bit otherwise; booleans map to
    {0, 255}; floats are taken in [0, 1] and map by round(255 * clip(v, 0, 1)).
    """
    if pixels.dtype == np.uint8:
        return pixels
    if pixels.dtype == np.bool_:
        return pixels.astype(np.uint8) * np.uint8(255)
    if np.issubdtype(pixels.dtype, np.integer):
        if pixels.dtype == np.uint16 or pixels.max(initial=0) > 255:
            return np.rint(np.clip(pixels, 0, 65535) / 257.0).astype(np.uint8)
        return np.clip(pixels, 0, 255).astype(np.uint8)
    if np.issubdtype(pixels.dtype, np.floating):
        return np.rint(255.0 * np.clip(pixels, 0.0, 1.0)).astype(np.uint8)
    raise UnusableImage(f"pixels of dtype {pixels.dtype} cannot be converted to uint8")


def to_rgb_uint8(pixels):
    """Converts an (H, W), (H, W, 1), (H, W, 2), (H, W, 3) or (H, W, 4) array to (H, W, 3) uint8.

    Grayscale is repeated over three channels. An alpha channel a (in [0, 255]) is composited
    over a white background: out = round(c * a / 255 + 255 * (1 - a / 255)).
    """
    pixels = np.asarray(pixels)
    if pixels.ndim == 2:
        pixels = pixels[..., None]
    if pixels.ndim != 3 or pixels.shape[-1] not in (1, 2, 3, 4) or 0 in pixels.shape[:2]:
        raise UnusableImage(f"an image must be (H, W) or (H, W, 1..4), got shape {pixels.shape}")
    pixels = _to_uint8(pixels)
    if pixels.shape[-1] in (2, 4):
        color = pixels[..., :-1].astype(np.float32)
        alpha = pixels[..., -1:].astype(np.float32) / 255.0
        pixels = np.rint(color * alpha + _ALPHA_BACKGROUND * (1.0 - alpha)).astype(np.uint8)
    if pixels.shape[-1] == 1:
        pixels = np.repeat(pixels, 3, axis=-1)
    return np.ascontiguousarray(pixels)


def decode_image(encoded):
    """Decodes an encoded image file (bytes) to (H, W, 3) uint8; raises UnusableImage if corrupt.

    Palette, CMYK, YCbCr and 1-bit images go through Pillow's RGB(A) conversion; 16-bit and 32-bit
    integer images are mapped to 8 bits by `_to_uint8`; alpha is composited by `to_rgb_uint8`.
    """
    try:
        with Image.open(io.BytesIO(encoded)) as image:
            image.load()
            if image.mode not in ("L", "LA", "RGB", "RGBA", "I", "I;16", "I;16B", "I;16L"):
                has_alpha = "transparency" in image.info or image.mode in ("PA", "RGBa", "La")
                image = image.convert("RGBA" if has_alpha else "RGB")
            pixels = np.array(image)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as error:
        raise UnusableImage(f"cannot decode image: {error}") from error
    return to_rgb_uint8(pixels)


def check_size(image, resolution, allow_upscale):
    """Raises UnusableImage when the short side of `image` is below `resolution` without upscaling."""
    short_side = min(image.shape[:2])
    if short_side < resolution and not allow_upscale:
        raise UnusableImage(
            f"image of size {image.shape[0]}x{image.shape[1]} is smaller than the resolution "
            f"{resolution} and upscaling is disabled"
        )


def center_square(height, width):
    """The largest centred square: (top, left, side) with side = min(H, W)."""
    side = min(height, width)
    return (height - side) // 2, (width - side) // 2, side


def random_square(height, width, *, resolution, scale, allow_upscale, rng):
    """A random square crop (top, left, side) of an H x W image.

    The side is uniform over the integers in [scale[0] * min(H, W), scale[1] * min(H, W)]
    (a square RandomResizedCrop, as in Inception-style augmentation); without upscaling it is at
    least `resolution`, so the crop is only ever shrunk to the output size. The position is
    uniform over all placements of that square inside the image.
    """
    short_side = min(height, width)
    high = max(1, min(short_side, math.floor(scale[1] * short_side)))
    low = max(1, math.ceil(scale[0] * short_side))
    if not allow_upscale:
        low = max(low, min(resolution, short_side))
        high = max(high, low)
    side = int(rng.integers(low, high + 1))
    top = int(rng.integers(0, height - side + 1))
    left = int(rng.integers(0, width - side + 1))
    return top, left, side


def resize_square(image, resolution):
    """Resizes a square uint8 image to resolution x resolution with Pillow's bicubic filter.

    Pillow widens the filter support by the downscaling factor, so shrinking is antialiased
    (a box-like average over each output pixel's footprint) rather than point-sampled.
    """
    if image.shape[0] == resolution:
        return image
    resized = Image.fromarray(image).resize((resolution, resolution), Image.Resampling.BICUBIC)
    return np.asarray(resized)


def crop_resize_flip(image, *, resolution, crop, scale, allow_upscale, flip, rng):
    """Square crop (centre or random), antialiased resize to `resolution`, random horizontal flip.

    `image` is (H, W, 3) uint8; `rng` a numpy Generator (grain derives one per element from the
    seed and the element index, so the result is deterministic). Returns (resolution,
    resolution, 3) uint8.
    """
    height, width = image.shape[:2]
    if crop == "center":
        top, left, side = center_square(height, width)
    else:
        top, left, side = random_square(
            height, width, resolution=resolution, scale=scale, allow_upscale=allow_upscale, rng=rng
        )
    image = resize_square(image[top : top + side, left : left + side], resolution)
    if flip and rng.random() < 0.5:
        image = image[:, ::-1]
    return np.ascontiguousarray(image)
