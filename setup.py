"""dalitrain: multi-dataset video transformer training on NVIDIA DALI pipelines.

`kernels/`, `pipelines/`, `benchmarks/` and `configs/` install as `dalitrain.kernels`, `dalitrain.pipelines`,
`dalitrain.benchmarks` and `dalitrain.configs`: PyPI already has unrelated top-level packages named `kernels`
and `pipelines`, and `dalitrain bench` / `dalitrain demo` must find their scripts and YAML in a plain install.
"""
from setuptools import setup

setup(
    name="dalitrain",
    version="0.1.0",
    description="Train video action-recognition transformers on several datasets at once with DALI pipelines",
    python_requires=">=3.10",
    packages=[
        "dalitrain",
        "dalitrain.data",
        "dalitrain.models",
        "dalitrain.losses",
        "dalitrain.engine",
        "dalitrain.kernels",
        "dalitrain.pipelines",
        "dalitrain.benchmarks",
        "dalitrain.configs",
    ],
    package_dir={
        "dalitrain": "dalitrain",
        "dalitrain.kernels": "kernels",
        "dalitrain.pipelines": "pipelines",
        "dalitrain.benchmarks": "benchmarks",
        "dalitrain.configs": "configs",
    },
    package_data={"dalitrain.configs": ["*.yaml"]},
    install_requires=[
        # A range that the CPU wheel on disk (2.13.0) satisfies; an open range pulls a CUDA build.
        "torch>=2.4,<=2.13.0",
        "nvidia-dali-cuda120",
        "triton; platform_system == 'Linux'",
        "numpy",
        "pyyaml",
        "nvtx",
        "av",
        "safetensors",  # image ViT weights as users download them (model.pretrained)
        "matplotlib",  # figures: benchmark charts, relations heatmaps, training curves (Agg: no display)
        "tqdm",  # progress bars of synth, scan, prepare and evaluation
    ],
    extras_require={
        "dev": ["pytest", "pytest-timeout"],
        # Peer loaders, used only by the benchmarks (torchcodec also needs the system ffmpeg).
        "bench": ["decord", "torchcodec==0.13.*"],
    },
    entry_points={"console_scripts": ["dalitrain = dalitrain.cli:main"]},
)
