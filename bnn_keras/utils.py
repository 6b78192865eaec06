"""Small helpers shared by several modules."""

from __future__ import annotations

import tensorflow as tf

__all__ = ["flat_layers"]


def flat_layers(model: tf.keras.Model) -> list[tf.keras.layers.Layer]:
    """The layers of `model` in order, the layers of nested models in place.

    >>> inner = tf.keras.Sequential([tf.keras.Input((2,)), tf.keras.layers.Dense(2, name="a")])
    >>> outer = tf.keras.Sequential([inner, tf.keras.layers.Dense(1, name="b")])
    >>> [layer.name for layer in flat_layers(outer)]
    ['a', 'b']
    """
    found = []
    for layer in model.layers:
        if isinstance(layer, tf.keras.Model):
            found.extend(flat_layers(layer))
        else:
            found.append(layer)
    return found
