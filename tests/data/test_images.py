"""Host image preprocessing: conversions to RGB uint8, crops, antialiased resize, flips."""

import io
import socket

import numpy as np
import pytest
from PIL import Image

from jaxdiff.data import images


def encode(array, fmt, mode=None):
    buffer = io.BytesIO()
    Image.fromarray(array, mode=mode).save(buffer, format=fmt)
    return buffer.getvalue()


def test_network_is_blocked():
    with pytest.raises(RuntimeError, match="network access attempted"):
        socket.create_connection(("127.0.0.1", 9), timeout=1)


def test_to_rgb_uint8_values_by_hand():
    gray = np.array([[0, 7], [128, 255]], np.uint8)
    np.testing.assert_array_equal(images.to_rgb_uint8(gray), np.repeat(gray[..., None], 3, -1))
    # 16 bit: round(v / 257): 65535 -> 255, 257 * 77 -> 77, 128 -> 0, 129 -> 1.
    deep = np.array([[65535, 257 * 77], [128, 129]], np.uint16)
    np.testing.assert_array_equal(images.to_rgb_uint8(deep)[..., 0], [[255, 77], [0, 1]])
    # Floats in [0, 1]: round(255 v): 0.5 -> 128 (127.5 rounds to even), 2.0 clips to 255.
    floats = np.array([[0.0, 0.5], [0.2, 2.0]])
    np.testing.assert_array_equal(images.to_rgb_uint8(floats)[..., 1], [[0, 128], [51, 255]])
    # Alpha over white: c = 100, a = 51 -> 100 * 0.2 + 255 * 0.8 = 224; opaque keeps c.
    rgba = np.array([[[100, 100, 100, 51], [10, 20, 30, 255]]], np.uint8)
    np.testing.assert_array_equal(images.to_rgb_uint8(rgba), [[[224] * 3, [10, 20, 30]]])
    with pytest.raises(images.UnusableImage):
        images.to_rgb_uint8(np.zeros((2, 2, 5), np.uint8))


@pytest.mark.parametrize("fmt", ["PNG", "WEBP", "BMP"])
def test_decode_lossless_formats_round_trip(fmt):
    rgb = np.arange(4 * 5 * 3, dtype=np.uint8).reshape(4, 5, 3) * 3
    if fmt == "WEBP":
        decoded = images.decode_image(_lossless_webp(rgb))
    else:
        decoded = images.decode_image(encode(rgb, fmt))
    np.testing.assert_array_equal(decoded, rgb)


def _lossless_webp(rgb):
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="WEBP", lossless=True)
    return buffer.getvalue()


def test_decode_gray_rgba_palette_and_16_bit():
    gray = np.array([[3, 200]], np.uint8)
    np.testing.assert_array_equal(images.decode_image(encode(gray, "PNG"))[0, :, 2], [3, 200])
    rgba = np.array([[[100, 0, 200, 51]]], np.uint8)
    np.testing.assert_array_equal(images.decode_image(encode(rgba, "PNG")), [[[224, 204, 244]]])
    deep = np.array([[65535, 257 * 40]], np.uint16)
    np.testing.assert_array_equal(images.decode_image(encode(deep, "PNG"))[0, :, 0], [255, 40])
    palette = Image.fromarray(np.array([[[255, 0, 0], [0, 0, 255]]], np.uint8)).convert("P")
    buffer = io.BytesIO()
    palette.save(buffer, format="PNG")
    np.testing.assert_array_equal(
        images.decode_image(buffer.getvalue()), [[[255, 0, 0], [0, 0, 255]]]
    )


def test_corrupt_and_truncated_bytes_are_unusable():
    with pytest.raises(images.UnusableImage):
        images.decode_image(b"definitely not an image")
    jpeg = encode(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8), "JPEG")
    with pytest.raises(images.UnusableImage):
        images.decode_image(jpeg[: len(jpeg) // 3])


def test_check_size():
    image = np.zeros((10, 12, 3), np.uint8)
    images.check_size(image, 10, allow_upscale=False)
    images.check_size(image, 11, allow_upscale=True)
    with pytest.raises(images.UnusableImage):
        images.check_size(image, 11, allow_upscale=False)


def test_center_crop_is_the_middle_square():
    image = np.arange(4 * 6, dtype=np.uint8).reshape(4, 6, 1).repeat(3, -1)
    assert images.center_square(4, 6) == (0, 1, 4)
    out = images.crop_resize_flip(
        image, resolution=4, crop="center", scale=(1, 1), allow_upscale=False, flip=False,
        rng=np.random.default_rng(0),
    )
    np.testing.assert_array_equal(out, image[:, 1:5])


def test_random_square_bounds():
    rng = np.random.default_rng(0)
    sides = []
    for _ in range(300):
        top, left, side = images.random_square(
            40, 60, resolution=16, scale=(0.25, 0.75), allow_upscale=False, rng=rng
        )
        assert 0 <= top <= 40 - side and 0 <= left <= 60 - side
        sides.append(side)
    # Without upscaling the side is in [max(0.25 * 40, 16), 0.75 * 40] = [16, 30].
    assert min(sides) == 16 and max(sides) == 30
    upscaled = [
        images.random_square(40, 60, resolution=16, scale=(0.25, 0.75), allow_upscale=True,
                             rng=rng)[2]
        for _ in range(300)
    ]
    assert min(upscaled) == 10 and max(upscaled) == 30


def test_downscaling_is_antialiased():
    # A one-pixel checkerboard of 0/255 averages to 127.5 per output pixel; point sampling would
    # return 0 or 255.
    checker = ((np.indices((64, 64)).sum(0) % 2) * 255).astype(np.uint8)
    checker = np.repeat(checker[..., None], 3, -1)
    small = images.resize_square(checker, 16)
    assert small.shape == (16, 16, 3)
    assert np.abs(small[2:-2, 2:-2].astype(float) - 127.5).max() <= 2.0
    constant = np.full((8, 8, 3), 77, np.uint8)
    np.testing.assert_array_equal(images.resize_square(constant, 32), np.full((32, 32, 3), 77))


def test_flip_happens_about_half_the_time():
    image = np.arange(2 * 3, dtype=np.uint8).reshape(2, 3, 1).repeat(3, -1)
    rng = np.random.default_rng(1)
    flips = 0
    for _ in range(400):
        out = images.crop_resize_flip(
            image[:, :2], resolution=2, crop="center", scale=(1, 1), allow_upscale=False,
            flip=True, rng=rng,
        )
        if not np.array_equal(out, image[:, :2]):
            np.testing.assert_array_equal(out, image[:, 1::-1])
            flips += 1
    # Binomial(400, 1/2): standard deviation 10, so 200 +- 40 is a 4-sigma band.
    assert 160 <= flips <= 240
