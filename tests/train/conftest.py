"""Fixtures shared by the train-system tests of this directory."""

import pytest

import train_toy as toy
from train_runs import train


# One run for the tests of test_checkpoint.py and test_step.py that read it, as when they were one
# module. Without __init__.py files this directory is no package, so the scope spanning both
# files is the session (the run is made once, when a test first asks for it).
@pytest.fixture(scope="session")
def two_step_run(tmp_path_factory):
    """A finished 2-step run: (workdir, result)."""
    tmp_path = tmp_path_factory.mktemp("two_step")
    return str(tmp_path / "run"), train(tmp_path, "run", toy.toy_config(num_steps=2))
