"""The "shards:/DIR" source: jaxdiff's ArrayRecord shards, as `jaxdiff.data.shards` writes them.

Every complete shard of DIR (a DIR/*.array_record file; temporary files of a conversion still
running are not) is read, in sorted file-name order, through grain's ArrayRecordDataSource;
each record is decoded by `jaxdiff.data.records`. Records:

    {"image": encoded bytes, "label": 0, "name": "STEM.tar/KEY", "caption": str
     [, "embeddings": float16/float32 (L, D) or (K, L, D), "mask": bool (L,) or (K, L)]}

The dataset has captions; it has embeddings when its first record carries them.
"""

import glob
import os

import grain

from jaxdiff.data.records import decode_record
from jaxdiff.data.specs import DatasetSpec

SHARD_SUFFIX = ".array_record"


def complete_shards(directory):
    """The complete shards of a directory, sorted."""
    return sorted(glob.glob(os.path.join(glob.escape(directory), "*" + SHARD_SUFFIX)))


class ShardRecords:
    """Random access to the decoded records of a list of ArrayRecord shards (a grain source)."""

    def __init__(self, paths):
        self._source = grain.sources.ArrayRecordDataSource(paths)

    def __len__(self):
        return len(self._source)

    def __getitem__(self, index):
        record = decode_record(self._source[index % len(self._source)])
        record["label"] = 0
        return record


def open_shards(directory):
    """Returns (records, DatasetSpec) of a directory of shards; fails in one sentence when it
    holds no complete shard or no record."""
    paths = complete_shards(os.path.abspath(os.path.expanduser(directory)))
    if not paths:
        raise ValueError(f"{directory} holds no complete *{SHARD_SUFFIX} shard; convert tar "
                         "shards into it with `python -m jaxdiff.data.shards convert`.")
    records = ShardRecords(paths)
    if not len(records):
        raise ValueError(f"The {len(paths)} shard(s) of {directory} hold no record.")
    spec = DatasetSpec(
        name=f"shards:{directory}",
        num_examples=len(records),
        class_names=(),
        min_side=None,
        has_captions=True,
        has_embeddings="embeddings" in records[0],
        default_crop="center",
        default_flip=True,
        default_allow_upscale=False,
    )
    return records, spec
