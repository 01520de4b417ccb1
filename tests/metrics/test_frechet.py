"""FID, Inception Score and precision/recall against values computed by hand from their
formulas, statistics independent of batching, and the reference-statistics file layouts."""

import numpy as np
import pytest
import scipy.linalg

from jaxdiff.metrics import frechet


def gaussian_stats(mu, sigma):
    return frechet.Statistics(mu=np.asarray(mu, float), sigma=np.asarray(sigma, float))


def test_frechet_distance_hand_values():
    # 1-d: (m1 - m2)^2 + s1 + s2 - 2 sqrt(s1 s2) = 4 + 4 + 9 - 12 = 5
    assert frechet.frechet_distance(gaussian_stats([1.0], [[4.0]]),
                                    gaussian_stats([3.0], [[9.0]])) == pytest.approx(5.0)
    # diagonal 2-d: sum over the axes of (sqrt(a) - sqrt(b))^2 plus the mean term 0
    a, b = gaussian_stats([0, 0], np.diag([1.0, 16.0])), gaussian_stats([0, 0], np.diag([4.0, 1.0]))
    assert frechet.frechet_distance(a, b) == pytest.approx(1.0 + 9.0)
    assert frechet.frechet_distance(a, a) == pytest.approx(0.0, abs=1e-9)


def test_frechet_distance_equals_the_sqrtm_formula_on_full_covariances():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(200, 6)), rng.normal(size=(150, 6)) @ rng.normal(size=(6, 6))
    a, b = frechet.statistics(x), frechet.statistics(y + 1.0)
    expected = (np.sum((a.mu - b.mu) ** 2) + np.trace(a.sigma) + np.trace(b.sigma)
                - 2 * np.trace(np.real(scipy.linalg.sqrtm(a.sigma @ b.sigma))))
    assert frechet.frechet_distance(a, b) == pytest.approx(expected, rel=1e-9)


def test_statistics_do_not_depend_on_the_batching():
    features = np.random.default_rng(1).normal(size=(101, 5)).astype(np.float32)
    whole = frechet.statistics(features)
    batched = frechet.Accumulator()
    for start in range(0, 101, 7):
        batched.add(features[start:start + 7])
    batched = batched.statistics()
    np.testing.assert_allclose(batched.mu, whole.mu, rtol=1e-12)
    np.testing.assert_allclose(batched.sigma, whole.sigma, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(whole.sigma, np.cov(features.astype(float), rowvar=False),
                               rtol=1e-9)


def test_different_feature_sizes_and_too_few_images_are_one_sentence():
    with pytest.raises(ValueError, match="2- and 3-d features"):
        frechet.frechet_distance(gaussian_stats([0, 0], np.eye(2)),
                                 gaussian_stats([0, 0, 0], np.eye(3)))
    with pytest.raises(ValueError, match="at least 2 images, got 1"):
        frechet.statistics(np.zeros((1, 4)))


def test_inception_score_hand_values():
    # every image the same prediction: KL = 0, IS = 1
    assert frechet.inception_score(np.zeros((20, 5)), splits=2)[0] == pytest.approx(1.0)
    # confident and evenly spread over C classes in each split: IS = C
    confident = np.tile(np.eye(4) * 50.0, (5, 1))
    mean, std = frechet.inception_score(confident, splits=5)
    assert mean == pytest.approx(4.0, rel=1e-6) and std == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(ValueError, match="at least 10 images, got 3"):
        frechet.inception_score(np.zeros((3, 5)))


def test_precision_recall_hand_example():
    # real points 0..9 on a line
    real = np.arange(10, dtype=np.float32)[:, None]
    radii = frechet.knn_radii(real, k=3)
    # third nearest other point: 3 away at the ends and beside them, 2 away inside
    np.testing.assert_allclose(np.sqrt(radii), [3, 2, 2, 2, 2, 2, 2, 2, 2, 3])
    generated = np.array([[4.5], [20.0], [-2.5], [12.5]], np.float32)
    precision, recall = frechet.precision_recall(real, generated, k=3)
    # inside some real ball: 4.5 (yes), 20 (no), -2.5 (0 +- 3: yes), 12.5 (9 +- 3: no)
    assert precision == pytest.approx(0.5)
    # generated radii (3rd nearest other generated point): 4.5 -> 15.5, 20 -> 22.5,
    # -2.5 -> 22.5, 12.5 -> 15; every real point lies within 15.5 of 4.5
    assert recall == pytest.approx(1.0)


def test_statistics_files_round_trip_and_adm_reference_batches_are_read(tmp_path):
    stats = frechet.statistics(np.random.default_rng(2).normal(size=(30, 4)), keep_features=8)
    path = tmp_path / "ref.npz"
    frechet.save_statistics(path, stats)
    loaded, images = frechet.load_statistics(path)
    np.testing.assert_array_equal(loaded.sigma, stats.sigma)
    assert loaded.features.shape == (8, 4) and loaded.count == 30 and images is None

    adm = tmp_path / "VIRTUAL_imagenet64_labeled.npz"
    np.savez(adm, arr_0=np.zeros((5, 8, 8, 3), np.uint8), mu=stats.mu, sigma=stats.sigma,
             mu_s=np.zeros(3), sigma_s=np.eye(3))
    loaded, images = frechet.load_statistics(adm)
    assert images.shape == (5, 8, 8, 3) and loaded.features is None
    np.savez(tmp_path / "bad.npz", x=np.zeros(3))
    with pytest.raises(ValueError, match="holds no reference statistics"):
        frechet.load_statistics(tmp_path / "bad.npz")
