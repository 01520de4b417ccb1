"""Cold-diffusion degradations: hand values, D(x0, 0) = x0, the cumulative (step-by-step) property,
per-sample steps under jit, and an independent SciPy reference for the blur padding modes."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import ndimage

from jaxdiff.core import degradations as dg

RNG = np.random.default_rng(0)
X0 = jnp.asarray(RNG.uniform(-1.0, 1.0, (3, 8, 8, 3)), jnp.float32)
OTHER = jnp.asarray(RNG.uniform(-1.0, 1.0, (3, 8, 8, 3)), jnp.float32)
CENTRES = jnp.array([[-1, 6], [3, 3], [7, 0]], jnp.int32)

# Small instances of every degradation, with the aux each one needs.
CASES = {
    "blur_circular_incremental": (dg.GaussianBlur(num_steps=4, kernel_size=5, kernel_std=0.4),
                                  None),
    "blur_reflect_exponential": (dg.GaussianBlur(num_steps=4, kernel_size=5, kernel_std=0.3,
                                                 routine="exponential", padding="reflect"), None),
    "blur_constant_final_mean": (dg.GaussianBlur(num_steps=3, kernel_size=3, kernel_std=1.0,
                                                 routine="constant", final_mean=True), None),
    "inpaint_centred": (dg.GaussianMaskInpaint(num_steps=4, kernel_std=0.5, initial_mask=2), None),
    "inpaint_random": (dg.GaussianMaskInpaint(num_steps=4, kernel_std=0.5, initial_mask=2,
                                              random_centre=True), CENTRES),
    "pixelate": (dg.Pixelate(num_steps=3), None),
    "decolorize_linear": (dg.Decolorize(num_steps=4, routine="linear", total_remove=True), None),
    "mix": (dg.MixImages(num_steps=4), OTHER),
}


def degrade_all_steps(degradation, aux):
    """D(x0, s) for s = 0..T, each through one jitted call with per-sample steps."""
    call = jax.jit(lambda x0, steps, aux: degradation(x0, steps, aux))
    return [call(X0, jnp.full((3,), s, jnp.int32), aux) for s in range(degradation.num_steps + 1)]


@pytest.fixture(scope="module", params=sorted(CASES))
def case(request):
    degradation, aux = CASES[request.param]
    return degradation, aux, degrade_all_steps(degradation, aux)


def test_gaussian_kernel_values():
    np.testing.assert_allclose(dg.gaussian_kernel_1d(3, 1.0),
                               [0.2740686, 0.4518628, 0.2740686], atol=5e-8)


def test_step_zero_is_identity(case):
    _, _, degraded = case
    np.testing.assert_allclose(degraded[0], X0, atol=1e-6)


def test_cumulative_property(case):
    """apply_step(D(x0, s), s) == D(x0, s + 1): the closed forms equal the step-by-step chain."""
    degradation, aux, degraded = case
    for index in range(degradation.num_steps):
        stepped = degradation.apply_step(degraded[index], index, aux)
        np.testing.assert_allclose(stepped, degraded[index + 1], atol=2e-6)
        assert not np.allclose(degraded[index + 1], degraded[index])  # every step changes x


def test_per_sample_steps(case):
    """Mixed steps in one batch pick, per image, the same result as a uniform batch."""
    degradation, aux, degraded = case
    steps = jnp.array([0, degradation.num_steps, 2], jnp.int32)
    mixed = jax.jit(lambda x0, steps, aux: degradation(x0, steps, aux))(X0, steps, aux)
    for image, step in enumerate(np.asarray(steps)):
        np.testing.assert_allclose(mixed[image], degraded[step][image], atol=1e-6)


@pytest.mark.parametrize("padding, scipy_mode", [("circular", "wrap"), ("reflect", "mirror")])
def test_blur_matches_scipy_convolution(padding, scipy_mode):
    """Independent reference: SciPy's 2-D convolution chain with the repo's padding modes
    (torch "circular" = SciPy "wrap"; torch "reflect" = SciPy "mirror", edge not repeated)."""
    blur = dg.GaussianBlur(num_steps=3, kernel_size=5, kernel_std=0.7, padding=padding)
    reference = np.asarray(X0, np.float64)
    for index, sigma in enumerate(blur.sigmas()):
        taps = dg.gaussian_kernel_1d(5, sigma)
        reference = np.stack([
            np.stack([ndimage.convolve(reference[b, :, :, c], np.outer(taps, taps), mode=scipy_mode)
                      for c in range(3)], -1)
            for b in range(3)])
        np.testing.assert_allclose(blur(X0, index + 1), reference, atol=1e-6)


def test_blur_schedules():
    np.testing.assert_allclose(dg.GaussianBlur(num_steps=3, kernel_std=0.1).sigmas(),
                               [0.1, 0.2, 0.3])
    np.testing.assert_allclose(
        dg.GaussianBlur(num_steps=3, kernel_std=0.01, routine="exponential").sigmas(),
        [1.0, math.exp(0.01), math.exp(0.02)])
    np.testing.assert_allclose(
        dg.GaussianBlur(num_steps=2, kernel_std=7.0, routine="constant").sigmas(), [7.0, 7.0])


def test_blur_final_mean_is_flat_channel_mean():
    """With final_mean the last step is the flat per-channel mean; circular blurs keep the mean."""
    blur = dg.GaussianBlur(num_steps=3, kernel_size=3, kernel_std=1.0, routine="constant",
                           final_mean=True)
    expected = jnp.broadcast_to(X0.mean(axis=(1, 2), keepdims=True), X0.shape)
    np.testing.assert_allclose(blur(X0, 3), expected, atol=1e-6)


def test_pixelate_hand_values():
    image = jnp.arange(16.0).reshape(1, 4, 4, 1) / 16.0
    pixelate = dg.Pixelate(num_steps=2)
    level1 = np.asarray(pixelate(image, 1))[0, :, :, 0]
    # 2x2 block means: (0+1+4+5)/64, (2+3+6+7)/64, (8+9+12+13)/64, (10+11+14+15)/64.
    np.testing.assert_allclose(level1[:2, :2], 0.15625)
    np.testing.assert_allclose(level1[:2, 2:], 0.28125)
    np.testing.assert_allclose(level1[2:, :2], 0.65625)
    np.testing.assert_allclose(level1[2:, 2:], 0.78125)
    np.testing.assert_allclose(pixelate(image, 2), 7.5 / 16.0)


def test_decolorize_hand_values():
    pixel = jnp.array([0.5, 0.2, -0.4]).reshape(1, 1, 1, 3)  # grayscale (channel mean) 0.1
    # constant routine, f = 0.9: c_2 = 0.81, x = 0.81 x0 + 0.19 * 0.1.
    np.testing.assert_allclose(dg.Decolorize()(pixel, 2).ravel(), [0.424, 0.181, -0.305], atol=1e-6)
    linear = dg.Decolorize(num_steps=4, routine="linear")
    np.testing.assert_allclose(linear.colour_fractions(), [1.0, 0.75, 0.5, 0.25, 0.0], atol=1e-12)
    # c_1 = 0.75: 0.75 * 0.5 + 0.25 * 0.1 = 0.4.
    np.testing.assert_allclose(linear(pixel, 1).ravel(), [0.4, 0.175, -0.275], atol=1e-6)
    np.testing.assert_allclose(
        dg.Decolorize(num_steps=3, total_remove=True).colour_fractions(), [1.0, 0.9, 0.81, 0.0])


def test_inpaint_mask_hand_values():
    """Centred hole at (3, 3) on 8x8, sigma_i = 0.1 (i + 11):
    M_2 = (1 - e^{-d2/2.42})(1 - e^{-d2/2.88})."""
    inpaint = dg.GaussianMaskInpaint(num_steps=2)
    ones = jnp.ones((1, 8, 8, 1))
    mask = np.asarray(inpaint(ones, 2))[0, :, :, 0]
    assert mask[3, 3] == 0.0
    np.testing.assert_allclose(mask[3, 5], 0.6069023, atol=1e-6)  # d2 = 4
    np.testing.assert_allclose(mask[1, 2], 0.7194398, atol=1e-6)  # d2 = 5
    np.testing.assert_allclose(np.asarray(inpaint(ones, 1))[0, 3, 5, 0], 0.8085048, atol=1e-6)
    # Random centre (-1, 6): pixel (0, 7) has d2 = 2, so M_1 = 1 - e^{-2/2.42}.
    random = dg.GaussianMaskInpaint(num_steps=2, random_centre=True)
    value = random(ones, 1, jnp.array([[-1, 6]], jnp.int32))[0, 0, 7, 0]
    np.testing.assert_allclose(value, 0.5623984, atol=1e-6)


def test_inpaint_random_centres_range():
    """The repo's crops put the centre uniformly on -1..N-1 per axis."""
    inpaint = dg.GaussianMaskInpaint(num_steps=2, random_centre=True)
    centres = np.asarray(inpaint.sample_aux(jax.random.key(0), jnp.zeros((4000, 4, 6, 1))))
    assert centres.dtype == np.int32
    assert set(centres[:, 0]) == set(range(-1, 4)) and set(centres[:, 1]) == set(range(-1, 6))
    with pytest.raises(ValueError, match="centres"):
        inpaint(jnp.zeros((1, 4, 4, 1)), 1)


def test_mix_hand_values():
    """abar_s = f(s/T)/f(0), f(t) = cos^2((t + 0.008)/1.008 pi/2); T = 4, x0 = 0.6, z = -0.2."""
    mix = dg.MixImages(num_steps=4)
    np.testing.assert_allclose(mix.alpha_bars()[1:3], [0.8470122, 0.4938436], atol=1e-7)
    x0, z = jnp.full((2, 1, 1, 1), 0.6), jnp.full((2, 1, 1, 1), -0.2)
    out = mix(x0, jnp.array([1, 2]), z).ravel()
    np.testing.assert_allclose(out, [0.4739723, 0.2793547], atol=1e-6)
    with pytest.raises(ValueError, match="other"):
        mix.sample_aux(jax.random.key(0), x0, None)


def test_step_helpers():
    np.testing.assert_allclose(dg.step_time(jnp.array([0, 5, 10]), 10), [0.0, 0.5, 1.0])
    steps = np.asarray(dg.sample_steps(jax.random.key(1), 2000, 4))
    assert set(steps) == {1, 2, 3, 4}


def test_factory_and_bad_input():
    assert dg.make_degradation("pixelate", num_steps=2) == dg.Pixelate(num_steps=2)
    bad = [
        lambda: dg.make_degradation("snow"),
        lambda: dg.make_degradation("blur", kernel_width=3),
        lambda: dg.GaussianBlur(kernel_size=4),
        lambda: dg.GaussianBlur(routine="linear"),
        lambda: dg.GaussianBlur(padding="zeros"),
        lambda: dg.GaussianBlur(num_steps=0),
        lambda: dg.GaussianBlur(kernel_size=11)(jnp.zeros((1, 4, 4, 1)), 1),
        lambda: dg.Pixelate(num_steps=3)(jnp.zeros((1, 12, 12, 1)), 1),
        lambda: dg.Decolorize(ema_factor=1.5),
        lambda: dg.MixImages(num_steps=2)(jnp.zeros((1, 4, 4, 1)), 1),
        lambda: dg.Decolorize(num_steps=2).apply_step(jnp.zeros((1, 4, 4, 3)), 2),
    ]
    for make in bad:
        with pytest.raises(ValueError):
            make()
