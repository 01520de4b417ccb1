"""Flax linen networks and the factory that builds one from a config's `model` section.

    unet.UNet                   DDPM / improved DDPM / ADM UNet
    dual_unet.AttenuationUNet   analytic attenuation's dual-decoder UNet, returns (c, eps)
    nested_unet.NestedUNet      Matryoshka diffusion's NestedUNet, a list in and out
    uvit.UViT                   simple diffusion's U-ViT

Every module has PRESETS (constructor arguments by name, from "tiny" to the papers' sizes) and
`create(**kwargs)`. Every network is called as `apply(variables, x, t, labels=..., context=...,
train=...)`, the context a conditioning.TextContext (embeddings (B, L, D), token mask (B, L)) or
a (B, L, D) array whose tokens are all real.
"""

import importlib

import flax.linen as nn
import jax
import numpy as np

from jaxdiff.models import layers

NETWORK_MODULES = {
    "unet": "jaxdiff.models.unet",
    "dual_unet": "jaxdiff.models.dual_unet",
    "nested_unet": "jaxdiff.models.nested_unet",
    "uvit": "jaxdiff.models.uvit",
}


# The preset of a model config that gives its whole architecture itself.
CUSTOM_PRESET = "custom"


def architecture_fields(module) -> set:
    """The constructor arguments every preset of a network sets (its shape: widths, depths,
    attention placement): what a custom model config must give."""
    return set.intersection(*(set(preset) for preset in module.PRESETS.values()))


def create(model_config, *, network=None, **forced):
    """The network a model config describes.

    model_config (a dict or ConfigDict): `name` (a key of NETWORK_MODULES; may be left out when
    `network` names it), `preset` (required: a key of that module's PRESETS, or "custom" with
    every field of architecture_fields given) and any constructor argument, which overrides the
    preset's; `dtype` / `param_dtype` may be dtype names ("bfloat16": compute in bfloat16 with
    float32 parameters) and `remat` a bool or a policy name (layers.REMAT_POLICIES). `forced`
    arguments (set by a method, e.g. learn_sigma) win over both.
    """
    fields = dict(model_config.to_dict() if hasattr(model_config, "to_dict") else model_config)
    for dtype_field in ("dtype", "param_dtype"):
        if dtype_field in fields:
            fields[dtype_field] = layers.resolve_dtype(dtype_field, fields[dtype_field])
    if "remat" in fields:
        layers.check_remat(fields["remat"])
    name = fields.pop("name", network)
    if network is not None and name != network:
        raise ValueError(f"This method needs the {network!r} network, but config.model.name is "
                         f"{name!r}.")
    if name not in NETWORK_MODULES:
        raise ValueError(f"Unknown network {name!r}; expected one of {sorted(NETWORK_MODULES)}.")
    module = importlib.import_module(NETWORK_MODULES[name])
    presets = sorted(module.PRESETS) + [CUSTOM_PRESET]
    preset = fields.pop("preset", None)
    if preset == CUSTOM_PRESET:
        missing = sorted(architecture_fields(module) - set(fields))
        if missing:
            raise ValueError(f"config.model.preset 'custom' needs every architecture field of "
                             f"the {name} network; missing {missing}.")
        return module.create(**{**fields, **forced})
    if preset not in module.PRESETS:
        raise ValueError(f"config.model.preset must be one of {presets} for the {name} network, "
                         f"got {preset!r}.")
    return module.create(**{**module.PRESETS[preset], **fields, **forced})


def count_parameters(model, x, t, **call_kwargs) -> int:
    """Number of parameters of `model` for abstract inputs, from `jax.eval_shape` (nothing is
    allocated): x an image batch or a list of them (ShapeDtypeStructs), t of shape (B,), and
    call_kwargs (labels, context) as arrays or ShapeDtypeStructs."""
    shapes = jax.eval_shape(lambda x, t, kw: model.init(jax.random.key(0), x, t, **kw),
                            x, t, call_kwargs)
    return int(sum(np.prod(leaf.shape)
                   for leaf in jax.tree_util.tree_leaves(nn.unbox(shapes["params"]))))
