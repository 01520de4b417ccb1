"""The dual-decoder UNet of analytic attenuation (Huang et al. 2023, "Decoupled diffusion
models", arXiv 2306.13720; reference code GuHuangAI/ADM-Public, `unet/uncond_unet.py`).

The forward process is x_t = (1 - t) x0 + sqrt(t) eps with the attenuation c = -x0; the network
predicts both c and eps:
    encoder:    the ADM encoder of unet.py, run once (every output kept as a skip);
    decouple:   two modules, one per branch, h_k = h + gate_k(Conv3_k(h)) (DecoupleModule);
    decoders:   two ADM decoders (each with its own middle block, as in the reference code), each
                fed every encoder skip, each ending in a zero-initialised GN -> SiLU -> Conv3 head.

Preconditioning in t (the reference code's EDMPrecond, i.e. the EDM recipe of Karras et al. 2022
applied to this process): for data of standard deviation s (sigma_data) the input has variance
V(t) = (1 - t)^2 s^2 + t, and each output is the best linear guess from x_t plus a scaled
network output:
    c_in  = 1 / sqrt(V),                     c_noise = log t   (the time conditioning)
    c     = c_skip_c x_t + c_out_c F_c,      c_skip_c = -(1 - t) s^2 / V,  c_out_c = s sqrt(t / V)
    eps   = c_skip_e x_t + c_out_e F_eps,    c_skip_e = sqrt(t) / V,  c_out_e = (1 - t) s / sqrt(V)
where c_skip = Cov(target, x_t) / V and c_out^2 = the variance left after that linear guess. At
t = 0 this gives c = -x_t and at t = 1 eps = x_t exactly, whatever the network outputs; with the
zero-initialised heads the network starts at the linear guesses. With s = 1 these are the
reference code's c_skip1 = (t - 1)/(t^2 - t + 1), c_out1 = sqrt(t/(t^2 - t + 1)),
c_skip2 = sqrt(t)/(t^2 - t + 1), c_out2 = (1 - t)/sqrt(t^2 - t + 1).

Parameter counts (`unet.count_parameters`, from `jax.eval_shape`; asserted in the tests):
    attenuation_cifar10  AttenuationUNet on 32x32 images: 192 ch, mult (1,2,2,2), 3 blocks,
                         attention at 16 and 8 with 64-channel heads, ADM resblock up/down, as in
                         the reference config `configs/cifar10/ddm_uncond_const_uncond_unet.yaml`
                         (model_type DhariwalUNet): 216,139,408 parameters. The paper gives no
                         count. Differences from the reference: no 9-dim
                         augmentation-label embedding (1,728 parameters; jaxdiff has no
                         augmentation pipeline) and zero- instead of default-initialised heads.
"""

import flax.linen as nn
import jax.numpy as jnp

from jaxdiff.core.arrays import expand_to
from jaxdiff.models.attention import attention_weights
from jaxdiff.models.conditioning import as_text_context
from jaxdiff.models.layers import Conv, Dtype, create_module
from jaxdiff.models.unet import UNetBase, UNetDecoder, UNetEncoder


def attenuation_preconditioning(t, sigma_data: float = 1.0):
    """The coefficients (c_in, c_skip_c, c_out_c, c_skip_eps, c_out_eps) above, per sample."""
    t = jnp.asarray(t, jnp.float32)
    s2 = sigma_data**2
    variance = (1.0 - t) ** 2 * s2 + t
    c_in = jnp.sqrt(1.0 / variance)
    c_skip_c = -(1.0 - t) * s2 / variance
    c_out_c = sigma_data * jnp.sqrt(t / variance)
    c_skip_eps = jnp.sqrt(t) / variance
    c_out_eps = (1.0 - t) * sigma_data / jnp.sqrt(variance)
    return c_in, c_skip_c, c_out_c, c_skip_eps, c_out_eps


class SpatialAttentionGate(nn.Module):
    """A one-channel spatial attention that gates the features (reference `SpatialAtt`):
        a = Conv1x1_{C->1}(x),  q = w_q a + b_q,  k = w_k a + b_k            (per position)
        g_i = softsign(sum_j softmax_j(q_i k_j) a_j),  softsign(u) = u / (1 + |u|)
        out = g * x
    The softmax over the H*W positions is computed in float32 and sown in "intermediates" as
    "attention_weights"."""

    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x):
        kw = dict(kernel_size=(1, 1), dtype=self.dtype, param_dtype=self.param_dtype)
        batch, height, width, _ = x.shape
        a = Conv(1, name="map", **kw)(x)
        q = Conv(1, name="query", **kw)(a).reshape(batch, height * width, 1, 1)
        k = Conv(1, name="key", **kw)(a).reshape(batch, height * width, 1, 1)
        weights = attention_weights(q, k)[:, 0]  # (B, HW, HW), float32
        self.sow("intermediates", "attention_weights", weights)
        pooled = jnp.einsum("bqk,bk->bq", weights, a.reshape(batch, -1).astype(jnp.float32))
        gate = nn.soft_sign(pooled).reshape(batch, height, width, 1)
        return gate.astype(self.dtype) * x


class DecoupleModule(nn.Module):
    """h -> h + SpatialAttentionGate(Conv3(h)): the branch-specific bottleneck transform."""

    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, h):
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        return h + SpatialAttentionGate(**kw)(Conv(h.shape[-1], **kw)(h))


class AttenuationUNet(UNetBase):
    """Dual-decoder UNet: `apply(variables, x, t, labels=None, context=None, train=False)`
    returns the float32 pair (c, eps) for x_t = (1 - t) x0 + sqrt(t) eps, each shaped like x.

    t in [0, 1]; the time conditioning is log(max(t, min_time)) (log 0 is not finite). The
    context, with use_context, is a conditioning.TextContext (embeddings (B, L, D), mask (B, L))
    or a (B, L, D) array, pooled and cross-attended on its real tokens by the encoder and both
    decoders. With precondition=False the raw network outputs (F_c, F_eps) are returned instead.
    """

    sigma_data: float = 1.0
    min_time: float = 1e-4
    precondition: bool = True

    @nn.compact
    def __call__(self, x, t, labels=None, context=None, train: bool = False):
        arch = self.architecture()
        arch.check_input(x, t)
        if self.sigma_data <= 0 or self.min_time <= 0:
            raise ValueError("sigma_data and min_time must be positive.")
        x = x.astype(jnp.float32)
        context = as_text_context(context)
        c_in, c_skip_c, c_out_c, c_skip_eps, c_out_eps = attenuation_preconditioning(
            t, self.sigma_data)
        noise_level = jnp.log(jnp.maximum(t, self.min_time))
        emb = self.conditioning(noise_level, labels, context, time_scale=1.0)
        h, skips = UNetEncoder(arch, name="encoder")(
            (expand_to(c_in, x) * x).astype(self.dtype), emb, context, train)
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        outputs = []
        for branch in ("c", "eps"):
            h_branch = DecoupleModule(name=f"decouple_{branch}", **kw)(h)
            h_branch = UNetDecoder(arch, name=f"decoder_{branch}")(
                h_branch, skips, emb, context, train)
            outputs.append(self.output_head(self.out_channels, name=f"head_{branch}")(h_branch))
        raw_c, raw_eps = outputs
        if not self.precondition:
            return raw_c, raw_eps
        c = expand_to(c_skip_c, x) * x + expand_to(c_out_c, x) * raw_c
        eps = expand_to(c_skip_eps, x) * x + expand_to(c_out_eps, x) * raw_eps
        return c, eps


PRESETS = {
    "tiny": dict(base_channels=16, channel_mult=(1, 2), num_res_blocks=1,
                 attention_resolutions=(8,), num_heads=2, num_groups=8, resblock_updown=True),
    "attenuation_cifar10": dict(base_channels=192, channel_mult=(1, 2, 2, 2), num_res_blocks=3,
                                attention_resolutions=(16, 8), head_channels=64, dropout=0.1,
                                resblock_updown=True),
}

# Parameter counts of the paper presets, documented in the module docstring.
PRESET_PARAMETER_COUNTS = {"attenuation_cifar10": 216_139_408}


def create(**kwargs) -> AttenuationUNet:
    """An AttenuationUNet from keyword arguments (e.g. `create(**PRESETS["tiny"])`)."""
    return create_module(AttenuationUNet, **kwargs)
