"""Runs before any test module or doctest is imported.

Larq needs legacy Keras 2, so `TF_USE_LEGACY_KERAS=1` is set before TensorFlow is
first imported; and two logical CPU devices are configured before TensorFlow
starts its runtime, so tests can run a MirroredStrategy without a GPU.
"""

import os

os.environ["TF_USE_LEGACY_KERAS"] = "1"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # noqa: E402

_cpus = tf.config.list_physical_devices("CPU")
tf.config.set_logical_device_configuration(
    _cpus[0], [tf.config.LogicalDeviceConfiguration()] * 2
)
