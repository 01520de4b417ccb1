"""The method registry (jaxdiff/methods/__init__.py): every method is registered under its name,
builds by name from a config, and a bad name or image side is one sentence."""

import pytest

import jaxdiff.methods as methods
from methods_testing import make_config

NAMES_AND_SIDES = (("ddpm", 8), ("simple_diffusion", 16), ("mdm", 8), ("attenuation", 8),
                   ("cold", 8))


def test_every_method_builds_by_name_and_reads_nothing():
    for name, resolution in NAMES_AND_SIDES:
        method = methods.build(make_config(name, resolution, {"preset": "tiny"}))
        assert method.name == name
        assert set(methods.default_settings(name)) == set(
            field for field in methods.settings_type(name).defaults())
    assert {name for name, _ in NAMES_AND_SIDES} <= set(methods.registered())


def test_unknown_methods_and_bad_sides_are_one_sentence():
    with pytest.raises(ValueError, match="Unknown method 'nope'; registered methods"):
        methods.build(make_config("nope", 8, {}))
    with pytest.raises(ValueError, match="data.resolution must be a positive integer, got 0"):
        methods.build(make_config("ddpm", 0, {"preset": "tiny"}))
