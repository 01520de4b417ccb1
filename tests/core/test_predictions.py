"""Exact conversions between eps, x0, v and the attenuation pair (c, eps)."""

import jax
import numpy as np
import pytest

from jaxdiff.core import predictions

ALPHA = np.array([0.6, 0.8, 0.995])
SIGMA = np.sqrt(1.0 - ALPHA**2)


@pytest.fixture(scope="module")
def batch():
    key_x, key_e = jax.random.split(jax.random.key(0))
    x0 = jax.random.uniform(key_x, (3, 4, 4, 3), minval=-1.0, maxval=1.0)
    eps = jax.random.normal(key_e, (3, 4, 4, 3))
    x_t = ALPHA[:, None, None, None] * x0 + SIGMA[:, None, None, None] * eps
    return x0, eps, x_t


def test_v_hand_value():
    # alpha = 0.6, sigma = 0.8, x0 = 0.5, eps = 1: v = 0.6 - 0.4 = 0.2.
    v = predictions.v_from_x0_eps(np.full((1, 1, 1, 1), 0.5), np.ones((1, 1, 1, 1)), 0.6, 0.8)
    assert float(v[0, 0, 0, 0]) == pytest.approx(0.2)


def test_round_trips(batch):
    x0, eps, x_t = batch
    np.testing.assert_allclose(predictions.x0_from_eps(x_t, eps, ALPHA, SIGMA), x0, atol=1e-5)
    np.testing.assert_allclose(predictions.eps_from_x0(x_t, x0, ALPHA, SIGMA), eps, atol=1e-5)
    v = predictions.v_from_x0_eps(x0, eps, ALPHA, SIGMA)
    np.testing.assert_allclose(predictions.x0_from_v(x_t, v, ALPHA, SIGMA), x0, atol=1e-5)
    np.testing.assert_allclose(predictions.eps_from_v(x_t, v, ALPHA, SIGMA), eps, atol=1e-5)


@pytest.mark.parametrize("parameterization", ["eps", "x0", "v"])
def test_to_x0_eps_inverts_target(batch, parameterization):
    x0, eps, x_t = batch
    target = predictions.target_from_x0_eps(parameterization, x0, eps, ALPHA, SIGMA)
    x0_hat, eps_hat = predictions.to_x0_eps(parameterization, x_t, target, ALPHA, SIGMA)
    np.testing.assert_allclose(x0_hat, x0, atol=2e-5)
    np.testing.assert_allclose(eps_hat, eps, atol=2e-5)


def test_unknown_parameterization():
    with pytest.raises(ValueError, match="Unknown parameterization 'score'"):
        predictions.to_x0_eps("score", 0.0, 0.0, 1.0, 0.0)
    with pytest.raises(ValueError, match="Unknown parameterization 'score'"):
        predictions.target_from_x0_eps("score", 0.0, 0.0, 1.0, 0.0)


def test_attenuation_conversions_hand_values():
    # x0 = 0.5, eps = 1, t = 0.25: x_t = 0.75 * 0.5 + 0.5 * 1 = 0.875, c = -0.5.
    x_t = np.full((1, 1, 1, 1), 0.875)
    c = np.full((1, 1, 1, 1), -0.5)
    assert float(predictions.attenuation_x0_from_c(c)[0, 0, 0, 0]) == 0.5
    eps = predictions.attenuation_eps_from_c(x_t, c, np.array([0.25]))
    assert float(eps[0, 0, 0, 0]) == pytest.approx(1.0)
    c_back = predictions.attenuation_c_from_eps(x_t, eps, np.array([0.25]))
    assert float(c_back[0, 0, 0, 0]) == pytest.approx(-0.5)
