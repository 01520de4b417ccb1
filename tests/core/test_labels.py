"""Class labels for classifier-free guidance: dropout to the null class in training, given or
uniformly drawn labels for sampling."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdiff.core import labels as labels_lib


def test_label_dropout_rate_and_kept_labels():
    """Each label becomes the null class with probability p: over 200,000 labels the fraction is
    within 0.005 of p = 0.15 (standard error 0.0008), and the other labels are unchanged."""
    labels = jax.random.randint(jax.random.PRNGKey(0), (200_000,), 0, 10)
    dropped = labels_lib.drop_labels(jax.random.PRNGKey(1), labels, 10, 0.15)
    is_null = np.asarray(dropped == 10)
    assert abs(is_null.mean() - 0.15) < 0.005
    np.testing.assert_array_equal(np.asarray(dropped)[~is_null], np.asarray(labels)[~is_null])
    assert dropped.dtype == jnp.int32
    np.testing.assert_array_equal(labels_lib.drop_labels(jax.random.PRNGKey(2), labels, 10, 0.0),
                                  labels)
    assert bool(jnp.all(labels_lib.drop_labels(jax.random.PRNGKey(3), labels, 10, 1.0) == 10))


def test_training_labels_need_labels_for_a_conditional_network():
    assert labels_lib.training_labels(jax.random.PRNGKey(0), {}, 0, 0.1) is None
    with pytest.raises(ValueError, match="no 'label'"):
        labels_lib.training_labels(jax.random.PRNGKey(0), {}, 10, 0.1)


def test_sampling_labels_are_drawn_uniformly_when_not_given():
    labels = labels_lib.sampling_labels(jax.random.PRNGKey(0), None, 10_000, 4)
    counts = np.bincount(np.asarray(labels), minlength=5)
    assert counts[4] == 0 and np.all(np.abs(counts[:4] / 10_000 - 0.25) < 0.02)
    given = jnp.array([3, 1], jnp.int32)
    np.testing.assert_array_equal(
        labels_lib.sampling_labels(jax.random.PRNGKey(0), given, 2, 4), given)
    with pytest.raises(ValueError, match="unconditional"):
        labels_lib.sampling_labels(jax.random.PRNGKey(0), given, 2, 0)
