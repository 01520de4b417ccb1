"""jaxdiff/text/embed.py: caption shards -> shards with the frozen T5's embeddings and masks, on
a mesh of 8 CPU devices, by two processes under jax.distributed, and resumed after a crash."""

import json
import os
import socket
import subprocess
import sys

import ml_collections
import numpy as np
import pytest
import torch
from array_record.python.array_record_module import ArrayRecordReader, ArrayRecordWriter

from jaxdiff.data.records import decode_record, encode_record
from jaxdiff.data.shard_source import open_shards
from jaxdiff.text.embed import embed_from_config, embed_shards
from jaxdiff.text.t5_checkpoint import load_t5_encoder
from jaxdiff.text.tokenizers import tokenize, tokenize_batch

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MAX_LENGTH = 12
WIDTH = 32  # d_model of conftest.t5_config
LONG = ("Two dogs playing with a ball on the beach at sunset, an oil painting of 3 apples, 12 "
        "pears and a bowl, mountains reflected in a calm lake.")
CAPTIONS = ["A red fox in the snow.", "cat", LONG, "A cat wearing sunglasses, digital art.",
            "Café au lait.", "The quick brown fox jumps over the lazy dog.", "x", LONG + " Again",
            "Mountains (snowy)", "Two dogs", "An oil painting", "early morning light"]
SHARD_SIZES = {"00000": 5, "00001": 1, "00002": 6}  # 12 captions; 8 devices: padded batches

# One feed-forward kind of tests/text/conftest.py's random T5 checkpoints is enough here.
pytestmark = pytest.mark.parametrize("checkpoint", ["gated-gelu"], indirect=True)


def write_caption_shards(directory):
    """Shards as `python -m jaxdiff.data.shards convert` writes them; returns all records."""
    os.makedirs(directory)
    records, captions = [], iter(CAPTIONS)
    for stem, size in SHARD_SIZES.items():
        writer = ArrayRecordWriter(os.path.join(directory, stem + ".array_record"), "group_size:1")
        for key in range(size):
            record = {"image": bytes([key, 1, 2]), "caption": next(captions),
                      "name": f"{stem}.tar/{key:04d}"}
            writer.write(encode_record(record))
            records.append(record)
        writer.close()
        with open(os.path.join(directory, stem + ".json"), "w") as f:
            json.dump({"input": f"{stem}.tar", "examples": size}, f)
    return records


def read_shard(path):
    reader = ArrayRecordReader(path)
    records = [decode_record(data) for data in reader.read(0, reader.num_records())]
    reader.close()
    return records


def read_output(directory):
    """{name: record} of every output shard; fails on a name written twice."""
    records = {}
    for stem in SHARD_SIZES:
        for record in read_shard(os.path.join(directory, stem + ".array_record")):
            assert record["name"] not in records
            records[record["name"]] = record
    return records


def check_text(records, checkpoint):
    """Each record's mask is its caption's tokenizer mask and its embeddings are the reference
    T5's (transformers, float32) on the real tokens, to float16 precision, and zero elsewhere."""
    tokenizer = load_t5_encoder(checkpoint.directory, max_length=MAX_LENGTH).tokenizer
    batch = tokenize_batch(tokenizer, [record["caption"] for record in records])
    with torch.no_grad():
        expected = checkpoint.model(input_ids=torch.from_numpy(batch["tokens"]).long(),
                                    attention_mask=torch.from_numpy(batch["mask"]).long())
    expected = np.where(batch["mask"][..., None], expected.last_hidden_state.numpy(), 0)
    for record, embedding, mask in zip(records, expected, batch["mask"]):
        assert record["embeddings"].dtype == np.float16 and record["mask"].dtype == bool
        np.testing.assert_array_equal(record["mask"], mask)
        np.testing.assert_allclose(record["embeddings"], embedding, rtol=2e-3, atol=2e-3)


def test_embedded_records_are_the_inputs_with_t5_embeddings_and_masks(checkpoint, tmp_path):
    inputs = write_caption_shards(str(tmp_path / "captions"))
    output = str(tmp_path / "embedded")
    done = embed_shards(str(tmp_path / "captions"), output, t5_path=checkpoint.directory,
                        dtype="float32", max_length=MAX_LENGTH, batch_size=3)
    assert [os.path.basename(path) for path in done] == [
        f"{stem}.array_record" for stem in SHARD_SIZES]
    assert sorted(os.listdir(output)) == sorted(
        f"{stem}{suffix}" for stem in SHARD_SIZES for suffix in (".array_record", ".json"))
    records = [r for stem in SHARD_SIZES for r in read_shard(f"{output}/{stem}.array_record")]
    assert [{k: r[k] for k in original} for r, original in zip(records, inputs)] == inputs
    assert {r["embeddings"].shape for r in records} == {(MAX_LENGTH, WIDTH)}
    check_text(records, checkpoint)
    tokenizer = load_t5_encoder(checkpoint.directory, max_length=MAX_LENGTH).tokenizer
    truncated = [tokenize(tokenizer, caption).truncated for caption in CAPTIONS]
    assert 0 < sum(truncated[:5]) < 5
    with open(f"{output}/00000.json") as f:
        summary = json.load(f)
    assert summary == {"input": f"{tmp_path}/captions/00000.array_record", "examples": 5,
                       "truncated_captions": sum(truncated[:5])}
    source, spec = open_shards(output)
    assert len(source) == len(CAPTIONS) and spec.has_embeddings


def test_resume_redoes_only_the_missing_shard(checkpoint, tmp_path):
    write_caption_shards(str(tmp_path / "captions"))
    output = str(tmp_path / "embedded")
    config = ml_collections.ConfigDict({
        "data": {"name": f"shards:{tmp_path}/captions"},
        "text": {"t5_path": checkpoint.directory, "t5_dtype": "float32",
                 "max_length": MAX_LENGTH}})
    assert len(embed_from_config(config, output, batch_size=8)) == 3
    first = read_output(output)
    kept = {stem: os.stat(f"{output}/{stem}.array_record").st_mtime_ns for stem in ("00000",
                                                                                  "00002")}
    os.remove(f"{output}/00001.array_record")
    with open(f"{output}/00001.array_record.tmp", "wb") as f:  # a crashed run's partial file
        f.write(b"partial")
    done = embed_from_config(config, output, batch_size=8)
    assert done == [f"{tmp_path}/captions/00001.array_record"]
    assert not os.path.exists(f"{output}/00001.array_record.tmp")
    assert {stem: os.stat(f"{output}/{stem}.array_record").st_mtime_ns for stem in kept} == kept
    second = read_output(output)
    assert second.keys() == first.keys()
    for name, record in first.items():
        np.testing.assert_array_equal(second[name]["embeddings"], record["embeddings"])
        np.testing.assert_array_equal(second[name]["mask"], record["mask"])
    assert embed_from_config(config, output) == []  # complete: the encoder is not even loaded
    config.data.name = "builtin:digits"
    with pytest.raises(ValueError, match="^--mode=embed reads data.name 'shards:DIR'"):
        embed_from_config(config, output)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_embed_every_example_once(checkpoint, tmp_path):
    inputs = write_caption_shards(str(tmp_path / "captions"))
    output, port = str(tmp_path / "embedded"), free_port()
    env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=REPO_ROOT,
               JAX_CPU_COLLECTIVES_IMPLEMENTATION="gloo",
               XLA_FLAGS="--xla_force_host_platform_device_count=2")
    workers = [subprocess.Popen(
        [sys.executable, "-m", "jaxdiff.text.embed", f"--input={tmp_path}/captions",
         f"--output={output}", f"--t5_path={checkpoint.directory}", "--dtype=float32",
         f"--max_length={MAX_LENGTH}", "--batch_size=4", f"--coordinator_address=127.0.0.1:{port}",
         "--num_processes=2", f"--process_id={i}"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True) for i in range(2)]
    logs = []
    for worker in workers:
        _, stderr = worker.communicate(timeout=120)
        assert worker.returncode == 0, stderr[-3000:]
        logs.append(stderr)
    assert "Process 0 of 2: embedded 2 shard(s)" in logs[0]
    assert "['00000.array_record', '00002.array_record']" in logs[0]
    assert "Process 1 of 2: embedded 1 shard(s)" in logs[1]
    records = read_output(output)
    assert sorted(records) == sorted(r["name"] for r in inputs)
    assert [records[r["name"]]["caption"] for r in inputs] == CAPTIONS
    check_text(list(records.values()), checkpoint)
