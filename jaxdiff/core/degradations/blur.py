"""Repeated Gaussian blur, the deblurring degradation of cold diffusion (Bansal et al. 2022; repo
deblurring-diffusion-pytorch).

Step i convolves every channel with a Gaussian of width sigma_i (constant, incremental or
exponential in i), with circular or reflect padding. D(x0, s) costs one FFT per image whatever s:
s circular blurs multiply the 2-D DFT by prod_{i<s} K_i(u) (K_i the DFT of step i's kernel), a
reflect-padded blur is the circular blur of the whole-sample-symmetric extension of the image,
and Gaussian kernels are separable, so the 2-D response is the outer product of 1-D ones (the
proof is in the GaussianBlur docstring).
"""

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

from jaxdiff.core.arrays import expand_to
from jaxdiff.core.degradations.common import (NoAux, check_choice, check_index,
                                              check_num_steps, per_sample_steps)


def gaussian_kernel_1d(size: int, sigma: float) -> np.ndarray:
    """Normalized 1-D Gaussian taps k_j = exp(-(j - size // 2)^2 / (2 sigma^2)) / Z, j < size.

    The repository's 2-D kernels (torchgeometry.get_gaussian_kernel2d) are the outer product of
    these, so every kernel here is separable. Example: size 3, sigma 1 gives
    [0.2740686, 0.4518628, 0.2740686]. Float64 NumPy (tables are built on the host).
    """
    offsets = np.arange(size, dtype=np.float64) - size // 2
    taps = np.exp(-(offsets**2) / (2.0 * sigma**2))
    return taps / taps.sum()


BLUR_ROUTINES = ("constant", "incremental", "exponential")
BLUR_PADDINGS = ("circular", "reflect")


@functools.lru_cache(maxsize=64)
def _cumulative_gains(sigmas: tuple, kernel_size: int, period: int, one_sided: bool) -> np.ndarray:
    """Frequency responses of the blur chain on a periodic axis: row s = prod_{i < s} K_i(u).

    K_i(u) = sum_j k_j cos(2 pi u j / period) is the DFT of step i's symmetric kernel wrapped on
    the circle (real because the kernel is symmetric). Rows s = 0..T; u over all `period`
    frequencies, or the one-sided 0..period // 2 ones of an rfft.
    """
    offsets = np.arange(kernel_size) - kernel_size // 2
    freqs = np.arange(period // 2 + 1 if one_sided else period)
    phases = 2.0 * np.pi * np.outer(freqs, offsets) / period
    gains = [np.cos(phases) @ gaussian_kernel_1d(kernel_size, sigma) for sigma in sigmas]
    table = np.cumprod(np.stack([np.ones(len(freqs))] + gains), axis=0)
    return table.astype(np.float32)


@dataclasses.dataclass(frozen=True)
class GaussianBlur(NoAux):
    """Repeated Gaussian blur (Bansal et al. 2022, deblurring; repo deblurring-diffusion-pytorch).

    Step i (0-based) convolves every channel with a kernel_size x kernel_size Gaussian of width
        constant:     sigma_i = kernel_std
        incremental:  sigma_i = kernel_std (i + 1)
        exponential:  sigma_i = exp(kernel_std i)
    and D(x0, s) applies steps 0..s-1 in order. Padding follows the repo: "circular" (its
    Constant / Incremental / Exponential routines, torch padding_mode="circular") or "reflect"
    (its *_reflect routines: mirror without repeating the edge pixel). Defaults are the repo's
    script defaults (T = 50, 3x3, kernel_std 0.1, incremental); its CelebA generation run uses
    T = 300, kernel_size 27, kernel_std 0.01, exponential, circular, final_mean=True.

    final_mean: the repo's `--discrete` generation setting: the last step replaces the image by
    its per-channel spatial mean, so D(x0, T) is a flat colour image.

    Cost: `__call__` is one FFT per image, whatever s. Proof of equality with the step-by-step
    chain: a circularly padded convolution is a circular convolution, which the 2-D DFT turns
    into multiplication by the kernel's DFT, so s of them multiply by prod_{i<s} K_i. A reflect-
    padded convolution with a symmetric kernel equals the circular convolution of the
    whole-sample-symmetric extension of the image (period 2N - 2, valid while the kernel
    half-width is < N), and its output keeps that symmetry, so the same holds on the extension.
    Gaussian kernels are separable, so the 2-D response is the outer product of 1-D ones.
    """

    num_steps: int = 50
    kernel_size: int = 3
    kernel_std: float = 0.1
    routine: str = "incremental"
    padding: str = "circular"
    final_mean: bool = False

    def __post_init__(self):
        check_num_steps(self.num_steps)
        check_choice("blur routine", self.routine, BLUR_ROUTINES)
        check_choice("blur padding", self.padding, BLUR_PADDINGS)
        if not (isinstance(self.kernel_size, int) and self.kernel_size > 0
                and self.kernel_size % 2 == 1):
            raise ValueError(
                f"kernel_size must be a positive odd integer, got {self.kernel_size!r}.")
        if not self.kernel_std > 0:
            raise ValueError(f"kernel_std must be positive, got {self.kernel_std!r}.")

    def sigmas(self) -> tuple:
        """Kernel widths sigma_0..sigma_{T-1} of the steps."""
        index = np.arange(self.num_steps, dtype=np.float64)
        if self.routine == "constant":
            widths = np.full(self.num_steps, self.kernel_std)
        elif self.routine == "incremental":
            widths = self.kernel_std * (index + 1.0)
        else:
            widths = np.exp(self.kernel_std * index)
        return tuple(float(w) for w in widths)

    def _check_size(self, height: int, width: int):
        radius = self.kernel_size // 2
        limit = min(height, width) if self.padding == "circular" else min(height, width) - 1
        if radius > limit or (self.padding == "reflect" and min(height, width) < 2):
            raise ValueError(f"A {self.kernel_size}-tap kernel with {self.padding} padding does "
                             f"not fit a {height}x{width} image.")

    def _extend(self, x):
        """The periodic signal whose circular blur is the padded blur (see the class docstring)."""
        if self.padding == "circular":
            return x
        x = jnp.concatenate([x, x[:, -2:0:-1]], axis=1)
        return jnp.concatenate([x, x[:, :, -2:0:-1]], axis=2)

    def __call__(self, x0, steps, aux=None):
        """D(x0, s): the first s blur steps, per sample, by one FFT (exact; see class docstring)."""
        del aux
        height, width = x0.shape[1:3]
        self._check_size(height, width)
        steps = per_sample_steps(steps, x0)
        extended = self._extend(x0.astype(jnp.float32))
        rows, cols = extended.shape[1:3]
        gain_rows = jnp.asarray(_cumulative_gains(self.sigmas(), self.kernel_size, rows, False))
        gain_cols = jnp.asarray(_cumulative_gains(self.sigmas(), self.kernel_size, cols, True))
        gain = gain_rows[steps][:, :, None, None] * gain_cols[steps][:, None, :, None]
        spectrum = jnp.fft.rfft2(extended, axes=(1, 2)) * gain
        blurred = jnp.fft.irfft2(spectrum, s=(rows, cols), axes=(1, 2))[:, :height, :width]
        blurred = jnp.where(expand_to(steps == 0, blurred), x0, blurred)  # exact identity at s = 0
        if self.final_mean:
            flat = jnp.broadcast_to(blurred.mean(axis=(1, 2), keepdims=True), blurred.shape)
            blurred = jnp.where(expand_to(steps == self.num_steps, blurred), flat, blurred)
        return blurred.astype(x0.dtype)

    def apply_step(self, x, index: int, aux=None):
        """Blur step `index` by direct depthwise convolution of the padded image."""
        del aux
        check_index(index, self.num_steps)
        self._check_size(*x.shape[1:3])
        taps = gaussian_kernel_1d(self.kernel_size, self.sigmas()[index])
        channels = x.shape[-1]
        kernel = np.tile(np.outer(taps, taps)[:, :, None, None], (1, 1, 1, channels))
        radius = self.kernel_size // 2
        mode = "wrap" if self.padding == "circular" else "reflect"
        padded = jnp.pad(x, ((0, 0), (radius, radius), (radius, radius), (0, 0)), mode=mode)
        out = jax.lax.conv_general_dilated(
            padded, jnp.asarray(kernel, x.dtype), (1, 1), "VALID",
            dimension_numbers=("NHWC", "HWIO", "NHWC"), feature_group_count=channels,
            precision=jax.lax.Precision.HIGHEST)
        if self.final_mean and index == self.num_steps - 1:
            out = jnp.broadcast_to(out.mean(axis=(1, 2), keepdims=True), out.shape)
        return out
