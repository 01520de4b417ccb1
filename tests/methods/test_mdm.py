"""Matryoshka diffusion method: nested training on the tiny NestedUNet, mixed-resolution batches,
progressive (partial) training, and joint pyramid sampling against the exact denoiser."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from methods_testing import (DATA_MEAN, DATA_STD, DATA_VARIANCE, analytic_apply,
                             assert_gaussian_moments, assert_learns, make_config, random_images,
                             sample)

from jaxdiff import methods
from jaxdiff.core import schedules
from jaxdiff.core.analytic import pyramid_gaussian_denoiser
from jaxdiff.core.processes import average_pool
from jaxdiff.methods import mdm

RESOLUTION = 16  # tiny_2: a 16 px level around an 8 px core
TINY_2 = {"preset": "tiny_2"}
# tiny_2 with a one-resolution core without attention: the same method code paths (two levels,
# factor 2) at a third of the compile time.
SMALLEST_2 = dict(TINY_2, channels=((8, 16), (16,)), num_res_blocks=((1, 1), (1,)),
                  attention_layers=((0, 0), (0,)))


def config(model=TINY_2, resolution=RESOLUTION, **method_fields):
    return make_config("mdm", resolution, model, **method_fields)


def test_mixed_batch_sizes_hand_values():
    # ml-mdm: mixed_ratio "2:1" -> cumsum [2, 3] / 3: the outer level sees 2/3 of the batch.
    assert mdm.mixed_batch_sizes("2:1", 2, 6) == [4, 6]
    assert mdm.mixed_batch_sizes("1:1:2", 3, 8) == [2, 4, 8]
    assert mdm.mixed_batch_sizes("", 2, 5) == [5, 5]
    with pytest.raises(ValueError, match="leaves the outer level no sample"):
        mdm.mixed_batch_sizes("1:8", 2, 8)
    assert mdm.mixed_batch_sizes("1:8", 2, 9) == [1, 9]
    assert mdm.smallest_batch("1:8") == 9 and mdm.smallest_batch("2:1") == 2
    assert mdm.smallest_batch("") == 1


def test_nested_loss_with_mixed_batches_and_level_weights_hand_value():
    """x0 prediction from a network that outputs zeros: level k's loss is the mean of x0_k^2
    over its own first b_k rows, whatever t and the noise. Row i of the batch is the constant
    image i / 10, so with B = 6, mixed_ratio 2:1 (b = 4, 6) and weights (3, 0.5):
    loss = 3 mean(i^2 / 100, i < 4) + 0.5 mean(i^2 / 100, i < 6) = 3 * 0.035 + 0.5 * 55 / 600."""
    method = methods.build(config(parameterization="x0", mixed_ratio="2:1",
                                  level_weights=(3.0, 0.5)))
    images = jnp.broadcast_to(jnp.arange(6.0)[:, None, None, None] / 10.0,
                              (6, RESOLUTION, RESOLUTION, 3))
    seen_batches = []

    def zeros_network(variables, x, t, labels=None, train=False, rngs=None):
        seen_batches.append([level.shape[0] for level in x])
        return [jnp.zeros_like(level) for level in x]

    loss, metrics = method.loss_fn(zeros_network, {}, {"image": images}, jax.random.PRNGKey(0))
    assert seen_batches == [[4, 6]]
    np.testing.assert_allclose(loss, 3.0 * 0.035 + 0.5 * 55.0 / 600.0, rtol=1e-6)
    np.testing.assert_allclose(metrics["mse_16px"], 0.035, rtol=1e-6)
    np.testing.assert_allclose(metrics["mse_8px"], 55.0 / 600.0, rtol=1e-6)


def test_training_mixed_resolution_class_conditional():
    """The nested v loss on mixed batches with labels: finite, reaches every parameter, and
    Adam steps on a fixed batch and key lower it."""
    method = methods.build(config(dict(SMALLEST_2, num_classes=10), mixed_ratio="2:1"))
    images = random_images(jax.random.PRNGKey(3), (6, RESOLUTION, RESOLUTION, 3))
    metrics, _ = assert_learns(method, {"image": images, "label": jnp.arange(6)})
    assert set(metrics) == {"mse_16px", "mse_8px"}


def test_progressive_stage_trains_only_the_inner_level():
    """active_levels = 1 on the 16 -> 8 network: 8 px data, the parameters of the whole network,
    gradients only in params["inner"], and 8 px samples."""
    method = methods.build(config(SMALLEST_2, resolution=8, active_levels=1, sample_steps=1))
    variables = method.init_fn(jax.random.PRNGKey(0))
    params = nn.unbox(variables["params"])
    assert "inner" in params and "in_adapter" in params
    images = jax.random.uniform(jax.random.PRNGKey(1), (2, 8, 8, 3), minval=-1.0, maxval=1.0)
    grads = jax.jit(jax.grad(lambda p: method.loss(p, {"image": images},
                                                   jax.random.PRNGKey(2))[0]))(params)
    outer = {key: value for key, value in grads.items() if key != "inner"}
    assert all(float(jnp.abs(g).max()) == 0.0 for g in jax.tree.leaves(outer))
    assert sum(float(jnp.abs(g).sum()) for g in jax.tree.leaves(grads["inner"]["head"])) > 0
    samples = jax.jit(lambda p: method.sample(p, jax.random.PRNGKey(3), 2))(params)
    assert [x.shape for x in samples] == [(2, 8, 8, 3)]


def exact_pyramid_network(parameterization):
    """The exact denoiser of the default schedules: discrete cosine T = 1000 for the 8 px core,
    shifted by -2 log(16 / 8) for the 16 px level."""
    base = schedules.discrete_logsnr_fn(schedules.alphas_cumprod(schedules.cosine_betas(1000)))
    high = lambda t: schedules.resolution_shift(base(t), 16, 8, 2.0)  # noqa: E731
    return analytic_apply(pyramid_gaussian_denoiser(DATA_MEAN, DATA_VARIANCE, [high, base],
                                                    parameterization))


@pytest.mark.parametrize("fields", [
    dict(sampler="ancestral", parameterization="v", sample_steps=1000),
    dict(sampler="ddim", parameterization="eps", sample_steps=1000),
    dict(sampler="dpm_solver_pp", parameterization="v", sample_steps=250),
    dict(sampler="heun", parameterization="v", time_grid="karras", sample_steps=100),
    dict(sampler="dpm_solver_pp_3m", parameterization="eps", time_grid="power", sample_steps=100),
])
def test_joint_pyramid_samples_follow_the_data_with_the_exact_denoiser(fields):
    """64 joint samples: the 16 px level has the data's per-channel mean (within 0.01) and std
    (within 5%), the 8 px level std s / 2 (the 2x2 average of independent pixels), and the
    8 px level is the average pool of the 16 px one (both end at x0_hat; mean deviation below
    1e-3, which only clipping at +-1 can cause). Statistical error about 0.002 and 0.6% (16 px),
    1.2% (8 px); the grids' own bias measured beforehand: at most 2.4% (ancestral), 2.3% (DDIM),
    1.3% (DPM-Solver++) in std; with 50 steps 20%, 12% and 12%."""
    method = methods.build(config(x0_transform="none", **fields))
    high, low = sample(method, 64, exact_pyramid_network(fields["parameterization"]))
    assert high.shape == (64, 16, 16, 3) and low.shape == (64, 8, 8, 3)
    assert_gaussian_moments(high, DATA_MEAN, DATA_STD, 0.01, 0.05)
    assert_gaussian_moments(low, DATA_MEAN, DATA_STD / 2.0, 0.01, 0.05)
    assert float(jnp.mean(jnp.abs(average_pool(high, 2) - low))) < 1e-3


@pytest.mark.parametrize("fields, message", [
    (dict(mixed_ratio="2:1:1"), "one number per active level"),
    (dict(mixed_ratio="a:b"), "mixed_ratio"),
    (dict(level_weights=(1.0,)), "level_weights"),
    (dict(level_weights=(1.0, -1.0)), "non-negative"),
    (dict(level_weights=3.0), "method.level_weights must be a sequence of non-negative"),
    (dict(mixed_ratio=2), "method.mixed_ratio must be a string such as '2:1'"),
    (dict(active_levels=3), "active_levels"),
    (dict(schedule="sqrt"), "method.schedule must be one of"),
    (dict(parameterization="c"), "method.parameterization must be one of"),
    (dict(sampler="plms"), "method.sampler must be one of"),
    (dict(levels=2), "Unknown method field"),
])
def test_bad_config_values_raise_one_clear_error(fields, message):
    with pytest.raises(ValueError, match=message):
        methods.build(config(**fields))


def test_resolution_must_fit_the_pyramid():
    with pytest.raises(ValueError, match="divisible"):
        methods.build(config(resolution=15))
