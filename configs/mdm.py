"""Matryoshka diffusion (Gu et al. 2023): a NestedUNet denoising an image pyramid jointly.

    python -m jaxdiff.main --config=configs/mdm.py                       # CPU: 32 -> 16 px digits
    python -m jaxdiff.main --config=configs/mdm.py:imagenet64            # stage 1: the 64 px core
    python -m jaxdiff.main --config=configs/mdm.py:imagenet256 \
        --config.init_from=runs/mdm_imagenet64                           # stage 2: 64 -> 256
    python -m jaxdiff.main --config=configs/mdm.py:celeba_hq1024_stage1  # 64 core of 64->256->1024
    ... :celeba_hq1024_stage2 / :celeba_hq1024 with --config.init_from=<previous stage's workdir>
    python -m jaxdiff.main --config=configs/mdm.py:cpu_text              # CPU text-to-image
    python -m jaxdiff.main --config=configs/mdm.py:cc12m64 \
        --config.data.name=shards:/data/cc12m_flan_t5_xl                  # text-to-image, 64 px
    ... :cc12m256 / :cc12m1024 with --config.init_from=<previous stage's workdir>

Progressive training (MDM sec. 3.3) is a sequence of runs over ONE network: a stage trains the
`active_levels` innermost levels at the side of the highest of them, and the next stage starts
from the previous stage's parameters (init_from); the new outer level's adapters and heads are
zero-initialised, so it starts exactly where the smaller model ended.

Training settings follow apple/ml-mdm's configs: v-prediction, a cosine schedule (DeepFloyd
style, T = 1000) shifted per resolution, CLIP thresholding, lr 5e-5 with 10k warm-up steps,
gradient clip 2, mixed-resolution batches 2:1 (the outer level on 2/3 of the batch).
ImageNet presets read tfds `imagenet2012`, the 1024 presets `celeb_a_hq/1024` (both prepared by
the user under --config.data.data_dir); they have no text (the ImageNet ones are
class-conditional, the 1024 ones unconditional).

The CC12M presets are ml-mdm's text-to-image models (Gu et al. 2023, sec. 5): the 64, 64->256
and 64->256->1024 stages of one mdm_1024 NestedUNet (its inner levels are the mdm_64 and
mdm_256 networks), conditioned on frozen FLAN-T5-XL token embeddings (128 tokens, 2048 wide:
masked cross-attention, and the masked mean added to the time embedding). They read shards of
precomputed embeddings (`python -m jaxdiff.data.shards convert` from img2dataset tars, then
`--mode=embed`; README, "Text-to-image") and embed prompts with text.t5_path. Settings from
ml-mdm's cc12m configs: v prediction on the DeepFloyd cosine schedule (T = 1000), shifted with
the 1024 model's power 2 (logSNR_k = logSNR - 2 log(s_k / 64), the same in every stage so the
stages continue one another), lr 5e-5 with 10k warm-up, gradient clip 2, EMA 0.9999, loss
weights 16:4:1 at 1024, mixed-resolution batches, CLIP thresholding, 250 DDIM steps with
guidance 7.5 and an empty negative prompt. ml-mdm trains without caption dropout; these drop
10 % of the captions, without which classifier-free guidance has no unconditional model.
"""

from jaxdiff.train.defaults import experiment_config, pod_model, select_preset


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
                   use_context=False, **pod_model("full")),
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


def cpu_text():
    """Text-to-image on the CPU: the tiny two-level NestedUNet of `cpu` on the built-in
    captioned digits (each digit in one of six colours, captions naming both), conditioned on a
    small text transformer trained with it (text.encoder 'trained': hashed words, nothing to
    download). The grids show one prompt per column; README, "Text-to-image", gives its prompt
    adherence at guidance 1 and 3 (benchmarks/prompt_adherence.py)."""
    return experiment_config(
        method=dict(name="mdm", schedule="cosine_betas", parameterization="v",
                    sampler="dpm_solver_pp_3m", time_grid="logsnr", sample_steps=10,
                    caption_dropout=0.1, guidance_scale=3.0),
        model=dict(name="nested_unet", preset="tiny_2", num_classes=0),
        data=dict(name="builtin:captioned_digits", resolution=32),
        text=dict(encoder="trained", max_length=12, vocab_size=1024, width=64, depth=2,
                  num_heads=2, prompts=CPU_PROMPTS),
        num_steps=1500, batch_size=32, ema_decay=0.995, log_every=100,
        optimizer=dict(learning_rate=2e-3, warmup_steps=100),
        checkpoint=dict(every=500), sample=dict(every=500, num_samples=60),
        eval=dict(every=1500, num_samples=480, batch_size=60))


CPU_PROMPTS = ["a red zero", "a green one", "a blue two", "a yellow three", "a magenta four",
               "a cyan five", "a red six", "a green seven", "a blue eight", "a yellow nine"]

PAPER_PROMPTS = ["a photo of a corgi on the beach", "an oil painting of a lighthouse at dusk",
                 "a bowl of ramen, studio lighting", "a red double-decker bus in the rain"]


def _cc12m(resolution, active_levels, mixed_ratio="", level_weights=()):
    return experiment_config(
        method=dict(name="mdm", schedule="cosine_betas", parameterization="v",
                    shift_power=2.0, active_levels=active_levels, mixed_ratio=mixed_ratio,
                    level_weights=level_weights, caption_dropout=0.1, label_dropout=0.0,
                    sampler="ddim", sample_steps=250, guidance_scale=7.5, x0_transform="clip"),
        model=dict(name="nested_unet", preset="mdm_1024", num_classes=0, **pod_model("full")),
        data=dict(name="shards:cc12m_flan_t5_xl", resolution=resolution, flip=False),
        text=dict(encoder="embeddings", max_length=128, embed_dim=2048,
                  t5_path="google/flan-t5-xl", t5_dtype="bfloat16", prompts=PAPER_PROMPTS),
        num_steps=1_000_000, batch_size=512, ema_decay=0.9999,
        optimizer=dict(learning_rate=5e-5, warmup_steps=10_000, grad_clip=2.0),
        mesh=dict(data=-1, fsdp=8),
        checkpoint=dict(every=5000), sample=dict(every=25_000, num_samples=16))


def cc12m64():
    return _cc12m(64, active_levels=1)


def cc12m256():
    return _cc12m(256, active_levels=2, mixed_ratio="2:1")


def cc12m1024():
    return _cc12m(1024, active_levels=3, mixed_ratio="4:2:1", level_weights=(16.0, 4.0, 1.0))


PRESETS = {"cpu": cpu, "cpu_text": cpu_text, "cc12m64": cc12m64, "cc12m256": cc12m256,
           "cc12m1024": cc12m1024, "imagenet64": imagenet64, "imagenet256": imagenet256,
           "celeba_hq1024_stage1": celeba_hq1024_stage1,
           "celeba_hq1024_stage2": celeba_hq1024_stage2, "celeba_hq1024": celeba_hq1024}


def get_config(preset=None):
    return select_preset(PRESETS, preset)
