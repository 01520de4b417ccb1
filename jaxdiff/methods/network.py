"""How a method calls its network: construction from the model and text sections,
initialisation, the training call (with the random keys every loss splits alike) and the
network as a denoiser.

Time input. Every jaxdiff network takes the continuous time t in [0, 1] (t = 0 data, t = 1
prior) and embeds it itself (conditioning.TimeEmbedding embeds 1000 t; the dual UNet embeds
log t), so the methods pass t unchanged: never the logSNR and never an integer step. A
discrete T-step chain uses step i at t = (i + 1) / T (schedules.discrete_logsnr_fn), so a
T = 1000 DDPM network sees 1000 t = i + 1.

Conditioning (methods/conditioning.py) reaches the network as keyword arguments: `labels=` and,
for a text-conditioned network (models/text_conditioned.py), `text=`.
"""

from typing import Any, Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp

from jaxdiff import models
from jaxdiff.core import guidance
from jaxdiff.methods.base import BuildInputs
from jaxdiff.methods.conditioning import Conditioning, TextSpec
from jaxdiff.models.text_conditioned import TextConditionedNetwork
from jaxdiff.text.small_encoder import TextTransformer


def create_network(inputs: BuildInputs, network: str, **forced):
    """The network of inputs.model (models.create), which must be `network`; `forced` arguments
    are the method's (e.g. learn_sigma for a learned variance). With inputs.text's encoder set,
    the network is built with cross-attention (use_context) and wrapped with its text encoder
    (TextConditionedNetwork)."""
    text = inputs.text or {}
    encoder = text.get("encoder", "none")
    if encoder == "none":
        if inputs.model.get("use_context"):
            raise ValueError("config.model.use_context=True needs text: set config.text.encoder "
                             "('trained' or 'embeddings'), or use_context=False.")
        return models.create(inputs.model, network=network, **forced)
    model = models.create(inputs.model, network=network, **{**forced, "use_context": True})
    text_encoder = None
    if encoder == "trained":
        text_encoder = TextTransformer(
            vocab_size=text["vocab_size"], max_length=text["max_length"], width=text["width"],
            depth=text["depth"], num_heads=text["num_heads"],
            dtype=getattr(model, "dtype", jnp.float32))
    return TextConditionedNetwork(model, text_encoder)


def network_of(model):
    """The image network itself (its levels, sides and channels), unwrapped from its text
    encoder."""
    return model.network if isinstance(model, TextConditionedNetwork) else model


def conditioning_of(inputs: BuildInputs, model) -> Conditioning:
    """The conditioning of a network built by create_network."""
    text = inputs.text or {}
    spec = None
    if text.get("encoder", "none") != "none":
        spec = TextSpec(text["encoder"], text["max_length"], text.get("embed_dim", 0))
    return Conditioning(int(getattr(network_of(model), "num_classes", 0)), spec)


def init_fn_for(model, sides, channels: int, conditioning: Conditioning = Conditioning()):
    """rng -> model variables, from one zero image of side `sides` (an int) or one per level of
    a pyramid (a list of sides), with the text of one empty caption when the network takes
    text; made when called (so building a method computes nothing)."""

    def init_fn(rng):
        images = ([jnp.zeros((1, side, side, channels)) for side in sides]
                  if isinstance(sides, (list, tuple)) else jnp.zeros((1, sides, sides, channels)))
        extra = {"text": conditioning.example()["text"]} if conditioning.text else {}
        return model.init(rng, images, jnp.zeros((1,), jnp.float32), **extra)

    return init_fn


class LossKeys(NamedTuple):
    """The independent keys of one loss evaluation."""

    labels: jax.Array   # label and caption dropout
    time: jax.Array     # t (or the degradation step)
    noise: jax.Array    # eps (or the degradation's random input)
    dropout: jax.Array  # the network's dropout


def loss_keys(rng) -> LossKeys:
    return LossKeys(*jax.random.split(rng, 4))


def training_apply(apply_fn, params, x, t, conditioning: dict, rng):
    """The network in training mode, with its conditioning keywords and dropout key."""
    return apply_fn({"params": params}, x, t, **conditioning, train=True,
                    rngs={"dropout": rng})


def network_denoiser(apply_fn, params, conditioning: dict, unconditional: dict,
                     guidance_scale: float = 1.0,
                     postprocess: Callable[[Any], Any] = lambda output: output,
                     variance_output: bool = False, guidance_band: Optional[Callable] = None):
    """denoise(x_t, t) -> postprocess(network output), guided when it helps.

    An unconditional network (conditioning {}) is called as is, a conditional one with its
    conditioning; with guidance_scale != 1 the output is out_u + w (out_c - out_u) from one
    batched call (guidance.classifier_free_guidance, `unconditional` the null class / empty or
    negative caption). variance_output=True: postprocess returns (prediction, variance output)
    and only the prediction is guided (improved DDPM's learned variance). guidance_band(t) ->
    bool (B,) limits guidance to an interval of noise levels (guidance.classifier_free_guidance).
    """

    def conditional(x_t, t, values):
        return postprocess(apply_fn({"params": params}, x_t, t, **values, train=False))

    if not conditioning or guidance_scale == 1.0:
        return lambda x_t, t: conditional(x_t, t, conditioning)
    return guidance.classifier_free_guidance(conditional, conditioning, unconditional,
                                             guidance_scale, variance_output=variance_output,
                                             in_band=guidance_band)
