"""Pixelation, the super-resolution degradation of cold diffusion (Bansal et al. 2022; repo
resolution-diffusion-pytorch, routine Incremental_area_factor_2).

Step i area-downsamples to N / 2^(i+1) and nearest-upsamples back, so D(x0, s) is the 2^s x 2^s
block averages of x0, nearest-upsampled (proof in the Pixelate docstring).
"""

import dataclasses

import jax.numpy as jnp

from jaxdiff.core.arrays import expand_to
from jaxdiff.core.degradations.common import (NoAux, check_index, check_num_steps,
                                              per_sample_steps)


def _block_average(x, block: int):
    """Average over block x block tiles, repeated back to full size (area down, nearest up)."""
    batch, height, width, channels = x.shape
    tiles = x.reshape(batch, height // block, block, width // block, block, channels)
    means = tiles.mean(axis=(2, 4), keepdims=True)
    return jnp.broadcast_to(means, tiles.shape).reshape(x.shape)


@dataclasses.dataclass(frozen=True)
class Pixelate(NoAux):
    """Halve the resolution at every step (Bansal et al. 2022, super-resolution; repo
    resolution-diffusion-pytorch, routine Incremental_area_factor_2).

    Step i area-downsamples the image to N / 2^(i+1) and nearest-upsamples it back to N. The repo
    also offers bicubic / bilinear downsampling (its default Incremental_factor_2 is bicubic); we
    use its area option, the only one for which the chain has the closed form below. T = 3 is the
    repo's setting for 32 px (4x4 at the end), T = 4 for CelebA.

    Closed form: D(x0, s) = the 2^s x 2^s block averages of x0, nearest-upsampled. Proof by
    induction: D(x0, s) is constant on 2^s blocks, and each 2^(s+1) block is the union of four
    such blocks of equal area, so averaging D(x0, s) over it equals averaging x0 over it.
    H and W must be divisible by 2^T.
    """

    num_steps: int = 3

    def __post_init__(self):
        check_num_steps(self.num_steps)

    def _check_size(self, height: int, width: int):
        factor = 2**self.num_steps
        if height % factor or width % factor:
            raise ValueError(f"Pixelate with {self.num_steps} steps needs image sides divisible "
                             f"by {factor}, got {height}x{width}.")

    def __call__(self, x0, steps, aux=None):
        """D(x0, s), choosing per sample among the T + 1 block sizes (one where per level)."""
        del aux
        self._check_size(*x0.shape[1:3])
        steps = expand_to(per_sample_steps(steps, x0), x0)
        out = x0
        for level in range(1, self.num_steps + 1):  # one static block size per level, T <= log2 N
            out = jnp.where(steps == level, _block_average(x0, 2**level), out)
        return out

    def apply_step(self, x, index: int, aux=None):
        """Average over 2^(index+1) blocks (the repo's area down / nearest up step)."""
        del aux
        check_index(index, self.num_steps)
        self._check_size(*x.shape[1:3])
        return _block_average(x, 2 ** (index + 1))
