"""The method registry (jaxdiff/methods/__init__.py): every method is registered under its name
with its settings type, builds by name from a config without reading data or compiling, and a
bad name or image side is one sentence."""

import dataclasses

import jax
import pytest
from methods_testing import make_config

import jaxdiff.methods as methods
from jaxdiff import data

NAMES_AND_SIDES = (("ddpm", 8), ("simple_diffusion", 16), ("mdm", 8), ("attenuation", 8),
                   ("cold", 8))


def test_every_method_builds_by_name_reading_and_compiling_nothing(monkeypatch):
    def forbidden(*args, **kwargs):
        raise AssertionError("building a method must not read data or compile")

    for name, _ in NAMES_AND_SIDES:  # importing a module may jit-decorate; building may not
        methods.settings_type(name)
    for name in ("create_iterator", "read_reference_images", "validate_data_config"):
        monkeypatch.setattr(data, name, forbidden)
    monkeypatch.setattr(jax, "jit", forbidden)
    for name, resolution in NAMES_AND_SIDES:
        method = methods.build(make_config(name, resolution, {"preset": "tiny"}))
        assert method.name == name
    assert {name for name, _ in NAMES_AND_SIDES} <= set(methods.registered())


def test_the_config_defaults_are_the_settings_fields():
    for name, _ in NAMES_AND_SIDES:
        fields = dataclasses.fields(methods.settings_type(name))
        assert methods.default_settings(name) == {
            field.name: (field.default if field.default is not dataclasses.MISSING
                         else field.default_factory()) for field in fields}


def test_unknown_methods_and_bad_sides_are_one_sentence():
    with pytest.raises(ValueError, match="Unknown method 'nope'; registered methods"):
        methods.build(make_config("nope", 8, {}))
    with pytest.raises(ValueError, match="data.resolution must be a positive integer, got 0"):
        methods.build(make_config("ddpm", 0, {"preset": "tiny"}))
