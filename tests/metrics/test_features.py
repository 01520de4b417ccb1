"""Feature extraction is a function of each image alone: FID does not change with the batch
size or the device count; and on real data FID behaves: two halves of one dataset are close,
blur and noise move the set away, more so the stronger they are."""

import jax
import numpy as np
import pytest
import scipy.ndimage
from test_inception import photo_crops

from jaxdiff.data.builtin import open_builtin
from jaxdiff.data.images import crop_resize_flip
from jaxdiff.metrics import builtin_net, frechet
from jaxdiff.metrics.features import Extractor, inception_network


def one_device_mesh():
    return jax.make_mesh((1,), ("batch",), devices=jax.devices()[:1],
                         axis_types=(jax.sharding.AxisType.Auto,))


def blurred(images, sigma):
    return np.stack([np.rint(scipy.ndimage.gaussian_filter(image.astype(float),
                                                           (sigma, sigma, 0)))
                     for image in images]).astype(np.uint8)


def noised(images, std, seed=0):
    noise = np.random.default_rng(seed).normal(0, std, images.shape)
    return np.clip(np.rint(images + noise), 0, 255).astype(np.uint8)


def test_fid_is_the_same_for_any_batch_size_and_on_1_or_8_devices(weights):
    assert jax.device_count() == 8
    # 12 images: one full and one padded batch of 8, or a padded batch of 16, or three of 4
    first, second = photo_crops(12, 32, 4), photo_crops(12, 32, 5)
    network = inception_network(weights, "tf")
    values = []
    for batch_size, mesh in ((8, None), (16, None), (4, one_device_mesh())):
        extractor = Extractor(network, batch_size, mesh)
        values.append(frechet.frechet_distance(extractor.statistics(first),
                                               extractor.statistics(second)))
    assert values[0] > 10
    np.testing.assert_allclose(values, values[0], atol=1e-4, rtol=0)


def test_batches_are_rounded_up_to_the_device_count():
    assert Extractor(builtin_net.builtin_network(), 12).batch_size == 16
    images = digits(16)[:21]
    np.testing.assert_allclose(Extractor(builtin_net.builtin_network(), 12).features(images)
                               ["features"],
                               Extractor(builtin_net.builtin_network(), 8, one_device_mesh())
                               .features(images)["features"], atol=1e-5)
    with pytest.raises(ValueError, match="metric batch size must be positive, got 0"):
        Extractor(builtin_net.builtin_network(), 0)


def test_inception_fid_on_real_photos_grows_with_blur_and_noise(weights):
    extractor = Extractor(inception_network(weights, "tf"), batch_size=16)
    images = photo_crops(48, 32, 6)
    first, second = images[:24], images[24:]
    reference = extractor.statistics(first)

    def fid(x):
        return frechet.frechet_distance(extractor.statistics(x), reference)
    halves = fid(second)
    blur = [fid(blurred(second, sigma)) for sigma in (1.0, 2.0)]
    noise = fid(noised(second, 40))
    # (24 images: FID's sample-size bias is large, about 225 for the halves here)
    assert halves * 1.2 < blur[0] < blur[1]
    assert halves * 1.2 < noise


def digits(side):
    records, _ = open_builtin("digits")
    return np.stack([crop_resize_flip(records[i]["image"], resolution=side, crop="center",
                                      scale=(1.0, 1.0), allow_upscale=True, flip=False,
                                      rng=None) for i in range(len(records))])


def test_builtin_distance_on_digit_halves_is_small_next_to_blur_and_noise():
    extractor = Extractor(builtin_net.builtin_network(), 120)
    images = digits(16)
    first, second = images[::2], images[1::2]
    reference = extractor.statistics(first)

    def fd(x):
        return frechet.frechet_distance(extractor.statistics(x), reference)
    halves = fd(second)
    blur = [fd(blurred(second, sigma)) for sigma in (0.5, 1.0, 2.0)]
    noise = [fd(noised(second, std)) for std in (10, 30, 60)]
    assert halves < 3.0
    assert halves < blur[0] < blur[1] < blur[2] and blur[1] > 10 * halves
    assert halves < noise[0] < noise[1] < noise[2] and noise[1] > 10 * halves
    # the batch size does not change it here either
    assert fd(second) == pytest.approx(frechet.frechet_distance(
        Extractor(builtin_net.builtin_network(), 8).statistics(second), reference), abs=1e-4)


def test_the_shipped_network_reads_the_digits():
    records, _ = open_builtin("digits")
    labels = np.array([records[i]["label"] for i in range(len(records))])
    logits = Extractor(builtin_net.builtin_network(), 120).features(digits(16))["logits"]
    assert builtin_net.digit_accuracy(logits, labels) > 0.9
