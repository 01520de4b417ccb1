"""Inpainting with growing Gaussian holes, the defading degradation of cold diffusion (Bansal et
al. 2022; repo defading-diffusion).

Step i multiplies the image by m_i(p) = 1 - exp(-|p - c|^2 / (2 sigma_i^2)) around a hole centre
c (centred, or drawn per image as `aux`), so D(x0, s) = x0 prod_{i < s} m_i.
"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from jaxdiff.core.degradations.common import (check_choice, check_index, check_num_steps,
                                              per_sample_steps)


MASK_ROUTINES = ("constant", "incremental")


@dataclasses.dataclass(frozen=True)
class GaussianMaskInpaint:
    """Fade a growing Gaussian hole to 0 (Bansal et al. 2022, inpainting; repo defading-diffusion).

    Step i multiplies the image by the mask m_i(p) = 1 - exp(-|p - c|^2 / (2 sigma_i^2)) around
    the hole centre c (the repo's Gaussian kernel divided by its maximum, subtracted from 1), with
        incremental: sigma_i = kernel_std (i + initial_mask)      constant: sigma_i = kernel_std
    so D(x0, s) = x0 prod_{i < s} m_i: a cumulative product of Gaussian masks. Defaults are the
    repo's (celebA_train.py: T = 100, kernel_std 0.1, initial_mask 11, incremental).

    The centre follows the repo's crops of a (size + 1)-point kernel: centred at row
    (H - 1) // 2, column (W - 1) // 2 (the repo's N / 2 - 1 for its even sizes); with
    random_centre (its Random_Incremental routine) each image draws a centre uniform over the
    integers -1..H-1 (rows) and -1..W-1 (columns), which `sample_aux` returns as int32 (B, 2).
    """

    num_steps: int = 100
    kernel_std: float = 0.1
    initial_mask: int = 11
    routine: str = "incremental"
    random_centre: bool = False

    def __post_init__(self):
        check_num_steps(self.num_steps)
        check_choice("mask routine", self.routine, MASK_ROUTINES)
        if not self.kernel_std > 0:
            raise ValueError(f"kernel_std must be positive, got {self.kernel_std!r}.")
        if self.routine == "incremental" and self.initial_mask < 1:
            raise ValueError(f"initial_mask must be at least 1, got {self.initial_mask!r}.")

    def sigmas(self) -> np.ndarray:
        """Hole widths sigma_0..sigma_{T-1}."""
        if self.routine == "constant":
            return np.full(self.num_steps, self.kernel_std)
        return self.kernel_std * (np.arange(self.num_steps) + self.initial_mask)

    def sample_aux(self, rng, x0, other=None):
        """Random hole centres int32 (B, 2) (row, column), or None for the centred hole."""
        del other
        if not self.random_centre:
            return None
        height, width = x0.shape[1:3]
        return jax.random.randint(rng, (x0.shape[0], 2), -1, jnp.array([height, width]),
                                  dtype=jnp.int32)

    def _squared_distances(self, x, centres):
        """|p - c|^2 per sample and pixel, float32 (B, H, W)."""
        batch, height, width = x.shape[:3]
        if centres is None:
            if self.random_centre:
                raise ValueError("random_centre inpainting needs the centres from sample_aux.")
            centres = jnp.array([(height - 1) // 2, (width - 1) // 2], jnp.int32)
        centres = jnp.broadcast_to(jnp.asarray(centres, jnp.int32), (batch, 2))
        rows = jnp.arange(height)[None, :, None] - centres[:, 0, None, None]
        cols = jnp.arange(width)[None, None, :] - centres[:, 1, None, None]
        return (rows**2 + cols**2).astype(jnp.float32)

    def cumulative_mask(self, x0, steps, aux=None):
        """M_s = prod_{i < s} m_i per sample, float32 (B, H, W); a fori_loop over the T masks."""
        distances = self._squared_distances(x0, aux)
        steps = per_sample_steps(steps, x0)[:, None, None]
        widths = jnp.asarray(self.sigmas(), jnp.float32)

        def multiply_step(index, mask):
            factor = 1.0 - jnp.exp(-distances / (2.0 * widths[index] ** 2))
            return mask * jnp.where(index < steps, factor, 1.0)

        return jax.lax.fori_loop(0, self.num_steps, multiply_step, jnp.ones_like(distances))

    def __call__(self, x0, steps, aux=None):
        """D(x0, s) = x0 M_s."""
        return (x0 * self.cumulative_mask(x0, steps, aux)[..., None]).astype(x0.dtype)

    def apply_step(self, x, index: int, aux=None):
        """Multiply by the single mask m_index."""
        check_index(index, self.num_steps)
        distances = self._squared_distances(x, aux)
        factor = 1.0 - jnp.exp(-distances / (2.0 * float(self.sigmas()[index]) ** 2))
        return x * factor[..., None]
