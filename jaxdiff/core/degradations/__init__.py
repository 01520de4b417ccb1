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

The package holds one module per degradation (blur, inpaint, pixelate, decolorize, mix), the
helpers they share (common) and, here, the registry `make_degradation`.
"""

import dataclasses

from jaxdiff.core.degradations.blur import (BLUR_PADDINGS, BLUR_ROUTINES, GaussianBlur,
                                            gaussian_kernel_1d)
from jaxdiff.core.degradations.common import check_choice, draw_training_steps, step_time
from jaxdiff.core.degradations.decolorize import DECOLOR_ROUTINES, Decolorize, grayscale
from jaxdiff.core.degradations.inpaint import MASK_ROUTINES, GaussianMaskInpaint
from jaxdiff.core.degradations.mix import MixImages
from jaxdiff.core.degradations.pixelate import Pixelate

__all__ = [
    "BLUR_PADDINGS", "BLUR_ROUTINES", "DECOLOR_ROUTINES", "DEGRADATIONS", "MASK_ROUTINES",
    "Decolorize", "GaussianBlur", "GaussianMaskInpaint", "MixImages", "Pixelate",
    "draw_training_steps", "gaussian_kernel_1d", "grayscale", "make_degradation", "step_time",
]


DEGRADATIONS = {
    "blur": GaussianBlur,
    "inpaint": GaussianMaskInpaint,
    "pixelate": Pixelate,
    "decolorize": Decolorize,
    "mix": MixImages,
}


def make_degradation(name: str, **options):
    """The degradation called `name` (one of DEGRADATIONS) built from its keyword options."""
    check_choice("degradation", name, DEGRADATIONS)
    cls = DEGRADATIONS[name]
    known = {field.name for field in dataclasses.fields(cls)}
    unknown = sorted(set(options) - known)
    if unknown:
        raise ValueError(f"Unknown option(s) {unknown} for degradation {name!r}; "
                         f"expected some of {sorted(known)}.")
    return cls(**options)
