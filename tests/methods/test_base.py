"""The Method interface's batch contract: every uint8 image leaf the method reads becomes
float32 in [-1, 1] in Method.loss, and nothing else changes."""

import jax.numpy as jnp
import numpy as np

from jaxdiff.methods.base import Method, model_batch


def test_model_batch_converts_the_named_uint8_image_leaves_only():
    batch = {"image": jnp.array([[0, 255]], jnp.uint8), "label": jnp.array([3], jnp.int32),
             "mix_image": jnp.array([[51]], jnp.uint8)}
    converted = model_batch(batch, ("image",))
    np.testing.assert_allclose(converted["image"], [[-1.0, 1.0]])
    assert converted["mix_image"].dtype == jnp.uint8 and converted["label"].dtype == jnp.int32
    both = model_batch(batch, ("image", "mix_image"))
    np.testing.assert_allclose(both["mix_image"], [[51 / 127.5 - 1.0]], rtol=1e-6)
    floats = {"image": jnp.array([[0.25]], jnp.float32)}
    assert model_batch(floats)["image"] is floats["image"]


def test_the_loss_receives_the_model_batch():
    seen = {}

    def loss_fn(apply_fn, params, batch, rng):
        seen.update(batch)
        return jnp.zeros(()), {}

    method = Method("probe", model=type("Model", (), {"apply": None})(), init_fn=None,
                    loss_fn=loss_fn, sample_fn=None)
    method.loss({}, {"image": jnp.full((1, 2, 2, 3), 255, jnp.uint8)}, None)
    assert seen["image"].dtype == jnp.float32 and float(seen["image"].min()) == 1.0
