"""Captions of records and the text fields they put into batches.

A record's "caption" is a str, UTF-8 bytes, or a tuple / list of those (several captions of one
image); a record without one has no "caption", None or an empty tuple. A caption is usable when
it decodes as UTF-8 and is not empty once stripped of surrounding whitespace; among several,
the unusable ones are dropped, and a record left with none is skipped by the pipeline
(`UnusableCaption`, counted and reported like an unusable image).

What the pipeline's `text` argument puts into each element (and, stacked, into batches):

    text = a Tokenizer    {"tokens": int32 (L,), "mask": bool (L,)} of one caption,
                          `jaxdiff.text.tokenizers.tokenize`d (a caption longer than L - 1 tokens
                          is truncated, kept and counted)
    text = "embeddings"   {"embeddings": float32 (L, D), "mask": bool (L,)} from the record's
                          precomputed "embeddings" and "mask" ((L, D) / (L,), or (K, L, D) /
                          (K, L) for K captions; L and D alike in every record of a batch)

With K > 1 captions (or embeddings), the one used in epoch e by the record at index i of the
process's shard is k = caption_choice(seed, e, i, K): the same on every run, a new draw per epoch.
"""

import numpy as np

from jaxdiff.text.tokenizers import tokenize

EMBEDDINGS = "embeddings"

_SPLITMIX_GAMMA = np.uint64(0x9E3779B97F4A7C15)


class UnusableCaption(Exception):
    """A record without a usable caption (or, for "embeddings", without embeddings)."""


def _splitmix(x):
    """The SplitMix64 finaliser (Steele et al. 2014): a bijection of uint64 that mixes all bits."""
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def caption_choice(seed, epoch, index, count):
    """k = h(h(h(seed + g) + epoch + g) + index + g) mod count, h = SplitMix64, g its gamma.

    Elementwise over numpy arrays (the cached path draws a batch at once) or on scalars."""
    with np.errstate(over="ignore"):
        mixed = _splitmix(np.asarray(seed, np.uint64) + _SPLITMIX_GAMMA)
        mixed = _splitmix(mixed + np.asarray(epoch, np.uint64) + _SPLITMIX_GAMMA)
        mixed = _splitmix(mixed + np.asarray(index, np.uint64) + _SPLITMIX_GAMMA)
    return (mixed % np.asarray(count, np.uint64)).astype(np.int64)


def usable_captions(record) -> tuple:
    """The record's usable captions, decoded and stripped; UnusableCaption when none is usable."""
    captions = record.get("caption")
    if captions is None:
        raise UnusableCaption("it has no caption")
    if isinstance(captions, (str, bytes)):
        captions = (captions,)
    usable, problem = [], "it has no caption"
    for caption in captions:
        if isinstance(caption, bytes):
            try:
                caption = caption.decode("utf-8")
            except UnicodeDecodeError:
                problem = "its caption is not valid UTF-8"
                continue
        caption = str(caption).strip()
        if caption:
            usable.append(caption)
        else:
            problem = "its caption is empty"
    if not usable:
        raise UnusableCaption(problem)
    return tuple(usable)


def _embedding_variants(record):
    """(embeddings float32 (K, L, D), mask bool (K, L)) of a record with precomputed embeddings."""
    if "embeddings" not in record or "mask" not in record:
        raise UnusableCaption("it has no precomputed embeddings")
    embeddings = np.asarray(record["embeddings"], np.float32)
    mask = np.asarray(record["mask"], bool)
    if embeddings.ndim == 2:
        embeddings, mask = embeddings[None], mask[None]
    if embeddings.ndim != 3 or mask.shape != embeddings.shape[:2]:
        raise UnusableCaption(f"its embeddings {embeddings.shape} and mask {mask.shape} are not "
                              "(L, D) and (L,), or (K, L, D) and (K, L)")
    return embeddings, mask


class TextFields:
    """The text fields of records for one `text` argument (module docstring) and seed."""

    def __init__(self, text, seed):
        self.text = text
        self.seed = seed

    def draw(self, record, epoch, index):
        """(fields of the caption drawn for epoch `epoch`, 1 if it was truncated else 0)."""
        if self.text == EMBEDDINGS:
            embeddings, mask = _embedding_variants(record)
            k = int(caption_choice(self.seed, epoch, index, len(embeddings)))
            return {"embeddings": embeddings[k], "mask": mask[k]}, 0
        captions = usable_captions(record)
        k = int(caption_choice(self.seed, epoch, index, len(captions)))
        tokenized = tokenize(self.text, captions[k])
        return {"tokens": tokenized.tokens, "mask": tokenized.mask}, int(tokenized.truncated)

    def every(self, record):
        """(fields of all K captions, each with a leading K axis; the number truncated)."""
        if self.text == EMBEDDINGS:
            embeddings, mask = _embedding_variants(record)
            return {"embeddings": embeddings, "mask": mask}, 0
        tokenized = [tokenize(self.text, caption) for caption in usable_captions(record)]
        return ({"tokens": np.stack([t.tokens for t in tokenized]),
                 "mask": np.stack([t.mask for t in tokenized])},
                sum(t.truncated for t in tokenized))


def check_text_data(spec, text) -> None:
    """Fails in one sentence when `text` (None, a Tokenizer or "embeddings") asks for what the
    dataset described by `spec` (a DatasetSpec) does not have."""
    if text is None:
        return
    if isinstance(text, str):
        if text != EMBEDDINGS:
            raise ValueError(f"The data's text must be None, a tokenizer or {EMBEDDINGS!r}, "
                             f"got {text!r}.")
        if not spec.has_embeddings:
            raise ValueError(f"Precomputed text embeddings were asked for, but the records of "
                             f"{spec.name} carry none; write them first (jaxdiff.data.shards) or "
                             "tokenize the captions instead.")
        return
    if not callable(getattr(text, "ids", None)):
        raise ValueError(f"The data's text must be None, a tokenizer or {EMBEDDINGS!r}, "
                         f"got {type(text).__name__}.")
    if not spec.has_captions:
        raise ValueError(f"Text conditioning needs captions, but {spec.name} has none; use a "
                         "captioned dataset (builtin:captioned_digits, an image folder with "
                         "caption files, a tfds dataset with data.caption_field, or shards:).")


def reference_captions(records, num_captions: int, seed: int) -> list:
    """The first usable caption of num_captions training records drawn without replacement
    (a permutation from `seed`; records without a usable caption passed over), the same on
    every process: the prompts of a text-to-image evaluation, so that its samples follow the
    data's captions (as FID on COCO captions does). Fewer when the data has fewer."""
    captions = []
    for index in np.random.default_rng(seed).permutation(len(records)):
        try:
            captions.append(usable_captions(records[int(index)])[0])
        except UnusableCaption:
            continue
        if len(captions) == num_captions:
            break
    return captions
