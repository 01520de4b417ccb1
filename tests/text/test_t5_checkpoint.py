"""jaxdiff/text/t5_checkpoint.py: reading Hugging Face T5 checkpoint directories (single file and
sharded, encoder-decoder extras ignored), their one-sentence errors, bfloat16 loading."""

import json
import shutil
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax import linen as nn
from safetensors.numpy import load_file, save_file

from jaxdiff.text.t5_checkpoint import abstract_t5_params, load_t5_encoder
from jaxdiff.text.tokenizers import tokenize_batch

TEXTS = ["A red fox in the snow.", "", "Two dogs, 3 apples and 12 pears."]


def rewritten(checkpoint, directory, tensors=None):
    """A copy of the checkpoint directory whose model.safetensors holds `tensors` (no weights
    file when None)."""
    shutil.copy(f"{checkpoint.directory}/config.json", directory / "config.json")
    shutil.copy(f"{checkpoint.directory}/spiece.model", directory / "spiece.model")
    if tensors is not None:
        save_file(tensors, str(directory / "model.safetensors"))
    return str(directory)


def tensors_of(checkpoint):
    return load_file(f"{checkpoint.directory}/model.safetensors")


def test_params_match_the_module_tree_and_the_checkpoint(checkpoint):
    frozen = load_t5_encoder(checkpoint.directory, max_length=8)
    expected = nn.meta.unbox(abstract_t5_params(frozen.config))
    assert jax.tree.structure(frozen.params) == jax.tree.structure(expected)
    for param, shape in zip(jax.tree.leaves(frozen.params), jax.tree.leaves(expected)):
        assert param.shape == shape.shape and param.dtype == np.float32
    q = checkpoint.model.encoder.block[1].layer[0].SelfAttention.q.weight.detach().numpy()
    np.testing.assert_array_equal(frozen.params["block_1"]["attention"]["q"]["dense"]["kernel"],
                                  q.T)  # torch Linear (out, in) -> Flax kernel (in, out)
    assert (frozen.tokenizer.max_length, frozen.tokenizer.pad_id, frozen.tokenizer.eos_id) == (
        8, 0, 1)


def test_missing_tensor_fails_in_one_sentence(checkpoint, tmp_path):
    tensors = tensors_of(checkpoint)
    name = "encoder.block.1.layer.0.SelfAttention.k.weight"
    del tensors[name]
    directory = rewritten(checkpoint, tmp_path, tensors)
    with pytest.raises(ValueError) as error:
        load_t5_encoder(directory)
    assert str(error.value) == (f"The T5 checkpoint {directory}/model.safetensors has no tensor "
                                f"{name} (expected shape (32, 32)).")


def test_wrong_shape_fails_in_one_sentence(checkpoint, tmp_path):
    tensors = tensors_of(checkpoint)
    name = "encoder.block.0.layer.1.DenseReluDense.wo.weight"
    tensors[name] = np.zeros((32, 63), np.float32)
    directory = rewritten(checkpoint, tmp_path, tensors)
    with pytest.raises(ValueError) as error:
        load_t5_encoder(directory)
    assert str(error.value) == (f"Tensor {name} in {directory}/model.safetensors has shape "
                                "(32, 63), but the config expects (32, 64).")


def test_sharded_encoder_decoder_checkpoint(checkpoint, tmp_path):
    """Shards listed by model.safetensors.index.json, the embedding under its encoder name, and
    decoder / LM-head tensors that the encoder ignores."""
    tensors = tensors_of(checkpoint)
    tensors["encoder.embed_tokens.weight"] = tensors.pop("shared.weight")
    tensors["decoder.block.0.layer.0.SelfAttention.q.weight"] = np.ones((5, 5), np.float32)
    tensors["lm_head.weight"] = np.ones((7, 3), np.float32)
    directory = rewritten(checkpoint, tmp_path)
    names = sorted(tensors)
    shards = {"model-00001-of-00002.safetensors": names[::2],
              "model-00002-of-00002.safetensors": names[1::2]}
    for shard, shard_names in shards.items():
        save_file({name: tensors[name] for name in shard_names}, str(tmp_path / shard))
    weight_map = {name: shard for shard, shard_names in shards.items() for name in shard_names}
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    sharded = load_t5_encoder(directory).params
    single = load_t5_encoder(checkpoint.directory).params
    jax.tree.map(np.testing.assert_array_equal, sharded, single)


def test_bfloat16_params_and_outputs(checkpoint):
    frozen = load_t5_encoder(checkpoint.directory, dtype="bfloat16", max_length=16)
    assert all(p.dtype == jnp.bfloat16 for p in jax.tree.leaves(frozen.params))
    batch = tokenize_batch(frozen.tokenizer, TEXTS)
    out = jax.jit(frozen.module.apply)({"params": frozen.params}, batch["tokens"], batch["mask"])
    assert out.dtype == jnp.bfloat16
    with torch.no_grad():
        reference = checkpoint.model(
            input_ids=torch.from_numpy(batch["tokens"]).long(),
            attention_mask=torch.from_numpy(batch["mask"]).long()).last_hidden_state.numpy()
    error = np.abs(np.asarray(out, np.float32) - reference).max()
    assert error <= 0.03 * np.abs(reference).max(), error  # bfloat16 keeps 8 bits of mantissa


def test_dtype_directory_and_download_errors(checkpoint, tmp_path, monkeypatch):
    with pytest.raises(ValueError, match=r"^The T5 encoder dtype must be one of \['bfloat16', "
                                         r"'float32'\], got 'float16'.$"):
        load_t5_encoder(checkpoint.directory, dtype="float16")
    with pytest.raises(ValueError, match="has neither model.safetensors nor "
                                         "model.safetensors.index.json.$"):
        load_t5_encoder(rewritten(checkpoint, tmp_path))
    with pytest.raises(ValueError, match="^The T5 checkpoint directory /no/such/t5 does not "
                                         "exist.$"):
        load_t5_encoder("/no/such/t5")
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)  # not importable: never downloads
    with pytest.raises(ValueError, match="^google/flan-t5-xl is not a local directory and "
                                         "huggingface_hub is not installed: download"):
        load_t5_encoder("google/flan-t5-xl")


def test_tokenizer_larger_than_the_embedding_table_fails(checkpoint, tmp_path):
    directory = rewritten(checkpoint, tmp_path, tensors_of(checkpoint))
    config = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**config, "vocab_size": 150}))
    with pytest.raises(ValueError, match="has 190 ids, more than the 150 rows of the encoder's "
                                         "embedding table.$"):
        load_t5_encoder(directory)
