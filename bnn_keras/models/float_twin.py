"""`float_twin(model)`: the same network with every quantizer removed.

A binary network's costs (training step time, `.tflite` size, latency) mean
little alone; they are read against its float twin: the same layers, shapes and
weights, with real-valued activations and weights. Cloning the model, rather
than a `quantizers=False` switch in every builder, works for any Larq model
(bnn_keras's and larq-zoo's) and keeps the builders free of a benchmark-only
argument.

In the twin, every Larq quantized layer keeps its class (so layer names, weight
lists and `get_weights` order are unchanged) with `input_quantizer`,
`kernel_quantizer` and `depthwise_quantizer` set to `None`, and binary
convolutions pad with zeros (`pad_values=0`), as a float convolution does.
Everything else (LearnableBias, RPReLU, BatchNormalization) is untouched.
"""

from __future__ import annotations

import larq as lq
import tensorflow as tf

from bnn_keras.models.common import quiet_constraint_warning

__all__ = ["float_twin"]

_QUANTIZER_ARGS = ("input_quantizer", "kernel_quantizer", "depthwise_quantizer")


def _unquantized(layer: tf.keras.layers.Layer) -> tf.keras.layers.Layer:
    config = layer.get_config()
    if isinstance(layer, lq.layers_base.BaseLayer):
        config.update({k: None for k in _QUANTIZER_ARGS if k in config})
        if "pad_values" in config:
            config["pad_values"] = 0.0
    return layer.__class__.from_config(config)


def float_twin(model: tf.keras.Model, *, copy_weights: bool = True) -> tf.keras.Model:
    """Returns `model` with real-valued activations and weights.

    Example:

    >>> from bnn_keras.models import ReActNetA, float_twin
    >>> model = ReActNetA(input_shape=(32, 32, 3), num_classes=10, width_multiplier=0.125)
    >>> twin = float_twin(model)
    >>> conv = twin.get_layer("block1_conv3x3")
    >>> conv.input_quantizer, conv.kernel_quantizer, conv.pad_values
    (None, None, 0.0)
    >>> len(twin.weights) == len(model.weights)
    True

    Args:
        model: a functional or sequential Keras model, with Larq layers or not.
        copy_weights: give the twin `model`'s weights (else freshly initialised).

    Returns:
        A new, uncompiled `tf.keras.Model`.

    Raises:
        TypeError: `model` is not a `tf.keras.Model`.
    """
    if not isinstance(model, tf.keras.Model):
        raise TypeError(f"`model` must be a tf.keras.Model; received: model={model!r}")
    with quiet_constraint_warning():
        twin = tf.keras.models.clone_model(model, clone_function=_unquantized)
    if copy_weights:
        twin.set_weights(model.get_weights())
    return twin
