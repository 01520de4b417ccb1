"""Loading a frozen T5 / FLAN-T5 encoder from a Hugging Face checkpoint directory.

A checkpoint directory holds `config.json`, the weights as `model.safetensors` or as shards
listed by `model.safetensors.index.json` ({"weight_map": {tensor name: shard file}}), and the
tokenizer's `spiece.model` (optionally `tokenizer_config.json`, whose `extra_ids` is read).
Only the encoder's tensors are read (a full encoder-decoder checkpoint's decoder and LM head are
ignored), one at a time through safetensors' memory map, and mapped to the Flax tree of
jaxdiff.text.t5 (its module docstring has the layout):

    shared.weight (or encoder.embed_tokens.weight)                  -> shared
    encoder.block.0.layer.0.SelfAttention.relative_attention_bias   -> relative_attention_bias
    encoder.block.{i}.layer.0.layer_norm                            -> block_{i}/attention_norm
    encoder.block.{i}.layer.0.SelfAttention.{q,k,v,o}               -> block_{i}/attention/...
    encoder.block.{i}.layer.1.layer_norm                            -> block_{i}/mlp_norm
    encoder.block.{i}.layer.1.DenseReluDense.{wi,wi_0,wi_1,wo}      -> block_{i}/mlp/...
    encoder.final_layer_norm                                        -> final_norm

torch Linear weights are (out, in) and are transposed into Flax (in, out) kernels. Every
tensor's shape is checked against `abstract_t5_params` (nothing is allocated for that).
"""

import contextlib
import json
import os
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util
from safetensors import safe_open

from jaxdiff.text.t5 import T5Encoder, T5EncoderConfig
from jaxdiff.text.t5_tokenizer import T5Tokenizer

DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}
WEIGHTS = "model.safetensors"
WEIGHTS_INDEX = "model.safetensors.index.json"
DOWNLOAD_PATTERNS = ["config.json", "*.safetensors", WEIGHTS_INDEX, "spiece.model",
                     "tokenizer_config.json"]


class FrozenT5(NamedTuple):
    """A loaded encoder: `module.apply({"params": params}, tokens, mask)` embeds a batch made by
    `jaxdiff.text.tokenizers.tokenize_batch(tokenizer, texts)`. params are host numpy arrays in
    the param dtype; place them with `jax.device_put(params, shardings)`, shardings from
    `jaxdiff.train.sharding.param_shardings(abstract_t5_params(config, dtype), mesh, rules)`."""

    module: T5Encoder
    params: dict
    tokenizer: T5Tokenizer
    config: T5EncoderConfig


def parse_dtype(dtype: str):
    """The jnp dtype named "float32" or "bfloat16"."""
    if dtype not in DTYPES:
        raise ValueError(f"The T5 encoder dtype must be one of {sorted(DTYPES)}, got {dtype!r}.")
    return DTYPES[dtype]


def abstract_t5_params(config: T5EncoderConfig, dtype: str = "float32") -> Any:
    """The encoder's params as `nn.LogicallyPartitioned` jax.ShapeDtypeStruct leaves, through
    jax.eval_shape (nothing is allocated): `nn.meta.unbox` gives the shapes,
    `jaxdiff.train.sharding.param_shardings` the shardings."""
    dtype = parse_dtype(dtype)
    module = T5Encoder(config, dtype=dtype, param_dtype=dtype)
    tokens = jax.ShapeDtypeStruct((1, 1), jnp.int32)
    mask = jax.ShapeDtypeStruct((1, 1), jnp.bool_)
    return jax.eval_shape(module.init, jax.random.key(0), tokens, mask)["params"]


def checkpoint_names(config: T5EncoderConfig) -> dict:
    """{Flax param path: (Hugging Face tensor name, transpose)} of every encoder parameter."""
    ffn = ("wi_0", "wi_1", "wo") if config.feed_forward_proj == "gated-gelu" else ("wi", "wo")
    names = {
        ("shared", "embedding", "embedding"): ("shared.weight", False),
        ("relative_attention_bias", "embedding", "embedding"): (
            "encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight", False),
        ("final_norm", "scale"): ("encoder.final_layer_norm.weight", False),
    }
    for i in range(config.num_layers):
        hf, block = f"encoder.block.{i}.layer", f"block_{i}"
        names[(block, "attention_norm", "scale")] = (f"{hf}.0.layer_norm.weight", False)
        names[(block, "mlp_norm", "scale")] = (f"{hf}.1.layer_norm.weight", False)
        for name in ("q", "k", "v", "o"):
            names[(block, "attention", name, "dense", "kernel")] = (
                f"{hf}.0.SelfAttention.{name}.weight", True)
        for name in ffn:
            names[(block, "mlp", name, "dense", "kernel")] = (
                f"{hf}.1.DenseReluDense.{name}.weight", True)
    return names


class SafetensorsReader:
    """Tensors by name from `model.safetensors` or the shards of its index, each file opened once
    (as a context manager) and read through its memory map."""

    def __init__(self, directory: str):
        index_path = os.path.join(directory, WEIGHTS_INDEX)
        single_path = os.path.join(directory, WEIGHTS)
        self._stack = contextlib.ExitStack()
        self._open = {}
        if os.path.isfile(index_path):
            with open(index_path) as f:
                weight_map = json.load(f)["weight_map"]
            self.files = {name: os.path.join(directory, shard)
                          for name, shard in weight_map.items()}
            self.source = index_path
        elif os.path.isfile(single_path):
            self.files = {name: single_path for name in self._handle_of(single_path).keys()}
            self.source = single_path
        else:
            raise ValueError(f"The T5 checkpoint directory {directory} has neither {WEIGHTS} nor "
                             f"{WEIGHTS_INDEX}.")

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._stack.close()

    def has(self, name: str) -> bool:
        return name in self.files

    def _handle_of(self, path: str):
        if path not in self._open:
            self._open[path] = self._stack.enter_context(safe_open(path, framework="np"))
        return self._open[path]

    def _handle(self, name: str):
        return self._handle_of(self.files[name])

    def shape(self, name: str) -> tuple:
        return tuple(self._handle(name).get_slice(name).get_shape())

    def get(self, name: str) -> np.ndarray:
        return self._handle(name).get_tensor(name)


def read_params(reader: SafetensorsReader, config: T5EncoderConfig, dtype: str) -> dict:
    """The encoder's params (the tree of module.init) from the checkpoint's tensors, in `dtype`;
    ValueError in one sentence for a missing tensor or a shape that does not fit the config."""
    np_dtype = np.dtype(parse_dtype(dtype))
    expected = traverse_util.flatten_dict(nn.meta.unbox(abstract_t5_params(config, dtype)))
    flat = {}
    for path, (name, transpose) in checkpoint_names(config).items():
        if name == "shared.weight" and not reader.has(name):
            name = "encoder.embed_tokens.weight"
        shape = expected[path].shape
        hf_shape = shape[::-1] if transpose else shape
        if not reader.has(name):
            raise ValueError(f"The T5 checkpoint {reader.source} has no tensor {name} (expected "
                             f"shape {hf_shape}).")
        found = reader.shape(name)
        if found != hf_shape:
            raise ValueError(f"Tensor {name} in {reader.files[name]} has shape {found}, but the "
                             f"config expects {hf_shape}.")
        tensor = reader.get(name)
        flat[path] = np.ascontiguousarray(tensor.T if transpose else tensor, dtype=np_dtype)
    return traverse_util.unflatten_dict(flat)


def checkpoint_directory(path_or_name: str) -> str:
    """A local directory as it is; otherwise a Hugging Face Hub name, downloaded (the encoder's
    files only) with huggingface_hub's snapshot_download when that package is installed."""
    if os.path.isdir(path_or_name):
        return path_or_name
    if os.path.isabs(path_or_name) or path_or_name.startswith("."):
        raise ValueError(f"The T5 checkpoint directory {path_or_name} does not exist.")
    try:
        from huggingface_hub import snapshot_download
    except ImportError:
        files = ", ".join(DOWNLOAD_PATTERNS)
        raise ValueError(f"{path_or_name} is not a local directory and huggingface_hub is not "
                         f"installed: download the checkpoint directory ({files}) and pass its "
                         "path.") from None
    return snapshot_download(repo_id=path_or_name, allow_patterns=DOWNLOAD_PATTERNS)


def _read_json(path: str, required: bool) -> dict:
    if not os.path.isfile(path):
        if required:
            raise ValueError(f"The T5 checkpoint directory has no {path}.")
        return {}
    with open(path) as f:
        return json.load(f)


def load_t5_encoder(path_or_name: str, *, dtype: str = "float32",
                    max_length: int = 128) -> FrozenT5:
    """The frozen encoder of a Hugging Face T5 / FLAN-T5 checkpoint (module docstring), its
    params in `dtype` ("float32" or "bfloat16", also the activation dtype) and its tokenizer
    with `max_length` tokens."""
    jnp_dtype = parse_dtype(dtype)
    directory = checkpoint_directory(path_or_name)
    config = T5EncoderConfig.from_hf_config(
        _read_json(os.path.join(directory, "config.json"), required=True))
    tokenizer_config = _read_json(os.path.join(directory, "tokenizer_config.json"), required=False)
    spiece = os.path.join(directory, "spiece.model")
    if not os.path.isfile(spiece):
        raise ValueError(f"The T5 checkpoint directory {directory} has no spiece.model.")
    tokenizer = T5Tokenizer(spiece, max_length, extra_ids=tokenizer_config.get("extra_ids", 100))
    if tokenizer.vocab_size > config.vocab_size:
        raise ValueError(f"The tokenizer of {directory} has {tokenizer.vocab_size} ids, more than "
                         f"the {config.vocab_size} rows of the encoder's embedding table.")
    with SafetensorsReader(directory) as reader:
        params = read_params(reader, config, dtype)
    module = T5Encoder(config, dtype=jnp_dtype, param_dtype=jnp_dtype)
    return FrozenT5(module, params, tokenizer, config)
