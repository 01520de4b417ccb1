"""The `text` section of a config: what a text-to-image run conditions on, checked before
anything compiles.

Fields of `text_defaults()`:
  encoder          "none" (no text), "trained" (a small transformer trained with the diffusion
                   model on hashed words, GLIDE-style; needs no download: text/small_encoder.py),
                   "embeddings" (batches carry precomputed frozen-encoder embeddings, e.g. the
                   shards --mode=embed writes; prompts are embedded with the T5 of t5_path).
  max_length       L, tokens per caption (EOS included; longer captions are truncated).
  vocab_size       V of the trained encoder's hashed words.
  width, depth, num_heads   the trained encoder's transformer.
  embed_dim        D of precomputed embeddings (FLAN-T5-XL: 2048); 0 unless encoder="embeddings".
  t5_path          a local Hugging Face T5 / FLAN-T5 checkpoint directory (or a hub name, which
                   is downloaded only when asked): the encoder of --mode=embed and of prompts
                   for an "embeddings" run.
  t5_dtype         "bfloat16" or "float32": the frozen encoder's parameters and compute.
  prompts          the prompts of the training-time sample grids (cycled over the grid).
  negative_prompt  the text guidance steers away from (classifier-free guidance's
                   unconditional input); "" = the empty caption, as in training's dropout.
"""

import ml_collections

from jaxdiff.checks import fail, number_in, one_of
from jaxdiff.text.tokenizers import WordHashTokenizer

ENCODERS = ("none", "trained", "embeddings")
T5_DTYPES = ("bfloat16", "float32")


def text_defaults() -> ml_collections.ConfigDict:
    """The text section of every config: no text."""
    return ml_collections.ConfigDict(dict(
        encoder="none", max_length=16, vocab_size=4096, width=64, depth=2, num_heads=2,
        embed_dim=0, t5_path="", t5_dtype="bfloat16", prompts=[], negative_prompt=""))


def batch_text(text):
    """What batches must carry for the text section (the data pipeline's `text`): None (no
    text), the trained encoder's tokenizer (tokens and a mask) or "embeddings"."""
    if text is None or text.encoder == "none":
        return None
    if text.encoder == "trained":
        return WordHashTokenizer(text.vocab_size, text.max_length)
    return "embeddings"


def check_text_config(text) -> None:
    """ValueError in one sentence for a text value that cannot run."""
    one_of(*ENCODERS)("text.encoder", text.encoder)
    if text.encoder == "none":
        return
    for field in ("max_length", "width", "depth", "num_heads"):
        number_in(1, integer=True)(f"text.{field}", text[field])
    number_in(3, integer=True)("text.vocab_size", text.vocab_size)
    if text.encoder == "trained" and text.width % text.num_heads:
        raise ValueError(f"text.num_heads ({text.num_heads}) must divide text.width "
                         f"({text.width}).")
    if text.encoder == "embeddings":
        number_in(1, integer=True)("text.embed_dim", text.embed_dim)
    one_of(*T5_DTYPES)("text.t5_dtype", text.t5_dtype)
    if any(not isinstance(prompt, str) for prompt in text.prompts):
        fail("text.prompts", "a list of strings", list(text.prompts))
    if not isinstance(text.negative_prompt, str):
        fail("text.negative_prompt", "a string", text.negative_prompt)
