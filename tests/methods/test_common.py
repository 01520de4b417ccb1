"""Helpers shared by the methods: label dropout, labels for sampling, schedules and time draws,
config checks, and registration of the method builders."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxdiff.methods as methods
from jaxdiff.core import guidance
from jaxdiff.methods import attenuation, cold, common, ddpm, mdm, simple_diffusion  # noqa: F401
from methods_testing import make_config


def test_label_dropout_rate_and_kept_labels():
    """Each label becomes the null class with probability p: over 200,000 labels the fraction is
    within 0.005 of p = 0.15 (standard error 0.0008), and the other labels are unchanged."""
    labels = jax.random.randint(jax.random.PRNGKey(0), (200_000,), 0, 10)
    dropped = common.drop_labels(jax.random.PRNGKey(1), labels, 10, 0.15)
    is_null = np.asarray(dropped == 10)
    assert abs(is_null.mean() - 0.15) < 0.005
    np.testing.assert_array_equal(np.asarray(dropped)[~is_null], np.asarray(labels)[~is_null])
    assert dropped.dtype == jnp.int32
    np.testing.assert_array_equal(common.drop_labels(jax.random.PRNGKey(2), labels, 10, 0.0),
                                  labels)
    assert bool(jnp.all(common.drop_labels(jax.random.PRNGKey(3), labels, 10, 1.0) == 10))


def test_training_labels_need_labels_for_a_conditional_network():
    assert common.training_labels(jax.random.PRNGKey(0), {}, 0, 0.1) is None
    with pytest.raises(ValueError, match="no 'label'"):
        common.training_labels(jax.random.PRNGKey(0), {}, 10, 0.1)


def test_sampling_labels_are_drawn_uniformly_when_not_given():
    labels = common.sampling_labels(jax.random.PRNGKey(0), None, 10_000, 4)
    counts = np.bincount(np.asarray(labels), minlength=5)
    assert counts[4] == 0 and np.all(np.abs(counts[:4] / 10_000 - 0.25) < 0.02)
    given = jnp.array([3, 1], jnp.int32)
    np.testing.assert_array_equal(common.sampling_labels(jax.random.PRNGKey(0), given, 2, 4),
                                  given)


def test_discrete_training_times_lie_on_the_chain_grid():
    """Discrete schedules draw t = (i + 1) / T with i uniform in 0..T-1."""
    schedule = common.base_schedule("cosine", 10, -15.0, 15.0)
    t = np.asarray(schedule.training_times(jax.random.PRNGKey(0), 5000))
    steps = t * 10 - 1
    np.testing.assert_allclose(steps, np.round(steps), atol=1e-5)
    assert set(np.round(steps).astype(int)) == set(range(10))
    # Respacing 10 steps to 3 keeps steps 0, 4 (round(4.5)) and 9.
    np.testing.assert_allclose(schedule.sampling_times(3), [1.0, 0.5, 0.1, 0.0])
    with pytest.raises(ValueError, match="betas >= 1"):
        common.base_schedule("linear", 20, -15.0, 15.0)
    continuous = common.base_schedule("continuous_cosine", 0, -15.0, 15.0)
    np.testing.assert_allclose(continuous.logsnr_fn(0.5), 0.0, atol=1e-5)
    np.testing.assert_allclose(continuous.sampling_times(4), [1.0, 0.75, 0.5, 0.25, 0.0])


def test_x0_transforms():
    assert common.x0_transform("none", 0.995) is None
    assert common.x0_transform("clip", 0.995) is guidance.clip_x0
    x0 = jnp.array([[-3.0, -1.5, 0.0, 0.5, 2.0]])
    np.testing.assert_allclose(common.x0_transform("dynamic", 0.995)(x0),
                               guidance.dynamic_threshold(x0, 0.995))
    with pytest.raises(ValueError, match="threshold_quantile"):
        common.x0_transform("dynamic", 0.0)


def test_model_section_and_method_fields():
    with pytest.raises(ValueError, match="config.model.name"):
        ddpm.build(make_config("ddpm", 8, {"name": "nested_unet"}))
    with pytest.raises(ValueError, match="Unknown UNet arguments"):
        ddpm.build(make_config("ddpm", 8, {"preset": "tiny", "width": 3}))
    with pytest.raises(ValueError, match="use_context"):
        ddpm.build(make_config("ddpm", 8, {"preset": "tiny", "use_context": True}))
    with pytest.raises(ValueError, match="data.resolution"):
        ddpm.build(make_config("ddpm", 0, {"preset": "tiny"}))


def test_every_method_is_registered_under_its_name():
    """Importing a method module registers its builder; the registry builds it by name (cold is
    built in test_cold.py, it reads reference images)."""
    assert {"attenuation", "cold", "ddpm", "mdm", "simple_diffusion"} <= set(
        methods.registered())
    for name, resolution in (("ddpm", 8), ("simple_diffusion", 16), ("mdm", 8),
                             ("attenuation", 8)):
        assert methods.build(make_config(name, resolution, {"preset": "tiny"})).name == name
