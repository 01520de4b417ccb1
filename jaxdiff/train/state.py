"""The train state (step, parameters, optimizer state, EMA parameters, rng key, non-finite
counters), the optimizer and the EMA update.

Optimizer config fields (`config.optimizer`):
    learning_rate   peak learning rate
    warmup_steps    linear warm-up from 0 to the peak over this many steps
    schedule        "constant" (after warm-up) or "cosine" (cosine decay to 0 at num_steps)
    b1, b2, eps     AdamW moments (Loshchilov & Hutter 2019)
    weight_decay    decoupled weight decay
    grad_clip       clip by global norm (Pascanu et al. 2013); 0 disables clipping
"""

import math
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import optax

SCHEDULES = ("constant", "cosine")


@flax.struct.dataclass
class TrainState:
    """Everything a resumed run needs besides the data iterator state.

    step: number of batches consumed; rng: the root key of the run (uint32 key data), per-step
    keys are fold_in(rng, step); nonfinite_streak / nonfinite_total: consecutive and total
    skipped updates with a non-finite loss or gradient."""

    step: jax.Array
    params: Any
    ema_params: Any
    opt_state: Any
    rng: jax.Array
    nonfinite_streak: jax.Array
    nonfinite_total: jax.Array


def check_optimizer_config(opt_config) -> None:
    """ValueError in one sentence for an optimizer value that cannot train."""
    def require(field, ok, allowed):
        value = opt_config[field]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not (
                math.isfinite(value) and ok(value)):
            raise ValueError(f"config.optimizer.{field} must be {allowed}, got {value!r}.")

    require("learning_rate", lambda v: v > 0, "a finite positive number")
    require("warmup_steps", lambda v: v >= 0 and float(v).is_integer(),
            "a non-negative integer")
    for field in ("b1", "b2"):
        require(field, lambda v: 0 <= v < 1, "a number in [0, 1)")
    require("eps", lambda v: v > 0, "a finite positive number")
    for field in ("weight_decay", "grad_clip"):
        require(field, lambda v: v >= 0, "a finite non-negative number (0 disables it)")
    if opt_config.schedule not in SCHEDULES:
        raise ValueError(f"config.optimizer.schedule must be one of {list(SCHEDULES)}, got "
                         f"{opt_config.schedule!r}.")


def check_ema_decay(decay) -> None:
    if isinstance(decay, bool) or not isinstance(decay, (int, float)) or not 0 <= decay < 1:
        raise ValueError(f"config.ema_decay must be a number in [0, 1), got {decay!r}.")


def learning_rate_schedule(opt_config, num_steps: int) -> optax.Schedule:
    """Linear warm-up to `learning_rate` over `warmup_steps`, then constant or a cosine decay
    lr(s) = lr * (1 + cos(pi * (s - warmup) / (num_steps - warmup))) / 2 (Loshchilov & Hutter
    2017, SGDR)."""
    peak, warmup = opt_config.learning_rate, int(opt_config.warmup_steps)
    warm = optax.linear_schedule(0.0, peak, max(warmup, 1))
    if opt_config.schedule == "constant":
        after = optax.constant_schedule(peak)
    else:
        after = optax.cosine_decay_schedule(peak, max(num_steps - warmup, 1))
    return optax.join_schedules([warm, after], [warmup])


def create_optimizer(opt_config, num_steps: int) -> optax.GradientTransformation:
    """Global-norm gradient clipping followed by AdamW with the learning-rate schedule."""
    adamw = optax.adamw(learning_rate_schedule(opt_config, num_steps), b1=opt_config.b1,
                        b2=opt_config.b2, eps=opt_config.eps,
                        weight_decay=opt_config.weight_decay)
    if opt_config.grad_clip > 0:
        return optax.chain(optax.clip_by_global_norm(opt_config.grad_clip), adamw)
    return adamw


def create_train_state(params: Any, tx: optax.GradientTransformation,
                       rng: jax.Array) -> TrainState:
    """A state at step 0 whose EMA starts at the initial parameters."""
    zero = jnp.zeros((), jnp.int32)
    return TrainState(step=zero, params=params, ema_params=params, opt_state=tx.init(params),
                      rng=rng, nonfinite_streak=zero, nonfinite_total=zero)


def ema_update(ema_params: Any, params: Any, decay: float) -> Any:
    """Exponential moving average ema <- decay * ema + (1 - decay) * params (Polyak averaging,
    as used for sampling in Ho et al. 2020 with decay 0.9999)."""
    return jax.tree.map(lambda e, p: decay * e + (1.0 - decay) * p, ema_params, params)
