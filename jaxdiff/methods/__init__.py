"""Registry of diffusion methods: `config.method.name` -> a builder `builder(config) -> Method`.

A per-paper module `jaxdiff/methods/<name>.py` registers its builder with
`register("<name>", builder, defaults)` at import time; `build` imports that module on first use,
so a config naming method "<name>" needs no other wiring. The builder receives the whole resolved
config (model, method, data sections) and returns a `jaxdiff.methods.base.Method`; `defaults`
are its method fields with their default values, which configs copy in so that every field can be
overridden from the command line.
"""

import importlib
import importlib.util
from typing import Callable

from jaxdiff.methods.base import Method

_BUILDERS: dict[str, Callable[..., Method]] = {}
_DEFAULTS: dict[str, dict] = {}


def register(name: str, builder: Callable[..., Method], defaults: dict | None = None) -> None:
    """Makes `builder(config) -> Method` available as config.method.name == name, with the
    method fields `defaults` (field -> default value)."""
    if name in _BUILDERS and _BUILDERS[name] is not builder:
        raise ValueError(f"A different method is already registered under the name {name!r}.")
    _BUILDERS[name] = builder
    _DEFAULTS[name] = dict(defaults or {})


def default_settings(name: str) -> dict:
    """The method fields of method `name` with their default values."""
    check_name(name)
    return dict(_DEFAULTS[name])


def registered() -> tuple[str, ...]:
    return tuple(sorted(_BUILDERS))


def check_name(name: str) -> None:
    """Imports jaxdiff.methods.<name> if it exists; ValueError if no method has that name."""
    if name not in _BUILDERS and name.isidentifier() and importlib.util.find_spec(
            f"{__name__}.{name}") is not None:
        importlib.import_module(f"{__name__}.{name}")
    if name not in _BUILDERS:
        raise ValueError(f"Unknown method {name!r}; registered methods: {list(registered())}.")


def build(config) -> Method:
    """The Method named by config.method.name, built from the config."""
    check_name(config.method.name)
    return _BUILDERS[config.method.name](config)
