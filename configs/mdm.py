"""Matryoshka diffusion (Gu et al. 2023): a NestedUNet denoising an image pyramid jointly.

    python -m jaxdiff.main --config=configs/mdm.py                       # CPU: 32 -> 16 px digits
    python -m jaxdiff.main --config=configs/mdm.py:imagenet64            # stage 1: the 64 px core
    python -m jaxdiff.main --config=configs/mdm.py:imagenet256 \
        --config.init_from=runs/mdm_imagenet64                           # stage 2: 64 -> 256
    python -m jaxdiff.main --config=configs/mdm.py:celeba_hq1024_stage1  # 64 core of 64->256->1024
    ... :celeba_hq1024_stage2 / :celeba_hq1024 with --config.init_from=<previous stage's workdir>

Progressive training (MDM sec. 3.3) is a sequence of runs over ONE network: a stage trains the
`active_levels` innermost levels at the side of the highest of them, and the next stage starts
from the previous stage's parameters (init_from); the new outer level's adapters and heads are
zero-initialised, so it starts exactly where the smaller model ended.

Training settings follow apple/ml-mdm's configs: v-prediction, a cosine schedule (DeepFloyd
style, T = 1000) shifted per resolution, CLIP thresholding, lr 5e-5 with 10k warm-up steps,
gradient clip 2, mixed-resolution batches 2:1 (the outer level on 2/3 of the batch).
ImageNet presets read tfds `imagenet2012`, the 1024 presets `celeb_a_hq/1024` (both prepared by
the user under --config.data.data_dir). ml-mdm's models are text-conditioned on CC12M; until
batches carry text, these presets switch the networks' cross-attention off
(model.use_context=False): the ImageNet ones are class-conditional, the 1024 ones unconditional.
"""

from jaxdiff.train.defaults import experiment_config, select_preset


def cpu():
    """A tiny two-level NestedUNet on the built-in digits at 32 px (inner level 16 px). The
    sampler is the cheapest that matches the best 250-step one on this model (benchmarks/
    trained_samplers.py; README, "Sampler defaults")."""
    return experiment_config(
        method=dict(name="mdm", schedule="cosine_betas", parameterization="v",
                    sampler="dpm_solver_pp_3m", time_grid="logsnr", sample_steps=10),
        model=dict(name="nested_unet", preset="tiny_2", num_classes=10),
        data=dict(name="builtin:digits", resolution=32),
        num_steps=1500, batch_size=32, ema_decay=0.995, log_every=100,
        optimizer=dict(learning_rate=2e-3, warmup_steps=100),
        checkpoint=dict(every=500), sample=dict(every=500, num_samples=60),
        eval=dict(every=1500, num_samples=480, batch_size=60))


def _paper(preset, data_name, resolution, active_levels, num_classes, mixed_ratio=""):
    return experiment_config(
        method=dict(name="mdm", schedule="cosine_betas", parameterization="v",
                    active_levels=active_levels, mixed_ratio=mixed_ratio,
                    label_dropout=0.1 if num_classes else 0.0, sampler="ddim",
                    sample_steps=250, x0_transform="clip"),
        model=dict(name="nested_unet", preset=preset, num_classes=num_classes,
                   use_context=False),
        data=dict(name=data_name, resolution=resolution, flip=True),
        num_steps=500_000, batch_size=512, ema_decay=0.9999,
        optimizer=dict(learning_rate=5e-5, warmup_steps=10_000, grad_clip=2.0),
        mesh=dict(data=-1, fsdp=8),
        checkpoint=dict(every=5000), sample=dict(every=25_000, num_samples=16))


def imagenet64():
    return _paper("mdm_256", "tfds:imagenet2012", 64, active_levels=1, num_classes=1000)


def imagenet256():
    return _paper("mdm_256", "tfds:imagenet2012", 256, active_levels=2, num_classes=1000,
                  mixed_ratio="2:1")


def celeba_hq1024_stage1():
    return _paper("mdm_1024", "tfds:celeb_a_hq/1024", 64, active_levels=1, num_classes=0)


def celeba_hq1024_stage2():
    return _paper("mdm_1024", "tfds:celeb_a_hq/1024", 256, active_levels=2, num_classes=0,
                  mixed_ratio="2:1")


def celeba_hq1024():
    return _paper("mdm_1024", "tfds:celeb_a_hq/1024", 1024, active_levels=3, num_classes=0,
                  mixed_ratio="4:2:1")


PRESETS = {"cpu": cpu, "imagenet64": imagenet64, "imagenet256": imagenet256,
           "celeba_hq1024_stage1": celeba_hq1024_stage1,
           "celeba_hq1024_stage2": celeba_hq1024_stage2, "celeba_hq1024": celeba_hq1024}


def get_config(preset=None):
    return select_preset(PRESETS, preset)
