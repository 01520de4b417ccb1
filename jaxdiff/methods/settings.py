"""Method settings: one frozen dataclass per method whose fields carry their default, a one-line
doc and a check, so that the config defaults, the docs and the validation all come from it.

    @dataclasses.dataclass(frozen=True)
    class MySettings(Settings):
        steps: int = setting(10, "sampler steps", at_least(1))

    MySettings.defaults()           -> {"steps": 10}          (copied into every config)
    MySettings.from_section(section) -> a checked MySettings   (config.method; "name" ignored)
    MySettings.describe()           -> "steps [10]  sampler steps" lines (module docstrings)

A check (jaxdiff/checks.py) raises ValueError in one sentence that names the field (as
`method.<field>`) and what is allowed. Cross-field rules go in `check_together`.
Settings shared by several methods are mixins below (GuidanceSettings, GaussianSettings); a
method changes an inherited default with `replace_default`.
"""

import dataclasses
from typing import Optional

import numpy as np

from jaxdiff.checks import Check, number_in, one_of
from jaxdiff.core.guidance import X0_TRANSFORMS
from jaxdiff.core.predictions import PARAMETERIZATIONS
from jaxdiff.core.samplers import GAUSSIAN_SAMPLERS
from jaxdiff.core.schedule_registry import DISCRETE_SCHEDULES, SCHEDULE_NAMES
from jaxdiff.core.time_grids import GRIDS


def setting(default, doc: str, check: Optional[Check] = None):
    """A settings field with its default, one-line doc and check."""
    metadata = {"doc": doc, "check": check}
    if isinstance(default, (dict, list)):
        return dataclasses.field(default_factory=lambda: type(default)(default),
                                 metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def replace_default(settings_type, name: str, default):
    """The field `name` of settings_type (same doc and check) with another default."""
    field = next(f for f in dataclasses.fields(settings_type) if f.name == name)
    return setting(default, field.metadata["doc"], field.metadata["check"])


def plain(value):
    """A config value as plain Python: ConfigDicts to dicts, lists to tuples."""
    if hasattr(value, "to_dict"):
        return value.to_dict()
    if isinstance(value, list):
        return tuple(value)
    return value


@dataclasses.dataclass(frozen=True)
class Settings:
    """Base of every method's settings (module docstring)."""

    @classmethod
    def defaults(cls) -> dict:
        return {field.name: getattr(cls(), field.name) for field in dataclasses.fields(cls)}

    @classmethod
    def from_section(cls, section) -> "Settings":
        """The settings of a config.method section (a dict or ConfigDict; its "name" is the
        method's, not a setting): unknown fields, bad values and bad combinations raise
        ValueError in one sentence."""
        given = {key: plain(value) for key, value in dict(section or {}).items()
                 if key != "name"}
        names = [field.name for field in dataclasses.fields(cls)]
        unknown = sorted(set(given) - set(names))
        if unknown:
            method = dict(section or {}).get("name", "this method")
            raise ValueError(f"Unknown method field(s) {unknown} for method {method!r}; its "
                             f"fields are {sorted(names)}.")
        settings = cls(**given)
        for field in dataclasses.fields(cls):
            if field.metadata.get("check") is not None:
                field.metadata["check"](f"method.{field.name}", getattr(settings, field.name))
        settings.check_together()
        return settings

    def check_together(self) -> None:
        """Rules across fields; ValueError in one sentence. None in the base class."""

    @classmethod
    def describe(cls) -> str:
        """One line per field: `name [default]  doc`."""
        return "\n".join(f"  method.{field.name} [{getattr(cls(), field.name)!r}]  "
                         f"{field.metadata['doc']}" for field in dataclasses.fields(cls))


@dataclasses.dataclass(frozen=True)
class GuidanceSettings(Settings):
    """Label dropout in training and classifier-free guidance and x0 transforms in sampling."""

    label_dropout: float = setting(
        0.1, "probability of the null class in training (class-conditional networks)",
        number_in(0.0, 1.0))
    caption_dropout: float = setting(
        0.1, "probability of the empty caption in training (text-conditioned networks)",
        number_in(0.0, 1.0))
    guidance_scale: float = setting(
        1.0, "classifier-free guidance w (1 = plain conditional sampling)", number_in(0.0))
    x0_transform: str = setting(
        "clip", "the x0 estimate in sampling: 'none', 'clip' or 'dynamic' (Imagen)",
        one_of(*X0_TRANSFORMS))
    threshold_quantile: float = setting(
        0.995, "quantile of dynamic thresholding", number_in(0.0, 1.0, low_open=True))
    guidance_logsnr_min: float = setting(
        -float("inf"), "guidance only where the output's logSNR(t) >= this (Kynkaanniemi et "
        "al. 2024's interval; outside it the plain conditional output)", number_in(infinite=True))
    guidance_logsnr_max: float = setting(
        float("inf"), "guidance only where the output's logSNR(t) <= this",
        number_in(infinite=True))

    def check_together(self) -> None:
        super().check_together()
        if not self.guidance_logsnr_min < self.guidance_logsnr_max:
            raise ValueError(f"method.guidance_logsnr_min ({self.guidance_logsnr_min}) must be "
                             f"below method.guidance_logsnr_max ({self.guidance_logsnr_max}).")


@dataclasses.dataclass(frozen=True)
class TimeGridSettings(Settings):
    """The sampler's time grid (core/time_grids.py)."""

    time_grid: str = setting("uniform", "sampling grid: 'uniform', 'power', 'logsnr' (uniform "
                             "in logSNR) or 'karras' (EDM)", one_of(*GRIDS))
    grid_power: float = setting(2.0, "p of the 'power' grid t = (1 - k / K)^p",
                                number_in(0.0, low_open=True))
    grid_rho: float = setting(7.0, "rho of the 'karras' grid (EDM's 7)",
                              number_in(0.0, low_open=True))

    def sampling_times(self, schedule, num_steps: int):
        """The configured grid of num_steps steps on a schedule_registry.Schedule."""
        return schedule.sampling_times(num_steps, self.time_grid, self.grid_power,
                                       self.grid_rho)


@dataclasses.dataclass(frozen=True)
class GaussianSettings(GuidanceSettings, TimeGridSettings):
    """The noise schedule (core/schedule_registry.py), the network's target and the sampler
    of the Gaussian methods (DDPM, simple diffusion, MDM)."""

    schedule: str = setting("cosine", "base schedule: 'linear_betas' or 'cosine_betas' "
                            "(discrete, T steps) or 'cosine' (continuous logSNR)",
                            one_of(*SCHEDULE_NAMES))
    num_timesteps: int = setting(1000, "T of a discrete schedule", number_in(1, integer=True))
    logsnr_min: float = setting(-15.0, "lower clip of the continuous cosine logSNR",
                                number_in())
    logsnr_max: float = setting(15.0, "upper clip of the continuous cosine logSNR",
                                number_in())
    shift_base_resolution: int = setting(
        0, "side at which the schedule is unshifted; 0 = the network's lowest resolution",
        number_in(0, integer=True))
    prior_shift_base_resolution: int = setting(
        0, "if > 0, the base side moves from shift_base_resolution at the data to this side at "
        "the prior (simple diffusion's interpolated schedule)", number_in(0, integer=True))
    shift_power: float = setting(2.0, "p of the shift logSNR - p log(side / base)",
                                 number_in(0.0))
    parameterization: str = setting("eps", "network target: 'eps', 'x0' or 'v'",
                                    one_of(*PARAMETERIZATIONS))
    sampler: str = setting("ancestral", "'ancestral', 'ddim', 'dpm_solver_pp' (2M), "
                           "'dpm_solver_pp_3m' or 'heun' (EDM; two network calls a step)",
                           one_of(*GAUSSIAN_SAMPLERS))
    sample_steps: int = setting(100, "sampler steps (kept steps of a discrete chain)",
                                number_in(1, integer=True))
    eta: float = setting(0.0, "DDIM eta (0 = deterministic)", number_in(0.0))

    def is_discrete(self) -> bool:
        return self.schedule in DISCRETE_SCHEDULES

    def check_together(self) -> None:
        super().check_together()
        if self.is_discrete() and np.any(
                DISCRETE_SCHEDULES[self.schedule](self.num_timesteps) >= 1.0):
            raise ValueError(f"method.num_timesteps {self.num_timesteps} is too few for the "
                             f"{self.schedule} schedule: its betas reach 1 (linear betas end at "
                             "20 / T).")
        if self.is_discrete() and self.sample_steps > self.num_timesteps:
            raise ValueError(f"method.sample_steps ({self.sample_steps}) cannot exceed the "
                             f"{self.num_timesteps} steps of the discrete {self.schedule} "
                             "schedule (method.num_timesteps).")
        if not self.is_discrete() and not self.logsnr_min < self.logsnr_max:
            raise ValueError(f"method.logsnr_min ({self.logsnr_min}) must be below "
                             f"method.logsnr_max ({self.logsnr_max}).")
