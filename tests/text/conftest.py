"""Small offline T5 checkpoints for the text-encoder tests: a SentencePiece model trained in the
test from a short corpus (T5's settings: <pad> 0, </s> 1, <unk> 2, no BOS), transformers' T5
tokenizer read from it, and random T5 encoders of both feed-forward kinds saved by transformers
as Hugging Face checkpoint directories (config.json, model.safetensors, spiece.model)."""

import io
import shutil
from typing import NamedTuple

import pytest
import sentencepiece
import torch
import transformers

CORPUS = [
    "A photograph of a red fox sitting in the snow.",
    "Two dogs playing with a ball on the beach at sunset!",
    "An oil painting of 3 apples, 12 pears and a bowl.",
    "Café au lait, naïve résumé - déjà vu.",
    "The quick brown fox jumps over the lazy dog 1234567890.",
    "A cat wearing sunglasses, digital art, 4k, trending.",
    "Mountains (snowy) reflected in a calm lake; early morning light.",
]
SPM_VOCAB_SIZE = 90
EXTRA_IDS = 100
VOCAB_SIZE = 192  # >= 90 pieces + 100 sentinels, rounded up as T5's 32128 rows are
MAX_LENGTH = 24


class Checkpoint(NamedTuple):
    directory: str
    model: transformers.T5EncoderModel  # the reference, float32, eval mode


@pytest.fixture(scope="session")
def spiece_dir(tmp_path_factory):
    """A directory holding only the trained spiece.model."""
    directory = tmp_path_factory.mktemp("spiece")
    model = io.BytesIO()
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter(CORPUS * 20), model_writer=model, vocab_size=SPM_VOCAB_SIZE,
        model_type="unigram", pad_id=0, eos_id=1, unk_id=2, bos_id=-1, character_coverage=1.0,
        minloglevel=2)
    (directory / "spiece.model").write_bytes(model.getvalue())
    return directory


@pytest.fixture(scope="session")
def hf_tokenizer(spiece_dir):
    return transformers.T5Tokenizer.from_pretrained(str(spiece_dir))


def t5_config(feed_forward_proj: str) -> transformers.T5Config:
    """A tiny T5 whose short relative-position range (8 buckets, max distance 12) exercises the
    logarithmic buckets and their cap within MAX_LENGTH tokens."""
    return transformers.T5Config(
        vocab_size=VOCAB_SIZE, d_model=32, d_kv=8, num_heads=4, d_ff=64, num_layers=2,
        relative_attention_num_buckets=8, relative_attention_max_distance=12,
        feed_forward_proj=feed_forward_proj)


@pytest.fixture(scope="session", params=["relu", "gated-gelu"])
def checkpoint(request, tmp_path_factory, spiece_dir) -> Checkpoint:
    torch.manual_seed(0)
    model = transformers.T5EncoderModel(t5_config(request.param)).eval()
    with torch.no_grad():  # norm scales away from 1, so that they are tested
        for name, param in model.named_parameters():
            if "layer_norm" in name:
                param.uniform_(0.5, 1.5)
    directory = tmp_path_factory.mktemp(request.param)
    model.save_pretrained(str(directory))
    shutil.copy(spiece_dir / "spiece.model", directory / "spiece.model")
    return Checkpoint(str(directory), model)
