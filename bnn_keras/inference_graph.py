"""The inference graph of a binary network, and whether LCE made it binary.

Why the graph is rebuilt: a model of the two-stage schedule has
`SwitchableQuantizer` kernels, a `tf.cond` on a boolean variable around the
binary quantizer. Frozen for conversion, that is a branch between the latent
float kernel and `alpha * sign(W)`, and LCE's converter is not guaranteed to
fold it before it looks for the `sign -> conv` pattern of a binary convolution.
`inference_model` therefore clones the model from its config with every switch
replaced by what it stands for (the wrapped quantizer when binarization is on,
no quantizer when it is off) and copies the weights, which works because a
stage-1 and a stage-2 model have identical weight lists by design
(`bnn_keras.quantizers`). Shapes are checked before copying.

A stage-1 model (switches off: binary activations, real-valued weights) is
refused unless `allow_float_weights=True`: its convolutions cannot become binary
ops, and it is not the network the paper evaluates.

`binary_conv_layers` lists the layers that must become `LceBconv2d`;
`check_binary_convs` compares them with the converted flatbuffer, and
`likely_causes` explains, from a layer's configuration and by probing its
quantizers, why one did not become binary.
"""

from __future__ import annotations

import larq as lq
import numpy as np
import tensorflow as tf

from bnn_keras.models.common import quiet_constraint_warning
from bnn_keras.quantizers import SwitchableQuantizer
from bnn_keras.tflite_inspect import FlatbufferSummary
from bnn_keras.utils import flat_layers

__all__ = [
    "binary_conv_layers",
    "binary_layers",
    "check_binary_convs",
    "inference_model",
    "likely_causes",
]

_FLOAT_CONVS = ("CONV_2D", "DEPTHWISE_CONV_2D", "TRANSPOSE_CONV")
_SIGN_PROBE = np.array([-2.0, -0.5, -1e-3, 1e-3, 0.5, 2.0], dtype="float32")


def _is_binary(quantizer) -> bool:
    return getattr(quantizer, "precision", None) == 1


def binary_layers(model: tf.keras.Model) -> list[tf.keras.layers.Layer]:
    """Layers of `model` (nested models included) with a 1-bit input or kernel quantizer.

    A `SwitchableQuantizer` counts as 1-bit while it binarizes.
    """
    return [
        layer
        for layer in flat_layers(model)
        if _is_binary(getattr(layer, "input_quantizer", None))
        or _is_binary(getattr(layer, "kernel_quantizer", None))
    ]


def binary_conv_layers(
    model: tf.keras.Model, *, allow_float_weights: bool = False
) -> list[lq.layers.QuantConv2D]:
    """The layers that Larq Compute Engine must turn into `LceBconv2d` ops.

    Every `larq.layers.QuantConv2D` with a 1-bit input or kernel quantizer, except,
    when `allow_float_weights`, those whose kernel is real-valued (they become a
    float `CONV_2D` on binarized input, as the user asked). LCE has no binary
    kernel for other layer types (`QuantDense`, `QuantDepthwiseConv2D`, ...).

    Example:

    >>> model = tf.keras.Sequential([
    ...     tf.keras.Input((8, 8, 2)),
    ...     lq.layers.QuantConv2D(4, 3, input_quantizer="ste_sign", name="full"),
    ...     lq.layers.QuantConv2D(4, 3, input_quantizer="ste_sign",
    ...                           kernel_quantizer="ste_sign", name="binary"),
    ...     tf.keras.layers.Flatten(),
    ...     lq.layers.QuantDense(2, input_quantizer="ste_sign", kernel_quantizer="ste_sign")])
    >>> [layer.name for layer in binary_conv_layers(model)]
    ['full', 'binary']
    >>> [layer.name for layer in binary_conv_layers(model, allow_float_weights=True)]
    ['binary']
    """
    found = []
    for layer in binary_layers(model):
        if not isinstance(layer, lq.layers.QuantConv2D):
            continue
        if allow_float_weights and not _is_binary(layer.kernel_quantizer):
            continue
        found.append(layer)
    return found


def inference_model(
    model: tf.keras.Model, *, allow_float_weights: bool = False
) -> tuple[tf.keras.Model, list[str]]:
    """Rebuilds `model` with static kernel quantizers and the same weights.

    Each `SwitchableQuantizer` is replaced by its wrapped quantizer when it
    binarizes, and removed when it does not. A model without switchable
    quantizers is returned as it is.

    Example:

    >>> trained = tf.keras.Sequential([
    ...     tf.keras.Input((8, 8, 2)),
    ...     lq.layers.QuantConv2D(
    ...         4, 3, input_quantizer="approx_sign", name="conv",
    ...         kernel_quantizer=SwitchableQuantizer("scaled_sign", binarize=True))])
    >>> static, float_layers = inference_model(trained)
    >>> type(static.get_layer("conv").kernel_quantizer).__name__, float_layers
    ('ScaledSign', [])

    Args:
        model: a functional or Sequential Keras model (nested ones included).
        allow_float_weights: accept switchable quantizers that are off (stage 1).

    Returns:
        `(static_model, float_weight_layers)`: the rebuilt model, and the names of
        the layers whose switch was off (real-valued kernels).

    Raises:
        ValueError: a switch is off and `allow_float_weights` is False (a stage-1
            model); or the rebuilt model's weights do not match.
        TypeError: a subclassed model with switchable quantizers (it cannot be
            rebuilt from its config).
    """
    switchable = [
        layer
        for layer in flat_layers(model)
        if isinstance(getattr(layer, "kernel_quantizer", None), SwitchableQuantizer)
    ]
    if not switchable:
        return model, []
    off = [layer.name for layer in switchable if not layer.kernel_quantizer.binarize]
    if off and not allow_float_weights:
        raise ValueError(
            f"`model` has real-valued weights: {len(off)} of its {len(switchable)} "
            f"switchable binary layers do not binarize their kernel ({_short_list(off)}), "
            "so this is a stage-1 model of the two-stage schedule (binary activations, "
            "real-valued weights). Run stage 2 (binary weights, started from stage 1) and "
            "export its model, or pass allow_float_weights=True (--allow_float_weights) "
            "to export binary activations with float weights; received: a stage-1 model "
            f"{model.name!r}."
        )
    if not _is_graph_network(model):
        raise TypeError(
            "`model` must be a functional or Sequential model to be rebuilt with static "
            f"quantizers; received: a subclassed model {model.name!r} ({type(model).__name__})"
        )
    # Larq warns about binary kernels without a weight clip for every rebuilt layer;
    # the trained model has been built (and warned about) already.
    with quiet_constraint_warning():
        static = tf.keras.models.clone_model(model, clone_function=_static_layer)
    _copy_weights(model, static)
    return static, off


def _is_graph_network(model) -> bool:
    return isinstance(model, tf.keras.Sequential) or getattr(model, "_is_graph_network", False)


def _static_layer(layer):
    if isinstance(layer, tf.keras.Model):
        if not _is_graph_network(layer):
            raise TypeError(
                "`model` must contain only functional or Sequential sub-models to be "
                f"rebuilt; received: a subclassed sub-model {layer.name!r}"
            )
        return tf.keras.models.clone_model(layer, clone_function=_static_layer)
    config = layer.get_config()
    quantizer = getattr(layer, "kernel_quantizer", None)
    if isinstance(quantizer, SwitchableQuantizer):
        config["kernel_quantizer"] = (
            lq.quantizers.serialize(quantizer.quantizer) if quantizer.binarize else None
        )
    return layer.__class__.from_config(config)


def _copy_weights(source: tf.keras.Model, target: tf.keras.Model) -> None:
    values = source.get_weights()
    shapes = [tuple(w.shape) for w in target.weights]
    if [v.shape for v in values] != shapes:
        raise ValueError(
            f"The rebuilt model's weights must match the trained model's; received: "
            f"{len(values)} trained weights and {len(shapes)} rebuilt ones, first "
            f"difference at {_first_difference([v.shape for v in values], shapes)}"
        )
    target.set_weights(values)


def _first_difference(a, b) -> str:
    for i, (x, y) in enumerate(zip(a, b)):
        if x != y:
            return f"weight {i}: {x} vs {y}"
    return f"weight {min(len(a), len(b))}: one list is longer"


def _short_list(names: list[str], limit: int = 4) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f", ... ({len(names)} in all)" if len(names) > limit else "")


def likely_causes(layer: lq.layers.QuantConv2D) -> list[str]:
    """Why Larq Compute Engine may not have made `layer` a binary convolution.

    Checks the configuration (padding value, data format) and probes the
    quantizers: the input quantizer must compute `sign(x)` in {-1, +1}, and the
    kernel quantizer must give `+alpha` or `-alpha` per output channel.

    Example:

    >>> layer = lq.layers.QuantConv2D(4, 3, input_quantizer="ste_heaviside",
    ...                               kernel_quantizer="ste_sign")
    >>> layer.build((None, 8, 8, 2))
    >>> [cause.split(":")[0] for cause in likely_causes(layer)]
    ['its input quantizer SteHeaviside is not sign-based']

    Returns:
        Human-readable causes; empty when none was found.
    """
    causes = []
    input_quantizer = getattr(layer, "input_quantizer", None)
    if input_quantizer is None:
        causes.append(
            "its input is not binarized (input_quantizer=None): LceBconv2d needs a "
            "sign-based input quantizer, such as 'ste_sign' or 'approx_sign', directly "
            "in front of the convolution"
        )
    else:
        got = _probe(input_quantizer, _SIGN_PROBE)
        want = np.where(_SIGN_PROBE < 0, -1.0, 1.0)
        if got is None or got.shape != want.shape or not np.allclose(got, want):
            causes.append(
                f"its input quantizer {_quantizer_name(input_quantizer)} is not sign-based: "
                f"it maps {_SIGN_PROBE.tolist()} to "
                f"{None if got is None else np.round(got, 3).tolist()}, where LceBconv2d "
                "needs sign(x) in {-1, +1} (0/1 quantizers such as 'ste_heaviside' are "
                "not binary convolutions to LCE)"
            )
    kernel_quantizer = getattr(layer, "kernel_quantizer", None)
    if kernel_quantizer is None:
        causes.append(
            "its kernel is real-valued (kernel_quantizer=None); LceBconv2d needs a "
            "binary kernel such as 'ste_sign' or 'scaled_sign'"
        )
    elif layer.built:
        kernel = tf.keras.backend.get_value(getattr(layer.kernel, "latent_variable", layer.kernel))
        problem = _kernel_problem(kernel_quantizer, kernel)
        if problem:
            causes.append(
                f"its kernel quantizer {_quantizer_name(kernel_quantizer)} {problem}; "
                "LceBconv2d needs +alpha or -alpha with one alpha > 0 per output channel"
            )
    padding = getattr(layer, "padding", None)
    pad_values = getattr(layer, "pad_values", 0.0)
    if padding == "same" and pad_values not in (0.0, 1.0):
        causes.append(
            f"it pads with pad_values={pad_values}: LceBconv2d pads its binary input with "
            "1 (pad_values=1.0, the fast path) or 0"
        )
    if getattr(layer, "data_format", "channels_last") != "channels_last":
        causes.append(f"its data_format is {layer.data_format!r}; LCE needs 'channels_last'")
    return causes


def _quantizer_name(quantizer) -> str:
    # A quantizer is a Larq quantizer layer or a plain function.
    return getattr(quantizer, "__name__", None) or type(quantizer).__name__


def _probe(quantizer, values: np.ndarray) -> np.ndarray | None:
    try:
        return np.asarray(quantizer(tf.constant(values)), dtype="float32")
    except (TypeError, ValueError, tf.errors.OpError):
        return None


def _kernel_problem(quantizer, kernel: np.ndarray) -> str | None:
    quantized = _probe(quantizer, kernel)
    if quantized is None:
        return "could not be applied to the kernel"
    magnitudes = np.abs(quantized.reshape(-1, quantized.shape[-1]))
    for channel in range(magnitudes.shape[1]):
        column = magnitudes[:, channel]
        if column.min() <= 0 or not np.allclose(column, column[0], rtol=1e-5):
            return (
                f"does not give one magnitude per output channel (channel {channel}: "
                f"magnitudes from {column.min():.4g} to {column.max():.4g})"
            )
    return None


def check_binary_convs(
    summary: FlatbufferSummary, expected: list[lq.layers.QuantConv2D], model_name: str
) -> None:
    """Raises unless every expected layer became an `LceBconv2d`, naming those that did not.

    TFLite keeps (truncated) TensorFlow op names as tensor names, so a layer that
    became a float convolution is found by its name in that op's outputs or weights.
    """

    def named_in(layer, names) -> bool:
        return any(f"/{layer.name}/" in name for name in names if name)

    float_names = [(op.outputs + op.inputs[1:2]) for op in summary.ops if op.name in _FLOAT_CONVS]
    failed = [layer for layer in expected if any(named_in(layer, n) for n in float_names)]
    num_binary = summary.count("LceBconv2d")
    if not failed and num_binary >= len(expected):
        return
    if num_binary + len(failed) < len(expected):
        # Some names were fused away: add the layers no LCE op mentions.
        lce_names = [op.tensor_names for op in summary.ops if op.name.startswith("Lce")]
        failed += [
            layer
            for layer in expected
            if layer not in failed and not any(named_in(layer, n) for n in lce_names)
        ]
    lines = []
    for layer in failed or expected:
        causes = likely_causes(layer) or [
            "its configuration looks right: look for an op between the input quantizer "
            "and the convolution (a custom layer, a cast, an explicit padding), or a "
            "custom quantizer that LCE does not recognise as a sign"
        ]
        lines.append(f"  - {layer.name}: " + "; ".join(causes))
    which = "these layers" if failed else "the binary layers (the failed ones could not be named)"
    raise ValueError(
        f"Every binary convolution of {model_name!r} must become an LceBconv2d op; "
        f"received: {num_binary} LceBconv2d for {len(expected)} binary QuantConv2D layers. "
        f"Likely causes for {which}:\n" + "\n".join(lines)
    )
