"""The interface between a diffusion method (one paper) and the method-agnostic train loop.

A method knows nothing about meshes, files or optimizers; the loop knows nothing about any
paper. `params` below is the model's `variables["params"]` tree (unboxed arrays); a method calls
the network as `apply_fn({"params": params}, x, t, labels=..., context=..., train=...,
rngs={"dropout": key})` (the shared network contract).
"""

import dataclasses
from typing import Any, Callable, Optional

import flax.linen as nn
import jax

Params = Any
Batch = dict[str, jax.Array]
ApplyFn = Callable[..., Any]


@dataclasses.dataclass(frozen=True)
class Method:
    """A diffusion method as the train loop sees it.

    model:     the Flax module; the loop passes `model.apply` as `apply_fn` below.
    init_fn:   rng -> the model's variables (a dict with "params", parameters may carry
               `nn.with_logical_partitioning` boxes); shapes must not depend on the rng. The loop
               evaluates it abstractly to derive shardings, then runs it sharded.
    loss_fn:   (apply_fn, params, batch, rng) -> (scalar loss, dict of scalar metrics); batch is
               {"image": float32 NHWC in [-1, 1], "label": int32 (B,)}; the loss is a mean over
               the batch (the loop averages microbatches with equal weights).
    sample_fn: (apply_fn, params, rng, num_samples, labels=None) -> images in [-1, 1]
               (NHWC; a list, highest resolution first, for multi-resolution methods).
    """

    name: str
    model: nn.Module
    init_fn: Callable[[jax.Array], dict]
    loss_fn: Callable[[ApplyFn, Params, Batch, jax.Array], tuple[jax.Array, dict]]
    sample_fn: Callable[..., Any]

    def loss(self, params: Params, batch: Batch, rng: jax.Array) -> tuple[jax.Array, dict]:
        return self.loss_fn(self.model.apply, params, batch, rng)

    def sample(self, params: Params, rng: jax.Array, num_samples: int,
               labels: Optional[jax.Array] = None) -> Any:
        return self.sample_fn(self.model.apply, params, rng, num_samples, labels)
