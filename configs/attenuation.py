"""Diffusion with analytic image attenuation (Huang et al. 2023, arXiv 2306.13720): a dual-decoder
UNet predicting (c, eps) of x_t = (1 - t) x0 + sqrt(t) eps, sampled in few steps.

    python -m jaxdiff.main --config=configs/attenuation.py            # CPU: tiny dual UNet
    python -m jaxdiff.main --config=configs/attenuation.py:cifar10    # the paper's CIFAR-10 net

The CIFAR-10 preset follows the paper's pixel-space network (192 channels, multipliers
1,2,2,2, 3 blocks per level, attention at 16 and 8, dropout 0.1) and its 10-step sampler; the
optimizer settings (lr 2e-4, batch 128, EMA 0.9999) are the usual CIFAR-10 ones, not figures
we could confirm in the paper. Reads tfds `cifar10` from --config.data.data_dir.
"""

from jaxdiff.train.defaults import experiment_config, pod_model, select_preset


def cpu():
    """A tiny dual-decoder UNet on the built-in digits: minutes on a laptop CPU. The sampler is
    the cheapest that matches the best 250-step one on this model (benchmarks/
    trained_samplers.py; README, "Sampler defaults")."""
    return experiment_config(
        method=dict(name="attenuation", sampler="deterministic", time_grid="uniform",
                    sample_steps=10),
        model=dict(name="dual_unet", preset="tiny", num_classes=10),
        data=dict(name="builtin:digits", resolution=16),
        num_steps=1500, batch_size=32, ema_decay=0.995, log_every=100,
        optimizer=dict(learning_rate=2e-3, warmup_steps=100),
        checkpoint=dict(every=500), sample=dict(every=500, num_samples=60),
        eval=dict(every=1500, num_samples=480, batch_size=60))


def cifar10():
    return experiment_config(
        method=dict(name="attenuation", sampler="stochastic", sample_steps=10,
                    label_dropout=0.0),
        model=dict(name="dual_unet", preset="attenuation_cifar10", **pod_model()),
        data=dict(name="tfds:cifar10", resolution=32, flip=True),
        num_steps=800_000, batch_size=128, ema_decay=0.9999,
        optimizer=dict(learning_rate=2e-4, warmup_steps=5000, grad_clip=1.0),
        checkpoint=dict(every=10_000), sample=dict(every=50_000, num_samples=64))


PRESETS = {"cpu": cpu, "cifar10": cifar10}


def get_config(preset=None):
    return select_preset(PRESETS, preset)
