"""NestedUNet of Matryoshka diffusion (Gu et al. 2023, "Matryoshka Diffusion Models", sec. 3.2;
reference code apple/ml-mdm, `ml_mdm/models/nested_unet.py` and `unet.py`).

One network denoises an image pyramid (e.g. 1024, 256 and 64 px) jointly. Level k is a UNet
whose middle is the UNet of level k + 1, recursively; the innermost level (the "core") is a
complete UNet with a middle block. Inputs and outputs are lists, highest resolution first:

    level k (outer)                                       level k + 1 (inner)
    h = Conv3(x_k)                                        h' = Conv3(x_{k+1}) + A_in(h_low)
    h_low, skips = encoder_k(h)     --- A_in (zero) --->  ... encoder, inner levels, decoder ...
    h = h_low + A_out(f_{k+1})      <-- A_out (zero) ---  f_{k+1} = its last feature map
    f_k = decoder_k(h, skips);  out_k = head_k(f_k)       out_{k+1} = head_{k+1}(f_{k+1})

The adapters A_in (outer features at the outer level's lowest resolution -> inner C_0 channels)
and A_out (inner C_0 -> outer C_last) are zero-initialised 3x3 convolutions, and so are all the
output heads. With both adapters at zero, levels k + 1 .. n give exactly what the model of
those levels alone gives (`params["inner"]` is that model's parameter tree), which is what lets
MDM train progressively: the 64 px core first, then 256 px around it, then 1024 px.

Encoder of a level with channels (C_0 .. C_{L-1}): Conv3 to C_0; at level resolution l,
num_res_blocks[l] ResBlocks to C_l, each followed by attention_layers[l] attention blocks
(self-attention, cross-attention to the text context in the core, and a feed-forward when
attention_feed_forward); a stride-2 conv between resolutions. Every output is kept as a skip. The
decoder mirrors it with num_res_blocks[l] + 1 ResBlocks per resolution fed concat(h, skip) and
nearest + conv upsampling. Only the core has the middle block (ResBlock, attention, ResBlock);
outer levels skip it, as in the reference (skip_mid_blocks).

Conditioning: every level has its own time MLP (sinusoidal(1000 t), embedding_features // 4
sinusoids, to embedding_features). Class labels (null class = num_classes) and the text context
enter through the core only (the reference's skip_cond_emb on outer levels). The context is a
conditioning.TextContext, embeddings e (B, L, D) and mask m (B, L) (True = a real token), or a
(B, L, D) array with every token real: e is projected token-wise to `context_features` channels
(0 keeps it as given), mean-pooled over the real tokens, sum_l m_l e_l / max(sum_l m_l, 1), into
the time embedding, and cross-attended by the core's attention blocks on the real tokens only.

Mixed resolution (MDM sec. 3.3, `mixed_ratio` in the reference configs): level k may receive a
smaller batch b_k than level k + 1 (b_0 <= b_1 <= ... <= b_{n-1} = B). Sample i of level k is
sample i of every inner level, so the outer levels see a prefix of the batch: with
`mixed_resolution_pyramid(pyramid, batch_sizes)` a full pyramid is cut to these prefixes. t, labels
and context have the core's batch B; level k uses their first b_k rows, its adapter input to
level k + 1 is padded with zeros for the rows b_k .. b_{k+1}-1 (those samples are denoised by the
inner levels alone), and the model returns each level with its own batch size. The loss of level
k is the mean over its b_k rows; written on full-size arrays that is the mask
m_i = [i < b_k] with the sum divided by b_k (`mixed_resolution_mask`). The context (embeddings
and token mask alike) is read by the core only, which has the full batch B.

Parameter counts (`count_parameters`, text context (B, 128, 2048) of FLAN-T5-XL as in the
reference configs): mdm_64 493,429,763, mdm_256 507,371,846, mdm_1024 510,415,177; apple/ml-mdm's
PyTorch modules (configs/models/cc12m_*.yaml) count 461,359,107 / 476,613,958 / 480,970,057.
tests/models/test_paper_scale.py asserts the differences, all accounted for to the parameter:
  * +33,382,400: cross-attention. The reference lets text keys/values join the self-attention's
    query and output projection; attention.AttentionBlock gives cross-attention its own GroupNorm,
    query and output projections: (2*512^2+4*512)*5 + (2*768^2+4*768)*26 more.
  * -1,312,768 per level: no micro-conditioning MLP (the reference's "scale:64/256/1024").
  * +1,024: the pooled-context projection has a bias (conditioning.ConditioningEmbedding).
Parameter-free: outer levels do not divide their input by its standard deviation (the reference
does so for the 256 level inside the 1024 model only), so every inner level equals its
standalone model.
"""

import dataclasses
from typing import Optional, Sequence, Union

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxdiff import models
from jaxdiff.models.blocks import OutputHead
from jaxdiff.models.conditioning import (ConditioningEmbedding, TextContext, TimeEmbedding,
                                         as_text_context)
from jaxdiff.models.layers import Conv, Dense, Dtype, create_module
from jaxdiff.models.nested_levels import Blocks, LevelDecoder, LevelEncoder, MiddleBlock


class NestedUNet(nn.Module):
    """`apply(variables, x, t, labels=None, context=None, train=False)` -> list of predictions.

    x: list of NHWC batches, highest resolution first, level k's side 2^(len(channels[k]) - 1)
    times level k+1's; batch sizes non-decreasing inwards (mixed resolution, see the module
    docstring). t: (B,) times in [0, 1] with B the core's batch; labels int (B,); context a
    conditioning.TextContext (embeddings (B, L, D), mask (B, L)) or a (B, L, D) array with every
    token real. Per-level tuples (channels, num_res_blocks, attention_layers) are listed highest
    resolution first; each inner tuple has one entry per resolution of that level.
    Returns float32 predictions, one per level, shaped like the inputs.
    """

    channels: Sequence[Sequence[int]] = ((256, 512, 768),)
    num_res_blocks: Sequence[Sequence[int]] = ((2, 2, 2),)
    attention_layers: Sequence[Sequence[int]] = ((0, 1, 5),)
    attention_feed_forward: bool = True
    out_channels: int = 3
    embedding_features: int = 1024
    num_heads: int = 8
    head_channels: Optional[int] = None
    dropout: float = 0.0
    num_groups: int = 32
    num_classes: int = 0
    use_context: bool = False
    context_features: int = 0
    remat: Union[bool, str] = False
    attention_implementation: Optional[str] = None
    dtype: Dtype = jnp.float32
    param_dtype: Dtype = jnp.float32

    @property
    def depth(self) -> int:
        return len(self.channels)

    def level_downsampling(self, level: int) -> int:
        """How much level `level` downsamples inside: 2^(len(channels[level]) - 1)."""
        return 2 ** (len(self.channels[level]) - 1)

    @property
    def level_factors(self) -> tuple:
        """Downsampling factor of every level relative to the outermost: f_0 = 1,
        f_{k+1} = f_k 2^(len(channels[k]) - 1)."""
        factors = [1]
        for level in range(self.depth - 1):
            factors.append(factors[-1] * self.level_downsampling(level))
        return tuple(factors)

    def level_sides(self, side: int, level: int = 0) -> tuple:
        """The side of every level when level `level` has side `side`; ValueError unless the
        innermost side is a whole number."""
        factors = self.level_factors
        outer = side * factors[level]
        if outer % factors[-1]:
            raise ValueError(f"A side of {side} px at level {level} does not divide into the "
                             f"levels of this NestedUNet (factors {factors}).")
        return tuple(outer // factor for factor in factors)

    def innermost(self, num_levels: int) -> "NestedUNet":
        """The model of the num_levels innermost levels alone (progressive training); its
        parameters are innermost_params of this model's."""
        if not 1 <= num_levels <= self.depth:
            raise ValueError(f"This NestedUNet has {self.depth} levels; cannot take the "
                             f"{num_levels} innermost.")
        return self.clone(**self.levels_without_outer(self.depth - num_levels))

    def levels_without_outer(self, drop: int) -> dict:
        """The per-level fields without the `drop` outermost levels."""
        return {field: tuple(getattr(self, field))[drop:]
                for field in ("channels", "num_res_blocks", "attention_layers")}

    def innermost_params(self, params, num_levels: int):
        """The parameters of innermost(num_levels): params["inner"] taken depth - num_levels
        times."""
        for _ in range(self.depth - num_levels):
            params = params["inner"]
        return params

    def innermost_apply(self, num_levels: int):
        """apply(variables, x, t, **kwargs) of the num_levels innermost levels, taking this
        whole model's variables; x is the pyramid of those levels."""
        if num_levels == self.depth:
            return self.apply
        inner = self.innermost(num_levels)

        def apply(variables, x, t, **kwargs):
            params = self.innermost_params(variables["params"], num_levels)
            return inner.apply({"params": params}, x, t, **kwargs)

        return apply

    def check_architecture(self):
        """Raise ValueError unless the per-level tuples describe a valid nesting."""
        per_level = (self.channels, self.num_res_blocks, self.attention_layers)
        if not self.channels or any(len(field) != self.depth for field in per_level):
            raise ValueError("channels, num_res_blocks and attention_layers need one entry per "
                             f"level, got {[len(field) for field in per_level]}.")
        for level, (channels, blocks, attention) in enumerate(zip(*per_level)):
            if not channels or len(blocks) != len(channels) or len(attention) != len(channels):
                raise ValueError(f"Level {level}: channels, num_res_blocks and attention_layers "
                                 "need the same non-zero number of resolutions.")
            if min(channels) <= 0 or min(blocks) < 1 or min(attention) < 0:
                raise ValueError(f"Level {level}: channels and num_res_blocks must be positive "
                                 "and attention_layers non-negative.")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}.")
        if self.embedding_features % 8:
            raise ValueError("embedding_features must be a multiple of 8 (a quarter of it are "
                             f"sinusoids), got {self.embedding_features}.")

    def check_input(self, images, t):
        """Raise ValueError unless the pyramid, its batch sizes and t fit the architecture."""
        if len(images) != self.depth:
            raise ValueError(f"Expected a list of {self.depth} image batches (highest resolution "
                             f"first), got {len(images)}.")
        if any(x.ndim != 4 for x in images):
            raise ValueError(f"Expected NHWC batches, got shapes {[x.shape for x in images]}.")
        for level, x in enumerate(images):
            factor = self.level_downsampling(level)
            if x.shape[1] % factor or x.shape[2] % factor:
                raise ValueError(f"Level {level}: height and width {x.shape[1:3]} must be "
                                 f"divisible by {factor}.")
            if level + 1 < self.depth:
                inner = images[level + 1]
                if (x.shape[1] // factor, x.shape[2] // factor) != inner.shape[1:3]:
                    raise ValueError(f"Level {level} ({x.shape[1:3]}) must be {factor} times "
                                     f"the size of level {level + 1} ({inner.shape[1:3]}).")
                if x.shape[0] > inner.shape[0]:
                    raise ValueError("Batch sizes must not decrease towards the inner levels, "
                                     f"got {[y.shape[0] for y in images]}.")
        if jnp.shape(t) != (images[-1].shape[0],):
            raise ValueError(f"t must have shape ({images[-1].shape[0]},) (the innermost "
                             f"batch), got {jnp.shape(t)}.")

    def __call__(self, x, t, labels=None, context=None, train: bool = False):
        self.check_architecture()
        if not isinstance(x, (list, tuple)):
            raise ValueError("NestedUNet takes a list of image batches, highest resolution "
                             f"first, got {type(x).__name__}.")
        images = list(x)
        self.check_input(images, t)
        outputs, _ = self.nested(images, t, labels, as_text_context(context), None, train)
        return outputs

    def blocks(self) -> Blocks:
        return Blocks(self.num_heads, self.head_channels, self.attention_feed_forward,
                      self.dropout, self.num_groups, self.remat, self.attention_implementation,
                      self.dtype, self.param_dtype)

    def inner_model(self) -> "NestedUNet":
        """The model of levels 1 .. depth-1 (its parameters are this model's params["inner"])."""
        fields = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                  if f.init and f.name not in ("parent", "name")}
        return NestedUNet(**{**fields, **self.levels_without_outer(1)}, name="inner")

    @nn.compact
    def nested(self, images, t, labels, context, features, train: bool):
        """Run this level and the inner ones; returns (predictions, last feature map). context
        is a TextContext or None."""
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        blocks = self.blocks()
        channels = tuple(self.channels[0])
        x = images[0]
        batch = x.shape[0]
        is_core = self.depth == 1
        if is_core:
            if self.use_context and context is not None and self.context_features:
                context = context._replace(embeddings=Dense(
                    self.context_features, name="context_proj", **kw)(context.embeddings))
            emb = ConditioningEmbedding(
                self.embedding_features, self.embedding_features // 4,
                num_classes=self.num_classes, use_context=self.use_context, name="conditioning",
                **kw)(t, labels, context)
            level_context = context
        else:
            emb = TimeEmbedding(self.embedding_features, self.embedding_features // 4,
                                name="time_embedding", **kw)(t[:batch])
            level_context = None

        h = Conv(channels[0], name="conv_in", **kw)(x.astype(self.dtype))
        if features is not None:
            h = h + features.astype(h.dtype)
        level = dict(channels=channels, num_res_blocks=tuple(self.num_res_blocks[0]),
                     attention_layers=tuple(self.attention_layers[0]), blocks=blocks)
        h, skips = LevelEncoder(**level, name="encoder")(h, emb, level_context, train)
        if is_core:
            h = MiddleBlock(blocks, name="middle")(h, emb, level_context, train)
            inner_outputs = []
        else:
            inner_channels = self.channels[1][0]
            inner_batch = images[1].shape[0]
            to_inner = Conv(inner_channels, zero_init=True, name="in_adapter", **kw)(h)
            to_inner = jnp.pad(to_inner, ((0, inner_batch - batch), (0, 0), (0, 0), (0, 0)))
            inner_outputs, from_inner = self.inner_model().nested(
                images[1:], t, labels, context, to_inner, train)
            h = h + Conv(channels[-1], zero_init=True, name="out_adapter", **kw)(
                from_inner[:batch])
        h = LevelDecoder(**level, name="decoder")(h, skips, emb, level_context, train)
        output = OutputHead(self.out_channels, self.num_groups, name="head", **kw)(h)
        return [output] + inner_outputs, h


def mixed_resolution_pyramid(pyramid, batch_sizes: Sequence[int]):
    """Cut a full pyramid (every level with batch B) to level k's first batch_sizes[k] rows.

    batch_sizes lists one size per level, highest resolution first, non-decreasing, the last
    equal to B. Example: B = 6 and batch_sizes (2, 6) train the outer level on 2 of 6 samples.
    """
    sizes = tuple(int(b) for b in batch_sizes)
    full = pyramid[-1].shape[0]
    if len(sizes) != len(pyramid) or sizes[-1] != full or min(sizes) < 1 or any(
            a > b for a, b in zip(sizes, sizes[1:])):
        raise ValueError(f"batch_sizes {sizes} must give one positive, non-decreasing size per "
                         f"level ({len(pyramid)}), the last equal to the batch {full}.")
    return [x[:size] for x, size in zip(pyramid, sizes)]


def mixed_resolution_mask(batch_size: int, level_batch_size: int):
    """m_i = 1 for the i < level_batch_size rows a level is trained on, else 0 (float32)."""
    if not 1 <= level_batch_size <= batch_size:
        raise ValueError(f"A level batch of {level_batch_size} does not fit a batch of "
                         f"{batch_size}.")
    return (jnp.arange(batch_size) < level_batch_size).astype(jnp.float32)


# Reference levels (apple/ml-mdm configs/models/cc12m_*.yaml), highest resolution first.
_CORE_64 = dict(channels=(256, 512, 768), num_res_blocks=(2, 2, 2), attention_layers=(0, 1, 5))
_OUTER_256 = dict(channels=(64, 128, 256), num_res_blocks=(2, 2, 1), attention_layers=(0, 0, 0))
_OUTER_1024 = dict(channels=(32, 32, 64), num_res_blocks=(2, 2, 1), attention_layers=(0, 0, 0))


def _levels(*levels, **kwargs):
    """Constructor kwargs from per-level dicts (highest resolution first)."""
    per_level = {key: tuple(level[key] for level in levels) for key in levels[0]}
    return dict(per_level, **kwargs)


_TEXT = dict(use_context=True, context_features=2048, embedding_features=1024, num_heads=8)
_TINY_CORE = dict(channels=(16, 32), num_res_blocks=(1, 1), attention_layers=(0, 1))
_TINY_OUTER = dict(channels=(8, 16), num_res_blocks=(1, 1), attention_layers=(0, 0))
_TINY = dict(embedding_features=32, num_heads=2, num_groups=4)

PRESETS = {
    # CPU-sized, 8x8 core; depth 1 (8 px), 2 (16 -> 8 px) and 3 (32 -> 16 -> 8 px).
    "tiny": _levels(_TINY_CORE, **_TINY),
    "tiny_2": _levels(_TINY_OUTER, _TINY_CORE, **_TINY),
    "tiny_3": _levels(_TINY_OUTER, _TINY_OUTER, _TINY_CORE, **_TINY),
    # Gu et al. 2023 text-to-image models (FLAN-T5-XL context, 2048 channels).
    "mdm_64": _levels(_CORE_64, **_TEXT),
    "mdm_256": _levels(_OUTER_256, _CORE_64, **_TEXT),
    "mdm_1024": _levels(_OUTER_1024, _OUTER_256, _CORE_64, **_TEXT),
}

# Image side of each level of a preset, highest resolution first (used by tests and benchmarks).
PRESET_RESOLUTIONS = {
    "tiny": (8,), "tiny_2": (16, 8), "tiny_3": (32, 16, 8),
    "mdm_64": (64,), "mdm_256": (256, 64), "mdm_1024": (1024, 256, 64),
}

# Text context (L, D) the paper presets are counted with: FLAN-T5-XL, 128 tokens.
PAPER_CONTEXT_SHAPE = (128, 2048)

# Parameter counts of the paper presets, documented in the module docstring.
PRESET_PARAMETER_COUNTS = {
    "mdm_64": 493_429_763,
    "mdm_256": 507_371_846,
    "mdm_1024": 510_415_177,
}


def create(**kwargs) -> NestedUNet:
    """A NestedUNet from keyword arguments (e.g. `create(**PRESETS["tiny_3"])`)."""
    model = create_module(NestedUNet, **kwargs)
    model.check_architecture()
    return model


def abstract_inputs(model: NestedUNet, resolutions: Sequence[int], batch_size: int,
                    context_shape: Optional[Sequence[int]] = None, context_mask: bool = False):
    """ShapeDtypeStructs (x, t, call kwargs) for a pyramid of square images of these sides.

    With use_context the context has shape (batch_size,) + context_shape (L, D), as a plain
    array, or with context_mask a TextContext with a bool (batch_size, L) mask."""
    x = [jax.ShapeDtypeStruct((batch_size, side, side, 3), jnp.float32) for side in resolutions]
    t = jax.ShapeDtypeStruct((batch_size,), jnp.float32)
    kwargs = {}
    if model.use_context:
        shape = (batch_size,) + tuple(context_shape)
        context = jax.ShapeDtypeStruct(shape, jnp.float32)
        if context_mask:
            context = TextContext(context, jax.ShapeDtypeStruct(shape[:2], jnp.bool_))
        kwargs["context"] = context
    if model.num_classes:
        kwargs["labels"] = jax.ShapeDtypeStruct((batch_size,), jnp.int32)
    return x, t, kwargs


def count_parameters(model: NestedUNet, resolutions: Sequence[int],
                     context_shape: Optional[Sequence[int]] = PAPER_CONTEXT_SHAPE,
                     context_mask: bool = False) -> int:
    """Number of parameters for a pyramid of these sides, from `jax.eval_shape` (no allocation);
    the same with and without a context mask (masks add no parameters)."""
    x, t, kwargs = abstract_inputs(model, resolutions, 1, context_shape, context_mask)
    return models.count_parameters(model, x, t, **kwargs)
