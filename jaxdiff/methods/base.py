"""The interface between a diffusion method (one paper) and the method-agnostic train loop.

A method knows nothing about meshes, files or optimizers; the loop knows nothing about any
paper. `params` below is the model's `variables["params"]` tree (unboxed arrays); a method calls
the network as `apply_fn({"params": params}, x, t, labels=..., text=..., train=...,
rngs={"dropout": key})` (the shared network contract, methods/network.py; conditioning in
methods/conditioning.py).

The batch contract. The data pipeline yields process-local batches {"image": uint8 (B, H, W, 3),
"label": int32 (B,)[, "mix_image": uint8 (B, H, W, 3)][, "tokens": int32 (B, L) or
"embeddings": float (B, L, D), with "mask": bool (B, L)]}. `Method.loss` is the one place where
they become model input: every image leaf the method reads (`image_keys`) is mapped to float32
in [-1, 1] by `model_batch`; labels and any other leaf pass unchanged.
"""

import dataclasses
from typing import Any, Callable, Optional

import flax.linen as nn
import jax

from jaxdiff import data

Params = Any
Batch = dict[str, jax.Array]
ApplyFn = Callable[..., Any]


@dataclasses.dataclass(frozen=True)
class BuildInputs:
    """What a method is built from: its checked settings (a methods.settings.Settings), the
    config's model and text sections as plain dicts (text: text/config.py; {} = no text), and
    the side of the training images."""

    settings: Any
    model: dict
    resolution: int
    text: dict = dataclasses.field(default_factory=dict)


def model_batch(batch: Batch, image_keys=("image",)) -> Batch:
    """The batch a loss receives: the uint8 leaves named in image_keys as float32 in [-1, 1]
    (data.to_model_input); float leaves and every other leaf unchanged."""
    converted = dict(batch)
    for key in image_keys:
        if key in batch and batch[key].dtype == "uint8":
            converted[key] = data.to_model_input(batch[key])
    return converted


@dataclasses.dataclass(frozen=True)
class Method:
    """A diffusion method as the train loop sees it.

    model:     the Flax module; the loop passes `model.apply` as `apply_fn` below.
    init_fn:   rng -> the model's variables (a dict with "params", parameters may carry
               `nn.with_logical_partitioning` boxes); shapes must not depend on the rng. The loop
               evaluates it abstractly to derive shardings, then runs it sharded.
    loss_fn:   (apply_fn, params, batch, rng) -> (scalar loss, dict of scalar metrics); batch is
               `model_batch` of the data batch: {"image": float32 NHWC in [-1, 1], "label": int32
               (B,)} and the other image_keys alike; the loss is a mean over the batch (the loop
               averages microbatches with equal weights).
    sample_fn: (apply_fn, params, rng, num_samples, labels=None, text=None,
               negative_text=None) -> images in [-1, 1] (NHWC; a list, highest resolution
               first, for multi-resolution methods); text / negative_text as the batch
               carries it (conditioning.TextSpec), None = the empty caption.
    num_classes: classes of a class-conditional network (labels 0..C-1, the null class C), 0
               for an unconditional one.
    text:      a conditioning.TextSpec for a text-conditioned network, else None.
    image_keys: the batch's image leaves the loss reads ("mix_image": a second data stream).
    reference_images: how many training images the sampler needs before it can run (cold
               diffusion's generation start); 0 for none. The loop reads them from the training
               data and calls `attach_reference(images, rng)`, which returns the method ready to
               sample; images is {"image": uint8 (N, H, W, 3)} plus "mix_image" where read.
    min_batch_size: the smallest batch the loss takes (MDM's mixed-resolution batches need
               enough samples to give the outer level one).
    """

    name: str
    model: nn.Module
    init_fn: Callable[[jax.Array], dict]
    loss_fn: Callable[[ApplyFn, Params, Batch, jax.Array], tuple[jax.Array, dict]]
    sample_fn: Callable[..., Any]
    num_classes: int = 0
    image_keys: tuple = ("image",)
    reference_images: int = 0
    attach_reference: Optional[Callable[[dict, jax.Array], "Method"]] = None
    min_batch_size: int = 1
    text: Any = None

    def loss(self, params: Params, batch: Batch, rng: jax.Array) -> tuple[jax.Array, dict]:
        return self.loss_fn(self.model.apply, params, model_batch(batch, self.image_keys), rng)

    def sample(self, params: Params, rng: jax.Array, num_samples: int,
               labels: Optional[jax.Array] = None, text: Optional[dict] = None,
               negative_text: Optional[dict] = None) -> Any:
        # text keywords only when given: a method without text keeps its 5-argument sample_fn
        extra = {name: value for name, value in (("text", text),
                                                  ("negative_text", negative_text))
                 if value is not None}
        return self.sample_fn(self.model.apply, params, rng, num_samples, labels, **extra)
