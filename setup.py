"""Installs the mrfnet-caffe packages and the `mrfnet` console command."""
from setuptools import setup

setup(
    name="mrfnet-caffe",
    version="0.1.0",
    description="Caffe reimplementation of MRFNet (Multipath Refinement Fusion Network) for deblurring",
    packages=["mrfnet", "mrfnet.commands", "prototxt_gen", "layers", "data_prep", "solver", "inference",
              "evaluation", "benchmarks"],
    python_requires=">=3.11,<3.12",
    entry_points={"console_scripts": ["mrfnet = mrfnet.cli:main"]},
)
