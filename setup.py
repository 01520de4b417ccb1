"""jaxdiff: pixel-space image diffusion in JAX/Flax."""

from setuptools import find_packages, setup

setup(
    name="jaxdiff",
    version="0.1.0",
    description="Pixel-space image diffusion (DDPM, simple diffusion, MDM, analytic "
    "attenuation, cold diffusion) in JAX/Flax, from a CPU to a sharded TPU/GPU mesh.",
    packages=find_packages(include=["jaxdiff", "jaxdiff.*"]),
    python_requires=">=3.10",
    install_requires=[
        "jax>=0.10.2,<0.11",
        "numpy>=2.0,<3",
    ],
    extras_require={
        "test": [
            "pytest>=9.0,<10",
            "pytest-xdist>=3.8,<4",
        ],
    },
)
