"""Built-in datasets made from image files that installed packages ship: never a download.

| name    | source package                         | images | native size       | labels        |
|---------|----------------------------------------|--------|-------------------|---------------|
| digits  | scikit-learn `load_digits`             | 1797   | 8x8 gray          | 10 (digit)    |
| faces   | scikit-image `data.lfw_subset` (faces) | 100    | 25x25 gray        | none          |
| photos  | scikit-image `data` colour photos and  | 10     | 300x451 to        | 10 (photo id) |
|         | scikit-learn `load_sample_images`      |        | 1411x1411 RGB     |               |

scikit-image fetches part of its data with pooch; only files bundled in its wheel are used here
(the tests run with sockets blocked to prove it). The lfw subset holds 100 faces followed by 100
non-face patches; only the faces are used.
"""

import functools

import numpy as np

from jaxdiff.data.images import to_rgb_uint8
from jaxdiff.data.specs import DatasetSpec


class InMemoryRecords:
    """A random-access source over decoded images held in memory (a grain data source)."""

    def __init__(self, name, images, labels):
        self._name = name
        self._images = images
        self._labels = labels

    def __len__(self):
        return len(self._images)

    def __getitem__(self, index):
        index = index % len(self._images)
        return {
            "image": self._images[index],
            "label": int(self._labels[index]),
            "name": f"{self._name}[{index}]",
        }


def _digits():
    """scikit-learn digits: values v in 0..16 become round(255 v / 16), repeated to RGB."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = np.rint(digits.images * (255.0 / 16.0)).astype(np.uint8)
    return [to_rgb_uint8(image) for image in images], digits.target, tuple(map(str, range(10)))


def _faces():
    """The 100 faces of scikit-image's lfw_subset: floats in [0, 1] become round(255 v), RGB."""
    from skimage.data import lfw_subset

    faces = lfw_subset()[:100]
    return [to_rgb_uint8(face) for face in faces], np.zeros(len(faces), np.int32), ()


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
    return images, np.arange(len(images), dtype=np.int32), tuple(photos)


_LOADERS = {"digits": _digits, "faces": _faces, "photos": _photos}
# Digits and faces are few, small and centre-cropped: they are preprocessed once and cached
# (`jaxdiff.data.cached`), and read in the main thread, since handing a tiny image to a read
# thread costs more CPU than its resize (8 px digits to 16 px: 57 us/image in the main thread,
# 140 us/image with 4 threads). Photos are cropped at random, so every batch crops and resizes
# them anew; that takes milliseconds per photo and Pillow releases the GIL, so they use read
# threads (2x the images/s with 2-4 threads).
_DEFAULTS = {
    "digits": dict(default_crop="center", default_flip=False, default_allow_upscale=True,
                   default_read_threads=0, default_cache=True),
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
    images, labels, class_names = _load(name)
    spec = DatasetSpec(
        name=f"builtin:{name}",
        num_examples=len(images),
        class_names=class_names,
        min_side=min(min(image.shape[:2]) for image in images),
        **_DEFAULTS[name],
    )
    return InMemoryRecords(spec.name, images, labels), spec
