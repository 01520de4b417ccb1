"""Value checks that fail in one sentence naming the field, shared by the method settings
(methods/settings.py) and the train fields (train/state.py).

A check is `check(name, value)`: it returns None or raises ValueError("<name> must be <what is
allowed>, got <value>."), where name is the field as the user writes it (e.g. "method.eta",
"config.optimizer.b1").
"""

import math
from typing import Any, Callable

Check = Callable[[str, Any], None]


def fail(name: str, allowed: str, value) -> None:
    raise ValueError(f"{name} must be {allowed}, got {value!r}.")


def one_of(*choices) -> Check:
    """value is one of choices."""
    def check(name, value):
        if value not in choices:
            fail(name, f"one of {list(choices)}", value)
    return check


def number_in(low=None, high=None, *, integer: bool = False, low_open: bool = False,
              high_open: bool = False, infinite: bool = False) -> Check:
    """value is a finite number (an int where asked; +-inf too where `infinite`) in [low, high],
    the ends open where asked and either end optional."""
    bounds = []
    if low is not None:
        bounds.append(f"{'above' if low_open else 'at least'} {low}")
    if high is not None:
        bounds.append(f"{'below' if high_open else 'at most'} {high}")
    kind = "an integer" if integer else "a number" if infinite else "a finite number"
    allowed = " ".join([kind] +
                       ([" and ".join(bounds)] if bounds else []))

    def check(name, value):
        if (isinstance(value, bool) or not isinstance(value, (int, float))
                or (integer and not isinstance(value, int))
                or not (infinite or math.isfinite(value)) or math.isnan(value)):
            fail(name, allowed, value)
        if low is not None and (value <= low if low_open else value < low):
            fail(name, allowed, value)
        if high is not None and (value >= high if high_open else value > high):
            fail(name, allowed, value)
    return check


def boolean(name, value) -> None:
    """value is True or False."""
    if not isinstance(value, bool):
        fail(name, "True or False", value)
