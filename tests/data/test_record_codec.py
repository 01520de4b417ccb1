"""The record codec of the ArrayRecord shards: layout by hand, round trips, refusals."""

import json
import struct

import numpy as np
import pytest

from jaxdiff.data import decode_record, encode_record


def test_layout_by_hand():
    encoded = encode_record({"image": b"\x89PNG", "caption": "a red 7", "mask": np.array([1, 0],
                                                                                         bool)})
    assert encoded[:4] == b"JXR1"
    (length,) = struct.unpack("<I", encoded[4:8])
    header = json.loads(encoded[8:8 + length])
    assert header == {"image": {"bytes": 4}, "caption": {"value": "a red 7"},
                      "mask": {"array": 2, "dtype": "|b1", "shape": [2]}}
    assert encoded[8 + length:] == b"\x89PNG\x01\x00"


def test_round_trip_of_every_kind_of_field():
    rng = np.random.default_rng(0)
    record = {
        "image": bytes(range(256)),
        "caption": "the digit 7 in red",
        "captions": ("a red seven", "red 7"),
        "name": "00000.tar/000000012",
        "count": 3,
        "score": 0.25,
        "embeddings": rng.normal(size=(5, 3)).astype(np.float16),
        "variants": rng.normal(size=(2, 5, 3)).astype(np.float32),
        "mask": np.array([True, True, False, False, False]),
    }
    decoded = decode_record(encode_record(record))
    assert decoded.keys() == record.keys()
    for name, value in record.items():
        if isinstance(value, np.ndarray):
            assert decoded[name].dtype == value.dtype and decoded[name].shape == value.shape
            np.testing.assert_array_equal(decoded[name], value)
        else:
            assert decoded[name] == value and type(decoded[name]) is type(value)


def test_refusals():
    with pytest.raises(TypeError, match="record field 'bad'"):
        encode_record({"bad": object()})
    with pytest.raises(TypeError, match="numeric or bool"):
        encode_record({"bad": np.array(["text"], object)})
    with pytest.raises(ValueError, match="not a jaxdiff record"):
        decode_record(b"PK\x03\x04 a zip file")
