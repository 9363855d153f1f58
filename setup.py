"""Genie-Long: Genie-style protein backbone diffusion from domains to very long chains."""

from pathlib import Path

from setuptools import find_packages, setup

setup(
    name="genie-long",
    version="0.1.0",
    description="Genie-style Cα backbone diffusion, from domains to 16k+ residue chains",
    long_description=Path(__file__).with_name("README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=find_packages(include=["genie", "genie.*"]),
    package_data={"genie.data": ["default/*.npz", "default/README.md"]},
    install_requires=[
        "torch>=2.4",
        "pytorch-lightning>=2.4",
        "numpy>=1.24",
        "biopython>=1.81",
        "tensorboard>=2.14",
    ],
    extras_require={
        "test": ["pytest>=8", "ruff>=0.6", "matplotlib>=3.7", "biotite>=1.0", "tmtools>=0.2"],
        "eval": ["biotite>=1.0", "tmtools>=0.2", "matplotlib>=3.7"],
        "flash": ["flash-attn>=2.6"],
        # fused triangle kernels (triangleKernel); CUDA 13 builds of PyTorch. For CUDA 12 builds
        # install cuequivariance-ops-torch-cu12 instead of the -cu13 package.
        "cueq": ["cuequivariance-torch>=0.13", "cuequivariance-ops-torch-cu13>=0.13"],
    },
    entry_points={"console_scripts": ["genie-eval = genie.eval.cli:main"]},
)
