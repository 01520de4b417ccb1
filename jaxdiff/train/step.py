"""The jitted train step: gradient accumulation over microbatches, AdamW, EMA, and skipping of
non-finite updates, all in one program with explicit shardings and a donated state.

Microbatch split: a global batch of B rows and A accumulation steps is viewed as (B/A, A, ...)
and microbatch a takes rows a, a + A, a + 2A, ...; every device then holds B/(A * devices) rows of
each microbatch, so the split moves no data between devices and does not depend on the mesh.
"""

from typing import Any, Callable

import jax
import jax.numpy as jnp
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from jaxdiff.methods.base import Method
from jaxdiff.train import sharding as sharding_lib
from jaxdiff.train.state import TrainState, ema_update


def split_microbatches(batch: dict, accum_steps: int, mesh: Mesh) -> dict:
    """(B, ...) leaves -> (A, B/A, ...) with microbatch a = rows a::A, batch-sharded per row."""
    def split(x):
        micro = x.reshape((x.shape[0] // accum_steps, accum_steps) + x.shape[1:])
        micro = jnp.swapaxes(micro, 0, 1)
        spec = PartitionSpec(None, sharding_lib.BATCH_AXES)
        return jax.lax.with_sharding_constraint(micro, NamedSharding(mesh, spec))
    return jax.tree.map(split, batch)


def mean_loss_and_grads(method: Method, params, batch: dict, step_rng, accum_steps: int,
                        mesh: Mesh):
    """((loss, metrics), gradients) averaged over the A microbatches (a lax.scan); microbatch a
    gets the key fold_in(step_rng, a). With A = 1 the one microbatch is the batch and gets no
    scan: XLA:CPU runs a convolution network inside a scan body tens of times slower than
    outside one."""
    def grad_fn(microbatch, rng):
        return jax.value_and_grad(method.loss, has_aux=True)(params, microbatch, rng)

    if accum_steps == 1:
        return grad_fn(batch, jax.random.fold_in(step_rng, 0))

    def accumulate(carry, inputs):
        index, microbatch = inputs
        (loss, metrics), grads = grad_fn(microbatch, jax.random.fold_in(step_rng, index))
        grad_sum, loss_sum = carry
        return (jax.tree.map(jnp.add, grad_sum, grads), loss_sum + loss), metrics

    zeros = jax.tree.map(jnp.zeros_like, params)
    microbatches = split_microbatches(batch, accum_steps, mesh)
    (grad_sum, loss_sum), metrics = jax.lax.scan(
        accumulate, (zeros, jnp.zeros((), jnp.float32)), (jnp.arange(accum_steps), microbatches))
    metrics = jax.tree.map(jnp.mean, metrics)
    return (loss_sum / accum_steps, metrics), jax.tree.map(lambda g: g / accum_steps, grad_sum)


def make_train_step(method: Method, tx: optax.GradientTransformation,
                    learning_rate: optax.Schedule, *, accum_steps: int, ema_decay: float,
                    mesh: Mesh) -> Callable[[TrainState, dict], tuple[TrainState, dict]]:
    """The un-jitted step (state, data batch) -> (new state, metrics); `method.loss` turns the
    batch's uint8 images into model input (methods/base.py, the batch contract).

    Per-step key: fold_in(state.rng, state.step), microbatch key fold_in(step key, a). Loss and
    gradients are means over the A microbatches. If the loss or any gradient is not finite,
    params, optimizer state and EMA keep their old values, the step still advances (the batch is
    consumed) and the non-finite counters grow; otherwise the streak resets to 0."""
    def train_step(state: TrainState, batch: dict) -> tuple[TrainState, dict]:
        step_rng = jax.random.fold_in(state.rng, state.step)
        (loss, metrics), grads = mean_loss_and_grads(method, state.params, batch, step_rng,
                                                     accum_steps, mesh)
        grad_norm = optax.tree.norm(grads)
        finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm)

        updates, new_opt_state = tx.update(grads, state.opt_state, state.params)
        new_params = optax.apply_updates(state.params, updates)
        new_ema = ema_update(state.ema_params, new_params, ema_decay)
        keep_if_finite = lambda new, old: jax.tree.map(
            lambda n, o: jnp.where(finite, n, o), new, old)
        streak = jnp.where(finite, 0, state.nonfinite_streak + 1)
        new_state = state.replace(
            step=state.step + 1,
            params=keep_if_finite(new_params, state.params),
            ema_params=keep_if_finite(new_ema, state.ema_params),
            opt_state=keep_if_finite(new_opt_state, state.opt_state),
            nonfinite_streak=streak,
            nonfinite_total=state.nonfinite_total + (~finite).astype(jnp.int32))
        metrics = dict(metrics)
        metrics.update(loss=loss, grad_norm=grad_norm, learning_rate=learning_rate(state.step),
                       update_skipped=(~finite).astype(jnp.int32), nonfinite_streak=streak)
        return new_state, metrics

    return train_step


def jit_train_step(train_step: Callable, state_shardings: Any, mesh: Mesh) -> Callable:
    """jax.jit with the state sharded as given and donated, the batch split over all devices and
    the metrics replicated."""
    return jax.jit(train_step,
                   in_shardings=(state_shardings, sharding_lib.batch_sharding(mesh)),
                   out_shardings=(state_shardings, sharding_lib.replicated(mesh)),
                   donate_argnums=(0,))
