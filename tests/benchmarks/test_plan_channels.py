"""The README's channel-padding figures (benchmarks/plan_channels.py): compiled for a v5p
slice, a 32-channel 1024 px block needs several times the temporaries per activation byte of a
128-channel one; compiled for H100s, both need the same."""

import pytest

from benchmarks import plan_channels


def test_a_tpu_pads_narrow_channels_and_a_gpu_does_not():
    tpu = {c: plan_channels.temporaries_per_activation("tpu:v5p:2x2x1", c) for c in (32, 128)}
    gpu = {c: plan_channels.temporaries_per_activation("gpu:h100:4", c) for c in (32, 128)}
    assert tpu[32] >= 4 * tpu[128]
    assert gpu[32] == pytest.approx(gpu[128], rel=0.05)
