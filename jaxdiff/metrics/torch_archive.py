"""Reads the tensors of a PyTorch zip archive without PyTorch: a `torch.save` state dict (.pth)
or a TorchScript module (.pt), as numpy arrays keyed by their dotted attribute path.

A torch zip archive holds `<root>/data.pkl`, a pickle whose tensors refer by key to raw
little-endian storages `<root>/data/<key>`; TorchScript modules pickle as objects of classes
named `__torch__.*` whose state is a dict of attributes. Only the classes a tensor archive
needs are resolved, so a pickle that asks for anything else is refused, not run.
"""

import collections
import pickle
import zipfile

import numpy as np

STORAGE_DTYPES = {
    "FloatStorage": np.float32, "DoubleStorage": np.float64, "HalfStorage": np.float16,
    "LongStorage": np.int64, "IntStorage": np.int32, "ShortStorage": np.int16,
    "CharStorage": np.int8, "ByteStorage": np.uint8, "BoolStorage": np.bool_,
}


class ScriptObject:
    """A TorchScript module or object: its pickled attributes, kept as a dict."""

    def __init__(self, *args):
        self.attributes = {}

    def __setstate__(self, state):
        self.attributes = dict(state) if isinstance(state, dict) else {"state": state}


class StorageType:
    def __init__(self, name):
        self.dtype = np.dtype(STORAGE_DTYPES[name])


def rebuild_tensor(storage, offset, size, stride, *unused):
    """A numpy view of `storage` with torch's (offset, size, stride) in elements, copied; a
    view reaching outside its storage is refused."""
    extent = offset + sum((n - 1) * abs(s) for n, s in zip(size, stride)) + 1
    if min(size, default=1) > 0 and (offset < 0 or extent > len(storage)):
        raise pickle.UnpicklingError(f"A tensor of shape {tuple(size)} reaches outside its "
                                     f"storage of {len(storage)} elements.")
    itemsize = storage.dtype.itemsize
    view = np.lib.stride_tricks.as_strided(storage[offset:], shape=tuple(size),
                                           strides=tuple(s * itemsize for s in stride))
    return np.array(view)


def rebuild_parameter(data, *unused):
    return data


class TensorUnpickler(pickle.Unpickler):
    """Unpickles data.pkl with storages read from the archive; other globals are refused."""

    ALLOWED = {
        ("collections", "OrderedDict"): collections.OrderedDict,
        ("torch._utils", "_rebuild_tensor_v2"): rebuild_tensor,
        ("torch._utils", "_rebuild_parameter"): rebuild_parameter,
        **{("torch.jit._pickle", f"build_{kind}list"): list
           for kind in ("int", "double", "bool", "tensor")},
        ("torch.jit._pickle", "restore_type_tag"): lambda value, type_tag: value,
    }

    def __init__(self, file, archive: zipfile.ZipFile, root: str):
        super().__init__(file)
        self.archive, self.root, self.storages = archive, root, {}

    def find_class(self, module, name):
        if (module, name) in self.ALLOWED:
            return self.ALLOWED[(module, name)]
        if module == "torch" and name in STORAGE_DTYPES:
            return StorageType(name)
        if module.startswith("__torch__"):
            return type(name, (ScriptObject,), {})
        raise pickle.UnpicklingError(f"{module}.{name} is not part of a tensor archive.")

    def persistent_load(self, pid):
        kind, storage_type, key = pid[0], pid[1], pid[2]
        if kind != "storage" or not isinstance(storage_type, StorageType):
            raise pickle.UnpicklingError(f"Unknown storage reference {pid[:2]}.")
        if key not in self.storages:
            raw = self.archive.read(f"{self.root}/data/{key}")
            self.storages[key] = np.frombuffer(raw, dtype=storage_type.dtype.newbyteorder("<"))
        return self.storages[key]


def read_tensors(path) -> dict:
    """{dotted name: np.ndarray} of every tensor in the archive at `path` (a file name or a
    binary file object; a state dict's keys, or a TorchScript module's attribute paths such as
    'net.layers.conv.weight')."""
    with zipfile.ZipFile(path) as archive:
        pickles = [name for name in archive.namelist() if name.endswith("/data.pkl")]
        if len(pickles) != 1:
            raise ValueError(f"{path} is not a PyTorch zip archive (no single data.pkl).")
        root = pickles[0].rsplit("/", 1)[0]
        with archive.open(pickles[0]) as file:
            tree = TensorUnpickler(file, archive, root).load()
    return dict(flatten(tree))


def flatten(tree, prefix=""):
    """(dotted name, array) of every array in a tree of dicts and ScriptObjects."""
    if isinstance(tree, np.ndarray):
        yield prefix, tree
    elif isinstance(tree, ScriptObject):
        yield from flatten(tree.attributes, prefix)
    elif isinstance(tree, dict):
        for key, value in tree.items():
            yield from flatten(value, f"{prefix}.{key}" if prefix else str(key))
