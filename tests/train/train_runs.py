"""Short toy training runs on 2 of the 8 host devices (to keep compilation short), shared by
test_checkpoint.py, test_step.py, test_loop.py and the two_step_run fixture of conftest.py."""

import jax

import train_toy as toy
from jaxdiff import methods
from jaxdiff.train import loop

DEVICES = jax.devices()[:2]


def train(tmp_path, name, config, **iterator_kwargs):
    return loop.train(config, str(tmp_path / name), methods.build(config),
                      toy.toy_iterator(config.batch_size, **iterator_kwargs), devices=DEVICES)
