"""The CPU quality stand-in (benchmarks/digit_quality.py) ranks real digits above degraded ones
and its classifier reads real digits."""

import numpy as np
import scipy.ndimage

from benchmarks import digit_quality


def test_frechet_distance_hand_value_and_symmetry():
    """1-D: (mu_a - mu_b)^2 + s_a^2 + s_b^2 - 2 s_a s_b = 1 + (1 - 2)^2 for N(0, 1), N(1, 4)."""
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((200_000, 1)), 1.0 + 2.0 * rng.standard_normal((200_000, 1))
    np.testing.assert_allclose(digit_quality.frechet_distance(a, b), 2.0, rtol=0.02)
    np.testing.assert_allclose(digit_quality.frechet_distance(a, b),
                               digit_quality.frechet_distance(b, a), rtol=1e-6)


def test_real_digits_score_better_than_blurred_noised_or_blank_ones():
    """FD8 of 500 real digits against all of them is small next to the same digits blurred
    (growing with the blur), noised, or blank; the classifier reads the real ones."""
    features, labels = digit_quality.reference(16)
    images = (features.reshape(-1, 8, 8).repeat(2, axis=1).repeat(2, axis=2)[..., None]
              * 2.0 - 1.0).repeat(3, axis=-1)  # back to 16 px images in [-1, 1]
    picks = np.random.default_rng(1).permutation(len(images))[:500]
    real = digit_quality.score(images[picks], labels[picks])
    blurred = [digit_quality.score(scipy.ndimage.gaussian_filter(images[picks],
                                                                 (0, sigma, sigma, 0)))["fd8"]
               for sigma in (1.0, 2.0)]
    noisy = digit_quality.score(images[picks] + 0.4 * np.random.default_rng(2).standard_normal(
        images[picks].shape))["fd8"]
    blank = digit_quality.score(np.full((500, 16, 16, 3), -1.0))["fd8"]
    assert real["fd8"] < 0.05 < 4 * real["fd8"] < min(noisy, blurred[0])
    assert blurred[0] < blurred[1] < blank
    assert real["accuracy"] > 0.95
    np.testing.assert_array_less(np.abs(real["shares"] - 0.1), 0.04)
