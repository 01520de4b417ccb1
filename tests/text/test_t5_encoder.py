"""jaxdiff/text/t5.py: the Flax T5 encoder against transformers' T5EncoderModel (both feed-forward
kinds), its relative-position buckets, its config parsing and its parameters' sharding."""

import jax
import numpy as np
import pytest
import torch
from flax import linen as nn
from jax.sharding import PartitionSpec as P
from transformers.models.t5.modeling_t5 import T5Attention

from jaxdiff.text import t5
from jaxdiff.text.t5_checkpoint import abstract_t5_params, load_t5_encoder
from jaxdiff.text.tokenizers import tokenize_batch
from jaxdiff.train import sharding

MAX_LENGTH = 24
TEXTS = ["A red fox in the snow.", "", "Two dogs, 3 apples and 12 pears on the beach at sunset! "
         "An oil painting of a calm lake, early morning light, digital art.", "cat"]


def reference_output(model, batch):
    with torch.no_grad():
        out = model(input_ids=torch.from_numpy(batch["tokens"]).long(),
                    attention_mask=torch.from_numpy(batch["mask"]).long())
    return out.last_hidden_state.numpy()


def test_last_hidden_state_matches_transformers(checkpoint):
    frozen = load_t5_encoder(checkpoint.directory, max_length=MAX_LENGTH)
    batch = tokenize_batch(frozen.tokenizer, TEXTS)
    assert batch["mask"].sum(1).tolist()[1] == 1 and batch["mask"][2].all()  # padding, truncation
    out = jax.jit(frozen.module.apply)({"params": frozen.params}, batch["tokens"], batch["mask"])
    assert out.shape == (len(TEXTS), MAX_LENGTH, 32) and out.dtype == np.float32
    # transformers masks keys only, as T5Encoder does: padded positions attend to the text and
    # get outputs too, and those agree as well, so every position is compared.
    np.testing.assert_allclose(np.asarray(out), reference_output(checkpoint.model, batch),
                               rtol=0, atol=1e-4)


@pytest.mark.parametrize("num_buckets,max_distance", [(32, 128), (8, 12), (16, 20)])
def test_relative_position_buckets_match_transformers(num_buckets, max_distance):
    length = 300
    position = torch.arange(length)
    reference = T5Attention._relative_position_bucket(
        position[None, :] - position[:, None], bidirectional=True, num_buckets=num_buckets,
        max_distance=max_distance)
    buckets = t5.relative_position_buckets(length, num_buckets, max_distance)
    assert buckets.dtype == np.int32
    np.testing.assert_array_equal(buckets, reference.numpy())


def test_config_from_hf_config_defaults_and_errors():
    fields = dict(vocab_size=10, d_model=8, d_kv=2, num_heads=4, d_ff=16, num_layers=1)
    config = t5.T5EncoderConfig.from_hf_config({**fields, "model_type": "t5", "dropout": 0.1})
    assert (config.relative_attention_num_buckets, config.relative_attention_max_distance,
            config.feed_forward_proj, config.layer_norm_epsilon) == (32, 128, "relu", 1e-6)
    with pytest.raises(ValueError, match="^Unsupported T5 feed_forward_proj 'gated-silu'; "
                                         "supported: relu, gated-gelu.$"):
        t5.T5EncoderConfig.from_hf_config({**fields, "feed_forward_proj": "gated-silu"})
    with pytest.raises(ValueError, match="^Unsupported model_type 'umt5'"):
        t5.T5EncoderConfig.from_hf_config({**fields, "model_type": "umt5"})
    with pytest.raises(ValueError, match=r"^The T5 config lacks the fields \['d_ff'\].$"):
        t5.T5EncoderConfig.from_hf_config({k: v for k, v in fields.items() if k != "d_ff"})


def test_params_carry_logical_axes_and_shard_over_fsdp():
    config = t5.T5EncoderConfig(vocab_size=192, d_model=32, d_kv=8, num_heads=4, d_ff=64,
                                num_layers=2, feed_forward_proj="gated-gelu")
    mesh = sharding.create_mesh({"data": 2, "fsdp": 4})
    specs = jax.tree.map(lambda s: s.spec, sharding.param_shardings(
        abstract_t5_params(config), mesh, sharding.DEFAULT_RULES))
    assert specs["shared"]["embedding"]["embedding"] == P(None, "fsdp")
    block = specs["block_1"]
    for name in ("q", "k", "v", "o"):
        assert block["attention"][name]["dense"]["kernel"] == P(None, "fsdp")
    for name in ("wi_0", "wi_1", "wo"):
        assert block["mlp"][name]["dense"]["kernel"] == P(None, "fsdp")
    assert block["attention_norm"]["scale"] == specs["final_norm"]["scale"] == P(None)  # replicated


def test_flan_t5_xl_encoder_is_planned_without_allocating():
    """FLAN-T5-XL's encoder (google/flan-t5-xl config.json values): 1.22B parameters, every
    kernel and the embedding table split over fsdp = 8."""
    config = t5.T5EncoderConfig(vocab_size=32128, d_model=2048, d_kv=64, num_heads=32,
                                d_ff=5120, num_layers=24, feed_forward_proj="gated-gelu")
    abstract = abstract_t5_params(config, "bfloat16")
    shapes = nn.meta.unbox(abstract)
    assert sum(int(np.prod(s.shape)) for s in jax.tree.leaves(shapes)) == 1_223_527_424
    assert all(s.dtype == jax.numpy.bfloat16 for s in jax.tree.leaves(shapes))
    mesh = sharding.create_mesh({"data": 1, "fsdp": 8})
    shardings = sharding.param_shardings(abstract, mesh, sharding.DEFAULT_RULES)
    for path, leaf in jax.tree_util.tree_leaves_with_path(shardings):
        if len(leaf.spec) == 2 and "relative_attention_bias" not in jax.tree_util.keystr(path):
            assert leaf.spec == P(None, "fsdp"), path
