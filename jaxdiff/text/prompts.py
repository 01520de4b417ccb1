"""Prompts to the text a sampler takes, on the host: tokens for a jointly trained encoder,
frozen-T5 embeddings for a run trained on precomputed embeddings.

    encode_prompts(text_config, prompts) -> {"tokens": int32 (N, L), "mask": bool (N, L)}
                                          or {"embeddings": float32 (N, L, D), "mask": ...}
    read_prompt_file(path) -> the non-empty lines of a text file

Embedding prompts loads the T5 of text.t5_path (t5_checkpoint.load_t5_encoder) once per
process and runs it jitted; its width must be text.embed_dim, the width the run trained on.
"""

import functools

import jax
import numpy as np

from jaxdiff.text.tokenizers import WordHashTokenizer, tokenize_batch


def encode_prompts(text_config, prompts) -> dict:
    """The sampler's text of `prompts` (a list of strings) under the run's text config."""
    prompts = list(prompts)
    if text_config.encoder == "trained":
        return tokenize_batch(WordHashTokenizer(text_config.vocab_size,
                                                text_config.max_length), prompts)
    if not text_config.t5_path:
        raise ValueError("This run was trained on precomputed text embeddings: set "
                         "config.text.t5_path to the T5 checkpoint that made them, to embed "
                         "the prompts.")
    encoder, apply = frozen_t5(text_config.t5_path, text_config.t5_dtype,
                               text_config.max_length)
    if encoder.config.d_model != text_config.embed_dim:
        raise ValueError(f"The T5 in {text_config.t5_path} gives {encoder.config.d_model}-wide "
                         f"embeddings, but the run was trained on text.embed_dim = "
                         f"{text_config.embed_dim}.")
    tokens = tokenize_batch(encoder.tokenizer, prompts)
    embeddings = apply(encoder.params, tokens["tokens"], tokens["mask"])
    return {"embeddings": np.asarray(embeddings, np.float32), "mask": tokens["mask"]}


@functools.lru_cache(maxsize=2)
def frozen_t5(path: str, dtype: str, max_length: int):
    """(the T5 encoder of a checkpoint directory, its jitted (params, tokens, mask) ->
    embeddings), loaded and jitted once per process."""
    from jaxdiff.text.t5_checkpoint import load_t5_encoder

    encoder = load_t5_encoder(path, dtype=dtype, max_length=max_length)
    return encoder, jax.jit(lambda params, tokens, mask: encoder.module.apply(
        {"params": params}, tokens, mask))


def read_prompt_file(path: str) -> list:
    """The prompts of a text file, one per non-empty line (surrounding spaces removed)."""
    try:
        with open(path, encoding="utf-8") as f:
            prompts = [line.strip() for line in f if line.strip()]
    except (OSError, UnicodeDecodeError) as error:
        raise ValueError(f"Cannot read the prompt file {path}: {error}.") from None
    if not prompts:
        raise ValueError(f"The prompt file {path} has no prompt (one per non-empty line).")
    return prompts
