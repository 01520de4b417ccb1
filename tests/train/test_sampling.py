"""Sample grids: class-conditional networks sample the classes in turn, one class per column."""

import types

import jax
import jax.numpy as jnp
import numpy as np
from etils import epath
from PIL import Image

from jaxdiff.methods.base import Method
from jaxdiff.train import images, sampling, sharding


def method_with_classes(num_classes):
    """A Method whose samples are images filled with label / 10 (or -1 without labels)."""
    def sample_fn(apply_fn, params, rng, num_samples, labels=None):
        del apply_fn, params, rng
        values = jnp.full((num_samples,), -1.0) if labels is None else labels / 10.0
        return jnp.broadcast_to(values[:, None, None, None], (num_samples, 2, 2, 3))

    model = types.SimpleNamespace(apply=None)
    return Method(name="stub", model=model, init_fn=None, loss_fn=None, sample_fn=sample_fn,
                  num_classes=num_classes)


def test_a_conditional_sampler_draws_the_classes_in_turn():
    mesh = sharding.create_mesh({"data": -1, "fsdp": 1}, jax.devices()[:1])
    samples = sampling.make_sampler(method_with_classes(4), mesh, 10)(None, jax.random.PRNGKey(0))
    np.testing.assert_allclose(np.asarray(samples)[:, 0, 0, 0],
                               np.array([0, 1, 2, 3, 0, 1, 2, 3, 0, 1]) / 10.0)
    unconditional = sampling.make_sampler(method_with_classes(0), mesh, 3)
    np.testing.assert_array_equal(np.asarray(unconditional(None, jax.random.PRNGKey(0))), -1.0)


def test_one_class_per_column_up_to_sixteen_classes():
    assert sampling.grid_columns(method_with_classes(10), 64) == 10
    assert sampling.grid_columns(method_with_classes(0), 64) is None
    assert sampling.grid_columns(method_with_classes(1000), 64) is None
    assert sampling.grid_columns(method_with_classes(10), 8) is None


def test_grid_layout_with_and_without_a_column_count():
    tiles = np.arange(1, 13, dtype=np.uint8)[:, None, None, None] * np.ones((12, 2, 2, 3),
                                                                              np.uint8)
    grid = images.image_grid(tiles, columns=5)
    assert grid.shape == (3 * 3 + 1, 5 * 3 + 1, 3)
    assert grid[1, 1, 0] == 1 and grid[1, 1 + 4 * 3, 0] == 5 and grid[4, 1, 0] == 6
    assert grid[7, 1 + 3, 0] == 12 and grid[7, 1 + 2 * 3, 0] == 0  # the last row is partial
    assert images.image_grid(tiles).shape == (3 * 3 + 1, 4 * 3 + 1, 3)  # ceil(sqrt 12) = 4


def test_sample_mode_files_hold_the_labels_and_the_class_columns(tmp_path):
    samples = np.linspace(-1.0, 1.0, 6)[:, None, None, None] * np.ones((6, 2, 2, 3))
    labels = sampling.sample_labels(method_with_classes(3), 6)
    sampling.save_samples(epath.Path(tmp_path), 7, samples, labels, columns=3)
    with np.load(tmp_path / "samples_00000007.npz") as saved:
        np.testing.assert_array_equal(saved["labels"], [0, 1, 2, 0, 1, 2])
        np.testing.assert_array_equal(saved["images"][:, 0, 0, 0],
                                      images.to_uint8(samples[:, 0, 0, 0]))
    grid = np.asarray(Image.open(tmp_path / "samples_00000007.png"))
    assert grid.shape == (2 * 3 + 1, 3 * 3 + 1, 3)
    sampling.save_samples(epath.Path(tmp_path), 8, samples)
    with np.load(tmp_path / "samples_00000008.npz") as saved:
        assert "labels" not in saved
