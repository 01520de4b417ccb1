"""How a method builds and calls its network: the model section's checks, and the random keys
every loss splits alike."""

import jax
import numpy as np
import pytest
from methods_testing import make_config

from jaxdiff import methods
from jaxdiff.methods import network


@pytest.mark.parametrize("model, message", [
    ({"name": "nested_unet", "preset": "tiny"}, "needs the 'unet' network, but config.model.name"),
    ({"preset": "tiny", "width": 3}, "Unknown UNet arguments"),
    ({"preset": "tiny", "use_context": True}, "use_context"),
    ({}, "config.model.preset must be one of .*'custom'.*, got None"),
    ({"preset": "huge"}, "config.model.preset must be one of"),
    ({"preset": "custom", "base_channels": 8}, "needs every architecture field of the unet "
     "network; missing \\['attention_resolutions', 'channel_mult', 'num_res_blocks'\\]"),
])
def test_the_model_section_names_its_network_and_its_preset_or_architecture(model, message):
    with pytest.raises(ValueError, match=message):
        methods.build(make_config("ddpm", 8, model))


def test_a_custom_architecture_builds_when_every_field_is_given():
    from jaxdiff.models import unet
    fields = dict(unet.PRESETS["tiny"])
    custom = methods.build(make_config("ddpm", 8, dict(fields, preset="custom")))
    tiny = methods.build(make_config("ddpm", 8, {"preset": "tiny"}))
    assert custom.model == tiny.model


def test_loss_keys_are_four_independent_splits():
    keys = network.loss_keys(jax.random.PRNGKey(0))
    assert keys._fields == ("labels", "time", "noise", "dropout")
    assert len({tuple(np.asarray(key).tolist()) for key in keys}) == 4
