"""webdataset tar shards -> ArrayRecord shards: two processes, bad examples, resumption, and the
"shards:" source in the pipeline."""

import io
import json
import os
import subprocess
import sys
import tarfile

import numpy as np
import pytest
from array_record.python.array_record_module import ArrayRecordWriter
from PIL import Image

from jaxdiff.data import create_iterator, default_data_config, encode_record
from jaxdiff.data.shard_source import open_shards
from jaxdiff.data.shards import convert, expand_braces, input_shards, process_placement
from jaxdiff.text.tokenizers import WordHashTokenizer, tokenize

TOKENIZER = WordHashTokenizer(vocab_size=1000, max_length=8)
# The bad example of each shard (shard 4 has none): the members it has, and why it is skipped.
BAD = {0: ({"png"}, "missing_caption"), 1: ({"txt", "json"}, "missing_image"),
       2: ({"png", "bad_txt"}, "undecodable_caption"), 3: ({"png", "empty_txt"}, "empty_caption")}


def _png(value):
    buffer = io.BytesIO()
    Image.fromarray(np.full((4, 4, 3), value, np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def _add(archive, name, data):
    info = tarfile.TarInfo(name)
    info.size = len(data)
    archive.addfile(info, io.BytesIO(data))


def make_tars(folder):
    """Five shards of three good examples each (key sKK, image value 10 * s + k, caption "shard
    s image k") plus BAD; returns {name: (image bytes, caption)} of the good examples."""
    good = {}
    for shard in range(5):
        with tarfile.open(folder / f"{shard:05d}.tar", "w") as archive:
            for k in range(3):
                key = f"sub/{shard}{k:02d}" if shard == 4 and k == 0 else f"{shard}{k:02d}"
                image, caption = _png(10 * shard + k), f"shard {shard} image {k}"
                _add(archive, f"{key}.png", image)
                _add(archive, f"{key}.txt", caption.encode() + b"\n")
                _add(archive, f"{key}.json", json.dumps({"key": key}).encode())
                good[f"{shard:05d}.tar/{key}"] = (image, caption)
            members, _ = BAD.get(shard, ((), None))
            contents = {"png": _png(255), "txt": b"caption", "json": b"{}",
                        "bad_txt": b"\xff\xfe", "empty_txt": b" \n"}
            for member in sorted(members):
                _add(archive, f"bad.{member.split('_')[-1]}", contents[member])
    return good


def run_converters(pattern, output):
    """Both processes of two at once, as on two hosts; returns their logs."""
    command = [sys.executable, "-m", "jaxdiff.data.shards", "convert", f"--input={pattern}",
               f"--output={output}", "--process_count=2"]
    processes = [subprocess.Popen(command + [f"--process_index={index}"], text=True,
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
                 for index in range(2)]
    logs = [process.communicate(timeout=120)[0] for process in processes]
    for process, log in zip(processes, logs):
        assert process.returncode == 0, log
    return logs


def converted(output):
    records, spec = open_shards(str(output))
    assert spec.has_captions and not spec.has_embeddings
    found = [records[i] for i in range(len(records))]
    return sorted((r["name"], r["image"], r["caption"]) for r in found)


def test_two_processes_convert_disjoint_shards_and_a_rerun_redoes_only_the_missing_one(tmp_path):
    """The command in two processes at once, then (in this process, to save their start-up)
    the rerun of both after an interruption."""
    good = make_tars(tmp_path)
    output = tmp_path / "out"
    logs = run_converters(str(tmp_path / "{00000..00004}.tar"), str(output))
    assert "Process 0 of 2: converted 3 shard(s)" in logs[0]
    assert "Process 1 of 2: converted 2 shard(s)" in logs[1]
    assert "00001.tar" in logs[1] and "00001.tar" not in logs[0]
    first = converted(output)
    assert first == sorted((name, image, caption) for name, (image, caption) in good.items())
    summaries = [json.loads((output / f"{s:05d}.json").read_text()) for s in range(5)]
    assert [s["examples"] for s in summaries] == [3] * 5
    for shard, summary in enumerate(summaries):
        reason = BAD.get(shard, (None, None))[1]
        assert summary["skipped"] == {r: int(r == reason) for r in summary["skipped"]}
    assert len(summary["skipped"]) == 4

    kept = {n: os.stat(output / n).st_mtime_ns for n in os.listdir(output) if "00003" not in n}
    os.remove(output / "00003.array_record")
    (output / "00003.array_record.tmp").write_bytes(b"left by an interrupted run")
    pattern = str(tmp_path / "0000[0-4].tar")  # the same shards, by a glob this time
    assert convert(pattern, str(output), 0, 2) == []
    assert convert(pattern, str(output), 1, 2) == [str(tmp_path / "00003.tar")]
    assert {n: os.stat(output / n).st_mtime_ns for n in kept} == kept
    assert not (output / "00003.array_record.tmp").exists()
    assert converted(output) == first


def test_converted_shards_feed_the_pipeline_with_tokens(tmp_path):
    good = make_tars(tmp_path)
    assert convert(str(tmp_path / "*.tar"), str(tmp_path / "out")) == [
        str(tmp_path / f"{s:05d}.tar") for s in range(5)]
    config = default_data_config()
    config.update(name=f"shards:{tmp_path / 'out'}", resolution=4, prefetch=0, read_threads=0)
    iterator = create_iterator(config, global_batch_size=15, seed=0, text=TOKENIZER)
    batch = next(iterator)
    iterator.close()
    by_value = {10 * int(name.split("/")[-1][0]) + int(name[-2:]): caption
                for name, (_, caption) in good.items()}
    values = batch["image"][:, 0, 0, 0].tolist()
    assert sorted(values) == sorted(by_value) and (batch["label"] == 0).all()
    for value, tokens in zip(values, batch["tokens"]):
        np.testing.assert_array_equal(tokens, tokenize(TOKENIZER, by_value[value]).tokens)


def test_shards_with_embeddings_give_embedding_batches(tmp_path):
    rng = np.random.default_rng(0)
    expected = {}
    for shard in range(2):
        writer = ArrayRecordWriter(str(tmp_path / f"{shard:05d}.array_record"), "group_size:1")
        for k in range(2):
            value = 10 * shard + k
            embeddings = rng.normal(size=(3, 2)).astype(np.float16)
            writer.write(encode_record({"image": _png(value), "caption": "x", "name": str(value),
                                        "embeddings": embeddings, "mask": np.arange(3) <= k}))
            expected[value] = embeddings
        writer.close()
    config = default_data_config()
    config.update(name=f"shards:{tmp_path}", resolution=4, prefetch=0, read_threads=0)
    iterator = create_iterator(config, global_batch_size=4, seed=0, text="embeddings")
    batch = next(iterator)
    iterator.close()
    assert batch["embeddings"].shape == (4, 3, 2) and batch["embeddings"].dtype == np.float32
    for value, embeddings, mask in zip(batch["image"][:, 0, 0, 0], batch["embeddings"],
                                       batch["mask"]):
        np.testing.assert_array_equal(embeddings, expected[value])
        assert mask.sum() == 1 + value % 10


def test_patterns_and_their_errors(tmp_path):
    assert expand_braces("a{08..10}b{x,y}") == ["a08bx", "a08by", "a09bx", "a09by", "a10bx",
                                                "a10by"]
    assert expand_braces("plain.tar") == ["plain.tar"]
    for name in ("00001.tar", "00000.tar", "notes.txt"):
        (tmp_path / name).write_bytes(b"")
    assert input_shards(str(tmp_path / "*.tar")) == [str(tmp_path / "00000.tar"),
                                                     str(tmp_path / "00001.tar")]
    with pytest.raises(ValueError, match="00002.tar .* does not exist"):
        input_shards(str(tmp_path / "{00000..00002}.tar"))
    with pytest.raises(ValueError, match="No input shard matches"):
        input_shards(str(tmp_path / "*.tgz"))
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "00000.tar").write_bytes(b"")
    with pytest.raises(ValueError, match="would both write 00000.array_record"):
        input_shards(str(tmp_path / "{.,other}/00000.tar"))
    with pytest.raises(ValueError, match="holds no complete"):
        open_shards(str(tmp_path))
    with pytest.raises(ValueError, match="00000.tar is not a readable tar file"):
        convert(str(tmp_path / "00000.tar"), str(tmp_path / "out"))  # an empty file
    assert not os.path.exists(tmp_path / "out" / "00000.array_record")
    assert process_placement(1, 4) == (1, 4)
    with pytest.raises(ValueError, match="must be given together"):
        process_placement(1, None)
    with pytest.raises(ValueError, match="process_index 2 is not in"):
        convert(str(tmp_path / "*.tar"), str(tmp_path / "out"), 2, 2)
