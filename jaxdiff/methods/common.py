"""Pieces shared by the per-paper methods: config access, model construction, Gaussian schedules
and their time grids, label dropout, the guided network denoiser, x0 transforms and the Gaussian
sampler dispatch.

Time input. Every jaxdiff network takes the continuous time t in [0, 1] (t = 0 data, t = 1
prior) and embeds it itself (layers.TimeEmbedding embeds 1000 t; the dual UNet embeds log t), so
the methods pass t unchanged: never the logSNR and never an integer step. A discrete T-step
chain uses step i at t = (i + 1) / T (schedules.discrete_logsnr_fn), so a T = 1000 DDPM network
sees 1000 t = i + 1.

Conditioning. Class-conditional networks (model num_classes > 0) are trained with label dropout:
each label is replaced by the null class num_classes with probability `label_dropout`, so that
one network gives both the conditional and the unconditional prediction and classifier-free
guidance (Ho & Salimans 2022) works at sampling.
"""

import dataclasses
from typing import Any, Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np

from jaxdiff import models
from jaxdiff.core import guidance, samplers
from jaxdiff.core.processes import gaussian_corrupt
from jaxdiff.core.schedules import (alphas_cumprod, cosine_betas, cosine_logsnr,
                                    discrete_logsnr_fn, linear_betas)

GAUSSIAN_SAMPLERS = ("ancestral", "ddim", "dpm_solver_pp")
X0_TRANSFORMS = ("none", "clip", "dynamic")
BASE_SCHEDULES = ("linear", "cosine", "continuous_cosine")

# ----------------------------------------------------------------------------------------------
# Config access and validation.


def check_choice(field: str, value, choices) -> None:
    """ValueError in one sentence unless value is one of choices."""
    if value not in choices:
        raise ValueError(f"Unknown {field} {value!r}; expected one of {list(choices)}.")


def check_range(field: str, value, low=None, high=None, integer: bool = False) -> None:
    """ValueError unless low <= value <= high (either bound optional) and, if asked, an int."""
    if integer and not (isinstance(value, int) and not isinstance(value, bool)):
        raise ValueError(f"{field} must be an integer, got {value!r}.")
    if (low is not None and value < low) or (high is not None and value > high):
        raise ValueError(f"{field} must lie in [{low}, {high}], got {value!r}.")


def section(config, name: str) -> dict:
    """A config section (ml_collections ConfigDict or dict) as a plain dict; {} if absent."""
    value = config.get(name) if hasattr(config, "get") else None
    if value is None:
        return {}
    return dict(value.to_dict() if hasattr(value, "to_dict") else value)


def settings(config, defaults: dict) -> dict:
    """config.method merged over `defaults`; unknown fields (other than "name") raise ValueError."""
    given = section(config, "method")
    unknown = sorted(set(given) - set(defaults) - {"name"})
    if unknown:
        raise ValueError(f"Unknown method field(s) {unknown} for method {given.get('name')!r}; "
                         f"expected some of {sorted(defaults)}.")
    merged = dict(defaults)
    merged.update({key: value for key, value in given.items() if key != "name"})
    return merged


def image_resolution(config) -> int:
    """config.data.resolution, the side of the (square) training images."""
    resolution = section(config, "data").get("resolution")
    check_range("data.resolution", resolution, low=1, integer=True)
    return resolution


# ----------------------------------------------------------------------------------------------
# Model construction.


def create_model(config, network: str, **forced):
    """The network described by config.model (jaxdiff.models.create), which must be `network`.

    config.model.name may be left out (it defaults to `network`); `forced` arguments are set by
    the method (e.g. learn_sigma for a learned variance) and win over the preset and the config.
    """
    model_config = section(config, "model")
    name = model_config.setdefault("name", network)
    if name != network:
        raise ValueError(f"This method needs the {network!r} network, but config.model.name is "
                         f"{name!r}.")
    model = models.create(model_config, **forced)
    if getattr(model, "use_context", False):
        raise ValueError("Text-conditioned networks (use_context=True) are not supported by the "
                         "methods yet: batches carry no context; set model.use_context=False.")
    return model


def init_fn_for(model, example_x):
    """rng -> model variables, from a batch of one example (x an array or a list of arrays)."""

    def init_fn(rng):
        return model.init(rng, example_x, jnp.zeros((1,), jnp.float32))

    return init_fn


def num_classes_of(model) -> int:
    return int(getattr(model, "num_classes", 0))


# ----------------------------------------------------------------------------------------------
# Gaussian schedules and their time grids.


@dataclasses.dataclass(frozen=True)
class GaussianSchedule:
    """A logSNR schedule and how time is drawn for training and gridded for sampling.

    num_timesteps = None: continuous time, t ~ U(0, 1) in training and samplers.time_grid for
    sampling. num_timesteps = T: a discrete chain; training draws the step i uniformly in
    0..T-1 (Ho et al. 2020, Algorithm 1) at t = (i + 1) / T, and sampling runs on the respaced
    chain of `num_steps` kept steps (Nichol & Dhariwal 2021), samplers.respaced_time_grid.
    """

    logsnr_fn: Callable
    num_timesteps: Optional[int] = None

    def training_times(self, rng, batch_size: int):
        if self.num_timesteps is None:
            return jax.random.uniform(rng, (batch_size,), jnp.float32)
        steps = jax.random.randint(rng, (batch_size,), 0, self.num_timesteps)
        return (steps + 1.0) / self.num_timesteps

    def sampling_times(self, num_steps: int) -> np.ndarray:
        if self.num_timesteps is None:
            return samplers.time_grid(num_steps)
        return samplers.respaced_time_grid(self.num_timesteps, num_steps)


def discrete_alphas_cumprod(beta_schedule: str, num_timesteps: int) -> np.ndarray:
    """alpha_bar of T linear (Ho et al. 2020) or cosine (Nichol & Dhariwal 2021) betas."""
    check_choice("beta schedule", beta_schedule, ("linear", "cosine"))
    check_range("num_timesteps", num_timesteps, low=1, integer=True)
    betas = linear_betas(num_timesteps) if beta_schedule == "linear" else cosine_betas(
        num_timesteps)
    if np.any(betas >= 1.0):
        raise ValueError(f"The {beta_schedule} schedule with {num_timesteps} timesteps has betas "
                         ">= 1 (linear betas end at 20 / T); use more timesteps.")
    return alphas_cumprod(betas)


def base_schedule(name: str, num_timesteps: int, logsnr_min: float,
                  logsnr_max: float) -> GaussianSchedule:
    """"linear" / "cosine": a discrete T-step chain; "continuous_cosine": the clipped cosine
    logSNR(t) = -2 log tan(pi t / 2) in [logsnr_min, logsnr_max] (schedules.cosine_logsnr)."""
    check_choice("schedule", name, BASE_SCHEDULES)
    if name == "continuous_cosine":
        if not logsnr_min < logsnr_max:
            raise ValueError(f"logsnr_min ({logsnr_min}) must be below logsnr_max "
                             f"({logsnr_max}).")
        return GaussianSchedule(
            lambda t: cosine_logsnr(t, logsnr_min, logsnr_max))
    alpha_bar = discrete_alphas_cumprod(name, num_timesteps)
    return GaussianSchedule(discrete_logsnr_fn(alpha_bar), num_timesteps)


# ----------------------------------------------------------------------------------------------
# Labels.


def drop_labels(rng, labels, num_classes: int, rate: float):
    """Replace each label by the null class `num_classes` with probability `rate`."""
    dropped = jax.random.bernoulli(rng, rate, jnp.shape(labels))
    return jnp.where(dropped, num_classes, labels).astype(jnp.int32)


def training_labels(rng, batch, num_classes: int, rate: float):
    """The labels a class-conditional network trains on (dropped for guidance), else None."""
    if num_classes == 0:
        return None
    if "label" not in batch:
        raise ValueError("The network is class-conditional (num_classes > 0) but the batch has "
                         "no 'label'.")
    return drop_labels(rng, batch["label"], num_classes, rate)


def sampling_labels(rng, labels, num_samples: int, num_classes: int):
    """Given labels (int32 (num_samples,)), or uniformly drawn classes when labels is None, for
    a class-conditional network; None for an unconditional one (given labels are an error)."""
    if num_classes == 0:
        if labels is not None:
            raise ValueError("Labels were given for sampling an unconditional network.")
        return None
    if labels is None:
        return jax.random.randint(rng, (num_samples,), 0, num_classes, dtype=jnp.int32)
    labels = jnp.asarray(labels, jnp.int32)
    if labels.shape != (num_samples,):
        raise ValueError(f"labels must have shape ({num_samples},), got {labels.shape}.")
    return labels


# ----------------------------------------------------------------------------------------------
# The network as a denoiser.


def network_denoiser(apply_fn, params, labels, num_classes: int, guidance_scale: float = 1.0,
                     postprocess: Callable[[Any], Any] = lambda output: output,
                     variance_output: bool = False):
    """denoise(x_t, t) -> postprocess(network output), guided when it helps.

    An unconditional network is called as is. A class-conditional one gets `labels`; with
    guidance_scale != 1 the output is out_u + w (out_c - out_u) from one batched call
    (guidance.classifier_free_guidance, the null class num_classes as the unconditional input).
    variance_output=True: postprocess returns (prediction, variance output) and only the
    prediction is guided (improved DDPM's learned variance).
    """

    def conditional(x_t, t, class_labels):
        return postprocess(apply_fn({"params": params}, x_t, t, labels=class_labels,
                                    train=False))

    if num_classes == 0:
        return lambda x_t, t: conditional(x_t, t, None)
    if guidance_scale == 1.0:
        return lambda x_t, t: conditional(x_t, t, labels)
    null = jnp.full_like(labels, num_classes)
    return guidance.classifier_free_guidance(conditional, labels, null, guidance_scale,
                                             variance_output=variance_output)


def x0_transform(name: str, quantile: float):
    """None, static clipping to [-1, 1], or Imagen's dynamic thresholding at `quantile`."""
    check_choice("x0_transform", name, X0_TRANSFORMS)
    if name == "clip":
        return guidance.clip_x0
    if name == "dynamic":
        check_range("threshold_quantile", quantile, low=1e-6, high=1.0)
        return lambda x0: guidance.dynamic_threshold(x0, quantile)
    return None


@dataclasses.dataclass(frozen=True)
class SamplerSettings:
    """What the Gaussian methods read from config.method to sample (validated on creation)."""

    sampler: str
    num_steps: int
    eta: float
    guidance_scale: float
    x0_transform: str
    threshold_quantile: float

    def __post_init__(self):
        check_choice("sampler", self.sampler, GAUSSIAN_SAMPLERS)
        check_range("sample_steps", self.num_steps, low=1, integer=True)
        check_range("eta", self.eta, low=0.0)
        check_range("guidance_scale", self.guidance_scale, low=0.0)
        x0_transform(self.x0_transform, self.threshold_quantile)

    @classmethod
    def from_settings(cls, values: dict) -> "SamplerSettings":
        return cls(values["sampler"], values["sample_steps"], float(values["eta"]),
                   float(values["guidance_scale"]), values["x0_transform"],
                   float(values["threshold_quantile"]))


SAMPLER_DEFAULTS = dict(sampler="ancestral", sample_steps=100, eta=0.0, guidance_scale=1.0,
                        x0_transform="clip", threshold_quantile=0.995)


def gaussian_sample(sampling: SamplerSettings, denoise, rng, x_T, logsnr_fn, times,
                    parameterization: str, variance: str = "fixedsmall"):
    """Run the configured Gaussian sampler (core.samplers) from x_T over the time grid.

    "ancestral": samplers.ddpm_sample with `variance` (denoise returns the pair (prediction,
    variance output) for "learned_range"); "ddim": samplers.ddim_sample with eta;
    "dpm_solver_pp": samplers.dpm_solver_pp_2m_sample. x_T may be a pytree (one schedule per
    leaf when logsnr_fn is a list).
    """
    transform = x0_transform(sampling.x0_transform, sampling.threshold_quantile)
    if sampling.sampler == "ancestral":
        return samplers.ddpm_sample(denoise, rng, x_T, logsnr_fn, times, parameterization,
                                    variance, transform)
    if sampling.sampler == "ddim":
        return samplers.ddim_sample(denoise, rng, x_T, logsnr_fn, times, parameterization,
                                    sampling.eta, transform)
    return samplers.dpm_solver_pp_2m_sample(denoise, x_T, logsnr_fn, times, parameterization,
                                            transform)


def to_image_range(images):
    """Clip every leaf of a sampler's output to the image range [-1, 1]."""
    return jax.tree.map(lambda x: jnp.clip(x, -1.0, 1.0), images)


# ----------------------------------------------------------------------------------------------
# Training.


class GaussianForward(NamedTuple):
    """One training forward pass of a Gaussian method: x_t = alpha_t x0 + sigma_t eps."""

    t: jax.Array
    logsnr: jax.Array
    noise: jax.Array
    x_t: jax.Array
    output: Any


def gaussian_training_forward(apply_fn, params, batch, rng, schedule: GaussianSchedule,
                              num_classes: int, label_dropout: float) -> GaussianForward:
    """Draw t (by the schedule) and eps, corrupt batch["image"], and run the network in training
    mode on x_t with the (dropped) labels."""
    label_key, time_key, noise_key, dropout_key = jax.random.split(rng, 4)
    x0 = batch["image"]
    labels = training_labels(label_key, batch, num_classes, label_dropout)
    t = schedule.training_times(time_key, x0.shape[0])
    logsnr = schedule.logsnr_fn(t)
    noise = jax.random.normal(noise_key, x0.shape, x0.dtype)
    x_t = gaussian_corrupt(x0, noise, logsnr)
    output = training_apply(apply_fn, params, x_t, t, labels, dropout_key)
    return GaussianForward(t, logsnr, noise, x_t, output)


def training_apply(apply_fn, params, x, t, labels, rng):
    """The network in training mode, with its dropout key."""
    return apply_fn({"params": params}, x, t, labels=labels, train=True, rngs={"dropout": rng})
