"""The parts of one NestedUNet level (Gu et al. 2023, sec. 3.2; models/nested_unet.py): the
settings its blocks share, the encoder (down path with skips), the decoder (up path consuming
them) and the core's middle block."""

import dataclasses
from typing import Optional, Sequence, Union

import flax.linen as nn
import jax.numpy as jnp

from jaxdiff.models.attention import AttentionBlock, FeedForward
from jaxdiff.models.blocks import ConvResample, ResBlock
from jaxdiff.models.layers import Dtype, remat_if


@dataclasses.dataclass(frozen=True)
class Blocks:
    """Settings shared by every block of a NestedUNet, and constructors for those blocks."""

    num_heads: int
    head_channels: Optional[int]
    feed_forward: bool
    dropout: float
    num_groups: int
    remat: Union[bool, str]
    attention_implementation: Optional[str]
    dtype: Dtype
    param_dtype: Dtype

    def kwargs(self):
        return dict(dtype=self.dtype, param_dtype=self.param_dtype)

    def res_block(self, features: int, name: str):
        block = remat_if(ResBlock, self.remat, static_argnums=(3,))
        return block(features, dropout=self.dropout, num_groups=self.num_groups, name=name,
                     **self.kwargs())

    def attention(self, h, context, train: bool, name: str):
        """AttentionBlock (self + optional cross), then a FeedForward when feed_forward."""
        block = remat_if(AttentionBlock, self.remat)
        h = block(num_heads=self.num_heads, head_channels=self.head_channels,
                  num_groups=self.num_groups, implementation=self.attention_implementation,
                  name=name, **self.kwargs())(h, context)
        if self.feed_forward:
            ffn = remat_if(FeedForward, self.remat, static_argnums=(2,))
            h = ffn(dropout=self.dropout, name=f"{name}_ffn", **self.kwargs())(h, train)
        return h


class LevelEncoder(nn.Module):
    """Down path of one level: returns the lowest-resolution features and every skip."""

    channels: Sequence[int]
    num_res_blocks: Sequence[int]
    attention_layers: Sequence[int]
    blocks: Blocks

    @nn.compact
    def __call__(self, h, emb, context, train: bool):
        skips = [h]
        last = len(self.channels) - 1
        for res, features in enumerate(self.channels):
            for index in range(self.num_res_blocks[res]):
                h = self.blocks.res_block(features, f"res_{res}_{index}")(h, emb, train)
                for layer in range(self.attention_layers[res]):
                    h = self.blocks.attention(h, context, train, f"attn_{res}_{index}_{layer}")
                skips.append(h)
            if res < last:
                h = ConvResample(features, "down", name=f"down_{res}",
                                 **self.blocks.kwargs())(h)
                skips.append(h)
        return h, skips


class LevelDecoder(nn.Module):
    """Up path of one level: consumes the encoder's skips, returns C_0-channel features."""

    channels: Sequence[int]
    num_res_blocks: Sequence[int]
    attention_layers: Sequence[int]
    blocks: Blocks

    @nn.compact
    def __call__(self, h, skips, emb, context, train: bool):
        skips = list(skips)
        for res in reversed(range(len(self.channels))):
            for index in range(self.num_res_blocks[res] + 1):
                h = jnp.concatenate([h, skips.pop().astype(h.dtype)], axis=-1)
                h = self.blocks.res_block(self.channels[res], f"res_{res}_{index}")(h, emb, train)
                for layer in range(self.attention_layers[res]):
                    h = self.blocks.attention(h, context, train, f"attn_{res}_{index}_{layer}")
            if res > 0:
                h = ConvResample(h.shape[-1], "up", name=f"up_{res}",
                                 **self.blocks.kwargs())(h)
        return h


class MiddleBlock(nn.Module):
    """The core's middle: ResBlock, attention (with feed-forward), ResBlock."""

    blocks: Blocks

    @nn.compact
    def __call__(self, h, emb, context, train: bool):
        h = self.blocks.res_block(h.shape[-1], "res_0")(h, emb, train)
        h = self.blocks.attention(h, context, train, "attn")
        return self.blocks.res_block(h.shape[-1], "res_1")(h, emb, train)
