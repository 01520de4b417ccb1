"""Text-conditioned methods end to end on tiny networks: the trained encoder learns with the
network, prompts change the samples, and every Gaussian method takes text by config."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxdiff import methods
from jaxdiff.text.prompts import encode_prompts
from jaxdiff.train.defaults import experiment_config

MODELS = {"ddpm": dict(name="unet", preset="tiny"),
          "simple_diffusion": dict(name="uvit", preset="tiny"),
          "mdm": dict(name="nested_unet", preset="tiny_2"),
          "attenuation": dict(name="dual_unet", preset="tiny")}
SIDES = {"ddpm": 8, "simple_diffusion": 8, "mdm": 16, "attenuation": 8}


def text_config(name, encoder="trained", **method):
    config = experiment_config(
        method=dict(name=name, sample_steps=2, **method), model=MODELS[name],
        data=dict(name="builtin:captioned_digits", resolution=SIDES[name]),
        text=dict(encoder=encoder, max_length=6, vocab_size=64, width=16, depth=1,
                  num_heads=2, embed_dim=8))
    if name == "ddpm":
        config.method.num_timesteps = 100
    return config


def batch_for(config, method, size=4):
    side = config.data.resolution
    batch = {"image": jnp.zeros((size, side, side, 3), jnp.uint8),
             "label": jnp.zeros((size,), jnp.int32)}
    if config.text.encoder == "trained":
        batch.update(encode_prompts(config.text, ["a red seven"] * size))
    else:
        batch["embeddings"] = jnp.ones((size, 6, 8), jnp.float16)
        batch["mask"] = jnp.ones((size, 6), bool)
    return batch


def perturbed_params(method):
    """Initial parameters plus noise: zero-initialised output layers would hide the text."""
    params = jax.jit(method.init_fn)(jax.random.PRNGKey(0))["params"]
    return jax.tree.map(lambda p: p + 0.05 * jax.random.normal(jax.random.PRNGKey(1), p.shape),
                        params)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_the_text_encoder_trains_with_the_network(name):
    config = text_config(name, caption_dropout=0.0)
    method = methods.build(config)
    params = perturbed_params(method)
    batch = batch_for(config, method)
    grads = jax.jit(jax.grad(lambda p: method.loss(p, batch, jax.random.PRNGKey(2))[0]))(params)
    encoder_norm = sum(float(jnp.sum(g ** 2)) for g in jax.tree.leaves(grads["text_encoder"]))
    assert encoder_norm > 0.0 and method.text.encoder == "trained"


@pytest.mark.parametrize("name", ["mdm", "ddpm"])
def test_prompts_and_negative_prompts_change_the_samples(name):
    config = text_config(name, guidance_scale=3.0)
    method = methods.build(config)
    params = perturbed_params(method)
    text = encode_prompts(config.text, ["a red seven", "a blue one"])
    negative = encode_prompts(config.text, ["a green two"] * 2)
    key = jax.random.PRNGKey(3)
    sample = jax.jit(lambda text, negative: method.sample(params, key, 2, text=text,
                                                          negative_text=negative))

    def first(out):
        return out[0] if isinstance(out, list) else out

    empty = {"tokens": method.text.null(2)["tokens"], "mask": method.text.null(2)["mask"]}
    plain = first(sample(text, empty))
    again = first(sample(text, empty))
    other = first(sample(negative, empty))
    steered = first(sample(text, negative))
    np.testing.assert_array_equal(plain, again)
    assert np.abs(np.asarray(plain - other)).max() > 1e-4
    assert np.abs(np.asarray(plain - steered)).max() > 1e-4


def test_precomputed_embeddings_condition_without_an_encoder():
    config = text_config("mdm", encoder="embeddings")
    method = methods.build(config)
    params = method.init_fn(jax.random.PRNGKey(0))["params"]
    assert "text_encoder" not in params
    loss, _ = method.loss(params, batch_for(config, method), jax.random.PRNGKey(2))
    assert np.isfinite(float(loss))


def test_progressive_mdm_stage_with_text_uses_the_inner_levels():
    config = text_config("mdm", active_levels=1)
    config.data.resolution = 8
    method = methods.build(config)
    params = method.init_fn(jax.random.PRNGKey(0))["params"]
    samples = method.sample(params, jax.random.PRNGKey(1), 2)
    assert [s.shape for s in samples] == [(2, 8, 8, 3)]
    loss, metrics = method.loss(params, batch_for(config, method), jax.random.PRNGKey(2))
    assert np.isfinite(float(loss)) and list(metrics) == ["mse_8px"]


def test_text_settings_that_cannot_run_are_one_sentence():
    config = text_config("mdm")
    config.model.use_context = True
    config.text.encoder = "none"
    with pytest.raises(ValueError, match="use_context=True needs text"):
        methods.build(config)
    cold = experiment_config(method=dict(name="cold"), model=dict(name="unet", preset="tiny"),
                             data=dict(resolution=8), text=dict(encoder="trained"))
    with pytest.raises(ValueError, match="not text-conditioned here"):
        methods.build(cold)
