"""bnn_keras: train binary neural networks with Adam and a two-stage schedule.

A TensorFlow/Keras plugin on Larq that implements "How Do Adam and Training
Strategies Help BNNs Optimization?" (Liu, Shen et al., ICML 2021) and deploys the
result to ARM devices through Larq Compute Engine.

Importing this package sets `TF_USE_LEGACY_KERAS=1` when TensorFlow has not been
imported yet (Larq needs Keras 2); see `bnn_keras._keras_env`.
"""

from bnn_keras._keras_env import ensure_legacy_keras

ensure_legacy_keras()

__version__ = "0.1.0"

__all__ = ["__version__"]
