"""The embed step of text-to-image data preparation: a frozen T5 encoder run once over caption
shards, so that training reads its embeddings instead of running it.

    python -m jaxdiff.text.embed --input=/data/cc12m_ar --output=/data/cc12m_t5 \\
        --t5_path=/ckpt/flan-t5-xl [--dtype=bfloat16 --max_length=128 --batch_size=64]

or `python -m jaxdiff.main --mode=embed` (`embed_from_config`: data.name "shards:DIR" is the
input, config.text gives t5_path, t5_dtype and max_length); then train on the output with
data.name = "shards:OUTPUT" and text.encoder = "embeddings".

Input: the complete shards of a directory `python -m jaxdiff.data.shards convert` wrote
(DIR/*.array_record, sorted; `jaxdiff.data.shard_source`). Output, per input shard STEM:

    STEM.array_record   the input's records in their order, each with two more fields
                        (`jaxdiff.data.records`, the same codec; group_size 1):
                          "embeddings"  float16 (or --embeddings_dtype float32) (L, D): the
                                        encoder's last hidden state of the caption's tokens,
                                        zero where the mask is False (so zstd compresses it)
                          "mask"        bool (L,): True on the caption's tokens and EOS
    STEM.json           {"input": path, "examples": n, "truncated_captions": n (captions of
                        more than L - 1 tokens, cut to L - 1 and EOS: tokenizers.tokenize)}

Resume: as in jaxdiff.data.shards, both files are written under a temporary name (+ ".tmp") and
renamed when complete, the summary first, so a shard is done exactly when its .array_record
exists; a rerun skips those and redoes the others, replacing leftover temporary files.

Processes: process i of N embeds the input shards k with k % N == i (the rule of
jaxdiff.data.shards; i and N are jax.process_index() / process_count() under jax.distributed,
else 0 and 1, unless given). Each process loads the encoder on its own local devices only,
parameters sharded over a ("data", "fsdp") mesh of all of them by jaxdiff.train.sharding's rules
(FLAN-T5-XL's 1.2B parameters split over the host's chips), batches split over the same devices:
the processes never communicate. The apply is jitted once for a fixed batch (batch_size rounded
up to a multiple of the local device count; a shard's last batch is padded with empty captions
whose outputs are dropped), and the next batch is dispatched before the previous is written.
"""

import argparse
import logging
import os
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from array_record.python.array_record_module import ArrayRecordReader

from jaxdiff.data.records import decode_record, encode_record
from jaxdiff.data.shard_source import SHARD_SUFFIX, complete_shards
from jaxdiff.data.shards import process_placement, shard_writer
from jaxdiff.data.sources import parse_name
from jaxdiff.text.t5_checkpoint import abstract_t5_params, load_t5_encoder
from jaxdiff.text.tokenizers import Tokenizer, tokenize
from jaxdiff.train.sharding import DEFAULT_RULES, batch_sharding, create_mesh, param_shardings

logger = logging.getLogger(__name__)

EMBEDDINGS_DTYPES = ("float16", "float32")


class PlacedEncoder(NamedTuple):
    """A T5 encoder on a mesh: `apply(params, tokens, mask)` -> embeddings, jitted for
    (batch_size, L) batches."""

    apply: Callable
    params: dict
    tokenizer: Tokenizer
    batch_size: int
    batch_sharding: jax.sharding.NamedSharding


def place_encoder(t5_path, dtype, max_length, batch_size, embeddings_dtype, mesh):
    """Loads the T5 of t5_path and puts its params on the mesh, sharded by DEFAULT_RULES."""
    frozen = load_t5_encoder(t5_path, dtype=dtype, max_length=max_length)
    shardings = param_shardings(abstract_t5_params(frozen.config, dtype), mesh, DEFAULT_RULES)
    batch = batch_sharding(mesh)

    def apply(params, tokens, mask):
        embeddings = frozen.module.apply({"params": params}, tokens, mask)
        return jnp.where(mask[..., None], embeddings, 0).astype(embeddings_dtype)

    jitted = jax.jit(apply, in_shardings=(shardings, batch, batch), out_shardings=batch)
    rounded = -(-batch_size // mesh.size) * mesh.size
    return PlacedEncoder(jitted, jax.device_put(frozen.params, shardings), frozen.tokenizer,
                         rounded, batch)


def dispatch_batch(encoder, captions):
    """(embeddings being computed (batch_size, L, D), masks (N, L), truncated count) of N <=
    batch_size captions, padded with empty captions."""
    padded = list(captions) + [""] * (encoder.batch_size - len(captions))
    tokenized = [tokenize(encoder.tokenizer, caption) for caption in padded]
    tokens = np.stack([t.tokens for t in tokenized])
    masks = np.stack([t.mask for t in tokenized])
    truncated = sum(t.truncated for t in tokenized[:len(captions)])
    tokens, device_masks = jax.device_put((tokens, masks), encoder.batch_sharding)
    return encoder.apply(encoder.params, tokens, device_masks), masks[:len(captions)], truncated


def embedded_batches(encoder, reader):
    """Yields (records, embeddings, masks, truncated count) per batch of a shard's records, the
    next batch dispatched to the devices before the previous one is fetched."""
    pending = None
    count = reader.num_records()
    for start in range(0, count, encoder.batch_size):
        records = [decode_record(data) for data in
                   reader.read(start, min(start + encoder.batch_size, count))]
        dispatched = (records, *dispatch_batch(encoder, [r["caption"] for r in records]))
        if pending:
            yield fetched(*pending)
        pending = dispatched
    if pending:
        yield fetched(*pending)


def fetched(records, embeddings, masks, truncated):
    return records, np.asarray(embeddings)[:len(records)], masks, truncated


def embed_shard(encoder, input_path, output_dir):
    """Writes STEM.array_record + STEM.json of one input shard (module docstring); returns the
    summary."""
    stem = os.path.basename(input_path)[:-len(SHARD_SUFFIX)]
    examples = truncated_captions = 0
    reader = ArrayRecordReader(input_path)
    try:
        with shard_writer(output_dir, stem) as (writer, summary):
            for records, embeddings, masks, truncated in embedded_batches(encoder, reader):
                for record, embedding, mask in zip(records, embeddings, masks):
                    writer.write(encode_record({**record, "embeddings": embedding,
                                                "mask": mask}))
                examples += len(records)
                truncated_captions += truncated
            summary.update(input=input_path, examples=examples,
                           truncated_captions=truncated_captions)
    finally:
        reader.close()
    return summary


def shard_share(input_dir, output_dir, process_index, process_count):
    """This process's input shards (module docstring), checked."""
    if os.path.abspath(input_dir) == os.path.abspath(output_dir):
        raise ValueError(f"The embed output {output_dir} must be another directory than its "
                         "input.")
    paths = complete_shards(os.path.abspath(os.path.expanduser(input_dir)))
    if not paths:
        raise ValueError(f"{input_dir} holds no complete *{SHARD_SUFFIX} shard; convert tar "
                         "shards into it with `python -m jaxdiff.data.shards convert`.")
    if not 0 <= process_index < process_count:
        raise ValueError(f"process_index {process_index} is not in [0, {process_count}).")
    return paths[process_index::process_count]


def embed_shards(input_dir, output_dir, *, t5_path, dtype="bfloat16", max_length=128,
                 batch_size=64, embeddings_dtype="float16", process_index=None,
                 process_count=None, mesh=None):
    """Embeds the captions of this process's share of input_dir's shards that output_dir lacks
    (module docstring); returns the input paths it embedded. The encoder (dtype "bfloat16" or
    "float32", L = max_length) is loaded only when there is one to do; mesh defaults to all
    local devices on the fsdp axis."""
    if embeddings_dtype not in EMBEDDINGS_DTYPES:
        raise ValueError(f"The embeddings dtype must be one of {EMBEDDINGS_DTYPES}, got "
                         f"{embeddings_dtype!r}.")
    if batch_size < 1:
        raise ValueError(f"The embed batch size must be at least 1, got {batch_size}.")
    index, count = process_placement(process_index, process_count)
    todo = [path for path in shard_share(input_dir, output_dir, index, count)
            if not os.path.exists(os.path.join(output_dir, os.path.basename(path)))]
    if not todo:
        return []
    os.makedirs(output_dir, exist_ok=True)
    if mesh is None:
        mesh = create_mesh({"data": 1, "fsdp": -1}, jax.local_devices())
    encoder = place_encoder(t5_path, dtype, max_length, batch_size, embeddings_dtype, mesh)
    for path in todo:
        summary = embed_shard(encoder, path, output_dir)
        logger.info("%s: %d examples embedded, %d captions truncated.", path,
                    summary["examples"], summary["truncated_captions"])
    return todo


def embed_from_config(config, output_dir, *, batch_size=64, embeddings_dtype="float16"):
    """embed_shards of a run config: the shards of data.name "shards:DIR" into output_dir with
    the T5 of config.text (t5_path, t5_dtype, max_length), this process's share under
    jax.distributed."""
    kind, input_dir = parse_name(config.data.name)
    if kind != "shards":
        raise ValueError(f"--mode=embed reads data.name 'shards:DIR' (caption shards from "
                         f"`python -m jaxdiff.data.shards convert`), got {config.data.name!r}.")
    if not config.text.t5_path:
        raise ValueError("--mode=embed needs config.text.t5_path, the T5 checkpoint directory.")
    return embed_shards(input_dir, output_dir, t5_path=config.text.t5_path,
                        dtype=config.text.t5_dtype, max_length=config.text.max_length,
                        batch_size=batch_size, embeddings_dtype=embeddings_dtype)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m jaxdiff.text.embed",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--input", required=True, help="directory of caption shards")
    parser.add_argument("--output", required=True, help="directory of the embedded shards")
    parser.add_argument("--t5_path", required=True, help="Hugging Face T5 checkpoint directory")
    parser.add_argument("--dtype", default="bfloat16", help="encoder dtype: bfloat16 | float32")
    parser.add_argument("--max_length", type=int, default=128, help="L, tokens per caption")
    parser.add_argument("--batch_size", type=int, default=64, help="captions per step")
    parser.add_argument("--embeddings_dtype", default="float16", choices=EMBEDDINGS_DTYPES)
    parser.add_argument("--process_index", type=int, default=None)
    parser.add_argument("--process_count", type=int, default=None)
    parser.add_argument("--coordinator_address", default=None, help="host:port of process 0")
    parser.add_argument("--num_processes", type=int, default=None)
    parser.add_argument("--process_id", type=int, default=None)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", force=True)
    from jaxdiff.main import initialize_distributed

    initialize_distributed(args.coordinator_address, args.num_processes, args.process_id)
    index, count = process_placement(args.process_index, args.process_count)
    try:
        embedded = embed_shards(args.input, args.output, t5_path=args.t5_path, dtype=args.dtype,
                                max_length=args.max_length, batch_size=args.batch_size,
                                embeddings_dtype=args.embeddings_dtype, process_index=index,
                                process_count=count)
    except ValueError as error:
        raise SystemExit(f"jaxdiff.text.embed: {error}") from None
    names = [os.path.basename(path) for path in embedded]
    logger.info("Process %d of %d: embedded %d shard(s) into %s: %s", index, count,
                len(names), args.output, names)


if __name__ == "__main__":
    main()
