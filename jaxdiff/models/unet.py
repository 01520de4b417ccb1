"""The DDPM / improved-DDPM / ADM UNet (Flax linen, NHWC).

Architecture (Ho et al. 2020, appendix B; Nichol & Dhariwal 2021; Dhariwal & Nichol 2021, "ADM"):
    emb  = MLP(sinusoidal(1000 t)) [+ class embedding] [+ Dense(masked mean of context)]  (4 C)
    encoder: Conv3(x) -> C m_0; at each level l: num_res_blocks ResBlocks of C m_l channels, each
             followed by an AttentionBlock when the feature map's side is in
             attention_resolutions; between levels a 2x downsampling (strided conv, or a ResBlock
             with average pooling when resblock_updown). Every output above is kept as a skip.
    middle:  ResBlock, AttentionBlock, ResBlock at the lowest resolution.
    decoder: at each level from the lowest: num_res_blocks + 1 ResBlocks, each fed
             concat(h, next skip), with attention as in the encoder; between levels a 2x
             upsampling (nearest + conv, or an upsampling ResBlock).
    head:    GN -> SiLU -> zero-initialised Conv3 to out_channels (x2 with learned variance:
             the eps prediction, then the variance interpolation v of Nichol & Dhariwal, eq. 15).
Attention blocks cross-attend to the context when the network is built with use_context: a
conditioning.TextContext (embeddings (B, L, D), mask (B, L), True = a real token) or a (B, L, D)
array with every token real; padding tokens are left out of the pooled mean and the
cross-attention softmax.

Parameter counts of the presets (`count_parameters`, from `jax.eval_shape`, no allocation;
every weight, bias, norm scale/offset and embedding row counted once; asserted in the tests):
    ddpm_cifar10    35,746,307   Ho et al. report 35.7M. The structure is the reference
                                 diffusion_tf model (additive time embedding, conv resampling,
                                 1x1 skip convs), and the count agrees to all digits given.
    iddpm_cifar10   52,546,438   improved-diffusion's CIFAR-10 flags (128 ch, 3 blocks, attention
                                 at 16 and 8 with 4 heads, scale-shift norm, learned sigma).
    adm_imagenet64  295,905,222  guided-diffusion's ImageNet 64 flags (192 ch, mult 1,2,3,4,
                                 3 blocks, attention at 32/16/8 with 64-channel heads,
                                 resblock_updown, learned sigma, 1000 classes); Dhariwal & Nichol
                                 report 296M. Ours has one extra embedding row (768 parameters),
                                 the null class for classifier-free guidance.
"""

import dataclasses
from typing import Optional, Sequence, Union

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxdiff import models
from jaxdiff.models.attention import AttentionBlock
from jaxdiff.models.blocks import ConvResample, OutputHead, ResBlock
from jaxdiff.models.conditioning import ConditioningEmbedding, as_text_context
from jaxdiff.models.layers import Conv, Dtype, create_module, remat_if


@dataclasses.dataclass(frozen=True)
class UNetArchitecture:
    """The hyperparameters shared by the encoder and the decoders of a UNet (the defaults live
    in UNetBase, which builds this with `architecture()`)."""

    base_channels: int
    channel_mult: tuple
    num_res_blocks: int
    attention_resolutions: tuple
    num_heads: int
    head_channels: Optional[int]
    dropout: float
    num_groups: int
    scale_shift: bool
    resblock_updown: bool
    remat: Union[bool, str]
    attention_implementation: Optional[str]
    dtype: Dtype
    param_dtype: Dtype

    def __post_init__(self):
        if self.base_channels <= 0 or self.num_res_blocks < 1 or not self.channel_mult:
            raise ValueError(
                "A UNet needs base_channels > 0, num_res_blocks >= 1 and a non-empty "
                "channel_mult.")
        if any(m <= 0 for m in self.channel_mult):
            raise ValueError(f"channel_mult must be positive, got {tuple(self.channel_mult)}.")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}.")

    @property
    def num_levels(self) -> int:
        return len(self.channel_mult)

    def check_input(self, x, t):
        """Raise ValueError unless x is an NHWC batch the levels can halve and t has shape (B,)."""
        if x.ndim != 4:
            raise ValueError(f"Expected an NHWC image batch, got shape {x.shape}.")
        factor = 2 ** (self.num_levels - 1)
        if x.shape[1] % factor or x.shape[2] % factor:
            raise ValueError(
                f"Height and width {x.shape[1:3]} must be divisible by {factor} for "
                f"{self.num_levels} levels.")
        if jnp.shape(t) != (x.shape[0],):
            raise ValueError(f"t must have shape ({x.shape[0]},), got {jnp.shape(t)}.")

    def module_kwargs(self):
        return dict(dtype=self.dtype, param_dtype=self.param_dtype)

    def res_block(self, features: int, resample: str = "none", name: Optional[str] = None):
        block = remat_if(ResBlock, self.remat, static_argnums=(3,))
        return block(features, dropout=self.dropout, num_groups=self.num_groups,
                     scale_shift=self.scale_shift, resample=resample, name=name,
                     **self.module_kwargs())

    def attention_block(self, name: Optional[str] = None):
        block = remat_if(AttentionBlock, self.remat)
        return block(num_heads=self.num_heads, head_channels=self.head_channels,
                     num_groups=self.num_groups, implementation=self.attention_implementation,
                     name=name, **self.module_kwargs())

    def has_attention(self, h) -> bool:
        return h.shape[1] in self.attention_resolutions


class UNetEncoder(nn.Module):
    """Input conv and down path; returns the lowest-resolution features and all skips."""

    arch: UNetArchitecture

    @nn.compact
    def __call__(self, x, emb, context, train: bool):
        arch = self.arch
        h = Conv(arch.base_channels * arch.channel_mult[0], name="conv_in",
                 **arch.module_kwargs())(x)
        skips = [h]
        for level, mult in enumerate(arch.channel_mult):
            if level > 0:
                if arch.resblock_updown:
                    h = arch.res_block(h.shape[-1], "down", name=f"down_{level}")(h, emb, train)
                else:
                    h = ConvResample(h.shape[-1], "down", name=f"down_{level}",
                                     **arch.module_kwargs())(h)
                skips.append(h)
            for index in range(arch.num_res_blocks):
                h = arch.res_block(arch.base_channels * mult, name=f"res_{level}_{index}")(
                    h, emb, train)
                if arch.has_attention(h):
                    h = arch.attention_block(name=f"attn_{level}_{index}")(h, context)
                skips.append(h)
        return h, skips


class UNetDecoder(nn.Module):
    """Middle block and up path; consumes the encoder's skips, returns C m_0 features."""

    arch: UNetArchitecture

    @nn.compact
    def __call__(self, h, skips, emb, context, train: bool):
        arch = self.arch
        skips = list(skips)
        h = arch.res_block(h.shape[-1], name="mid_res_0")(h, emb, train)
        h = arch.attention_block(name="mid_attn")(h, context)
        h = arch.res_block(h.shape[-1], name="mid_res_1")(h, emb, train)
        for level in reversed(range(arch.num_levels)):
            if level < arch.num_levels - 1:
                if arch.resblock_updown:
                    h = arch.res_block(h.shape[-1], "up", name=f"up_{level}")(h, emb, train)
                else:
                    h = ConvResample(h.shape[-1], "up", name=f"up_{level}",
                                     **arch.module_kwargs())(h)
            for index in range(arch.num_res_blocks + 1):
                h = jnp.concatenate([h, skips.pop()], axis=-1)
                h = arch.res_block(arch.base_channels * arch.channel_mult[level],
                                   name=f"res_{level}_{index}")(h, emb, train)
                if arch.has_attention(h):
                    h = arch.attention_block(name=f"attn_{level}_{index}")(h, context)
        return h


class UNetBase(nn.Module):
    """Fields and conditioning shared by UNet and the dual-decoder UNet."""

    out_channels: int = 3
    base_channels: int = 128
    channel_mult: Sequence[int] = (1, 2, 2, 2)
    num_res_blocks: int = 2
    attention_resolutions: Sequence[int] = (16,)
    num_heads: int = 1
    head_channels: Optional[int] = None
    dropout: float = 0.0
    num_groups: int = 32
    scale_shift: bool = True
    resblock_updown: bool = False
    num_classes: int = 0
    use_context: bool = False
    remat: Union[bool, str] = False
    attention_implementation: Optional[str] = None
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    def architecture(self) -> UNetArchitecture:
        values = {f.name: getattr(self, f.name) for f in dataclasses.fields(UNetArchitecture)}
        values.update(channel_mult=tuple(self.channel_mult),
                      attention_resolutions=tuple(self.attention_resolutions))
        return UNetArchitecture(**values)

    def conditioning(self, t, labels, context, time_scale: float = 1000.0):
        """The (B, 4 C) conditioning vector; see conditioning.ConditioningEmbedding."""
        return ConditioningEmbedding(
            4 * self.base_channels, self.base_channels, num_classes=self.num_classes,
            use_context=self.use_context, time_scale=time_scale, dtype=self.dtype,
            param_dtype=self.param_dtype, name="conditioning")(t, labels, context)

    def output_head(self, features: int, name: str):
        return OutputHead(features, self.num_groups, dtype=self.dtype,
                          param_dtype=self.param_dtype, name=name)


class UNet(UNetBase):
    """The DDPM / ADM UNet: `apply(variables, x, t, labels=None, context=None, train=False)`.

    x: (B, H, W, in_channels) images, t: (B,) times in [0, 1] (embedded as 1000 t), labels: int
    (B,) with num_classes meaning "no class", context: text embeddings, a
    conditioning.TextContext (embeddings (B, L, D), mask (B, L)) or a (B, L, D) array with every
    token real. Returns a float32 (B, H, W, out_channels) prediction, or
    (B, H, W, 2 out_channels) with learn_sigma.
    """

    learn_sigma: bool = False

    @nn.compact
    def __call__(self, x, t, labels=None, context=None, train: bool = False):
        arch = self.architecture()
        arch.check_input(x, t)
        context = as_text_context(context)
        emb = self.conditioning(t, labels, context)
        h, skips = UNetEncoder(arch, name="encoder")(x.astype(self.dtype), emb, context, train)
        h = UNetDecoder(arch, name="decoder")(h, skips, emb, context, train)
        features = self.out_channels * (2 if self.learn_sigma else 1)
        return self.output_head(features, name="head")(h)


PRESETS = {
    # CPU-sized: seconds to initialise and run on 16x16 or 32x32 images.
    "tiny": dict(base_channels=16, channel_mult=(1, 2), num_res_blocks=1,
                 attention_resolutions=(8,), num_heads=2, num_groups=8),
    # Ho et al. 2020, CIFAR-10 (35.7M parameters).
    "ddpm_cifar10": dict(base_channels=128, channel_mult=(1, 2, 2, 2), num_res_blocks=2,
                         attention_resolutions=(16,), dropout=0.1, scale_shift=False),
    # Nichol & Dhariwal 2021, CIFAR-10 with learned variances (L_hybrid).
    "iddpm_cifar10": dict(base_channels=128, channel_mult=(1, 2, 2, 2), num_res_blocks=3,
                          attention_resolutions=(16, 8), num_heads=4, dropout=0.3,
                          learn_sigma=True),
    # Dhariwal & Nichol 2021, class-conditional ImageNet 64x64.
    "adm_imagenet64": dict(base_channels=192, channel_mult=(1, 2, 3, 4), num_res_blocks=3,
                           attention_resolutions=(32, 16, 8), head_channels=64, dropout=0.1,
                           resblock_updown=True, learn_sigma=True, num_classes=1000),
}

# Parameter counts of the paper presets, documented in the module docstring.
PRESET_PARAMETER_COUNTS = {
    "ddpm_cifar10": 35_746_307,
    "iddpm_cifar10": 52_546_438,
    "adm_imagenet64": 295_905_222,
}


def create(**kwargs) -> UNet:
    """A UNet from keyword arguments (e.g. `create(**PRESETS["tiny"], dtype=jnp.bfloat16)`)."""
    return create_module(UNet, **kwargs)


def count_parameters(model: nn.Module, image_shape: Sequence[int], **call_kwargs) -> int:
    """Number of parameters of `model` for (B, H, W, C) inputs, from `jax.eval_shape` (no
    allocation). call_kwargs (labels, context) are passed to init, as arrays or
    ShapeDtypeStructs (a context may be a TextContext of them; its mask adds no parameters)."""
    x = jax.ShapeDtypeStruct(tuple(image_shape), jnp.float32)
    t = jax.ShapeDtypeStruct((image_shape[0],), jnp.float32)
    return models.count_parameters(model, x, t, **call_kwargs)
