"""train/sampling.py with prompts: cycling, grid columns, the empty prompt as training's empty
caption, and the T5 a precomputed-embeddings run needs."""

import numpy as np
import pytest

from jaxdiff import methods
from jaxdiff.text.prompts import encode_prompts
from jaxdiff.train import loop, sampling
from jaxdiff.train.defaults import experiment_config


def text_config(encoder, **text):
    return experiment_config(
        method=dict(name="ddpm", num_timesteps=100, sample_steps=2),
        model=dict(name="unet", preset="tiny"),
        data=dict(name="builtin:captioned_digits", resolution=8),
        text=dict(encoder=encoder, max_length=4, vocab_size=32, width=8, depth=1, num_heads=2,
                  embed_dim=6, **text))


def test_prompts_cycle_one_per_column():
    config = text_config("trained", prompts=["a red one", "a blue two", "a red one"])
    method = methods.build(config)
    prompts = sampling.sample_prompts(config, method, 5)
    assert prompts == ["a red one", "a blue two", "a red one", "a red one", "a blue two"]
    assert sampling.grid_columns(method, 5, prompts) == 2
    assert sampling.sample_prompts(config, method, 2, ["x"]) == ["x", "x"]
    plain = methods.build(experiment_config(method=dict(name="ddpm"), model=dict(
        name="unet", preset="tiny"), data=dict(resolution=8)))
    with pytest.raises(ValueError, match="not text-conditioned"):
        sampling.sample_prompts(config, plain, 2, ["a red one"])


def test_the_empty_prompt_is_the_empty_caption_without_a_t5():
    config = text_config("embeddings")
    method = methods.build(config)
    text = sampling.prompt_text(config, method, ["", " "])
    np.testing.assert_array_equal(text["embeddings"], np.zeros((2, 4, 6)))
    np.testing.assert_array_equal(text["mask"], [[True, False, False, False]] * 2)
    with pytest.raises(ValueError, match="set config.text.t5_path"):
        sampling.prompt_text(config, method, ["", "a red one"])


def test_an_embeddings_run_that_samples_prompts_needs_its_t5():
    config = text_config("embeddings", prompts=["a red one"])
    with pytest.raises(ValueError, match="config.text.t5_path must name the T5"):
        loop.check_prompt_encoder(config)
    config.text.prompts, config.eval.every = [""], 0
    loop.check_prompt_encoder(config)  # empty prompts need no T5


def test_prompt_text_mixes_empty_and_encoded_prompts():
    config = text_config("trained")
    method = methods.build(config)
    text = sampling.prompt_text(config, method, ["a red one", ""])
    expected = encode_prompts(config.text, ["a red one", ""])
    for key in ("tokens", "mask"):
        np.testing.assert_array_equal(text[key], expected[key])
