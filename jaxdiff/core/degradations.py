"""Cold-diffusion degradations D(x0, s) (Bansal et al. 2022, "Cold Diffusion: Inverting Arbitrary
Image Transforms Without Noise", repository arpitbansal297/Cold-Diffusion-Models).

A degradation applies T deterministic steps to a clean image; D(x0, s) is the image after the
first s of them (s = 0..T, D(x0, 0) = x0), exactly as the repository composes its per-step
operators. Every degradation here is a frozen dataclass with one interface, so the samplers and the
train loop treat them alike:

    degradation(x0, steps, aux=None) -> x_s       steps: an int or int32 (B,), per sample
    degradation.apply_step(x, index, aux=None)     the single step index + 1 (index a Python int)
    degradation.sample_aux(rng, x0, other=None)    what `aux` must carry, drawn once per batch
    degradation.num_steps                          T

`aux` is None except for inpainting with random hole centres (int32 (B, 2) centres, drawn from
the rng) and for mixing (the second image, from another dataset). Images are NHWC in [-1, 1].
`__call__` is jit-able with per-sample steps; where a cheaper form than running the steps one
after the other is used, its docstring gives the proof that it is exactly equal.

Networks see the continuous time t = s / T (`step_time`), t = 0 data and t = 1 fully degraded,
matching the shared time convention of the Gaussian methods.
"""

import dataclasses
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

from jaxdiff.core.arrays import expand_to
from jaxdiff.core.schedules import alphas_cumprod, cosine_betas


def gaussian_kernel_1d(size: int, sigma: float) -> np.ndarray:
    """Normalized 1-D Gaussian taps k_j = exp(-(j - size // 2)^2 / (2 sigma^2)) / Z, j < size.

    The repository's 2-D kernels (torchgeometry.get_gaussian_kernel2d) are the outer product of
    these, so every kernel here is separable. Example: size 3, sigma 1 gives
    [0.2740686, 0.4518628, 0.2740686]. Float64 NumPy (tables are built on the host).
    """
    offsets = np.arange(size, dtype=np.float64) - size // 2
    taps = np.exp(-(offsets**2) / (2.0 * sigma**2))
    return taps / taps.sum()


def step_time(steps, num_steps: int):
    """Continuous network time t = s / T of integer degradation steps s (float32)."""
    return jnp.asarray(steps, jnp.float32) / num_steps


def sample_steps(rng, batch_size: int, num_steps: int):
    """Training steps s uniform in 1..T per sample (the repository's randint(0, T) + 1)."""
    return jax.random.randint(rng, (batch_size,), 1, num_steps + 1, dtype=jnp.int32)


def _per_sample_steps(steps, x0):
    """Broadcast an int or (B,) array of steps to int32 (B,)."""
    return jnp.broadcast_to(jnp.asarray(steps, jnp.int32), x0.shape[:1])


def _check_choice(kind: str, value: str, choices):
    if value not in choices:
        raise ValueError(f"Unknown {kind} {value!r}; expected one of {sorted(choices)}.")


def _check_num_steps(num_steps: int):
    if not (isinstance(num_steps, int) and num_steps >= 1):
        raise ValueError(f"num_steps must be a positive integer, got {num_steps!r}.")


def _check_index(index: int, num_steps: int):
    if not 0 <= index < num_steps:
        raise ValueError(f"Step index {index} is outside 0..{num_steps - 1}.")


class _NoAux:
    """Degradations that need no auxiliary input."""

    def sample_aux(self, rng, x0, other=None):
        """Nothing to draw: returns None."""
        del rng, x0, other
        return None


# ----------------------------------------------------------------------------------------------
# Gaussian blur.

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
class GaussianBlur(_NoAux):
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
        _check_num_steps(self.num_steps)
        _check_choice("blur routine", self.routine, BLUR_ROUTINES)
        _check_choice("blur padding", self.padding, BLUR_PADDINGS)
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
        steps = _per_sample_steps(steps, x0)
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
        _check_index(index, self.num_steps)
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


# ----------------------------------------------------------------------------------------------
# Inpainting with Gaussian hole masks.

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
        _check_num_steps(self.num_steps)
        _check_choice("mask routine", self.routine, MASK_ROUTINES)
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
        steps = _per_sample_steps(steps, x0)[:, None, None]
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
        _check_index(index, self.num_steps)
        distances = self._squared_distances(x, aux)
        factor = 1.0 - jnp.exp(-distances / (2.0 * float(self.sigmas()[index]) ** 2))
        return x * factor[..., None]


# ----------------------------------------------------------------------------------------------
# Super-resolution (pixelate).


def _block_average(x, block: int):
    """Average over block x block tiles, repeated back to full size (area down, nearest up)."""
    batch, height, width, channels = x.shape
    tiles = x.reshape(batch, height // block, block, width // block, block, channels)
    means = tiles.mean(axis=(2, 4), keepdims=True)
    return jnp.broadcast_to(means, tiles.shape).reshape(x.shape)


@dataclasses.dataclass(frozen=True)
class Pixelate(_NoAux):
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
        _check_num_steps(self.num_steps)

    def _check_size(self, height: int, width: int):
        factor = 2**self.num_steps
        if height % factor or width % factor:
            raise ValueError(f"Pixelate with {self.num_steps} steps needs image sides divisible "
                             f"by {factor}, got {height}x{width}.")

    def __call__(self, x0, steps, aux=None):
        """D(x0, s), choosing per sample among the T + 1 block sizes (one where per level)."""
        del aux
        self._check_size(*x0.shape[1:3])
        steps = expand_to(_per_sample_steps(steps, x0), x0)
        out = x0
        for level in range(1, self.num_steps + 1):  # one static block size per level, T <= log2 N
            out = jnp.where(steps == level, _block_average(x0, 2**level), out)
        return out

    def apply_step(self, x, index: int, aux=None):
        """Average over 2^(index+1) blocks (the repo's area down / nearest up step)."""
        del aux
        _check_index(index, self.num_steps)
        self._check_size(*x.shape[1:3])
        return _block_average(x, 2 ** (index + 1))


# ----------------------------------------------------------------------------------------------
# Decolorization.

DECOLOR_ROUTINES = ("constant", "linear")


def grayscale(x):
    """Per-pixel grayscale of the repo's decolorization: the channel mean, kept as C channels."""
    return jnp.broadcast_to(x.mean(axis=-1, keepdims=True), x.shape)


@dataclasses.dataclass(frozen=True)
class Decolorize(_NoAux):
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
        _check_num_steps(self.num_steps)
        _check_choice("decolor routine", self.routine, DECOLOR_ROUTINES)
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
        fraction = jnp.asarray(self.colour_fractions(), jnp.float32)[_per_sample_steps(steps, x0)]
        fraction = expand_to(fraction, x0)
        return (fraction * x0 + (1.0 - fraction) * grayscale(x0)).astype(x0.dtype)

    def apply_step(self, x, index: int, aux=None):
        """x -> f_index x + (1 - f_index) gray(x)."""
        del aux
        _check_index(index, self.num_steps)
        factor = float(self.step_factors()[index])
        return factor * x + (1.0 - factor) * grayscale(x)


# ----------------------------------------------------------------------------------------------
# Mixing with an image of another dataset (animorphosis).


@dataclasses.dataclass(frozen=True)
class MixImages:
    """Blend towards an image z of another dataset (Bansal et al. 2022, "animorphosis";
    repo demixing-diffusion-pytorch):

        D(x0, s, z) = sqrt(abar_s) x0 + sqrt(1 - abar_s) z,  abar_0 = 1,

    abar_s (s = 1..T) the improved-DDPM cosine schedule with betas clipped at 0.999 (the repo's
    cosine_beta_schedule equals schedules.cosine_betas). z is `aux`, shape of x0. Default
    T = 200 (the repo's README AFHQ -> CelebA run).
    """

    num_steps: int = 200

    def __post_init__(self):
        _check_num_steps(self.num_steps)

    def alpha_bars(self) -> np.ndarray:
        """abar_0..abar_T (float64)."""
        return np.concatenate([[1.0], alphas_cumprod(cosine_betas(self.num_steps))])

    def sample_aux(self, rng, x0, other=None):
        """The second images: `other`, a batch of the other dataset shaped like x0."""
        del rng
        if other is None or jnp.shape(other) != jnp.shape(x0):
            raise ValueError("Mixing needs `other`: a batch of images of the other dataset shaped "
                             "like x0.")
        return other

    def _coefficients(self, steps, x0):
        alpha_bar = jnp.asarray(self.alpha_bars(), jnp.float32)[_per_sample_steps(steps, x0)]
        return expand_to(jnp.sqrt(alpha_bar), x0), expand_to(jnp.sqrt(1.0 - alpha_bar), x0)

    def __call__(self, x0, steps, aux=None):
        """D(x0, s, z) = sqrt(abar_s) x0 + sqrt(1 - abar_s) z."""
        if aux is None:
            raise ValueError("Mixing needs the second image z as aux.")
        signal, other = self._coefficients(steps, x0)
        return (signal * x0 + other * aux).astype(x0.dtype)

    def apply_step(self, x, index: int, aux=None):
        """From x_s = D(x0, s, z) to x_{s+1}: a x_s + b z with a = sqrt(abar_{s+1} / abar_s),
        b = sqrt(1 - abar_{s+1}) - a sqrt(1 - abar_s) (D is linear in x0 and z)."""
        _check_index(index, self.num_steps)
        if aux is None:
            raise ValueError("Mixing needs the second image z as aux.")
        before, after = self.alpha_bars()[index], self.alpha_bars()[index + 1]
        scale = math.sqrt(after / before)
        return scale * x + (math.sqrt(1.0 - after) - scale * math.sqrt(1.0 - before)) * aux


# ----------------------------------------------------------------------------------------------
# Factory.

DEGRADATIONS = {
    "blur": GaussianBlur,
    "inpaint": GaussianMaskInpaint,
    "pixelate": Pixelate,
    "decolorize": Decolorize,
    "mix": MixImages,
}


def make_degradation(name: str, **options):
    """The degradation called `name` (one of DEGRADATIONS) built from its keyword options."""
    _check_choice("degradation", name, DEGRADATIONS)
    cls = DEGRADATIONS[name]
    known = {field.name for field in dataclasses.fields(cls)}
    unknown = sorted(set(options) - known)
    if unknown:
        raise ValueError(f"Unknown option(s) {unknown} for degradation {name!r}; "
                         f"expected some of {sorted(known)}.")
    return cls(**options)
