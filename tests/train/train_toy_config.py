"""A config file for the command-line test: the toy method on 8 px digits (registers "toy")."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import train_toy  # noqa: E402


def get_config(preset=None):
    config = train_toy.toy_config()
    if preset == "wide":
        config.model.features = 16
    return config
