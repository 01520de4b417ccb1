"""Cold-diffusion degradations (jaxdiff/core/degradations/): the properties every degradation
shares (D(x0, 0) = x0, the cumulative (step-by-step) property, per-sample steps under jit), the
step helpers of common.py and the registry. The hand values of each degradation and the
independent SciPy reference of the blur padding modes are in test_degradations_<module>.py."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

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


def test_step_helpers():
    np.testing.assert_allclose(dg.step_time(jnp.array([0, 5, 10]), 10), [0.0, 0.5, 1.0])
    steps = np.asarray(dg.draw_training_steps(jax.random.key(1), 2000, 4))
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
