"""Tests of jaxdiff/plan/targets.py: target names, abstract devices from libtpu and the CUDA
plugin."""

import pytest

from jaxdiff.plan.targets import GIB, parse_target


def test_target_names():
    slice_ = parse_target("tpu:v5p:4x4x4")
    assert (slice_.platform, slice_.num_chips, slice_.chip.hbm_bytes) == ("tpu", 64, 95 * GIB)
    assert parse_target("tpu:v5e:16x16").num_chips == 256
    assert parse_target("tpu:v6e:8x8*2").num_chips == 128
    gpus = parse_target("gpu:h100:8x4")
    assert (gpus.platform, gpus.num_chips, gpus.groups) == ("gpu", 32, 4)
    for bad in ("tpu:v5p-16", "tpu:v7:2x2", "gpu:h100", "v5p:2x2x2", "gpu:rtx4090:1"):
        with pytest.raises(ValueError, match=r"^Unknown target .*\.$"):
            parse_target(bad)


@pytest.mark.parametrize("spec, count, kind", [
    ("tpu:v5p:2x2x1", 4, "TPU v5"), ("tpu:v5e:2x4", 8, "TPU v5 lite"),
    ("tpu:v4:2x2x1", 4, "TPU v4"), ("tpu:v5p:2x2x1*2", 8, "TPU v5"),
    ("gpu:h100:8", 8, "NVIDIA H100 80GB HBM3"), ("gpu:a100:4x2", 8, "NVIDIA A100-SXM4-80GB")])
def test_abstract_devices(spec, count, kind):
    devices = parse_target(spec).devices()
    assert len(devices) == count and {d.device_kind for d in devices} == {kind}
