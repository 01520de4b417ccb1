"""Cold diffusion (Bansal et al. 2022): a UNet learns to undo a deterministic degradation D(x0, s),
sampled with Algorithm 2 (or 1) of the paper.

    python -m jaxdiff.main --config=configs/cold.py                # CPU: blur generation, digits
    python -m jaxdiff.main --config=configs/cold.py:cpu_<degradation>   # inpaint, pixelate, ...
    python -m jaxdiff.main --config=configs/cold.py:<degradation>  # paper scale, CIFAR-10 / CelebA

Degradations: blur (generation from a Gaussian mixture of mean colours), inpaint, pixelate,
decolorize, mix (each image blended with one of a second dataset, `mix_data`). Degradation
options are the repo's (arpitbansal297/Cold-Diffusion-Models) unless a comment says otherwise;
training uses the paper's L1 loss, Adam lr 2e-5, batch 32, 700k steps, EMA 0.995.
The paper presets read tfds `celeb_a` (blur generation, 64 px) and `cifar10` (restoration) from
--config.data.data_dir; `mix` blends CIFAR-10 with an image folder the user names in
--config.mix_data.name=folder:/path.
"""

from jaxdiff.data import default_data_config
from jaxdiff.train.defaults import experiment_config, pod_model, select_preset

CPU_DEGRADATIONS = {
    # 16 px digits: fewer steps and smaller kernels than the repo's 32-128 px settings.
    "blur": dict(num_steps=20, kernel_size=5, kernel_std=0.3, routine="incremental",
                 final_mean=True),
    "inpaint": dict(num_steps=20, kernel_std=0.2, initial_mask=3, routine="incremental"),
    "pixelate": dict(num_steps=4),
    "decolorize": dict(num_steps=20, routine="linear"),
    "mix": dict(num_steps=50),
}

PAPER_DEGRADATIONS = {
    "blur": dict(num_steps=300, kernel_size=27, kernel_std=0.01, routine="exponential",
                 final_mean=True),
    "inpaint": dict(num_steps=50, kernel_std=0.1, initial_mask=11, routine="incremental"),
    "pixelate": dict(num_steps=5),
    "decolorize": dict(num_steps=50, routine="constant"),
    "mix": dict(num_steps=200),
}


def _cpu(degradation):
    config = experiment_config(
        method=dict(name="cold", degradation=degradation,
                    degradation_options=CPU_DEGRADATIONS[degradation], loss_norm="l1",
                    algorithm="improved", num_reference_images=256),
        # Class-conditional, like the other CPU defaults: from a flat colour (blur generation)
        # an unconditional restorer makes mostly one digit (146 of 200 samples an 8), and noise
        # on the start or the steps only moves the collapse (README, "Sampler defaults").
        model=dict(name="unet", preset="tiny", num_classes=10),
        data=dict(name="builtin:digits", resolution=16),
        num_steps=1500, batch_size=32, ema_decay=0.995, log_every=100,
        optimizer=dict(learning_rate=2e-3, warmup_steps=100),
        checkpoint=dict(every=500), sample=dict(every=500, num_samples=64),
        eval=dict(every=1500, num_samples=512, batch_size=64))
    if degradation == "mix":
        config.mix_data = default_data_config()
        config.mix_data.update(dict(name="builtin:faces", resolution=16))
    return config


def _paper(degradation):
    generation = degradation == "blur"
    config = experiment_config(
        method=dict(name="cold", degradation=degradation,
                    degradation_options=PAPER_DEGRADATIONS[degradation], loss_norm="l1",
                    algorithm="improved"),
        model=dict(name="unet", preset="ddpm_cifar10", dropout=0.0, **pod_model()),
        data=dict(name="tfds:celeb_a" if generation else "tfds:cifar10",
                  resolution=64 if generation else 32, flip=True),
        num_steps=700_000, batch_size=32, ema_decay=0.995,
        optimizer=dict(learning_rate=2e-5, warmup_steps=0, grad_clip=1.0),
        checkpoint=dict(every=10_000), sample=dict(every=50_000, num_samples=64))
    if degradation == "mix":
        config.mix_data = default_data_config()
        config.mix_data.update(dict(name="folder:/path/to/second/dataset", resolution=32))
    return config


PRESETS = {"cpu": lambda: _cpu("blur")}
PRESETS.update({f"cpu_{name}": (lambda name=name: _cpu(name)) for name in CPU_DEGRADATIONS})
PRESETS.update({name: (lambda name=name: _paper(name)) for name in PAPER_DEGRADATIONS})


def get_config(preset=None):
    return select_preset(PRESETS, preset)
