"""DDPM / improved DDPM / DDIM (Ho et al. 2020; Nichol & Dhariwal 2021; Song et al. 2021).

    python -m jaxdiff.main --config=configs/ddpm.py                 # CPU: tiny UNet, 16 px digits
    python -m jaxdiff.main --config=configs/ddpm.py:cifar10         # Ho et al., 35.7M UNet
    python -m jaxdiff.main --config=configs/ddpm.py:iddpm_cifar10   # cosine, learned variance

The paper presets read tfds `cifar10` from --config.data.data_dir (prepared in ArrayRecord).
"""

from jaxdiff.train.defaults import experiment_config, pod_model, select_preset


def cpu():
    """A tiny class-conditional UNet on the built-in digits: minutes on a laptop CPU. It predicts
    v, not the paper's eps: at this budget an eps-predicting tiny UNet leaves about 60% of its
    samples washed-out grey squares whatever the sampler (its x0 = (x_t - sigma eps) / alpha
    amplifies the eps error by 1 / alpha near the prior), v and x0 prediction none. The sampler
    is the cheapest that matches the best 250-step one on this model (benchmarks/
    trained_samplers.py; README, "Sampler defaults")."""
    return experiment_config(
        method=dict(name="ddpm", schedule="cosine_betas", num_timesteps=1000,
                    parameterization="v", sampler="dpm_solver_pp", time_grid="logsnr",
                    sample_steps=10, guidance_scale=1.0),
        model=dict(name="unet", preset="tiny", num_classes=10),
        data=dict(name="builtin:digits", resolution=16),
        num_steps=1500, batch_size=32, ema_decay=0.995, log_every=100,
        optimizer=dict(learning_rate=2e-3, warmup_steps=100),
        checkpoint=dict(every=500), sample=dict(every=500, num_samples=60),
        eval=dict(every=1500, num_samples=480, batch_size=60))


def cifar10():
    """Ho et al. 2020, CIFAR-10: linear betas, T = 1000, eps, fixedlarge, lr 2e-4, batch 128,
    warm-up 5000, dropout 0.1, EMA 0.9999, gradient clip 1, 800k steps."""
    return experiment_config(
        method=dict(name="ddpm", schedule="linear_betas", num_timesteps=1000,
                    variance="fixedlarge", sampler="ancestral", sample_steps=1000,
                    label_dropout=0.0),
        model=dict(name="unet", preset="ddpm_cifar10", **pod_model()),
        data=dict(name="tfds:cifar10", resolution=32, flip=True),
        num_steps=800_000, batch_size=128, ema_decay=0.9999,
        optimizer=dict(learning_rate=2e-4, warmup_steps=5000, grad_clip=1.0),
        checkpoint=dict(every=10_000), sample=dict(every=50_000, num_samples=64))


def iddpm_cifar10():
    """Nichol & Dhariwal 2021, CIFAR-10: cosine betas, T = 4000, learned-range variance with
    L_hybrid, dropout 0.3, lr 1e-4, batch 128, 500k steps; sampled with 100 respaced steps."""
    return experiment_config(
        method=dict(name="ddpm", schedule="cosine_betas", num_timesteps=4000,
                    variance="learned_range", sampler="ancestral", sample_steps=100,
                    label_dropout=0.0),
        model=dict(name="unet", preset="iddpm_cifar10", **pod_model()),
        data=dict(name="tfds:cifar10", resolution=32, flip=True),
        num_steps=500_000, batch_size=128, ema_decay=0.9999,
        optimizer=dict(learning_rate=1e-4, warmup_steps=0, grad_clip=1.0),
        checkpoint=dict(every=10_000), sample=dict(every=50_000, num_samples=64))


PRESETS = {"cpu": cpu, "cifar10": cifar10, "iddpm_cifar10": iddpm_cifar10}


def get_config(preset=None):
    return select_preset(PRESETS, preset)
