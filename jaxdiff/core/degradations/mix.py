"""Mixing with an image of another dataset, the "animorphosis" degradation of cold diffusion
(Bansal et al. 2022; repo demixing-diffusion-pytorch):

    D(x0, s, z) = sqrt(abar_s) x0 + sqrt(1 - abar_s) z,

abar_s the improved-DDPM cosine schedule (Nichol & Dhariwal 2021) and z the `aux` image.
"""

import dataclasses
import math

import jax.numpy as jnp
import numpy as np

from jaxdiff.core.arrays import expand_to
from jaxdiff.core.degradations.common import check_index, check_num_steps, per_sample_steps
from jaxdiff.core.schedules import alphas_cumprod, cosine_betas


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
        check_num_steps(self.num_steps)

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
        alpha_bar = jnp.asarray(self.alpha_bars(), jnp.float32)[per_sample_steps(steps, x0)]
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
        check_index(index, self.num_steps)
        if aux is None:
            raise ValueError("Mixing needs the second image z as aux.")
        before, after = self.alpha_bars()[index], self.alpha_bars()[index + 1]
        scale = math.sqrt(after / before)
        return scale * x + (math.sqrt(1.0 - after) - scale * math.sqrt(1.0 - before)) * aux
