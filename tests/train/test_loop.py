"""jaxdiff/train/loop.py: config validation before anything compiles, a non-finite streak
stopping the run at the next log step, and the training images fed to a sampler that starts
from them."""

import os
import runpy

import flax.linen as nn
import jax
import numpy as np
import pytest
import train_toy as toy
from train_runs import train

from jaxdiff import methods
from jaxdiff.train import loop


def test_validation_rejects_indivisible_batch():
    config = toy.toy_config(batch_size=12, grad_accum_steps=1)
    with pytest.raises(ValueError, match="batch_size 12 must be a positive multiple of "
                                         "grad_accum_steps x data x fsdp devices = 1 x 8"):
        loop.validate_config(config, num_devices=8, process_count=1)
    # The tensor axis holds copies of the same rows: 12 rows split 4 ways over data x fsdp.
    loop.validate_config(toy.toy_config(batch_size=12, grad_accum_steps=1,
                                        **{"mesh.tensor": 2}), num_devices=8, process_count=1)
    config = toy.toy_config(**{"checkpoint.every": 0})
    with pytest.raises(ValueError, match="config.checkpoint.every must be positive"):
        loop.validate_config(config, num_devices=8, process_count=1)


def test_a_nonfinite_streak_stops_the_run_at_the_next_log_step(tmp_path):
    # Batches 1.. are poisoned, so steps 2, 3, 4 are skipped; the streak (max 2) is read with the
    # metrics of log step 4, where it is 3: no step in between waits for the host.
    config = toy.toy_config(num_steps=8, max_nonfinite_streak=2, log_every=4)
    with pytest.raises(loop.NonFiniteError,
                       match="Stopping at step 4: the last 3 updates had a non-finite loss"):
        train(tmp_path, "late_streak", config, poison_batches=range(1, 8))


def test_the_loop_feeds_a_method_the_training_images_its_sampler_starts_from():
    """Cold diffusion's blur generation fits its colour mixture to num_reference_images training
    images: the loop reads them from config.data (built-in digits, offline) and the method then
    samples; a method that needs none is returned as it is."""
    config = runpy.run_path(os.path.join(toy.REPO_ROOT, "configs", "cold.py"))["get_config"]()
    config.method.update(dict(num_reference_images=16, gmm_components=2))
    method = methods.build(config)
    assert method.reference_images == 16
    ready = loop.with_reference_images(config, method)
    assert ready.reference_images == 0
    params = nn.unbox(method.init_fn(jax.random.PRNGKey(0))["params"])
    samples = ready.sample(params, jax.random.PRNGKey(1), 2)
    assert samples.shape == (2, 16, 16, 3) and np.all(np.isfinite(np.asarray(samples)))
    toy_method = methods.build(toy.toy_config())
    assert loop.with_reference_images(toy.toy_config(), toy_method) is toy_method
