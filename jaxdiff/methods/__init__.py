"""Registry of diffusion methods: `config.method.name` -> (settings type, builder).

A per-paper module `jaxdiff/methods/<name>.py` registers itself with
`register("<name>", Settings, build)` at import time; `build` imports that module on first use,
so a config naming method "<name>" needs no other wiring. `Settings` (methods/settings.py) holds
the method's fields with their defaults, docs and checks; configs copy `default_settings(name)`
in, so every field can be overridden from the command line. `build(BuildInputs) -> Method` gets
the checked settings, the model section and the image side, and reads no file and compiles
nothing.
"""

import importlib
import importlib.util
from typing import Callable, NamedTuple

from jaxdiff.methods.base import BuildInputs, Method
from jaxdiff.methods.settings import plain


class _Entry(NamedTuple):
    settings_type: type
    builder: Callable[[BuildInputs], Method]


_REGISTRY: dict[str, _Entry] = {}


def register(name: str, settings_type: type,
             builder: Callable[[BuildInputs], Method]) -> None:
    """Makes `builder(BuildInputs) -> Method` available as config.method.name == name, with the
    fields of `settings_type`."""
    entry = _Entry(settings_type, builder)
    if name in _REGISTRY and _REGISTRY[name] != entry:
        raise ValueError(f"A different method is already registered under the name {name!r}.")
    _REGISTRY[name] = entry


def registered() -> tuple[str, ...]:
    return tuple(sorted(_REGISTRY))


def settings_type(name: str) -> type:
    """The Settings type of method `name`; imports jaxdiff.methods.<name> if it exists and
    raises ValueError if no method has that name."""
    if name not in _REGISTRY and str(name).isidentifier() and importlib.util.find_spec(
            f"{__name__}.{name}") is not None:
        importlib.import_module(f"{__name__}.{name}")
    if name not in _REGISTRY:
        raise ValueError(f"Unknown method {name!r}; registered methods: {list(registered())}.")
    return _REGISTRY[name].settings_type


def default_settings(name: str) -> dict:
    """The method fields of method `name` with their default values."""
    return settings_type(name).defaults()


def build(config) -> Method:
    """The Method named by config.method.name, built from config.method, config.model,
    config.text (when the config has one) and config.data.resolution; every bad value raises
    ValueError in one sentence."""
    name = config.method.name
    settings = settings_type(name).from_section(config.method)
    resolution = config.data.resolution
    if isinstance(resolution, bool) or not isinstance(resolution, int) or resolution < 1:
        raise ValueError(f"data.resolution must be a positive integer, got {resolution!r}.")
    model = plain(config.get("model")) or {}
    text = plain(config.get("text")) or {}
    return _REGISTRY[name].builder(BuildInputs(settings, dict(model), resolution, dict(text)))
