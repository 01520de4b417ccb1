"""The record codec of jaxdiff's ArrayRecord shards: one self-describing bytes string per example.

    record  = b"JXR1" | n (uint32, little-endian) | header (n bytes of UTF-8 JSON) | payload
    header  = {field name: entry, ...}, the binary entries in payload order
    entry   = {"bytes": size}                           raw bytes (an encoded image file)
            | {"array": size, "dtype": "<f2", "shape": [L, D]}
                                                        a C-order numpy array (numeric or bool;
                                                        dtype as numpy's dtype.str spells it)
            | {"value": v}                              a JSON value: str, number, bool, null or a
                                                        list of those (decoded as a tuple)
    payload = the "bytes" and "array" fields' bytes, concatenated

The fields jaxdiff writes (`jaxdiff.data.shards`, read by the "shards:" source):

    "image"       bytes         the encoded image file, untouched
    "caption"     str           the caption, stripped
    "name"        str           "<input shard file>/<key>", for error reports
    "embeddings"  array         (with --mode=embed) the text encoder's output, float16 or float32
                                (L, D), or (K, L, D) for K captions
    "mask"        array         (with "embeddings") bool (L,) or (K, L): True on real tokens

A reader takes the fields it knows and ignores the others, so records may gain fields without a
new format; the magic changes only if this layout does.
"""

import json
import struct

import numpy as np

MAGIC = b"JXR1"
_LENGTH = struct.Struct("<I")


def _entry(value):
    """(header entry, payload bytes or None) of one field value."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        value = bytes(value)
        return {"bytes": len(value)}, value
    if isinstance(value, np.ndarray):
        if value.dtype.kind not in "biuf":
            raise TypeError(f"an array field must be numeric or bool, got dtype {value.dtype}")
        data = np.ascontiguousarray(value).tobytes()
        return {"array": len(data), "dtype": value.dtype.str, "shape": list(value.shape)}, data
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, tuple):
        value = list(value)
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError) as error:
        raise TypeError(f"cannot encode a field value of type {type(value).__name__}") from error
    return {"value": value}, None


def encode_record(record: dict) -> bytes:
    """dict of field name -> bytes | numpy array | JSON value  ->  one record (module docstring)."""
    header, payload = {}, []
    for name, value in record.items():
        try:
            header[name], data = _entry(value)
        except TypeError as error:
            raise TypeError(f"record field {name!r}: {error}") from error
        if data is not None:
            payload.append(data)
    encoded_header = json.dumps(header, separators=(",", ":")).encode()
    return b"".join([MAGIC, _LENGTH.pack(len(encoded_header)), encoded_header, *payload])


def decode_record(data: bytes) -> dict:
    """The dict `encode_record` was given (arrays as read-only views of `data`, lists as tuples)."""
    if data[:4] != MAGIC:
        raise ValueError(f"not a jaxdiff record: it starts with {bytes(data[:4])!r}, not {MAGIC!r}")
    (length,) = _LENGTH.unpack_from(data, 4)
    offset = 4 + _LENGTH.size
    header = json.loads(bytes(data[offset:offset + length]))
    offset += length
    record = {}
    for name, entry in header.items():
        if "value" in entry:
            value = entry["value"]
            record[name] = tuple(value) if isinstance(value, list) else value
            continue
        size = entry.get("bytes", entry.get("array"))
        chunk = data[offset:offset + size]
        offset += size
        if "bytes" in entry:
            record[name] = bytes(chunk)
        else:
            array = np.frombuffer(chunk, dtype=np.dtype(entry["dtype"]))
            record[name] = array.reshape(entry["shape"])
    return record
