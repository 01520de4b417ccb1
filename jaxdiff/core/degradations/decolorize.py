"""Decolorization, the colorization degradation of cold diffusion (Bansal et al. 2022; repo
decolor-diffusion).

Step i maps x -> f_i x + (1 - f_i) gray(x), gray the channel mean, so
D(x0, s) = c_s x0 + (1 - c_s) gray(x0) with c_s = prod_{i < s} f_i.
"""

import dataclasses

import jax.numpy as jnp
import numpy as np

from jaxdiff.core.arrays import expand_to
from jaxdiff.core.degradations.common import (NoAux, check_choice, check_index,
                                              check_num_steps, per_sample_steps)


DECOLOR_ROUTINES = ("constant", "linear")


def grayscale(x):
    """Per-pixel grayscale of the repo's decolorization: the channel mean, kept as C channels."""
    return jnp.broadcast_to(x.mean(axis=-1, keepdims=True), x.shape)


@dataclasses.dataclass(frozen=True)
class Decolorize(NoAux):
    """Move towards the per-pixel grayscale (Bansal et al. 2022, colorization; repo
    decolor-diffusion).

    Step i maps x -> f_i x + (1 - f_i) gray(x), gray = channel mean (a 1x1 conv with weights
    f_i I + (1 - f_i) / C). With the averaging matrix A (A^2 = A),
    (a I + (1 - a) A)(b I + (1 - b) A) = ab I + (1 - ab) A, so
        D(x0, s) = c_s x0 + (1 - c_s) gray(x0),  c_s = prod_{i < s} f_i.
    constant: f_i = ema_factor, c_s = ema_factor^s; linear: f_i = 1 - (1/T) / (1 - i/T), so
    c_s = 1 - s/T. total_remove sets the last f to 0 (c_T = 0). Defaults are the repo's
    (decolor_routine Constant, decolor_ema_factor 0.9, T = 50).
    """

    num_steps: int = 50
    routine: str = "constant"
    ema_factor: float = 0.9
    total_remove: bool = False

    def __post_init__(self):
        check_num_steps(self.num_steps)
        check_choice("decolor routine", self.routine, DECOLOR_ROUTINES)
        if not 0.0 <= self.ema_factor <= 1.0:
            raise ValueError(f"ema_factor must lie in [0, 1], got {self.ema_factor!r}.")

    def step_factors(self) -> np.ndarray:
        """f_0..f_{T-1}."""
        index = np.arange(self.num_steps, dtype=np.float64)
        if self.routine == "constant":
            factors = np.full(self.num_steps, self.ema_factor)
        else:
            factors = 1.0 - (1.0 / self.num_steps) / (1.0 - index / self.num_steps)
        if self.total_remove:
            factors[-1] = 0.0
        return factors

    def colour_fractions(self) -> np.ndarray:
        """c_0..c_T, c_0 = 1."""
        return np.concatenate([[1.0], np.cumprod(self.step_factors())])

    def __call__(self, x0, steps, aux=None):
        """D(x0, s) = c_s x0 + (1 - c_s) gray(x0)."""
        del aux
        fraction = jnp.asarray(self.colour_fractions(), jnp.float32)[per_sample_steps(steps, x0)]
        fraction = expand_to(fraction, x0)
        return (fraction * x0 + (1.0 - fraction) * grayscale(x0)).astype(x0.dtype)

    def apply_step(self, x, index: int, aux=None):
        """x -> f_index x + (1 - f_index) gray(x)."""
        del aux
        check_index(index, self.num_steps)
        factor = float(self.step_factors()[index])
        return factor * x + (1.0 - factor) * grayscale(x)
