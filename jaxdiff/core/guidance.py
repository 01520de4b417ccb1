"""Classifier-free guidance and the x0 transforms samplers apply to their clean-image estimates.

Classifier-free guidance (Ho & Salimans 2022): one network trained with the conditioning dropped
at random is evaluated with and without it, and the two outputs are extrapolated,
    out = out_u + w (out_c - out_u),
w = 1 being plain conditional sampling. Because every parameterization (eps, x0, v, and the
(c, eps) pair of analytic attenuation) is affine in the output for a fixed x_t, guiding any of
them is the same as guiding eps.

x0 transforms (passed to the samplers as ``x0_transform``): static clipping to [-1, 1]
(Ho et al. 2020) and Imagen's dynamic thresholding (Saharia et al. 2022, sec. 2.3).
"""

import jax
import jax.numpy as jnp

from jaxdiff.core.arrays import expand_to


def guidance_combine(unconditional, conditional, guidance_scale):
    """out = out_u + w (out_c - out_u). Example: 0.1 + 7.5 (0.3 - 0.1) = 1.6."""
    return unconditional + guidance_scale * (conditional - unconditional)


def classifier_free_guidance(conditional_denoise, conditioning, null_conditioning,
                             guidance_scale, variance_output=False, in_band=None):
    """A guided ``denoise(x_t, t)`` built from a conditional one, with one batched call per step.

    conditional_denoise(x_t, t, conditioning) is the network: x_t a pytree of image batches,
    t of shape (B,), conditioning a pytree of per-sample arrays (e.g. int32 labels, or a dict of
    labels and text context). null_conditioning has the same structure and shapes and holds the
    "no condition" values (e.g. labels equal to num_classes, or the empty-prompt embedding).
    The batch is doubled, [conditional; unconditional], evaluated once, split and combined with
    ``guidance_combine`` on every leaf of the output.

    With variance_output=True the network returns the pair (prediction, variance_output) of
    improved DDPM's learned variance: the prediction is guided and the variance output is taken
    from the conditional half (as GLIDE does).

    in_band(t) -> bool (B,): guidance limited to an interval of noise levels (Kynkaanniemi et
    al. 2024, "Applying guidance in a limited interval improves sample and distribution
    quality"): out of the band the sample gets the plain conditional output (w = 1), and a step
    with no sample in the band makes only the conditional call.
    """

    def double(conditional_values, unconditional_values):
        return jax.tree.map(lambda c, u: jnp.concatenate([c, u], axis=0),
                            conditional_values, unconditional_values)

    def split_and_guide(output, band):
        def guide_leaf(leaf):
            conditional, unconditional = jnp.split(leaf, 2, axis=0)
            guided = guidance_combine(unconditional, conditional, guidance_scale)
            return guided if band is None else jnp.where(expand_to(band, guided), guided,
                                                         conditional)

        return jax.tree.map(guide_leaf, output)

    def conditional_half(output):
        return jax.tree.map(lambda leaf: jnp.split(leaf, 2, axis=0)[0], output)

    def guided(x_t, t, band=None):
        output = conditional_denoise(double(x_t, x_t), double(t, t),
                                     double(conditioning, null_conditioning))
        if variance_output:
            prediction, variance = output
            return split_and_guide(prediction, band), conditional_half(variance)
        return split_and_guide(output, band)

    if in_band is None:
        return guided

    def denoise(x_t, t):
        band = in_band(t)
        return jax.lax.cond(jnp.any(band), lambda: guided(x_t, t, band),
                            lambda: conditional_denoise(x_t, t, conditioning))

    return denoise


def clip_x0(x0):
    """Static thresholding: clip the clean-image estimate to the data range [-1, 1]."""
    return jnp.clip(x0, -1.0, 1.0)


def dynamic_threshold(x0, quantile=0.995):
    """Imagen dynamic thresholding (Saharia et al. 2022, sec. 2.3), per sample.

    s = max(quantile_p(|x0|), 1) over the pixels of each sample, then x0 <- clip(x0, -s, s) / s.
    Example: x0 = [-3, -1.5, 0, 0.5, 2], p = 0.995 gives s = 2.98 and
    [-1, -0.5033557, 0, 0.1677852, 0.6711409].
    """
    if not 0.0 < quantile <= 1.0:
        raise ValueError(f"Dynamic-thresholding quantile must be in (0, 1], got {quantile}.")
    flat = jnp.abs(jnp.reshape(x0, (x0.shape[0], -1)))
    scale = jnp.maximum(jnp.quantile(flat, quantile, axis=1), 1.0)
    scale = expand_to(scale, x0)
    return jnp.clip(x0, -scale, scale) / scale


# The x0 transforms by name: "none", "clip" (clip_x0) or "dynamic" (dynamic_threshold).
X0_TRANSFORMS = ("none", "clip", "dynamic")


def x0_transform(name: str, quantile: float = 0.995):
    """The named x0 transform (None for "none"); "dynamic" thresholds at `quantile`."""
    if name not in X0_TRANSFORMS:
        raise ValueError(f"Unknown x0 transform {name!r}; expected one of {list(X0_TRANSFORMS)}.")
    if name == "clip":
        return clip_x0
    if name == "dynamic":
        return lambda x0: dynamic_threshold(x0, quantile)
    return None
