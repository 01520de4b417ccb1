"""A network conditioned on text: the caption's tokens (or precomputed embeddings) become the
masked context every jaxdiff network takes (conditioning.TextContext), as in GLIDE and Imagen.

    apply(variables, x, t, labels=None, text=..., train=False)
        text = {"tokens": int32 (B, L), "mask": bool (B, L)}        encoded by `text_encoder`
             | {"embeddings": float (B, L, D), "mask": bool (B, L)}  a frozen encoder's output
        -> network(x, t, labels=labels, context=TextContext(embeddings, mask), train=train)

The text encoder's parameters ("text_encoder") sit beside the network's ("network") and train
with them; with precomputed embeddings there is no text encoder. The structure of the network
(levels, sides, channels) is read from `network`.
"""

from typing import Optional

import flax.linen as nn

from jaxdiff.models.conditioning import TextContext


class TextConditionedNetwork(nn.Module):
    """`network` conditioned on text through `text_encoder` (None: precomputed embeddings)."""

    network: nn.Module
    text_encoder: Optional[nn.Module] = None

    @property
    def num_classes(self) -> int:
        return int(getattr(self.network, "num_classes", 0))

    def __call__(self, x, t, labels=None, text=None, train: bool = False):
        if text is None:
            raise ValueError("This network is text-conditioned and needs `text` (tokens or "
                             "embeddings, and a mask).")
        if self.text_encoder is not None:
            embeddings = self.text_encoder(text["tokens"], text["mask"])
        else:
            embeddings = text["embeddings"]
        context = TextContext(embeddings, text["mask"])
        return self.network(x, t, labels=labels, context=context, train=train)

    def innermost_apply(self, num_levels: int):
        """apply(variables, x, t, **kwargs) of the NestedUNet's num_levels innermost levels
        (MDM's progressive stages), taking this model's variables."""
        inner = self.clone(network=self.network.innermost(num_levels), parent=None)

        def apply(variables, x, t, **kwargs):
            params = dict(variables["params"])
            params["network"] = self.network.innermost_params(params["network"], num_levels)
            return inner.apply({"params": params}, x, t, **kwargs)

        return apply
