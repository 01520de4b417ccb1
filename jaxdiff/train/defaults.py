"""The train-system part of every config: the fields the loop, optimizer, mesh and checkpoints
read, with defaults. A configs/<method>.py starts from `train_config()` and adds the `model`,
`method` and `data` sections (and, for text-to-image, sets the `text` section)."""

import ml_collections

from jaxdiff import methods
from jaxdiff.data import default_data_config
from jaxdiff.metrics.evaluate import eval_defaults
from jaxdiff.text.config import text_defaults


# Precision, rematerialisation and attention kernel of every model section (models.create):
# float32 compute, no remat, XLA's attention; each may be overridden, e.g.
# --config.model.remat=dots_with_no_batch_dims_saveable.
MODEL_DEFAULTS = dict(dtype="float32", remat="none", attention_implementation="xla")


def pod_model(remat="none") -> dict:
    """The model fields of every paper-scale preset (what a pod or GPU-cluster run wants, chosen
    with the planner, jaxdiff/plan; README "Planning a pod run"): bfloat16 activations with
    float32 parameters and optimizer state, XLA's attention (set
    attention_implementation="cudnn" on NVIDIA GPUs for cuDNN's fused attention), and `remat`
    (a layers.REMAT_POLICIES name) for the presets whose activations need it."""
    return dict(dtype="bfloat16", remat=remat, attention_implementation="xla")


def train_config() -> ml_collections.ConfigDict:
    """Defaults of every field the train system reads (see loop.py, state.py, sharding.py)."""
    return ml_collections.ConfigDict(dict(
        seed=0,
        num_steps=1000,
        batch_size=64,             # global; divisible by grad_accum_steps x devices
        grad_accum_steps=1,
        ema_decay=0.9999,
        log_every=50,
        max_nonfinite_streak=10,
        init_from="",              # a workdir whose latest params start a fresh run
        stages=[],                 # per-stage overrides (train/stages.py); [] = one stage
        mesh=dict(data=-1, fsdp=1, tensor=1),
        sharding=dict(rules=None),  # None: channels_out -> fsdp, all else replicated
        optimizer=dict(learning_rate=1e-4, warmup_steps=100, schedule="constant", b1=0.9,
                       b2=0.999, eps=1e-8, weight_decay=0.0, grad_clip=1.0,
                       moment_dtype="float32"),
        checkpoint=dict(every=500, keep=3, async_save=True),
        sample=dict(every=500, num_samples=16, seed=1),
        eval=eval_defaults(),      # every = 0: no evaluation in training
        text=text_defaults(),      # encoder "none": no text (text/config.py)
    ))


def experiment_config(*, method: dict, model: dict, data: dict, **train) -> ml_collections.ConfigDict:
    """A full config: train_config() with `train` overrides (nested dicts merge), plus the
    method section (`method` over the named method's defaults, so that every method field can be
    overridden as --config.method.<field>), the model section (`model` over MODEL_DEFAULTS) and
    the data section (`data` over
    default_data_config())."""
    config = train_config()
    merge(config, train)
    config.method = ml_collections.ConfigDict(
        {**methods.default_settings(method["name"]), **method})
    config.model = ml_collections.ConfigDict({**MODEL_DEFAULTS, **model})
    config.data = default_data_config()
    merge(config.data, data)
    return config


def merge(config: ml_collections.ConfigDict, values: dict) -> None:
    """Sets `values` into `config`; nested dicts merge into existing sections."""
    for key, value in values.items():
        if isinstance(value, dict) and key in config and isinstance(config[key],
                                                                   ml_collections.ConfigDict):
            merge(config[key], value)
        else:
            config[key] = value


def select_preset(presets: dict, name) -> ml_collections.ConfigDict:
    """presets[name]() for a config file's get_config(name); one sentence if it is unknown."""
    name = name or "cpu"
    if name not in presets:
        raise ValueError(f"Unknown preset {name!r}; choose one of {sorted(presets)}.")
    return presets[name]()
