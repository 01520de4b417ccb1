"""Built-in datasets made from image files that installed packages ship: never a download.

| name             | source package                         | images | native size   | labels  |
|------------------|----------------------------------------|--------|---------------|---------|
| digits           | scikit-learn `load_digits`             | 1797   | 8x8 gray      | 10      |
| captioned_digits | the digits, tinted, with captions      | 1797   | 8x8 RGB       | 10      |
| faces            | scikit-image `data.lfw_subset` (faces) | 100    | 25x25 gray    | none    |
| photos           | scikit-image `data` colour photos and  | 10     | 300x451 to    | 10      |
|                  | scikit-learn `load_sample_images`      |        | 1411x1411 RGB | (photo) |

scikit-image fetches part of its data with pooch; only files bundled in its wheel are used here
(the tests run with sockets blocked to prove it). The lfw subset holds 100 faces followed by 100
non-face patches; only the faces are used.

captioned_digits (for text-to-image) tints each digit with one colour of PALETTE, per channel
c = round(tint_c * grey / 255), grey the digit's pixels as in digits. Colours are assigned by
sorting the images by (digit, a seeded random key) and cycling through the palette in that
order: each digit's images fall into the six colours in counts that differ by at most one
(about 30 each), and so do the colours' totals, so colour and digit are independent and
balanced. Each image has one caption per entry of
CAPTION_TEMPLATES, e.g. "a red seven", "the digit 7 in red", "red 7"; the label is the digit.
"""

import functools
from typing import NamedTuple

import numpy as np

from jaxdiff.data.images import to_rgb_uint8
from jaxdiff.data.specs import DatasetSpec

# name -> RGB tint of captioned_digits, in the order of the colour indices.
PALETTE = {
    "red": (255, 0, 0),
    "green": (0, 255, 0),
    "blue": (0, 0, 255),
    "yellow": (255, 255, 0),
    "magenta": (255, 0, 255),
    "cyan": (0, 255, 255),
}
DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
CAPTION_TEMPLATES = (
    "a {colour} {word}",
    "the digit {digit} in {colour}",
    "{colour} {digit}",
    "the number {word}, coloured {colour}",
    "a handwritten {word} in {colour}",
    "{word} written in {colour}",
)
_COLOUR_SEED = 20240607


class BuiltinData(NamedTuple):
    images: list           # (H, W, 3) uint8 arrays
    labels: np.ndarray     # (N,) integers
    class_names: tuple
    captions: tuple = None  # per image, a tuple of captions; None = no captions


class InMemoryRecords:
    """A random-access source over decoded images held in memory (a grain data source), with a
    tuple of captions per image when `captions` is given."""

    def __init__(self, name, images, labels, captions=None):
        self._name = name
        self._images = images
        self._labels = labels
        self._captions = captions

    def __len__(self):
        return len(self._images)

    def __getitem__(self, index):
        index = index % len(self._images)
        record = {
            "image": self._images[index],
            "label": int(self._labels[index]),
            "name": f"{self._name}[{index}]",
        }
        if self._captions is not None:
            record["caption"] = self._captions[index]
        return record


def _digits():
    """scikit-learn digits: values v in 0..16 become round(255 v / 16), repeated to RGB."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = np.rint(digits.images * (255.0 / 16.0)).astype(np.uint8)
    return BuiltinData([to_rgb_uint8(image) for image in images], digits.target,
                       tuple(map(str, range(10))))


def digit_colours(labels):
    """The palette index of each digit image (module docstring): balanced per digit and overall."""
    keys = np.random.default_rng(_COLOUR_SEED).random(len(labels))
    colours = np.empty(len(labels), np.int64)
    colours[np.lexsort((keys, labels))] = np.arange(len(labels)) % len(PALETTE)
    return colours


def digit_captions(digit, colour):
    """The captions of a digit (0-9) in a colour (a PALETTE name), one per CAPTION_TEMPLATES."""
    return tuple(template.format(colour=colour, digit=digit, word=DIGIT_WORDS[digit])
                 for template in CAPTION_TEMPLATES)


def _captioned_digits():
    """The digits tinted with PALETTE colours, with captions naming the digit and the colour."""
    digits = _load("digits")
    names = list(PALETTE)
    tints = np.array(list(PALETTE.values()), np.float64) / 255.0
    colours = digit_colours(digits.labels)
    images = [np.rint(grey[..., :1] * tints[colour]).astype(np.uint8)
              for grey, colour in zip(digits.images, colours)]
    captions = tuple(digit_captions(int(digit), names[colour])
                     for digit, colour in zip(digits.labels, colours))
    return BuiltinData(images, digits.labels, digits.class_names, captions)


def _faces():
    """The 100 faces of scikit-image's lfw_subset: floats in [0, 1] become round(255 v), RGB."""
    from skimage.data import lfw_subset

    faces = lfw_subset()[:100]
    return BuiltinData([to_rgb_uint8(face) for face in faces], np.zeros(len(faces), np.int32), ())


def _photos():
    """Ten colour photographs bundled with scikit-image and scikit-learn; label = photo index."""
    from skimage import data
    from sklearn.datasets import load_sample_images

    photos = {
        "astronaut": data.astronaut(),
        "chelsea": data.chelsea(),
        "coffee": data.coffee(),
        "hubble_deep_field": data.hubble_deep_field(),
        "immunohistochemistry": data.immunohistochemistry(),
        "motorcycle": data.stereo_motorcycle()[0],
        "retina": data.retina(),
        "rocket": data.rocket(),
    }
    sample = load_sample_images()
    for filename, image in zip(sample.filenames, sample.images):
        photos[filename.rsplit("/", 1)[-1].split(".")[0]] = image
    images = [to_rgb_uint8(image) for image in photos.values()]
    return BuiltinData(images, np.arange(len(images), dtype=np.int32), tuple(photos))


_LOADERS = {"digits": _digits, "captioned_digits": _captioned_digits, "faces": _faces,
            "photos": _photos}
# Digits and faces are few, small and centre-cropped: they are preprocessed once and cached
# (`jaxdiff.data.cached`), and read in the main thread, since handing a tiny image to a read
# thread costs more CPU than its resize (8 px digits to 16 px: 57 us/image in the main thread,
# 140 us/image with 4 threads). Photos are cropped at random, so every batch crops and resizes
# them anew; that takes milliseconds per photo and Pillow releases the GIL, so they use read
# threads (2x the images/s with 2-4 threads).
_DIGITS_DEFAULTS = dict(default_crop="center", default_flip=False, default_allow_upscale=True,
                       default_read_threads=0, default_cache=True)
_DEFAULTS = {
    "digits": _DIGITS_DEFAULTS,
    "captioned_digits": _DIGITS_DEFAULTS,
    "faces": dict(default_crop="center", default_flip=True, default_allow_upscale=True,
                  default_read_threads=0, default_cache=True),
    "photos": dict(default_crop="random", default_flip=True, default_allow_upscale=False,
                   default_read_threads=4),
}
BUILTIN_NAMES = tuple(_LOADERS)


@functools.cache
def _load(name):
    return _LOADERS[name]()


def open_builtin(name):
    """Returns (records, DatasetSpec) of the built-in dataset `name` (one of BUILTIN_NAMES)."""
    if name not in _LOADERS:
        raise ValueError(f"Unknown built-in dataset {name!r}; choose one of {list(_LOADERS)}.")
    loaded = _load(name)
    spec = DatasetSpec(
        name=f"builtin:{name}",
        num_examples=len(loaded.images),
        class_names=loaded.class_names,
        min_side=min(min(image.shape[:2]) for image in loaded.images),
        has_captions=loaded.captions is not None,
        **_DEFAULTS[name],
    )
    return InMemoryRecords(spec.name, loaded.images, loaded.labels, loaded.captions), spec
