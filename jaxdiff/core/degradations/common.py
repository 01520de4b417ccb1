"""What every cold-diffusion degradation shares (see the package docstring for the interface):
the network time t = s / T of integer steps, the draw of training steps s uniform in 1..T (the
repository's randint(0, T) + 1), the broadcast of an int or (B,) array of steps to int32 (B,),
the checks of options and step indices, and the base of the degradations that need no `aux`.
"""

import jax
import jax.numpy as jnp


def step_time(steps, num_steps: int):
    """Continuous network time t = s / T of integer degradation steps s (float32)."""
    return jnp.asarray(steps, jnp.float32) / num_steps


def draw_training_steps(rng, batch_size: int, num_steps: int):
    """Training steps s uniform in 1..T per sample (the repository's randint(0, T) + 1)."""
    return jax.random.randint(rng, (batch_size,), 1, num_steps + 1, dtype=jnp.int32)


def per_sample_steps(steps, x0):
    """Broadcast an int or (B,) array of steps to int32 (B,)."""
    return jnp.broadcast_to(jnp.asarray(steps, jnp.int32), x0.shape[:1])


def check_choice(kind: str, value: str, choices):
    if value not in choices:
        raise ValueError(f"Unknown {kind} {value!r}; expected one of {sorted(choices)}.")


def check_num_steps(num_steps: int):
    if not (isinstance(num_steps, int) and num_steps >= 1):
        raise ValueError(f"num_steps must be a positive integer, got {num_steps!r}.")


def check_index(index: int, num_steps: int):
    if not 0 <= index < num_steps:
        raise ValueError(f"Step index {index} is outside 0..{num_steps - 1}.")


class NoAux:
    """Degradations that need no auxiliary input."""

    def sample_aux(self, rng, x0, other=None):
        """Nothing to draw: returns None."""
        del rng, x0, other
        return None
