"""The train state (step, parameters, optimizer state, EMA parameters, rng key, non-finite
counters), the optimizer and the EMA update.

Optimizer config fields (`config.optimizer`):
    learning_rate   peak learning rate
    warmup_steps    linear warm-up from 0 to the peak over this many steps
    schedule        "constant" (after warm-up) or "cosine" (cosine decay to 0 at num_steps)
    b1, b2, eps     AdamW moments (Loshchilov & Hutter 2019)
    weight_decay    decoupled weight decay
    grad_clip       clip by global norm (Pascanu et al. 2013); 0 disables clipping
    moment_dtype    "float32" or "bfloat16": the dtype of AdamW's first moment (optax's
                    mu_dtype; the second moment stays float32, its squares underflow bfloat16's
                    precision). bfloat16 saves 2 bytes per parameter and chip under FSDP.
"""

from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import optax

from jaxdiff.checks import number_in, one_of

SCHEDULES = ("constant", "cosine")
MOMENT_DTYPES = ("float32", "bfloat16")


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
    field_checks = {
        "learning_rate": number_in(0.0, low_open=True),
        "warmup_steps": number_in(0, integer=True),
        "schedule": one_of(*SCHEDULES),
        "b1": number_in(0.0, 1.0, high_open=True),
        "b2": number_in(0.0, 1.0, high_open=True),
        "eps": number_in(0.0, low_open=True),
        "weight_decay": number_in(0.0),
        "grad_clip": number_in(0.0),  # 0 disables clipping
        "moment_dtype": one_of(*MOMENT_DTYPES),
    }
    for field, check in field_checks.items():
        check(f"config.optimizer.{field}", opt_config[field])


def check_ema_decay(decay) -> None:
    number_in(0.0, 1.0, high_open=True)("config.ema_decay", decay)


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
                        weight_decay=opt_config.weight_decay,
                        mu_dtype=jnp.dtype(opt_config.get("moment_dtype", "float32")))
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
