"""jaxdiff/train/state.py: the learning-rate schedules and the EMA update."""

import jax
import numpy as np
import pytest

import train_toy as toy
from jaxdiff.train import state


def test_learning_rate_schedule_values():
    config = toy.toy_config()
    cosine = state.learning_rate_schedule(config.optimizer, num_steps=6)
    # warm-up 2 steps to 1e-2, then 1e-2 * (1 + cos(pi * (s - 2) / 4)) / 2.
    expected = [0.0, 5e-3, 1e-2, 1e-2 * (1 + np.cos(np.pi / 4)) / 2, 5e-3,
                1e-2 * (1 + np.cos(3 * np.pi / 4)) / 2, 0.0]
    np.testing.assert_allclose([cosine(s) for s in range(7)], expected, atol=1e-9)
    config.optimizer.schedule = "constant"
    constant = state.learning_rate_schedule(config.optimizer, num_steps=6)
    np.testing.assert_allclose([constant(s) for s in (1, 2, 5, 100)], [5e-3, 1e-2, 1e-2, 1e-2])
    config.optimizer.schedule = "linear"
    with pytest.raises(ValueError, match="config.optimizer.schedule must be one of "
                                         "\\['constant', 'cosine'\\], got 'linear'"):
        state.check_optimizer_config(config.optimizer)


def test_bfloat16_first_moments():
    config = toy.toy_config()
    params = {"w": np.ones((3, 2), np.float32)}
    config.optimizer.moment_dtype = "bfloat16"
    adam = state.create_optimizer(config.optimizer, num_steps=10).init(params)
    moments = [leaf for leaf in jax.tree.leaves(adam) if getattr(leaf, "shape", ()) == (3, 2)]
    assert sorted(str(m.dtype) for m in moments) == ["bfloat16", "float32"]  # mu, nu
    config.optimizer.moment_dtype = "float16"
    with pytest.raises(ValueError, match="config.optimizer.moment_dtype must be one of"):
        state.check_optimizer_config(config.optimizer)


def test_ema_update_formula():
    ema = state.ema_update({"w": np.array([1.0, 2.0])}, {"w": np.array([3.0, 0.0])}, 0.9)
    np.testing.assert_allclose(ema["w"], [0.9 * 1 + 0.1 * 3, 0.9 * 2 + 0.1 * 0])
