"""Shared test fixtures: seeds, a fresh Keras session, tiny models and data.

The root `conftest.py` sets `TF_USE_LEGACY_KERAS=1` and two logical CPUs first.
"""

import larq as lq
import numpy as np
import pytest
import tensorflow as tf

import bnn_keras  # noqa: E402,F401


@pytest.fixture(autouse=True)
def _fresh_keras_state():
    tf.keras.backend.clear_session()
    tf.keras.utils.set_random_seed(1234)
    yield
    tf.keras.backend.clear_session()


@pytest.fixture
def mirrored_strategy():
    """The MirroredStrategy over the two logical CPUs configured above.

    The trainer's own: one MirroredStrategy per process, because a second one
    reuses the first's collective-op keys (see `training.make_strategy`).
    """
    from bnn_keras.training import make_strategy

    strategy = make_strategy("mirrored")
    assert strategy.num_replicas_in_sync == 2
    return strategy


def make_tiny_bnn(num_classes=4, input_shape=(8, 8, 1), kernel_quantizer="ste_sign"):
    """A small plain larq model (not ReActNet): a float stem and two binary convs."""
    inputs = tf.keras.Input(input_shape)
    x = tf.keras.layers.Conv2D(8, 3, padding="same", use_bias=False, name="stem")(inputs)
    x = tf.keras.layers.BatchNormalization(name="stem_bn")(x)
    for i in range(2):
        x = lq.layers.QuantConv2D(
            8, 3, padding="same", use_bias=False, input_quantizer="ste_sign",
            kernel_quantizer=kernel_quantizer, kernel_constraint="weight_clip",
            name=f"bconv{i}",
        )(x)
        x = tf.keras.layers.BatchNormalization(name=f"bn{i}")(x)
    x = tf.keras.layers.GlobalAveragePooling2D()(x)
    outputs = tf.keras.layers.Dense(num_classes, activation="softmax", name="head")(x)
    return tf.keras.Model(inputs, outputs, name="tiny_bnn")


@pytest.fixture
def tiny_bnn():
    return make_tiny_bnn()


def make_images(n=64, shape=(8, 8, 1), num_classes=4, seed=0):
    """Random images whose label is learnable (the mean brightness quartile)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, *shape)).astype("float32")
    score = x.mean(axis=(1, 2, 3))
    y = np.digitize(score, np.quantile(score, np.linspace(0, 1, num_classes + 1)[1:-1]))
    return x, y.astype("int64")


@pytest.fixture
def images():
    return make_images()
