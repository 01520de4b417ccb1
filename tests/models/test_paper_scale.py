"""Paper-scale NestedUNet and U-ViT presets, without allocating them: parameter counts from
`jax.eval_shape`, and a full train step of the 1024 px NestedUNet lowered for an 8-device
forced-CPU mesh with FSDP sharding (lowering only: nothing is compiled or allocated)."""

import importlib.util
import math
import pathlib

import jax
import jax.numpy as jnp
import pytest
from jax.sharding import PartitionSpec

from jaxdiff.models import nested_unet as N
from jaxdiff.models import unet
from jaxdiff.models import uvit as U
from jaxdiff.train import sharding


def load_benchmark():
    """benchmarks/models.py as a module (the benchmarks folder is not a package)."""
    path = pathlib.Path(__file__).resolve().parents[2] / "benchmarks" / "models.py"
    spec = importlib.util.spec_from_file_location("benchmark_models", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("preset", sorted(N.PRESET_PARAMETER_COUNTS))
def test_nested_unet_parameter_counts(preset):
    model = N.create(**N.PRESETS[preset])
    count = N.count_parameters(model, N.PRESET_RESOLUTIONS[preset], N.PAPER_CONTEXT_SHAPE)
    assert count == N.PRESET_PARAMETER_COUNTS[preset]


def test_nested_unet_counts_differ_from_the_reference_by_the_documented_terms():
    # apple/ml-mdm PyTorch counts for the same configs (cc12m_64x64 / 256x256 / 1024x1024) and
    # the three documented differences: separate cross-attention projections (+2C^2 + 4C per
    # block, 5 blocks of 512 and 26 of 768 channels), no micro-conditioning MLP per level
    # (-(256*1024 + 1024 + 1024*1024 + 1024)), a bias on the pooled-context projection (+1024).
    reference = {"mdm_64": 461_359_107, "mdm_256": 476_613_958, "mdm_1024": 480_970_057}
    cross_attention = 5 * (2 * 512**2 + 4 * 512) + 26 * (2 * 768**2 + 4 * 768)
    micro_conditioning = 256 * 1024 + 1024 + 1024 * 1024 + 1024
    for preset, levels in (("mdm_64", 1), ("mdm_256", 2), ("mdm_1024", 3)):
        expected = reference[preset] + cross_attention - levels * micro_conditioning + 1024
        assert N.PRESET_PARAMETER_COUNTS[preset] == expected


@pytest.mark.parametrize("preset", sorted(U.PRESET_PARAMETER_COUNTS))
def test_uvit_parameter_counts(preset):
    model = U.create(**U.PRESETS[preset])
    side = U.PRESET_RESOLUTIONS[preset]
    labels = jax.ShapeDtypeStruct((1,), jnp.int32)
    assert unet.count_parameters(model, (1, side, side, 3), labels=labels) == (
        U.PRESET_PARAMETER_COUNTS[preset])


def test_uvit_transformer_holds_most_parameters():
    # 36 blocks of width W = 2048: (4 W^2 + 4 W) + (8 W^2 + 5 W) + 4 W per block.
    width = 2048
    per_block = 12 * width**2 + 13 * width
    assert per_block == 50_358_272
    assert 36 * per_block / U.PRESET_PARAMETER_COUNTS["simple_diffusion_128"] > 0.97


def test_mdm_1024_train_step_lowers_on_an_fsdp_mesh():
    # Loss (a squared loss on the three outputs), gradients and an AdamW update of the 1024 px
    # model with remat and bfloat16 compute, batch 8, as benchmarks/models.py builds it.
    mesh = sharding.create_mesh({"data": 2, "fsdp": 4})
    model = N.create(**N.PRESETS["mdm_1024"], remat=True, dtype=jnp.bfloat16)
    inputs = N.abstract_inputs(model, N.PRESET_RESOLUTIONS["mdm_1024"], 8,
                               N.PAPER_CONTEXT_SHAPE)
    lowered, params, params_sharding = load_benchmark().lower_train_step(model, inputs, mesh)

    # The lowered program takes and returns the full 510M-parameter tree, FSDP-sharded.
    out_params = lowered.out_info[0]
    assert jax.tree.map(lambda s: s.shape, out_params) == jax.tree.map(lambda s: s.shape, params)
    ffn_kernel = ["inner", "inner", "encoder", "attn_2_0_0_ffn", "Dense_0", "dense", "kernel"]
    spec = params_sharding
    for key in ffn_kernel:
        spec = spec[key]
    assert spec.spec == PartitionSpec(None, "fsdp")  # (768, 3072): channels_out over fsdp
    head = params_sharding["head"]["Conv_0"]["conv"]["kernel"].spec  # 3 outputs: replicated
    assert head == PartitionSpec(None, None, None, None)
    # In the lowered module: the mesh, every fsdp-sharded parameter and its two Adam moments
    # annotated as such on the arguments, and the batch split over both mesh axes.
    text = lowered.as_text()
    assert 'sdy.mesh @mesh = <["data"=2, "fsdp"=4, "tensor"=1]>' in text
    shardings = jax.tree_util.tree_leaves(params_sharding)
    sizes = [math.prod(p.shape) for p in jax.tree_util.tree_leaves(params)]
    num_sharded = sum("fsdp" in s.spec for s in shardings)
    sharded_size = sum(n for n, s in zip(sizes, shardings) if "fsdp" in s.spec)
    assert sharded_size > 0.999 * sum(sizes)  # only norms and tiny tensors stay replicated
    signature = text[text.index("func.func public @main"):text.index("{\n", text.index(
        "func.func public @main"))]
    assert signature.count('"fsdp"}') >= 3 * num_sharded
    assert '[{"data", "fsdp"}, {}, {}, {}]' in signature
