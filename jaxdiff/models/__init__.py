"""Flax linen networks and the factory that builds one from a config's `model` section.

    unet.UNet                   DDPM / improved DDPM / ADM UNet
    dual_unet.AttenuationUNet   analytic attenuation's dual-decoder UNet, returns (c, eps)
    nested_unet.NestedUNet      Matryoshka diffusion's NestedUNet, a list in and out
    uvit.UViT                   simple diffusion's U-ViT

Every module has PRESETS (constructor arguments by name, from "tiny" to the papers' sizes) and
`create(**kwargs)`.
"""

import importlib

import flax.linen as nn
import jax
import numpy as np

NETWORK_MODULES = {
    "unet": "jaxdiff.models.unet",
    "dual_unet": "jaxdiff.models.dual_unet",
    "nested_unet": "jaxdiff.models.nested_unet",
    "uvit": "jaxdiff.models.uvit",
}


def create(model_config, **forced):
    """The network a model config describes.

    model_config (a dict or ConfigDict): `name` (a key of NETWORK_MODULES), `preset` (a key of
    that module's PRESETS, default "tiny") and any constructor argument, which overrides the
    preset's. `forced` arguments (set by a method, e.g. learn_sigma) win over both.
    """
    fields = dict(model_config.to_dict() if hasattr(model_config, "to_dict") else model_config)
    name = fields.pop("name", None)
    if name not in NETWORK_MODULES:
        raise ValueError(f"Unknown network {name!r}; expected one of {sorted(NETWORK_MODULES)}.")
    module = importlib.import_module(NETWORK_MODULES[name])
    preset = fields.pop("preset", "tiny")
    if preset not in module.PRESETS:
        raise ValueError(f"Unknown {name} preset {preset!r}; expected one of "
                         f"{sorted(module.PRESETS)}.")
    return module.create(**{**module.PRESETS[preset], **fields, **forced})


def count_parameters(model, x, t, **call_kwargs) -> int:
    """Number of parameters of `model` for abstract inputs, from `jax.eval_shape` (nothing is
    allocated): x an image batch or a list of them (ShapeDtypeStructs), t of shape (B,), and
    call_kwargs (labels, context) as arrays or ShapeDtypeStructs."""
    shapes = jax.eval_shape(lambda x, t, kw: model.init(jax.random.key(0), x, t, **kw),
                            x, t, call_kwargs)
    return int(sum(np.prod(leaf.shape)
                   for leaf in jax.tree_util.tree_leaves(nn.unbox(shapes["params"]))))
