"""The run's setup (train/prepare.py): every bad input that can be caught before compiling fails
with one sentence naming the field, and what setup built is what the run uses."""

import os
import runpy

import pytest
import train_toy as toy

from jaxdiff import data, main, methods
from jaxdiff.data import pipeline
from jaxdiff.train import loop, prepare

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def config_of(name, preset=None, **overrides):
    """configs/<name>.py[:preset] with flat overrides {"a.b": value}."""
    config = runpy.run_path(os.path.join(REPO_ROOT, "configs", f"{name}.py"))["get_config"](preset)
    config.update_from_flattened_dict(overrides)
    return config


@pytest.mark.parametrize("name, overrides, message", [
    ("ddpm", {"model.num_classes": 3},
     "config.model.num_classes is 3, but builtin:digits has 10 classes: set it to 10, or to 0 "
     "for an unconditional model."),
    ("ddpm", {"data.name": "builtin:faces"},
     "config.model.num_classes is 10, but builtin:faces has no labels: set "
     "config.model.num_classes=0 (an unconditional model)."),
    ("ddpm", {"ema_decay": 1.5},
     "config.ema_decay must be a finite number at least 0.0 and below 1.0, got 1.5."),
    ("ddpm", {"optimizer.learning_rate": float("nan")},
     "config.optimizer.learning_rate must be a finite number above 0.0, got nan."),
    ("ddpm", {"optimizer.b2": 1.0},
     "config.optimizer.b2 must be a finite number at least 0.0 and below 1.0, got 1.0."),
    ("mdm", {"method.mixed_ratio": "1:40"},
     "config.batch_size / grad_accum_steps is 32, below the 41 samples the mdm method's "
     "settings need in a batch (e.g. method.mixed_ratio)."),
    ("ddpm", {"method.sample_steps": 5000},
     "method.sample_steps (5000) cannot exceed the 1000 steps of the discrete cosine_betas "
     "schedule (method.num_timesteps)."),
    ("ddpm", {"data.resolution": 15},
     "The UNet network does not take images of data.resolution 15: Height and width (15, 15) "
     "must be divisible by 2 for 2 levels."),
    ("mdm", {"method.active_levels": 3},
     "method.active_levels must be 0 (all) or at most the network's 2 levels, got 3."),
])
def test_bad_inputs_fail_in_one_sentence_before_compiling(name, overrides, message):
    with pytest.raises(ValueError) as error:
        prepare.prepare(config_of(name, **overrides), "/tmp/unused", "train")
    assert str(error.value) == message


def test_the_second_image_stream_matches_the_method():
    mixing = config_of("cold", "cpu_mix")
    del mixing["mix_data"]
    with pytest.raises(ValueError, match="Method 'cold' blends every image with one of a second "
                                         "dataset: set config.mix_data"):
        prepare.prepare(mixing, "/tmp/unused", "train")
    blurring = config_of("cold", "cpu")
    blurring.mix_data = config_of("cold", "cpu_mix").mix_data
    with pytest.raises(ValueError, match="config.mix_data is set, but method 'cold' reads no "
                                         "second image stream"):
        prepare.prepare(blurring, "/tmp/unused", "train")


def counting_calls(monkeypatch, targets):
    """Wraps each (module, function name) so that calls are counted: {name: count}."""
    calls = {}
    for module, name in targets:
        real = getattr(module, name)

        def wrapper(*args, _real=real, _name=name, **kwargs):
            calls[_name] = calls.get(_name, 0) + 1
            return _real(*args, **kwargs)

        monkeypatch.setattr(module, name, wrapper)
        calls[name] = 0
    return calls


SETUP_FUNCTIONS = [(methods, "build"), (loop, "setup"), (loop, "validate_config"),
                   (data, "validate_data_config"), (pipeline, "validate_data_config"),
                   (data, "read_reference_images")]


def test_setup_builds_once_and_the_run_uses_what_it_built(tmp_path, monkeypatch):
    """prepare builds the method, validates the config and the data and sets up the mesh and
    abstract state once per stage; main.run trains on those, doing none of it again."""
    calls = counting_calls(monkeypatch, SETUP_FUNCTIONS)
    stages = prepare.prepare(toy.toy_config(num_steps=2), str(tmp_path / "run"), "train")
    (stage,) = stages
    assert stage.data[1].name == "builtin:digits" and stage.mix_data is None
    assert dict(stage.run.mesh.shape) == {"data": 8, "fsdp": 1, "tensor": 1}
    once = {"build": 1, "setup": 1, "validate_config": 1, "validate_data_config": 1,
            "read_reference_images": 0}
    assert calls == once
    result = main.run(stages, "train")
    assert int(result.state.step) == 2 and calls == once


def test_a_sampler_that_starts_from_training_images_reads_them_once(tmp_path, monkeypatch):
    """Cold diffusion: the reference images are read once, from the validated data, and the
    data config is validated only once."""
    config = config_of("cold", num_steps=1, log_every=1, **{
        "sample.every": 1, "sample.num_samples": 2, "method.num_reference_images": 8,
        "method.gmm_components": 2, "method.gmm_iterations": 5,
        "method.degradation_options.num_steps": 4, "checkpoint.every": 1})
    calls = counting_calls(monkeypatch, SETUP_FUNCTIONS)
    main.run(prepare.prepare(config, str(tmp_path / "cold"), "train"), "train")
    assert calls == {"build": 1, "setup": 1, "validate_config": 1, "validate_data_config": 1,
                     "read_reference_images": 1}
    assert (tmp_path / "cold" / "samples" / "step_00000001.png").exists()
