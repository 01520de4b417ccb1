"""How a method calls its network: construction from the model section, initialisation, the
training call (with the random keys every loss splits alike) and the network as a denoiser.

Time input. Every jaxdiff network takes the continuous time t in [0, 1] (t = 0 data, t = 1
prior) and embeds it itself (conditioning.TimeEmbedding embeds 1000 t; the dual UNet embeds
log t), so the methods pass t unchanged: never the logSNR and never an integer step. A
discrete T-step chain uses step i at t = (i + 1) / T (schedules.discrete_logsnr_fn), so a
T = 1000 DDPM network sees 1000 t = i + 1.
"""

from typing import Any, Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp

from jaxdiff import models
from jaxdiff.core import guidance
from jaxdiff.methods.base import BuildInputs


def create_network(inputs: BuildInputs, network: str, **forced):
    """The network of inputs.model (models.create), which must be `network`; `forced` arguments
    are the method's (e.g. learn_sigma for a learned variance)."""
    model = models.create(inputs.model, network=network, **forced)
    if getattr(model, "use_context", False):
        raise ValueError("Text-conditioned networks (config.model.use_context=True) are not "
                         "supported by the methods yet: batches carry no context; set "
                         "config.model.use_context=False.")
    return model


def num_classes(model) -> int:
    """C of a class-conditional network (labels 0..C-1, null class C); 0 when unconditional."""
    return int(getattr(model, "num_classes", 0))


def init_fn_for(model, sides, channels: int):
    """rng -> model variables, from one zero image of side `sides` (an int) or one per level of
    a pyramid (a list of sides), made when called (so building a method computes nothing)."""

    def init_fn(rng):
        images = ([jnp.zeros((1, side, side, channels)) for side in sides]
                  if isinstance(sides, (list, tuple)) else jnp.zeros((1, sides, sides, channels)))
        return model.init(rng, images, jnp.zeros((1,), jnp.float32))

    return init_fn


class LossKeys(NamedTuple):
    """The independent keys of one loss evaluation."""

    labels: jax.Array   # label dropout
    time: jax.Array     # t (or the degradation step)
    noise: jax.Array    # eps (or the degradation's random input)
    dropout: jax.Array  # the network's dropout


def loss_keys(rng) -> LossKeys:
    return LossKeys(*jax.random.split(rng, 4))


def training_apply(apply_fn, params, x, t, labels, rng):
    """The network in training mode, with its dropout key."""
    return apply_fn({"params": params}, x, t, labels=labels, train=True, rngs={"dropout": rng})


def network_denoiser(apply_fn, params, labels, num_classes: int, guidance_scale: float = 1.0,
                     postprocess: Callable[[Any], Any] = lambda output: output,
                     variance_output: bool = False, guidance_band: Optional[Callable] = None):
    """denoise(x_t, t) -> postprocess(network output), guided when it helps.

    An unconditional network is called as is. A class-conditional one gets `labels`; with
    guidance_scale != 1 the output is out_u + w (out_c - out_u) from one batched call
    (guidance.classifier_free_guidance, the null class num_classes as the unconditional input).
    variance_output=True: postprocess returns (prediction, variance output) and only the
    prediction is guided (improved DDPM's learned variance). guidance_band(t) -> bool (B,)
    limits guidance to an interval of noise levels (guidance.classifier_free_guidance).
    """

    def conditional(x_t, t, class_labels):
        return postprocess(apply_fn({"params": params}, x_t, t, labels=class_labels,
                                    train=False))

    if num_classes == 0:
        return lambda x_t, t: conditional(x_t, t, None)
    if guidance_scale == 1.0:
        return lambda x_t, t: conditional(x_t, t, labels)
    null = jnp.full_like(labels, num_classes)
    return guidance.classifier_free_guidance(conditional, labels, null, guidance_scale,
                                             variance_output=variance_output,
                                             in_band=guidance_band)
