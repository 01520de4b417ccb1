"""Method settings: defaults, docs and checks from one dataclass per method; the shared
Gaussian rules across fields."""

import dataclasses

import pytest

from jaxdiff import checks
from jaxdiff.methods.ddpm import DDPMSettings
from jaxdiff.methods.mdm import MDMSettings
from jaxdiff.methods.simple_diffusion import SimpleDiffusionSettings


def test_defaults_docs_and_replaced_defaults_come_from_the_fields():
    defaults = DDPMSettings.defaults()
    assert defaults["schedule"] == "linear_betas" and defaults["variance"] == "fixedsmall"
    assert SimpleDiffusionSettings.defaults()["shift_base_resolution"] == 64
    assert MDMSettings.defaults()["schedule"] == "cosine_betas"
    described = DDPMSettings.describe().splitlines()
    assert len(described) == len(dataclasses.fields(DDPMSettings))
    assert "  method.schedule ['linear_betas']  base schedule" in DDPMSettings.describe()
    # A replaced default keeps the field's doc and check.
    with pytest.raises(ValueError, match="method.schedule must be one of"):
        DDPMSettings.from_section({"schedule": "sqrt"})


def test_from_section_ignores_the_name_and_rejects_unknown_fields():
    checked = DDPMSettings.from_section({"name": "ddpm", "sample_steps": 20, "eta": 0.5})
    assert checked.sample_steps == 20 and checked.eta == 0.5
    with pytest.raises(ValueError, match=r"Unknown method field\(s\) \['stepz'\] for method "
                                         "'ddpm'; its fields are"):
        DDPMSettings.from_section({"name": "ddpm", "stepz": 3})


@pytest.mark.parametrize("fields, message", [
    ({"sample_steps": 0}, "method.sample_steps must be an integer at least 1, got 0."),
    ({"sample_steps": 2.5}, "method.sample_steps must be an integer at least 1, got 2.5."),
    ({"label_dropout": 1.5},
     "method.label_dropout must be a finite number at least 0.0 and at most 1.0, got 1.5."),
    ({"guidance_scale": float("nan")},
     "method.guidance_scale must be a finite number at least 0.0, got nan."),
    ({"threshold_quantile": 0.0},
     "method.threshold_quantile must be a finite number above 0.0 and at most 1.0, got 0.0."),
    ({"x0_transform": "tanh"},
     "method.x0_transform must be one of ['none', 'clip', 'dynamic'], got 'tanh'."),
    ({"num_timesteps": 10, "sample_steps": 10},
     "method.num_timesteps 10 is too few for the linear_betas schedule: its betas reach 1 "
     "(linear betas end at 20 / T)."),
    ({"sample_steps": 1001},
     "method.sample_steps (1001) cannot exceed the 1000 steps of the discrete linear_betas "
     "schedule (method.num_timesteps)."),
])
def test_each_bad_value_is_one_sentence_naming_the_field(fields, message):
    with pytest.raises(ValueError) as error:
        DDPMSettings.from_section(fields)
    assert str(error.value) == message


def test_continuous_schedules_check_their_clip_and_not_the_step_count():
    assert SimpleDiffusionSettings.from_section({"sample_steps": 5000}).sample_steps == 5000
    with pytest.raises(ValueError, match="method.logsnr_min .* must be below"):
        SimpleDiffusionSettings.from_section({"logsnr_min": 5.0, "logsnr_max": -5.0})


def test_a_checked_number_refuses_booleans_strings_and_non_finite_values():
    check = checks.number_in(0, 10, integer=True)
    check("method.steps", 3)
    for value in (True, "3", None, 11):
        with pytest.raises(ValueError, match="method.steps must be an integer at least 0 and at "
                                             "most 10, got"):
            check("method.steps", value)
    with pytest.raises(ValueError, match="^x must be a finite number, got inf.$"):
        checks.number_in()("x", float("inf"))
