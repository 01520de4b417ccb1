"""Prompt adherence of a text-to-image model trained on the built-in captioned digits: do the
samples show the digit and the colour their prompt names?

For every (digit, colour) pair, prompts "a {colour} {digit word}" (the first caption template
of jaxdiff.data.builtin) are sampled from the EMA parameters of a workdir's latest checkpoint,
at each guidance scale asked for, and each sample is read twice:
    digit   the shipped feature network's digit head (metrics/builtin_net.py, trained on grey
            digits) on the sample's grey level g = max over channels (a tint c = t g / 255 with
            a palette colour t, whose largest channel is 255, gives back g);
    colour  the palette colour nearest (Euclidean, in [0, 1]^3) to the mean of the stroke
            pixels (g >= 128) divided by their mean grey level, i.e. the tint t / 255 itself.
It prints the share of samples with the named digit, with the named colour, and with both
(chance: 10 %, 16.7 %, 1.7 %), and the same shares for the training images as the ceiling.

    python -m benchmarks.prompt_adherence --config=configs/mdm.py:cpu_text \
        --workdir=runs/mdm_cpu_text --guidance_scales=1,3
"""

import copy

import jax
import numpy as np
from absl import app, flags
from ml_collections import config_flags

from jaxdiff import methods
from jaxdiff.data.builtin import CAPTION_TEMPLATES, DIGIT_WORDS, PALETTE, open_builtin
from jaxdiff.metrics.builtin_net import DIGITS, builtin_network
from jaxdiff.train import loop, prepare, sampling

_CONFIG = config_flags.DEFINE_config_file("config", None, "configs/<method>.py[:preset]")
_WORKDIR = flags.DEFINE_string("workdir", "", "the trained run's directory")
_GUIDANCE = flags.DEFINE_string("guidance_scales", "1,3", "comma-separated guidance scales")
_PER_PROMPT = flags.DEFINE_integer("samples_per_prompt", 10, "samples of each of the 60 prompts")
_SEED = flags.DEFINE_integer("seed", 0, "sampling seed")

TINTS = np.array(list(PALETTE.values()), np.float64) / 255.0


def prompts_and_targets(per_prompt: int):
    """(prompts, digits, colour indices): every (digit, colour) pair per_prompt times."""
    prompts, digits, colours = [], [], []
    for digit in range(10):
        for colour_index, colour in enumerate(PALETTE):
            prompt = CAPTION_TEMPLATES[0].format(colour=colour, digit=digit,
                                                 word=DIGIT_WORDS[digit])
            prompts += [prompt] * per_prompt
            digits += [digit] * per_prompt
            colours += [colour_index] * per_prompt
    return prompts, np.array(digits), np.array(colours)


def read_digits(images: np.ndarray) -> np.ndarray:
    """The digit the feature network reads in each uint8 (N, H, W, 3) image's grey level."""
    grey = images.max(axis=-1, keepdims=True).repeat(3, axis=-1)
    network = builtin_network()
    logits = jax.jit(network.apply)(network.params, grey)["logits"]
    return np.argmax(np.asarray(logits)[:, :DIGITS], axis=1)


def read_colours(images: np.ndarray) -> np.ndarray:
    """The palette index nearest to each image's stroke tint (module docstring); -1 for an
    image with no stroke pixel."""
    pixels = images.astype(np.float64) / 255.0
    grey = pixels.max(axis=-1)
    stroke = grey >= 0.5
    counts = stroke.sum(axis=(1, 2))
    mean_rgb = (pixels * stroke[..., None]).sum(axis=(1, 2)) / np.maximum(counts, 1)[:, None]
    mean_grey = (grey * stroke).sum(axis=(1, 2)) / np.maximum(counts, 1)
    tint = mean_rgb / np.maximum(mean_grey, 1e-6)[:, None]
    nearest = np.argmin(((tint[:, None, :] - TINTS[None]) ** 2).sum(-1), axis=1)
    return np.where(counts > 0, nearest, -1)


def shares(images, digits, colours) -> dict:
    read_digit, read_colour = read_digits(images), read_colours(images)
    return {"digit": float(np.mean(read_digit == digits)),
            "colour": float(np.mean(read_colour == colours)),
            "both": float(np.mean((read_digit == digits) & (read_colour == colours)))}


def training_ceiling() -> dict:
    """The shares on the training images themselves (8 px; the network resizes)."""
    from jaxdiff.data.builtin import digit_colours

    records, _ = open_builtin("captioned_digits")
    items = [records[index] for index in range(len(records))]
    labels = np.array([item["label"] for item in items])
    images = np.stack([item["image"] for item in items])
    return shares(images, labels, digit_colours(labels))


def main(argv):
    del argv
    stage = prepare.prepare(_CONFIG.value, _WORKDIR.value, "sample")[-1]
    step, ema_params = loop.latest_ema_params(stage.workdir, stage.run)
    prompts, digits, colours = prompts_and_targets(_PER_PROMPT.value)
    print(f"{len(prompts)} samples ({_PER_PROMPT.value} per prompt) at step {step}, "
          f"seed {_SEED.value}")
    print(f"{'guidance':>8}  {'digit':>6}  {'colour':>6}  {'both':>6}")
    for scale in [float(s) for s in _GUIDANCE.value.split(",")]:
        config = copy.deepcopy(stage.config)
        config.method.guidance_scale = scale
        method = methods.build(config)
        inputs = sampling.sampler_inputs(config, method, len(prompts), prompts)
        sampler = sampling.make_sampler(method, stage.run.mesh, len(prompts), inputs)
        images = sampling.highest_resolution(sampler(ema_params,
                                                     jax.random.PRNGKey(_SEED.value)))
        result = shares(np.rint((images + 1) * 127.5).astype(np.uint8), digits, colours)
        print(f"{scale:>8.1f}  {result['digit']:>6.1%}  {result['colour']:>6.1%}  "
              f"{result['both']:>6.1%}")
    ceiling = training_ceiling()
    print(f"{'data':>8}  {ceiling['digit']:>6.1%}  {ceiling['colour']:>6.1%}  "
          f"{ceiling['both']:>6.1%}")


if __name__ == "__main__":
    app.run(main)
