"""Convert a binary Keras model to LCE TFLite, and check that it became binary.

`convert` is the first half of an export (`bnn_keras.export` adds the numerical
verification and the files): it finds the model (`bnn_keras.export_source`),
rebuilds its inference graph with static quantizers and refuses a stage-1 model
or a model without binary layers (`bnn_keras.inference_graph`), converts it
(`bnn_keras.lce_convert`), and reads the flatbuffer back
(`bnn_keras.tflite_inspect`): every binary `QuantConv2D` must be an `LceBconv2d`
in the file, or the error names the layers that are not and the likely cause.

Two things are only warned about, because LCE runs them correctly but not as a
user may expect: binary layers that are not convolutions (LCE has no binary
dense or depthwise kernel; they run as float ops on +-1 values), and binary
convolutions that pad with zeros (LCE's slower path; `pad_values=1.0` is the
fast one).
"""

from __future__ import annotations

import dataclasses
import logging

import larq as lq
import tensorflow as tf

from bnn_keras import inference_graph
from bnn_keras.export_source import ExportSource, load_source
from bnn_keras.lce_convert import convert_keras_model
from bnn_keras.tflite_inspect import FlatbufferSummary, inspect_flatbuffer

__all__ = ["Conversion", "convert", "convert_source"]

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Conversion:
    """A checked conversion: the flatbuffer, what it holds, and which layers are binary.

    Attributes:
        flatbuffer: the `.tflite` bytes.
        summary: `inspect_flatbuffer(flatbuffer)`.
        binary_convs: names of the layers that became `LceBconv2d`.
        float_weight_layers: names of the layers exported with real-valued
            weights (only with `allow_float_weights`).
    """

    flatbuffer: bytes
    summary: FlatbufferSummary
    binary_convs: list[str]
    float_weight_layers: list[str]


def convert(
    model,
    *,
    target: str = "arm",
    inference_input_type: tf.DType = tf.float32,
    inference_output_type: tf.DType = tf.float32,
    allow_float_weights: bool = False,
    experimental_default_int8_range=None,
) -> bytes:
    """Converts a binary Keras model to an LCE TFLite flatbuffer, checking every binary layer.

    Example:

    A float stem and two binary convolutions (ReActNet-A gives 31 `LceBconv2d`
    and one `CONV_2D`):

    >>> from bnn_keras.tflite_inspect import inspect_flatbuffer
    >>> model = tf.keras.Sequential([
    ...     tf.keras.Input((8, 8, 1)),
    ...     tf.keras.layers.Conv2D(4, 3, padding="same"),
    ...     lq.layers.QuantConv2D(4, 3, padding="same", pad_values=1.0,
    ...                           input_quantizer="ste_sign", kernel_quantizer="ste_sign"),
    ...     lq.layers.QuantConv2D(4, 3, padding="same", pad_values=1.0,
    ...                           input_quantizer="ste_sign", kernel_quantizer="ste_sign"),
    ...     tf.keras.layers.GlobalAveragePooling2D(),
    ...     tf.keras.layers.Dense(2)])
    >>> counts = inspect_flatbuffer(convert(model)).op_counts
    >>> counts["LceBconv2d"], counts["CONV_2D"]
    (2, 1)

    Args:
        model: a Keras model, or the path of a run directory (its newest stage:
            stage 2, else stage 1), of a stage directory, of a `.keras` / `.h5`
            file or of a SavedModel directory.
        target: `"arm"` or `"xcore"`.
        inference_input_type: `tf.float32`, or `tf.int8` for a quantized graph.
        inference_output_type: `tf.float32`, or `tf.int8` for a quantized graph.
        allow_float_weights: export a stage-1 model (binary activations,
            real-valued weights) as float convolutions on binarized inputs.
        experimental_default_int8_range: `(min, max)` for every tensor without a
            quantization range ("dummy" int8, for latency measurements only).

    Returns:
        The bytes of the `.tflite` file.

    Raises:
        ValueError: a path that holds no model; a model without binary layers; a
            stage-1 model without `allow_float_weights`; a binary layer that did
            not become `LceBconv2d` (named, with its likely cause); int8 input or
            output for a graph that is not quantized; a bad option.
        TypeError: `model` is neither a Keras model nor a path.
    """
    source = load_source(model)
    return convert_source(
        source,
        target=target,
        inference_input_type=inference_input_type,
        inference_output_type=inference_output_type,
        allow_float_weights=allow_float_weights,
        experimental_default_int8_range=experimental_default_int8_range,
    ).flatbuffer


def convert_source(
    source: ExportSource, *, allow_float_weights: bool = False, **options
) -> Conversion:
    """`convert` for a loaded `ExportSource`; returns the whole `Conversion`.

    Args:
        source: from `bnn_keras.export_source.load_source`.
        allow_float_weights: as for `convert`.
        **options: the keyword arguments of `bnn_keras.lce_convert.convert_keras_model`.
    """
    static, float_weight_layers = inference_graph.inference_model(
        source.model, allow_float_weights=allow_float_weights
    )
    if len(static.outputs) != 1:
        raise ValueError(
            "`model` must have one output (the class scores) to be verified; received: "
            f"{len(static.outputs)} outputs ({static.output_names})"
        )
    binary = inference_graph.binary_layers(static)
    if not binary:
        raise ValueError(
            "`model` must have at least one binary layer (a Larq quantized layer with a "
            "1-bit input or kernel quantizer, such as QuantConv2D(input_quantizer="
            "'ste_sign', kernel_quantizer='ste_sign')); received: model "
            f"{static.name!r} with none, which a plain TFLite converter exports better."
        )
    expected = inference_graph.binary_conv_layers(static, allow_float_weights=allow_float_weights)
    others = [layer.name for layer in binary if not isinstance(layer, lq.layers.QuantConv2D)]
    if others:
        log.warning(
            "LCE has no binary kernel for %d binary layers that are not QuantConv2D (%s); "
            "they run as float ops on binary values.",
            len(others),
            ", ".join(others),
        )
    if float_weight_layers:
        log.warning(
            "Exporting %d layers with real-valued weights (allow_float_weights): they "
            "become float CONV_2D ops, not LceBconv2d.",
            len(float_weight_layers),
        )
    flatbuffer = convert_keras_model(static, **options)
    summary = inspect_flatbuffer(flatbuffer)
    inference_graph.check_binary_convs(summary, expected, static.name)
    # TFLite's Padding enum: SAME is 0. VALID convolutions pad nothing.
    zero_padded = [
        op
        for op in summary.ops
        if op.name == "LceBconv2d"
        and op.options.get("padding") == 0
        and op.options.get("pad_values") == 0
    ]
    if zero_padded:
        log.warning(
            "%d LceBconv2d ops pad their binary input with 0, LCE's slower path; build "
            "the binary convolutions with pad_values=1.0 for the fast one.",
            len(zero_padded),
        )
    log.info("Converted %r: %s", static.name, summary.op_counts)
    return Conversion(
        flatbuffer=flatbuffer,
        summary=summary,
        binary_convs=[layer.name for layer in expected],
        float_weight_layers=float_weight_layers,
    )
