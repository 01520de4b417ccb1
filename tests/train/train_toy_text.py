"""A toy text-conditioned method on the built-in captioned digits, for the resume test: the
toy denoiser gets the masked mean of a small text transformer's output added to its features,
the captions come through the real data pipeline (tokenized, one of several per image per
epoch) and are dropped at rate 0.5 by the methods' conditioning code."""

import time

import flax.linen as nn
import grain
import jax
import jax.numpy as jnp
import train_toy as toy

from jaxdiff import data, methods
from jaxdiff.methods.base import Method
from jaxdiff.methods.conditioning import Conditioning, TextSpec
from jaxdiff.methods.settings import Settings
from jaxdiff.models import layers
from jaxdiff.models.conditioning import as_text_context, masked_mean
from jaxdiff.models.text_conditioned import TextConditionedNetwork
from jaxdiff.text.config import batch_text
from jaxdiff.text.small_encoder import TextTransformer

NAME = "toy_text"
TEXT = dict(encoder="trained", max_length=8, vocab_size=64, width=8, depth=1, num_heads=2)


class ToyTextDenoiser(nn.Module):
    """ToyDenoiser with the text's masked mean added to the features."""

    @nn.compact
    def __call__(self, x, t, labels=None, context=None, train=False):
        text = as_text_context(context)
        pooled = masked_mean(text.embeddings, text.mask)
        h = layers.Conv(8)(x) + layers.Dense(8)(t[:, None, None, None])
        h = h + layers.Dense(8)(pooled)[:, None, None, :]
        return layers.Conv(x.shape[-1])(nn.silu(h))


def build(inputs) -> Method:
    spec = TextSpec("trained", TEXT["max_length"])
    conditioning = Conditioning(0, spec)
    model = TextConditionedNetwork(ToyTextDenoiser(), TextTransformer(
        TEXT["vocab_size"], TEXT["max_length"], TEXT["width"], TEXT["depth"],
        TEXT["num_heads"]))

    def loss_fn(apply_fn, params, batch, rng):
        drop_key, t_key, noise_key = jax.random.split(rng, 3)
        given = conditioning.training(drop_key, batch, 0.0, 0.5)
        x0 = batch["image"]
        t = jax.random.uniform(t_key, (x0.shape[0],))
        eps = jax.random.normal(noise_key, x0.shape)
        alpha, sigma = toy.vp_cosine(t)
        prediction = apply_fn({"params": params}, alpha * x0 + sigma * eps, t, **given)
        mse = jnp.mean((prediction - eps) ** 2)
        return mse, {"mse": mse}

    def init_fn(rng):
        return model.init(rng, jnp.zeros((1, toy.RESOLUTION, toy.RESOLUTION, 3)),
                          jnp.zeros((1,)), text=spec.null(1))

    return Method(NAME, model, init_fn, loss_fn, sample_fn=None, text=spec)


methods.register(NAME, Settings, build)


def toy_text_config(**overrides):
    """toy_config on the captioned digits with the toy text method."""
    config = toy.toy_config(**overrides)
    config.method = dict(name=NAME)
    config.data.name = "builtin:captioned_digits"
    config.text.update(TEXT)
    return config


def caption_iterator(config, process_index=0, process_count=1):
    """The real pipeline's iterator of images, labels, tokens and masks."""
    return data.create_iterator(config.data, global_batch_size=config.batch_size,
                                seed=config.seed, process_index=process_index,
                                process_count=process_count, text=batch_text(config.text))


class Slowed(grain.DatasetIterator):
    """A grain iterator that sleeps `delay` seconds before each batch (the signal tests), its
    state its parent's."""

    def __init__(self, parent, delay: float):
        super().__init__(parent)
        self._delay = delay

    def __next__(self):
        time.sleep(self._delay)
        return next(self._parent)

    def get_state(self):
        return self._parent.get_state()

    def set_state(self, state):
        self._parent.set_state(state)
