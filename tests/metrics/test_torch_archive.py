"""The PyTorch-free reader gives the tensors torch itself saved: state dicts (any dtype, views
and transposes), TorchScript modules, and it refuses a pickle that asks for other code."""

import pickle
import zipfile

import numpy as np
import pytest
import torch

from jaxdiff.metrics import torch_archive


def test_state_dict_tensors_match_what_torch_saved(tmp_path):
    base = torch.arange(24, dtype=torch.float32).reshape(4, 6)
    state = {"weight": base.t(),                        # a transposed view: strides (1, 6)
             "slice": base[1:3, 2:],                     # an offset view
             "half": torch.linspace(-2, 2, 5).half(), "long": torch.arange(3),
             "nested.bias": torch.nn.Parameter(torch.ones(2))}
    path = tmp_path / "state.pth"
    torch.save(state, path)
    tensors = torch_archive.read_tensors(path)
    assert sorted(tensors) == sorted(state)
    for name, value in state.items():
        np.testing.assert_array_equal(tensors[name], value.detach().numpy())
        assert tensors[name].dtype == value.detach().numpy().dtype


def test_torchscript_module_attributes_are_dotted_paths(tmp_path):
    module = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4))
    path = tmp_path / "module.pt"
    torch.jit.script(module).save(str(path))
    tensors = torch_archive.read_tensors(path)
    for name, value in module.state_dict().items():
        np.testing.assert_array_equal(tensors[name], value.numpy())


def test_a_pickle_asking_for_other_code_is_refused(tmp_path):
    class Exploit:
        def __reduce__(self):
            return (print, ("ran",))
    path = tmp_path / "bad.pth"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("bad/data.pkl", pickle.dumps({"x": Exploit()}))
    with pytest.raises(pickle.UnpicklingError, match="builtins.print is not part of a tensor"):
        torch_archive.read_tensors(path)


def test_a_file_without_a_pickle_is_one_sentence(tmp_path):
    path = tmp_path / "empty.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("readme.txt", "nothing")
    with pytest.raises(ValueError, match="is not a PyTorch zip archive"):
        torch_archive.read_tensors(path)


def test_a_view_reaching_outside_its_storage_is_refused():
    storage = np.arange(4, dtype=np.float32)
    np.testing.assert_array_equal(torch_archive.rebuild_tensor(storage, 1, (2,), (2,)), [1, 3])
    with pytest.raises(pickle.UnpicklingError, match=r"shape \(3,\) reaches outside its "
                                                     "storage of 4 elements"):
        torch_archive.rebuild_tensor(storage, 0, (3,), (2,))
