"""U-ViT of simple diffusion (Hoogeboom, Heek & Salimans 2023, "simple diffusion: End-to-end
diffusion for high resolution images", sec. 3.2-3.4, arXiv 2301.11093).

A UNet whose convolutional levels only carry the high resolutions, and whose lowest resolution
(16 x 16 for the paper models) is a deep transformer holding most of the parameters:

    x -> space_to_depth(p)         optional patching for large images (sec. 3.4): p x p pixels
                                   become one position with p^2 * 3 channels
      -> Conv3 to C_0
      -> level l = 0 .. L-1:       num_res_blocks[l] ResBlocks of C_l channels (dropout[l]), each
                                   output kept as a skip; then a stride-2 conv
      -> tokens = Dense_W(h) + position embedding + Dense_W(SiLU(emb))   (H' W' tokens, width W)
      -> transformer_depth x [ x + MHA(LN(x)); x + CrossMHA(LN(x), LN(e), mask m) if a context;
                               x + MLP(LN(x)) with mlp_mult W hidden units and dropout ]
      -> LN -> Dense_{C_{L-1}} -> back to an H' x W' map
      -> level l = L-1 .. 0:       nearest + conv upsampling, then num_res_blocks[l] ResBlocks fed
                                   concat(h, skip)
      -> GN -> SiLU -> zero Conv3 to p^2 * out_channels -> depth_to_space(p)

emb = MLP(sinusoidal(1000 t)) [+ class embedding] [+ Dense(masked mean of the context)]
(conditioning.ConditioningEmbedding)
conditions every ResBlock (scale-shift) and is added once to the tokens. Dropout is set per
level, so that it applies at the low resolutions only (the paper's finding 3). The transformer
blocks are one `nn.scan` over stacked parameters (leading logical axis "layers", replicated by
the sharding rules), so a 36-block model compiles as fast as one block; `unroll_transformer`
unrolls that loop (same parameters and results; XLA's cost analysis counts a loop body once, so
benchmarks/models.py unrolls to count every block). `remat` rematerialises every ResBlock and
every transformer block.

Paper presets. The paper's ImageNet U-ViT has a 36-block transformer of width 2048 at 16 x 16
(about 2B parameters, sec. 5); the presets place it under convolutional levels of (128, 256, 512)
channels with 2 ResBlocks each, and reach 128, 256 and 512 px images by patching with p = 1, 2
and 4 (the down-sampling of sec. 3.4), so the three differ only in their input and output
convolutions. Transformer heads of 128 channels (16 heads), MLP ratio 4, dropout 0.1 on the
32 x 32 level and in the transformer, 1000 classes. Parameter counts (`unet.count_parameters`,
asserted in tests/models/test_paper_scale.py):
    simple_diffusion_128   1,867,602,691
    simple_diffusion_256   1,867,623,436
    simple_diffusion_512   1,867,706,416
of which the transformer stack is 1,812,897,792 = 36 x 50,358,272 (per block, W = 2048:
attention 4 W^2 + 4 W, MLP 8 W^2 + 5 W, two LayerNorms 4 W). The paper rounds its model to "2B";
its appendix table of the convolutional levels could not be checked here, so the 0.13B gap
(e.g. wider convolutional levels, or per-block time modulation in the transformer) is open.
"""

from typing import Optional, Sequence, Union

import flax.linen as nn
import jax.numpy as jnp

from jaxdiff.models.attention import FeedForward, MultiHeadAttention
from jaxdiff.models.blocks import ConvResample, OutputHead, ResBlock
from jaxdiff.models.conditioning import ConditioningEmbedding, as_text_context
from jaxdiff.models.layers import Conv, Dense, Dtype, Embed, LayerNorm, create_module, remat_if


def space_to_depth(x, patch_size: int):
    """(B, H, W, C) -> (B, H/p, W/p, p*p*C): each p x p patch becomes one position."""
    if patch_size == 1:
        return x
    b, h, w, c = x.shape
    x = x.reshape(b, h // patch_size, patch_size, w // patch_size, patch_size, c)
    return x.transpose(0, 1, 3, 2, 4, 5).reshape(
        b, h // patch_size, w // patch_size, patch_size * patch_size * c)


def depth_to_space(x, patch_size: int):
    """Inverse of space_to_depth: (B, H, W, p*p*C) -> (B, H*p, W*p, C)."""
    if patch_size == 1:
        return x
    b, h, w, pc = x.shape
    c = pc // (patch_size * patch_size)
    x = x.reshape(b, h, w, patch_size, patch_size, c)
    return x.transpose(0, 1, 3, 2, 4, 5).reshape(b, h * patch_size, w * patch_size, c)


class TransformerBlock(nn.Module):
    """Pre-norm transformer block (Vaswani et al. 2017; ViT, Dosovitskiy et al. 2021):
        x = x + MHA(LN(x));  x = x + MHA(LN(x), LN(e), mask m) if a context;  x = x + MLP(LN(x)),
    the context a conditioning.TextContext (e, m) or a (B, L, D) array e, cross-attended on its
    real tokens only. The attention output projections and the MLP's last layer are
    zero-initialised. Written as (carry, context) -> (carry, None) for `nn.scan` (the context, a
    pytree, is broadcast to every block)."""

    num_heads: int
    head_channels: Optional[int]
    mlp_mult: int
    dropout: float
    train: bool
    attention_implementation: Optional[str] = None
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, tokens, context):
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        attention = dict(num_heads=self.num_heads, head_channels=self.head_channels,
                         implementation=self.attention_implementation, **kw)
        normed = LayerNorm(name="norm", **kw)(tokens)
        tokens = tokens + MultiHeadAttention(**attention, name="self_attention")(normed, normed)
        if context is not None:
            embeddings, mask = as_text_context(context)
            normed = LayerNorm(name="cross_norm", **kw)(tokens)
            source = LayerNorm(name="context_norm", **kw)(embeddings)
            tokens = tokens + MultiHeadAttention(**attention, name="cross_attention")(
                normed, source, mask)
        tokens = FeedForward(self.mlp_mult, self.dropout, name="mlp", **kw)(tokens, self.train)
        return tokens, None


class UViT(nn.Module):
    """`apply(variables, x, t, labels=None, context=None, train=False)` -> float32 prediction.

    x: (B, H, W, in_channels) with H and W divisible by patch_size * 2^len(channels); t: (B,)
    times in [0, 1]; labels int (B,) (num_classes = no class); context a
    conditioning.TextContext (embeddings (B, L, D), mask (B, L), True = a real token) or a
    (B, L, D) array with every token real.
    """

    out_channels: int = 3
    channels: Sequence[int] = (128, 256, 512)
    num_res_blocks: Sequence[int] = (2, 2, 2)
    dropout: Sequence[float] = (0.0, 0.0, 0.1)
    transformer_width: int = 2048
    transformer_depth: int = 36
    num_heads: int = 16
    head_channels: Optional[int] = None
    mlp_mult: int = 4
    transformer_dropout: float = 0.1
    patch_size: int = 1
    embedding_features: int = 1024
    num_groups: int = 32
    num_classes: int = 0
    use_context: bool = False
    remat: Union[bool, str] = False
    unroll_transformer: bool = False
    attention_implementation: Optional[str] = None
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    def check_architecture(self):
        """Raise ValueError unless the hyperparameters are consistent."""
        if not self.channels or len(self.num_res_blocks) != len(self.channels) or len(
                self.dropout) != len(self.channels):
            raise ValueError("channels, num_res_blocks and dropout need one entry per level, got "
                             f"{len(self.channels)}, {len(self.num_res_blocks)} and "
                             f"{len(self.dropout)}.")
        if min(self.channels) <= 0 or min(self.num_res_blocks) < 1:
            raise ValueError("channels and num_res_blocks must be positive.")
        if any(not 0.0 <= p < 1.0 for p in tuple(self.dropout) + (self.transformer_dropout,)):
            raise ValueError("Dropout rates must be in [0, 1).")
        if self.transformer_width <= 0 or self.transformer_depth < 1 or self.patch_size < 1:
            raise ValueError("transformer_width, transformer_depth and patch_size must be "
                             "positive.")
        if self.embedding_features % 8:
            raise ValueError("embedding_features must be a multiple of 8, got "
                             f"{self.embedding_features}.")

    def check_input(self, x, t):
        """Raise ValueError unless x is an NHWC batch the patching and levels divide."""
        if x.ndim != 4:
            raise ValueError(f"Expected an NHWC image batch, got shape {x.shape}.")
        factor = self.patch_size * 2 ** len(self.channels)
        if x.shape[1] % factor or x.shape[2] % factor:
            raise ValueError(f"Height and width {x.shape[1:3]} must be divisible by {factor} "
                             f"(patch size {self.patch_size}, {len(self.channels)} levels).")
        if jnp.shape(t) != (x.shape[0],):
            raise ValueError(f"t must have shape ({x.shape[0]},), got {jnp.shape(t)}.")

    def res_block(self, features: int, dropout: float, name: str):
        block = remat_if(ResBlock, self.remat, static_argnums=(3,))
        return block(features, dropout=dropout, num_groups=self.num_groups, name=name,
                     dtype=self.dtype, param_dtype=self.param_dtype)

    def transformer(self, train: bool):
        """The scanned stack of transformer_depth blocks (parameters stacked on axis 0)."""
        block = remat_if(TransformerBlock, self.remat)
        stack = nn.scan(block, variable_axes={"params": 0, "intermediates": 0},
                        split_rngs={"params": True, "dropout": True}, in_axes=nn.broadcast,
                        length=self.transformer_depth, unroll=self.unroll_transformer,
                        metadata_params={nn.PARTITION_NAME: "layers"})
        return stack(self.num_heads, self.head_channels, self.mlp_mult, self.transformer_dropout,
                     train, self.attention_implementation, dtype=self.dtype,
                     param_dtype=self.param_dtype, name="transformer")

    @nn.compact
    def __call__(self, x, t, labels=None, context=None, train: bool = False):
        self.check_architecture()
        self.check_input(x, t)
        context = as_text_context(context)
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        emb = ConditioningEmbedding(self.embedding_features, self.embedding_features // 4,
                                    num_classes=self.num_classes, use_context=self.use_context,
                                    name="conditioning", **kw)(t, labels, context)
        h = Conv(self.channels[0], name="conv_in", **kw)(
            space_to_depth(x, self.patch_size).astype(self.dtype))
        skips = []
        for level, features in enumerate(self.channels):
            for index in range(self.num_res_blocks[level]):
                h = self.res_block(features, self.dropout[level], f"down_res_{level}_{index}")(
                    h, emb, train)
                skips.append(h)
            h = ConvResample(features, "down", name=f"down_{level}", **kw)(h)

        batch, height, width, features = h.shape
        positions = height * width
        tokens = Dense(self.transformer_width, name="to_tokens", **kw)(
            h.reshape(batch, positions, features))
        tokens = tokens + Embed(positions, self.transformer_width, name="position_embedding",
                                **kw)(jnp.arange(positions))[None]
        tokens = tokens + Dense(self.transformer_width, name="embedding_to_tokens", **kw)(
            nn.silu(emb))[:, None, :]
        tokens, _ = self.transformer(train)(tokens, context)
        tokens = LayerNorm(name="transformer_norm", **kw)(tokens)
        h = Dense(features, name="from_tokens", **kw)(tokens).reshape(h.shape)

        for level in reversed(range(len(self.channels))):
            h = ConvResample(h.shape[-1], "up", name=f"up_{level}", **kw)(h)
            for index in range(self.num_res_blocks[level]):
                h = jnp.concatenate([h, skips.pop().astype(h.dtype)], axis=-1)
                h = self.res_block(self.channels[level], self.dropout[level],
                                   f"up_res_{level}_{index}")(h, emb, train)
        out = OutputHead(self.out_channels * self.patch_size**2, self.num_groups, name="head",
                         **kw)(h)
        return depth_to_space(out, self.patch_size)


_PAPER = dict(channels=(128, 256, 512), num_res_blocks=(2, 2, 2), dropout=(0.0, 0.0, 0.1),
              transformer_width=2048, transformer_depth=36, num_heads=16, mlp_mult=4,
              transformer_dropout=0.1, embedding_features=1024, num_classes=1000)

PRESETS = {
    # CPU-sized: 16 x 16 images, a 2-block transformer on 4 x 4 tokens.
    "tiny": dict(channels=(16, 32), num_res_blocks=(1, 1), dropout=(0.0, 0.1),
                 transformer_width=64, transformer_depth=2, num_heads=2, mlp_mult=4,
                 transformer_dropout=0.1, embedding_features=64, num_groups=8),
    # Hoogeboom et al. 2023, class-conditional ImageNet U-ViT (~2B), patched for 256 and 512 px.
    "simple_diffusion_128": dict(_PAPER, patch_size=1),
    "simple_diffusion_256": dict(_PAPER, patch_size=2),
    "simple_diffusion_512": dict(_PAPER, patch_size=4),
}

# Image side of each preset (used by tests and benchmarks).
PRESET_RESOLUTIONS = {"tiny": 16, "simple_diffusion_128": 128, "simple_diffusion_256": 256,
                      "simple_diffusion_512": 512}

# Parameter counts of the paper presets, documented in the module docstring.
PRESET_PARAMETER_COUNTS = {
    "simple_diffusion_128": 1_867_602_691,
    "simple_diffusion_256": 1_867_623_436,
    "simple_diffusion_512": 1_867_706_416,
}


def create(**kwargs) -> UViT:
    """A UViT from keyword arguments (e.g. `create(**PRESETS["tiny"], remat=True)`)."""
    model = create_module(UViT, **kwargs)
    model.check_architecture()
    return model
