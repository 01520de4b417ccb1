"""Loss weightings and losses against hand values and float64 NumPy/SciPy references."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import integrate, stats

from jaxdiff.core import losses, predictions, schedules

PARAMETERIZATIONS = ("eps", "x0", "v")


@pytest.mark.parametrize("snr, expected", [
    (10.0, {"x0": 5.0, "eps": 0.5, "v": 5.0 / 11.0}),     # SNR above gamma = 5
    (2.0, {"x0": 2.0, "eps": 1.0, "v": 2.0 / 3.0}),       # SNR below gamma
])
def test_min_snr_weight_values(snr, expected):
    for parameterization in PARAMETERIZATIONS:
        weight = losses.min_snr_weight(math.log(snr), parameterization, gamma=5.0)
        assert float(weight) == pytest.approx(expected[parameterization], rel=1e-6)


def test_sigmoid_weight_values():
    # b = 2, SNR = 3: sigmoid(2 - log 3) = 1 / (1 + 3 exp(-2)) = 0.7112346.
    eps_weight = 1.0 / (1.0 + 3.0 * math.exp(-2.0))
    logsnr = math.log(3.0)
    assert float(losses.sigmoid_weight(logsnr, "eps", 2.0)) == pytest.approx(eps_weight)
    assert float(losses.sigmoid_weight(logsnr, "x0", 2.0)) == pytest.approx(3.0 * eps_weight)
    assert float(losses.sigmoid_weight(logsnr, "v", 2.0)) == pytest.approx(0.75 * eps_weight)
    # Finite where SNR = exp(logSNR) overflows float32.
    assert float(losses.sigmoid_weight(200.0, "x0", 2.0)) == pytest.approx(math.exp(2.0))


@pytest.mark.parametrize("name, kwargs", [("min_snr", {"gamma": 5.0}),
                                          ("sigmoid", {"bias": -1.0}),
                                          ("uniform", {})])
def test_weightings_mean_the_same_in_every_parameterization(name, kwargs):
    """A weighting is one objective: with a prediction that implies the same x0_hat, the weighted
    losses of the eps, x0 and v targets agree (except uniform, which is target-specific)."""
    key = jax.random.key(1)
    x0, eps, x0_hat = jax.random.normal(key, (3, 3, 4, 4, 1))
    logsnr = jnp.array([-2.0, 0.5, 3.0])
    alpha, sigma = schedules.alpha_sigma_from_logsnr(logsnr)
    x_t = alpha[:, None, None, None] * x0 + sigma[:, None, None, None] * eps
    eps_hat = predictions.eps_from_x0(x_t, x0_hat, alpha, sigma)
    outputs = {"x0": x0_hat, "eps": eps_hat, "v": predictions.v_from_x0_eps(x0_hat, eps_hat,
                                                                            alpha, sigma)}
    values = {p: losses.denoising_loss(p, outputs[p], x0, eps, logsnr,
                                       losses.loss_weight(name, logsnr, p, **kwargs))
              for p in PARAMETERIZATIONS}
    if name == "uniform":
        snr = np.exp(np.asarray(logsnr))
        np.testing.assert_allclose(values["eps"], snr * values["x0"], rtol=1e-4)
        np.testing.assert_allclose(values["v"], (1.0 + snr) * values["x0"], rtol=1e-4)
    else:
        np.testing.assert_allclose(values["eps"], values["x0"], rtol=1e-4)
        np.testing.assert_allclose(values["v"], values["x0"], rtol=1e-4)


def test_loss_weight_rejects_bad_input():
    with pytest.raises(ValueError, match="Unknown loss weighting 'p2'"):
        losses.loss_weight("p2", 0.0, "eps")
    with pytest.raises(ValueError, match="needs a bias"):
        losses.loss_weight("sigmoid", 0.0, "eps")
    with pytest.raises(ValueError, match="Unknown parameterization 'score'"):
        losses.loss_weight("uniform", 0.0, "score")


def test_denoising_loss_hand_value():
    # logSNR = 0: alpha = sigma = 1/sqrt(2); x0 = 0.5, eps = 1 -> v = 0.5/sqrt(2); output 0.
    x0, eps, zero = np.full((1, 2, 2, 1), 0.5), np.ones((1, 2, 2, 1)), np.zeros((1, 2, 2, 1))
    assert float(losses.denoising_loss("v", zero, x0, eps, 0.0)[0]) == pytest.approx(0.125)
    assert float(losses.denoising_loss("eps", zero, x0, eps, 0.0, 3.0)[0]) == pytest.approx(3.0)
    assert float(losses.denoising_loss("x0", zero, x0, eps, 0.0)[0]) == pytest.approx(0.25)


ERROR_4X4 = np.array([[1.0, 0.0, 0.0, 0.0],
                      [0.0, 0.0, 0.0, 0.0],
                      [0.0, 0.0, 2.0, 2.0],
                      [0.0, 0.0, 2.0, 2.0]]).reshape(1, 4, 4, 1)


def test_multiscale_loss_on_hand_made_4x4():
    """Scales 4, 2, 1 of the error image, each a per-pixel mean of the pooled error squared:
    4x4: 17/16; 2x2 blocks (1/4, 0, 0, 2): (1/16 + 4)/4 = 65/64; 1x1: (9/16)^2 = 81/256.
    Weighted by 1/s: 17/64 + 65/128 + 81/256 = 279/256."""
    zero = np.zeros_like(ERROR_4X4)
    value = losses.multiscale_mse(ERROR_4X4, zero, min_resolution=1)
    assert float(value[0]) == pytest.approx(279.0 / 256.0)
    value = losses.multiscale_mse(zero, ERROR_4X4, min_resolution=2, weight=2.0)
    assert float(value[0]) == pytest.approx(2.0 * (17.0 / 64.0 + 65.0 / 128.0))


def test_multiscale_resolutions():
    assert losses.multiscale_resolutions(256, 32) == [256, 128, 64, 32]
    assert losses.multiscale_resolutions(32, 32) == [32]
    with pytest.raises(ValueError, match="not min_resolution 32 times a power of two"):
        losses.multiscale_resolutions(96, 32)
    with pytest.raises(ValueError, match="not min_resolution 32 times a power of two"):
        losses.multiscale_resolutions(16, 32)


def test_nested_loss_sums_weighted_levels():
    # Two levels, eps targets, zero outputs: level losses are mean(eps^2) = 1 and 4.
    outputs = [np.zeros((1, 4, 4, 1)), np.zeros((1, 2, 2, 1))]
    pyramid = [np.zeros((1, 4, 4, 1)), np.zeros((1, 2, 2, 1))]
    noises = [np.ones((1, 4, 4, 1)), np.full((1, 2, 2, 1), 2.0)]
    value = losses.nested_denoising_loss("eps", outputs, pyramid, noises, [0.0, 1.0],
                                         level_weights=[0.5, 3.0], sample_weights=[1.0, 0.25])
    assert float(value[0]) == pytest.approx(0.5 * 1.0 + 3.0 * 0.25 * 4.0)
    assert float(losses.nested_denoising_loss("eps", outputs, pyramid, noises,
                                              [0.0, 1.0])[0]) == pytest.approx(5.0)
    with pytest.raises(ValueError, match="one output, noise, logSNR and weight per pyramid"):
        losses.nested_denoising_loss("eps", outputs[:1], pyramid, noises, [0.0, 1.0])


def test_attenuation_weights_and_loss():
    # t = 0.25: t^2 - t + 1 = 0.8125; w_c = 0.8125 / 0.25, w_eps = 0.8125 / 0.75.
    w_c, w_eps = losses.attenuation_weights(np.array([0.25, 0.0, 1.0]))
    # Clamped denominators: w_c(0) = 1 / 1e-4 and w_eps(1) = 1 / 1e-4; w_c(1) = w_eps(0) = 1.
    np.testing.assert_allclose(w_c, [3.25, 1e4, 1.0], rtol=1e-6)
    np.testing.assert_allclose(w_eps, [0.8125 / 0.75, 1.0, 1e4], rtol=1e-6)
    x0, noise = np.full((1, 2, 2, 1), 0.5), np.ones((1, 2, 2, 1))
    c_hat, eps_hat = np.zeros((1, 2, 2, 1)), np.full((1, 2, 2, 1), 0.5)
    # ||c_hat - c||^2 = 0.25, ||eps_hat - eps||^2 = 0.25 (per-pixel means).
    value = losses.attenuation_loss(c_hat, eps_hat, x0, noise, np.array([0.25]))
    assert float(value[0]) == pytest.approx(0.25 * 3.25 + 0.25 * 0.8125 / 0.75)
    value = losses.attenuation_loss(c_hat, eps_hat, x0, noise, np.array([0.25]), weighted=False)
    assert float(value[0]) == pytest.approx(0.5)


def test_restoration_loss():
    prediction, target = np.array([[1.0, -1.0, 0.5, 0.0]]), np.zeros((1, 4))
    assert float(losses.restoration_loss(prediction, target, "l1")[0]) == pytest.approx(0.625)
    assert float(losses.restoration_loss(prediction, target, "l2")[0]) == pytest.approx(0.5625)
    with pytest.raises(ValueError, match="Unknown restoration norm 'huber'"):
        losses.restoration_loss(prediction, target, "huber")


@pytest.mark.parametrize("m1, v1, m2, v2", [(0.0, 1.0, 0.0, 1.0), (0.3, 0.5, -0.2, 2.0),
                                            (1.0, 0.01, 0.9, 0.02)])
def test_normal_kl_against_numerical_integration(m1, v1, m2, v2):
    p, q = stats.norm(m1, math.sqrt(v1)), stats.norm(m2, math.sqrt(v2))
    width = 12.0 * math.sqrt(v1)
    expected, _ = integrate.quad(lambda x: p.pdf(x) * (p.logpdf(x) - q.logpdf(x)),
                                 m1 - width, m1 + width, epsabs=1e-12)
    value = losses.normal_kl(m1, math.log(v1), m2, math.log(v2))
    assert float(value) == pytest.approx(expected, rel=1e-5, abs=1e-7)


def _discretized_log_likelihood_reference(x, mean, std):
    """float64: log of the normal mass of x's 8-bit bin, edge bins open to +-inf."""
    half = 1.0 / 255.0
    dist = stats.norm(mean, std)
    if x < -0.999:
        return dist.logcdf(x + half)
    if x > 0.999:
        return dist.logsf(x - half)
    return math.log(dist.sf(x - half) - dist.sf(x + half))


def test_discretized_gaussian_log_likelihood_against_scipy():
    pixels = np.array([0, 1, 127, 200, 255, 230])
    x = 2.0 * pixels / 255.0 - 1.0
    mean = np.array([-0.98, -0.99, 0.1, 0.6, 0.8, 0.2])
    std = np.array([0.05, 0.01, 0.2, 0.1, 0.3, 0.1])   # last: bin ~6 std out, mass ~1e-9
    value = losses.discretized_gaussian_log_likelihood(x, mean, np.log(std**2))
    expected = [_discretized_log_likelihood_reference(*args) for args in zip(x, mean, std)]
    np.testing.assert_allclose(value, expected, rtol=2e-4)


def _hybrid_loss_reference(output, variance_output, x0, noise, x_t, steps, betas):
    """Improved DDPM in float64 from the discrete tables (Ho et al. eq. 7, Nichol & Dhariwal
    eq. 15), eps-parameterization, written independently of jaxdiff."""
    num_steps = len(betas)
    alpha_bar = np.cumprod(1.0 - betas)
    alpha_bar_prev = np.concatenate([[1.0], alpha_bar[:-1]])
    beta_tilde = betas * (1.0 - alpha_bar_prev) / (1.0 - alpha_bar)
    log_beta_tilde_clipped = np.log(np.concatenate([[beta_tilde[1]], beta_tilde[1:]]))
    losses_out, vlb_out = [], []
    for b, i in enumerate(steps):
        simple = np.mean((output[b] - noise[b]) ** 2)
        x0_hat = (x_t[b] - np.sqrt(1.0 - alpha_bar[i]) * output[b]) / np.sqrt(alpha_bar[i])
        coef_x0 = np.sqrt(alpha_bar_prev[i]) * betas[i] / (1.0 - alpha_bar[i])
        coef_xt = np.sqrt(1.0 - betas[i]) * (1.0 - alpha_bar_prev[i]) / (1.0 - alpha_bar[i])
        model_mean = coef_x0 * x0_hat + coef_xt * x_t[b]
        true_mean = coef_x0 * x0[b] + coef_xt * x_t[b]
        frac = (variance_output[b] + 1.0) / 2.0
        model_log_var = frac * np.log(betas[i]) + (1.0 - frac) * log_beta_tilde_clipped[i]
        true_log_var = log_beta_tilde_clipped[i]
        if i == 0:
            std = np.exp(0.5 * model_log_var)
            nll = [-_discretized_log_likelihood_reference(*a)
                   for a in zip(x0[b].ravel(), model_mean.ravel(), std.ravel())]
            vlb = np.mean(nll) / math.log(2.0)
        else:
            kl = 0.5 * (model_log_var - true_log_var - 1.0 + np.exp(true_log_var - model_log_var)
                        + (true_mean - model_mean) ** 2 * np.exp(-model_log_var))
            vlb = np.mean(kl) / math.log(2.0)
        losses_out.append(simple + 0.001 * num_steps * vlb)
        vlb_out.append(vlb)
    return np.array(losses_out), np.array(vlb_out)


def test_hybrid_loss_against_float64_reference():
    betas = schedules.linear_betas(1000)
    alpha_bar = schedules.alphas_cumprod(betas)
    steps = np.array([0, 1, 500, 999])
    rng = np.random.default_rng(0)
    x0 = 2.0 * rng.integers(0, 256, size=(4, 2, 2, 3)) / 255.0 - 1.0
    noise = rng.standard_normal((4, 2, 2, 3))
    x_t = (np.sqrt(alpha_bar[steps])[:, None, None, None] * x0
           + np.sqrt(1.0 - alpha_bar[steps])[:, None, None, None] * noise)
    output = noise + 0.1 * rng.standard_normal(noise.shape)
    variance_output = rng.uniform(-1.0, 1.0, size=noise.shape)
    f32 = lambda a: jnp.asarray(a, jnp.float32)

    hybrid = jax.jit(lambda *args: losses.hybrid_loss("eps", *args, alpha_bar=alpha_bar))
    loss, vlb = hybrid(f32(output), f32(variance_output), f32(x0), f32(noise), f32(x_t),
                       jnp.asarray(steps))
    expected_loss, expected_vlb = _hybrid_loss_reference(output, variance_output, x0, noise,
                                                         x_t, steps, betas)
    np.testing.assert_allclose(vlb, expected_vlb, rtol=2e-3, atol=1e-6)
    np.testing.assert_allclose(loss, expected_loss, rtol=2e-3, atol=1e-6)


def test_hybrid_loss_gradients_stop_at_the_mean():
    """d loss / d output is that of L_simple alone; the VLB reaches only the variance output."""
    alpha_bar = schedules.alphas_cumprod(schedules.linear_betas(1000))
    steps = jnp.array([0, 300])
    x0 = jnp.full((2, 2, 2, 1), 0.2)
    noise = jnp.ones((2, 2, 2, 1))
    x_t = x0 * 0.9 + noise * 0.3
    output, variance_output = jnp.zeros_like(noise), jnp.zeros_like(noise)

    def total(output, variance_output):
        return jnp.sum(losses.hybrid_loss("eps", output, variance_output, x0, noise, x_t, steps,
                                          alpha_bar)[0])

    grad_output, grad_variance = jax.jit(jax.grad(total, argnums=(0, 1)))(output, variance_output)
    np.testing.assert_allclose(grad_output, 2.0 * (output - noise) / 4.0, rtol=1e-6)
    assert np.all(np.isfinite(grad_variance)) and np.any(grad_variance != 0.0)
