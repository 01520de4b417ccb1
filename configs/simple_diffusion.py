"""Simple diffusion (Hoogeboom, Heek & Salimans 2023): U-ViT, shifted logSNR, multi-scale loss.

    python -m jaxdiff.main --config=configs/simple_diffusion.py               # CPU, tiny U-ViT
    python -m jaxdiff.main --config=configs/simple_diffusion.py:imagenet128   # ~1.9B U-ViT
    python -m jaxdiff.main --config=configs/simple_diffusion.py:imagenet256   # patch 2
    python -m jaxdiff.main --config=configs/simple_diffusion.py:imagenet512   # patch 4

Paper presets read tfds `imagenet2012` from --config.data.data_dir (prepared by the user).
Schedules follow the paper's sec. 3.1: the cosine shifted for a base of 64 px (noise_d) at 128 and
256 px; at 512 px the interpolated schedule, from the shift for 256 px at the data to the shift
for 32 px at the prior. The multi-scale loss (sec. 3.3)
is on at 256 and 512 px. Batch 512, lr 1e-4, EMA 0.9999 (appendix).
"""

from jaxdiff.train.defaults import experiment_config, pod_model, select_preset


def cpu():
    """A tiny U-ViT on the built-in digits: minutes on a laptop CPU. The sampler is the cheapest
    that matches the best 250-step one on this model (benchmarks/trained_samplers.py; README,
    "Sampler defaults")."""
    return experiment_config(
        method=dict(name="simple_diffusion", schedule="cosine", shift_base_resolution=16,
                    parameterization="v", sampler="dpm_solver_pp_3m", time_grid="logsnr",
                    sample_steps=10),
        model=dict(name="uvit", preset="tiny", num_classes=10),
        data=dict(name="builtin:digits", resolution=16),
        num_steps=1500, batch_size=32, ema_decay=0.995, log_every=100,
        optimizer=dict(learning_rate=2e-3, warmup_steps=100),
        checkpoint=dict(every=500), sample=dict(every=500, num_samples=60),
        eval=dict(every=1500, num_samples=480, batch_size=60))


def _imagenet(resolution, preset, remat="none", **method):
    return experiment_config(
        method=dict(name="simple_diffusion", parameterization="v", sampler="ancestral",
                    sample_steps=256, label_dropout=0.1, **method),
        model=dict(name="uvit", preset=preset, num_classes=1000, **pod_model(remat)),
        data=dict(name="tfds:imagenet2012", resolution=resolution, flip=True),
        num_steps=1_000_000, batch_size=512, ema_decay=0.9999,
        optimizer=dict(learning_rate=1e-4, warmup_steps=10_000, grad_clip=1.0),
        mesh=dict(data=-1, fsdp=8),
        checkpoint=dict(every=5000), sample=dict(every=50_000, num_samples=16))


def imagenet128():
    return _imagenet(128, "simple_diffusion_128", schedule="cosine", shift_base_resolution=64)


def imagenet256():
    return _imagenet(256, "simple_diffusion_256", schedule="cosine", shift_base_resolution=64,
                     multiscale_loss=True, multiscale_min_resolution=32)


def imagenet512():
    return _imagenet(512, "simple_diffusion_512", remat="full", schedule="cosine",
                     prior_shift_base_resolution=32, shift_base_resolution=256,
                     multiscale_loss=True,
                     multiscale_min_resolution=32)


PRESETS = {"cpu": cpu, "imagenet128": imagenet128, "imagenet256": imagenet256,
           "imagenet512": imagenet512}


def get_config(preset=None):
    return select_preset(PRESETS, preset)
