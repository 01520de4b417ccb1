"""What a network is conditioned on, in training and in sampling: class labels and text.

A method's conditioning is a dict of the network's keyword arguments,
    {"labels": int32 (B,)}                    class-conditional networks (null class C)
    {"text": {"tokens": int32 (B, L), "mask": bool (B, L)}}            a trained text encoder
    {"text": {"embeddings": float32 (B, L, D), "mask": bool (B, L)}}   precomputed embeddings
or both, or {} for an unconditional network.

Classifier-free guidance (Ho & Salimans 2022) needs the unconditional output of the same
network, so training replaces each label by the null class with probability label_dropout and,
independently, each caption by the empty caption with probability caption_dropout (GLIDE,
Nichol et al. 2022: 20 %; Imagen, Saharia et al. 2022). The empty caption is the tokens of ""
(only EOS unmasked: tokenizers.tokenize, EOS = 1 and padding = 0 in the hashed-word and in
every T5 vocabulary) or, for precomputed embeddings, a zero embedding with only its first
token unmasked. Sampling extrapolates from the null conditioning, or from a negative prompt's
text in its place (the negative prompt of Stable Diffusion / ml-mdm). A network conditioned on
labels and text at once sees their joint null (both dropped) in only label_dropout x
caption_dropout of its samples, and guidance extrapolates from that joint null: raise the two
rates for such a network.
"""

import dataclasses
from typing import Optional

import jax
import jax.numpy as jnp

from jaxdiff.core.arrays import expand_to
from jaxdiff.core.labels import sampling_labels, training_labels

EOS_ID, PAD_ID = 1, 0


@dataclasses.dataclass(frozen=True)
class TextSpec:
    """How a run's text reaches the network: encoder "trained" (batches carry tokens) or
    "embeddings" (batches carry precomputed embeddings of width embed_dim); L tokens."""

    encoder: str
    max_length: int
    embed_dim: int = 0

    @property
    def batch_keys(self) -> tuple:
        return ("tokens", "mask") if self.encoder == "trained" else ("embeddings", "mask")

    def null(self, num: int) -> dict:
        """The empty caption for num samples (module docstring)."""
        mask = jnp.zeros((num, self.max_length), bool).at[:, 0].set(True)
        if self.encoder == "trained":
            tokens = jnp.full((num, self.max_length), PAD_ID, jnp.int32).at[:, 0].set(EOS_ID)
            return {"tokens": tokens, "mask": mask}
        return {"embeddings": jnp.zeros((num, self.max_length, self.embed_dim), jnp.float32),
                "mask": mask}

    def from_batch(self, batch: dict) -> dict:
        missing = [key for key in self.batch_keys if key not in batch]
        if missing:
            raise ValueError(f"The network is text-conditioned (text.encoder "
                             f"{self.encoder!r}) but the batch has no {missing}.")
        text = {key: batch[key] for key in self.batch_keys}
        if "embeddings" in text:  # shards may store them in float16
            text["embeddings"] = text["embeddings"].astype(jnp.float32)
        return text

    def checked(self, text: dict, num: int) -> dict:
        """`text` (tokens or embeddings, and a mask, of num rows) as the network takes it."""
        shapes = {"tokens": (num, self.max_length), "mask": (num, self.max_length),
                  "embeddings": (num, self.max_length, self.embed_dim)}
        if set(text) != set(self.batch_keys):
            raise ValueError(f"Text for sampling must have the keys {list(self.batch_keys)}, "
                             f"got {sorted(text)}.")
        for key in self.batch_keys:
            if tuple(jnp.shape(text[key])) != shapes[key]:
                raise ValueError(f"Text {key!r} must have shape {shapes[key]}, got "
                                 f"{tuple(jnp.shape(text[key]))}.")
        dtypes = {"tokens": jnp.int32, "mask": bool, "embeddings": jnp.float32}
        return {key: jnp.asarray(value, dtypes[key]) for key, value in text.items()}


def drop_text(rng, text: dict, null: dict, rate: float) -> dict:
    """Each sample's text replaced by the empty caption `null` with probability `rate`."""
    dropped = jax.random.bernoulli(rng, rate, (text["mask"].shape[0],))
    return jax.tree.map(lambda value, empty: jnp.where(expand_to(dropped, value), empty, value),
                        text, null)


@dataclasses.dataclass(frozen=True)
class Conditioning:
    """A network's conditioning: C classes (0: none) and text (None: none)."""

    num_classes: int = 0
    text: Optional[TextSpec] = None

    def training(self, rng, batch: dict, label_dropout: float,
                 caption_dropout: float) -> dict:
        """The conditioning a training batch gives, dropped for guidance (module docstring)."""
        label_key, text_key = jax.random.split(rng)
        conditioning = {}
        labels = training_labels(label_key, batch, self.num_classes, label_dropout)
        if labels is not None:
            conditioning["labels"] = labels
        if self.text is not None:
            text = self.text.from_batch(batch)
            null = self.text.null(text["mask"].shape[0])
            conditioning["text"] = drop_text(text_key, text, null, caption_dropout)
        return conditioning

    def sampling(self, rng, num_samples: int, labels=None, text=None,
                 negative_text=None) -> tuple:
        """(conditioning, unconditional conditioning) of num_samples samples: the given
        labels (or uniformly drawn classes) and text (default the empty caption); the
        unconditional side has the null class and the negative text (default empty)."""
        conditioning, null = {}, {}
        labels = sampling_labels(rng, labels, num_samples, self.num_classes)
        if labels is not None:
            conditioning["labels"] = labels
            null["labels"] = jnp.full_like(labels, self.num_classes)
        if self.text is None:
            if text is not None or negative_text is not None:
                raise ValueError("Text was given for sampling a network without text "
                                 "conditioning (text.encoder 'none').")
            return conditioning, null
        empty = self.text.null(num_samples)
        conditioning["text"] = empty if text is None else self.text.checked(text, num_samples)
        null["text"] = (empty if negative_text is None
                        else self.text.checked(negative_text, num_samples))
        return conditioning, null

    def example(self) -> dict:
        """The conditioning of one sample, for tracing the network at init."""
        return self.sampling(jax.random.key(0), 1)[0]
