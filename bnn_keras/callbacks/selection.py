"""Which layers the callbacks look at: binary kernels and sign activations.

One predicate decides what "the layers that are binary in stage 2" are, so the
flip-flop ratio, C2I, the histograms and `StageSwitch` all agree: a layer whose
`kernel_quantizer` has `precision == 1` (larq's `ste_sign`, our `scaled_sign`,
...) or is a `bnn_keras.quantizers.SwitchableQuantizer`. The switchable one
counts even while it is off in stage 1, when its latent kernel is still used as
real values: that is exactly what the paper measures in stage 1.

The callbacks read the latent kernel, never the quantized one: for a larq layer
`layer.kernel` is a `QuantizedVariable`, and its `latent_variable` is the raw
`tf.Variable` that the optimizer updates.

>>> import larq as lq
>>> conv = lq.layers.QuantConv2D(4, 3, kernel_quantizer="ste_sign",
...                              input_quantizer="approx_sign")
>>> is_binary_layer(conv), is_sign_input_layer(conv)
(True, True)
>>> is_binary_layer(tf.keras.layers.Conv2D(4, 3))
False
"""

from __future__ import annotations

import tensorflow as tf

from bnn_keras.quantizers import SwitchableQuantizer
from bnn_keras.utils import flat_layers

__all__ = [
    "binary_layers",
    "flat_layers",
    "is_binary_layer",
    "is_sign_input_layer",
    "latent_kernel",
    "require_binary_layers",
    "sign_input_layers",
]


def _is_binary_quantizer(quantizer) -> bool:
    return (
        isinstance(quantizer, SwitchableQuantizer)
        or getattr(quantizer, "precision", None) == 1
    )


def is_binary_layer(layer: tf.keras.layers.Layer) -> bool:
    """Whether `layer` has a binary kernel in stage 2 (see the module docstring)."""
    return _is_binary_quantizer(getattr(layer, "kernel_quantizer", None))


def is_sign_input_layer(layer: tf.keras.layers.Layer) -> bool:
    """Whether `layer` applies a sign function to its input (a 1-bit input quantizer)."""
    return _is_binary_quantizer(getattr(layer, "input_quantizer", None))


def binary_layers(model: tf.keras.Model) -> list[tf.keras.layers.Layer]:
    """The layers of `model` (nested models included) for which `is_binary_layer`."""
    return [layer for layer in flat_layers(model) if is_binary_layer(layer)]


def sign_input_layers(model: tf.keras.Model) -> list[tf.keras.layers.Layer]:
    """The layers of `model` for which `is_sign_input_layer`."""
    return [layer for layer in flat_layers(model) if is_sign_input_layer(layer)]


def latent_kernel(layer: tf.keras.layers.Layer) -> tf.Variable:
    """The raw kernel variable of `layer` (the latent weights of a larq layer)."""
    kernel = layer.kernel
    return getattr(kernel, "latent_variable", kernel)


def require_binary_layers(model, caller: str) -> list[tf.keras.layers.Layer]:
    """Checks that `model` is a built Keras model with binary layers; returns them.

    Args:
        model: the model a callback was given.
        caller: the callback's class name, for the error message.

    Raises:
        TypeError: `model` is not a Keras model.
        ValueError: `model` is not built, or has no binary layer.
    """
    if not isinstance(model, tf.keras.Model):
        raise TypeError(
            f"{caller} needs a tf.keras.Model; received: model={type(model).__name__}. "
            "Pass it to model.fit(callbacks=[...]) or call callback.set_model(model)."
        )
    layers = binary_layers(model)
    # A wrapper (e.g. for distillation) may be unbuilt around built binary layers.
    if any(not layer.built for layer in layers) or (not layers and not model.built):
        raise ValueError(
            f"{caller} needs a built model to find its kernels; received the unbuilt "
            f"model {model.name!r}. Build it first: model.build(input_shape), or call "
            "it on one batch."
        )
    if not layers:
        with_kernel = [
            f"{layer.name} ({type(layer).__name__})"
            for layer in flat_layers(model)
            if getattr(layer, "kernel", None) is not None
        ]
        raise ValueError(
            f"{caller} needs at least one binary conv layer (a layer whose "
            "kernel_quantizer has precision 1, or is a SwitchableQuantizer); received "
            f"model {model.name!r}, whose layers with a kernel are {with_kernel}."
        )
    return layers
