"""Cold-diffusion Algorithms 1 and 2, the exact-restorer checks, the compile-once property, and the
Gaussian-mixture generation start."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdiff.core import degradations as dg
from jaxdiff.core.cold_samplers import (blur_generation_start, channel_means, cold_sample,
                                        fit_gaussian_mixture, sample_gaussian_mixture)


def shifted(x0, steps, aux=None):
    """Toy degradation D(x, s) = x + 0.5 s."""
    del aux
    return x0 + 0.5 * jnp.asarray(steps, jnp.float32)[:, None, None, None]


def zero_restorer(x_s, t):
    del t
    return jnp.zeros_like(x_s)


@pytest.mark.parametrize("algorithm, expected", [("improved", 2.0), ("naive", 0.0)])
def test_toy_degradation_hand_values(algorithm, expected):
    """x0 = 2, T = 5, x_T = D(x0, 5) = 4.5, R = 0.
    Algorithm 2: each step adds -D(0, s) + D(0, s - 1) = -0.5, so x_0 = 4.5 - 5 * 0.5 = 2.
    Algorithm 1: the last step returns D(R, 0) = R = 0."""
    x_T = shifted(jnp.full((2, 1, 1, 1), 2.0), jnp.full((2,), 5))
    out = jax.jit(lambda x: cold_sample(zero_restorer, shifted, x, 5, algorithm=algorithm))(x_T)
    np.testing.assert_array_equal(out, expected)


def test_step_noise_adds_variance_on_every_step_but_the_last():
    """The toy chain of test_toy_degradation_hand_values (Algorithm 2, T = 5, R = 0) is
    deterministic; with step_noise 0.1 the noise of steps 5..2 (four draws, none after the
    last) adds up: the output has mean 2 and variance 4 * 0.01, over 20000 samples (standard
    error of the variance about 1%)."""
    x_T = shifted(jnp.full((20000, 1, 1, 1), 2.0), jnp.full((20000,), 5))
    out = jax.jit(lambda x, rng: cold_sample(zero_restorer, shifted, x, 5, rng=rng,
                                             step_noise=0.1))(x_T, jax.random.PRNGKey(0))
    np.testing.assert_allclose(np.mean(out), 2.0, atol=0.005)
    np.testing.assert_allclose(np.var(out), 0.04, rtol=0.05)
    with pytest.raises(ValueError, match="needs an rng key"):
        cold_sample(zero_restorer, shifted, x_T, 5, step_noise=0.1)


def test_restorer_sees_times_from_one_down():
    """R(x_s, t) = x_s + t with D = identity: Algorithm 1 gives x_{s-1} = x_s + s / T, so
    x_0 = x_T + sum_{s=1}^{T} s / T = (T + 1) / 2 = 2.5 for T = 4 and x_T = 0."""
    out = cold_sample(lambda x_s, t: x_s + t[:, None, None, None], lambda x0, steps, aux: x0,
                      jnp.zeros((2, 1, 1, 1)), 4, algorithm="naive")
    np.testing.assert_allclose(out, 2.5, atol=1e-6)


RNG = np.random.default_rng(1)
X0 = jnp.asarray(RNG.uniform(-1.0, 1.0, (2, 8, 8, 3)), jnp.float32)
OTHER = jnp.asarray(RNG.uniform(-1.0, 1.0, (2, 8, 8, 3)), jnp.float32)
DEGRADATIONS = {
    "blur": (dg.GaussianBlur(num_steps=4, kernel_size=5, kernel_std=0.5, padding="reflect"), None),
    "inpaint": (dg.GaussianMaskInpaint(num_steps=4, kernel_std=0.5, initial_mask=2,
                                       random_centre=True), jnp.array([[2, 5], [-1, 7]])),
    "pixelate": (dg.Pixelate(num_steps=3), None),
    "decolorize": (dg.Decolorize(num_steps=4), None),
    "mix": (dg.MixImages(num_steps=4), OTHER),
}


@pytest.mark.parametrize("name", sorted(DEGRADATIONS))
def test_oracle_restorer_recovers_x0(name):
    """With R returning the true x0, Algorithm 1 ends at D(x0, 0) = x0 and Algorithm 2
    telescopes: x_0 = D(x0, T) - sum_s [D(x0, s) - D(x0, s - 1)] = x0."""
    degradation, aux = DEGRADATIONS[name]
    x_T = degradation(X0, degradation.num_steps, aux)

    @jax.jit
    def both(x_T, aux):
        oracle = lambda x_s, t: X0  # noqa: E731
        return [cold_sample(oracle, degradation, x_T, degradation.num_steps, aux, algorithm)
                for algorithm in ("naive", "improved")]

    for out in both(x_T, aux):
        np.testing.assert_allclose(out, X0, atol=1e-5)


def test_exact_restorer_for_gaussian_decolorized_data():
    """An exact restorer that uses only (x_s, t): decolorization keeps gray(x0) and scales the
    colour residual by c_s > 0, so x0 = gray(x_s) + (x_s - gray(x_s)) / c_s. Gaussian data
    (per-pixel means and stds) pushed to x_T and sampled back are recovered exactly."""
    decolorize = dg.Decolorize(num_steps=5)
    fractions = jnp.asarray(decolorize.colour_fractions(), jnp.float32)
    mean = jnp.linspace(-0.5, 0.5, 4 * 4 * 3).reshape(4, 4, 3)
    std = jnp.linspace(0.05, 0.3, 4 * 4 * 3).reshape(4, 4, 3)
    data = mean + std * jax.random.normal(jax.random.key(2), (512, 4, 4, 3))

    def restore(x_s, t):
        c = fractions[jnp.round(t * decolorize.num_steps).astype(jnp.int32)][:, None, None, None]
        gray = dg.grayscale(x_s)
        return gray + (x_s - gray) / c

    x_T = decolorize(data, decolorize.num_steps)
    for algorithm in ("naive", "improved"):
        out = jax.jit(lambda x: cold_sample(restore, decolorize, x, 5, algorithm=algorithm))(x_T)
        np.testing.assert_allclose(out, data, atol=1e-5)


def count_equations(jaxpr):
    """Equations of a jaxpr, including those of nested sub-jaxprs (scan bodies)."""
    total = 0
    for equation in jaxpr.eqns:
        total += 1
        for param in equation.params.values():
            inner = getattr(param, "jaxpr", None)
            if inner is not None:
                total += count_equations(getattr(inner, "jaxpr", inner))
    return total


def test_compiles_to_one_scan_whose_size_does_not_depend_on_steps():
    def program(num_steps, degradation):
        x_T = jnp.zeros((2, 8, 8, 3))
        return jax.make_jaxpr(lambda x: cold_sample(
            lambda x_s, t: x_s, degradation, x, num_steps))(x_T).jaxpr

    for make in (lambda steps: shifted, lambda steps: dg.GaussianBlur(num_steps=steps)):
        small, large = program(5, make(5)), program(10, make(10))
        assert [e.primitive.name for e in small.eqns].count("scan") == 1
        assert count_equations(small) == count_equations(large)


def test_bad_algorithm():
    with pytest.raises(ValueError, match="algorithm"):
        cold_sample(zero_restorer, shifted, jnp.zeros((1, 1, 1, 1)), 2, algorithm="ddim")
    with pytest.raises(ValueError, match="num_steps"):
        cold_sample(zero_restorer, shifted, jnp.zeros((1, 1, 1, 1)), 0)


WEIGHTS = np.array([0.5, 0.3, 0.2])
MEANS = np.array([[-0.5, -0.4, -0.3], [0.1, 0.3, 0.0], [0.6, -0.2, 0.5]])
COVARIANCES = np.array([np.diag([0.01, 0.02, 0.01]),
                        [[0.02, 0.01, 0.0], [0.01, 0.02, 0.0], [0.0, 0.0, 0.01]],
                        np.diag([0.005, 0.005, 0.02])])


def synthetic_mixture_points(num_points=6000, seed=3):
    rng = np.random.default_rng(seed)
    components = rng.choice(3, size=num_points, p=WEIGHTS)
    return np.stack([rng.multivariate_normal(MEANS[k], COVARIANCES[k]) for k in components])


@pytest.fixture(scope="module")
def fitted():
    points = synthetic_mixture_points()
    return points, fit_gaussian_mixture(jax.random.key(0), points, num_components=3)


def test_gmm_recovers_known_mixture(fitted):
    """Tolerances from the sample size: with n_k >= 1200 points per component the standard
    error of a weight is <= 0.0065, of a mean <= sqrt(0.02 / 1200) = 0.004, and of a variance
    entry about 0.02 * sqrt(2 / 1200) = 0.0008; we allow roughly 4 standard errors."""
    _, mixture = fitted
    order = np.argsort(np.asarray(mixture.means)[:, 0])  # components come out in any order
    np.testing.assert_allclose(np.asarray(mixture.weights)[order], WEIGHTS, atol=0.025)
    np.testing.assert_allclose(np.asarray(mixture.means)[order], MEANS, atol=0.016)
    np.testing.assert_allclose(np.asarray(mixture.covariances)[order], COVARIANCES, atol=0.0035)


def test_gmm_is_deterministic_and_samples_match_moments(fitted):
    points, mixture = fitted
    again = fit_gaussian_mixture(jax.random.key(0), points, num_components=3)
    np.testing.assert_array_equal(again.means, mixture.means)
    draws = np.asarray(sample_gaussian_mixture(jax.random.key(4), mixture, 20000))
    # Overall mean / covariance of the draws vs the data's (std error ~ 0.4 / sqrt(20000)).
    np.testing.assert_allclose(draws.mean(0), points.mean(0), atol=0.01)
    np.testing.assert_allclose(np.cov(draws.T), np.cov(points.T), atol=0.006)
    with pytest.raises(ValueError):
        fit_gaussian_mixture(jax.random.key(0), points[:2], num_components=3)


def test_blur_generation_start(fitted):
    """Flat images of GMM colours plus noise of the requested std (same key, same colours)."""
    _, mixture = fitted
    start = np.asarray(blur_generation_start(jax.random.key(5), mixture, 64, 16, 16,
                                             noise_level=0.002))
    clean = np.asarray(blur_generation_start(jax.random.key(5), mixture, 64, 16, 16, 0.0))
    assert start.shape == clean.shape == (64, 16, 16, 3)
    colours = np.asarray(channel_means(jnp.asarray(clean)))
    np.testing.assert_allclose(clean, np.broadcast_to(colours[:, None, None, :], clean.shape),
                               atol=1e-7)
    np.testing.assert_allclose((start - clean).std(), 0.002, rtol=0.02)  # 49k draws: 0.3% s.e.
    # 64 colours; the per-channel std of the mixture is <= 0.45, so 3 standard errors = 0.17.
    np.testing.assert_allclose(colours.mean(0), MEANS.T @ WEIGHTS, atol=0.17)
