"""Convert a Keras model with Larq Compute Engine's converter, without detours.

`larq_compute_engine.convert_keras_model` first writes a Keras SavedModel and
converts that; only if that fails does it fall back to converting a frozen
GraphDef. Writing the SavedModel traces every layer's call functions through
autograph and serialises them with protobuf; with the pure-Python protobuf this
stack pins (larq-zoo needs protobuf < 3.21), that alone takes 30-40 s on two
cores for a 32 px ReActNet-A. `convert_keras_model` here takes LCE's GraphDef
path directly: trace the model once for a batch of one with autograph off
(Keras layers branch in Python on their configuration, not on tensors, so
autograph only costs seconds here), freeze the variables into constants, and
hand the GraphDef to the same MLIR converter and passes. The result has the same
operators (31 `LceBconv2d` and one `CONV_2D` for ReActNet-A at 224 px, and the
same file size within 200 bytes of tensor names) in a fraction of the time,
measured on two shared cores: 17-23 s against 67-100 s at 224 px, 5 s against
40 s at 32 px.

A layer that does branch in Python on a tensor fails to trace without autograph
(`OperatorNotAllowedInGraphError`); only then is the model traced again with
autograph.

Int8 input/output: LCE quantizes a graph only when it carries quantization
ranges (FakeQuant ops from quantization-aware training, or the "dummy" ranges of
`experimental_default_int8_range`). For a graph without them, LCE's own converter
returns a model with float input and output, without a word, when int8 was asked
for; here that is an error, and the input and output types are read back from
the flatbuffer.

The GraphDef entry point, `larq_compute_engine.mlir._tf_tfl_flatbuffer`, is the
binding that LCE's `convert_keras_model` itself falls back to; it is not public
API, which is one more reason setup.py keeps larq-compute-engine below 0.17.

The checks that make an export trustworthy (every binary layer became a binary
op, the file computes what Keras computes) are in `bnn_keras.export`; this
module only converts.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import tensorflow as tf
from larq_compute_engine.mlir._tf_tfl_flatbuffer import convert_graphdef_to_tflite_flatbuffer
from larq_compute_engine.mlir.python.util import modify_integer_quantized_model_io_type
from tensorflow.core.framework import types_pb2
from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

from bnn_keras.tflite_inspect import inspect_flatbuffer

__all__ = ["IO_TYPES", "TARGETS", "convert_keras_model"]

log = logging.getLogger(__name__)

TARGETS = ("arm", "xcore")
IO_TYPES = (tf.float32, tf.int8)
_FAKE_QUANT_OPS = frozenset(
    {
        "FakeQuantWithMinMaxArgs",
        "FakeQuantWithMinMaxArgsPerChannel",
        "FakeQuantWithMinMaxVars",
        "FakeQuantWithMinMaxVarsPerChannel",
        "QuantizeAndDequantizeV2",
        "QuantizeAndDequantizeV3",
        "QuantizeAndDequantizeV4",
    }
)


def convert_keras_model(
    model: tf.keras.Model,
    *,
    target: str = "arm",
    inference_input_type: tf.DType = tf.float32,
    inference_output_type: tf.DType = tf.float32,
    experimental_default_int8_range: Sequence[float] | None = None,
) -> bytes:
    """Converts a Keras model to a Larq Compute Engine TFLite flatbuffer.

    The model is converted for a batch of one, in inference mode (`training=False`).

    Example:

    >>> model = tf.keras.Sequential([tf.keras.Input((8,)), tf.keras.layers.Dense(3)])
    >>> flatbuffer = convert_keras_model(model)
    >>> flatbuffer[4:8]
    b'TFL3'

    Args:
        model: a Keras model with one input whose shape is static but for the batch.
        target: `"arm"` (phones, Raspberry Pi) or `"xcore"`.
        inference_input_type: `tf.float32`, or `tf.int8` for a quantized graph.
        inference_output_type: `tf.float32`, or `tf.int8` for a quantized graph.
        experimental_default_int8_range: `(min, max)` used as the quantization
            range of every tensor that has none: "dummy quantization", for
            latency measurements only (the accuracy is lost).

    Returns:
        The bytes of the `.tflite` file.

    Raises:
        TypeError: `model` is not a Keras model.
        ValueError: a bad option; a model with several inputs, a dynamic height or
            width, or a non-float32 dtype policy; int8 input or output for a
            graph that is not quantized.
    """
    _check_options(
        model=model,
        target=target,
        inference_input_type=inference_input_type,
        inference_output_type=inference_output_type,
        experimental_default_int8_range=experimental_default_int8_range,
    )
    concrete = _trace(model)
    frozen = convert_variables_to_constants_v2(concrete, lower_control_flow=False)
    graph_def = frozen.graph.as_graph_def()
    inputs = [t for t in frozen.inputs if t.dtype != tf.resource]
    default_range = (
        None
        if experimental_default_int8_range is None
        else tuple(float(v) for v in experimental_default_int8_range)
    )
    should_quantize = default_range is not None or _has_fake_quant(graph_def)
    flatbuffer = convert_graphdef_to_tflite_flatbuffer(
        graph_def.SerializeToString(),
        [_tensor_name(t) for t in inputs],
        [types_pb2.DataType.Name(t.dtype.as_datatype_enum) for t in inputs],
        [t.shape.as_list() for t in inputs],
        [_tensor_name(t) for t in frozen.outputs],
        should_quantize,
        target,
        default_range,
    )
    wants_int8 = tf.int8 in (inference_input_type, inference_output_type)
    if wants_int8:
        try:
            flatbuffer = modify_integer_quantized_model_io_type(
                flatbuffer,
                inference_input_type=inference_input_type,
                inference_output_type=inference_output_type,
            )
        except ValueError as e:
            raise ValueError(
                _not_quantized_message(inference_input_type, inference_output_type)
            ) from e
    _check_io_types(flatbuffer, inference_input_type, inference_output_type)
    return flatbuffer


def _check_options(
    *, model, target, inference_input_type, inference_output_type, experimental_default_int8_range
):
    if not isinstance(model, tf.keras.Model):
        raise TypeError(f"`model` must be a tf.keras.Model; received: model={model!r}")
    if target not in TARGETS:
        raise ValueError(f"`target` must be one of {TARGETS}; received: target={target!r}")
    for arg, value in (
        ("inference_input_type", inference_input_type),
        ("inference_output_type", inference_output_type),
    ):
        if value not in IO_TYPES:
            raise ValueError(f"`{arg}` must be tf.float32 or tf.int8; received: {arg}={value!r}")
    if experimental_default_int8_range is not None:
        try:
            low, high = (float(v) for v in experimental_default_int8_range)
        except (TypeError, ValueError) as e:
            raise ValueError(
                "`experimental_default_int8_range` must be a pair (min, max) of numbers; "
                f"received: experimental_default_int8_range={experimental_default_int8_range!r}"
            ) from e
        if not low < high:
            raise ValueError(
                "`experimental_default_int8_range` must have min < max; received: "
                f"experimental_default_int8_range={experimental_default_int8_range!r}"
            )
    if not tf.executing_eagerly():
        raise ValueError("`convert_keras_model` must run eagerly; received: graph mode")
    if len(model.inputs) != 1:
        raise ValueError(
            f"`model` must have exactly one input; received: {len(model.inputs)} inputs "
            f"({[t.name for t in model.inputs]})"
        )
    shape = tuple(model.inputs[0].shape)
    if any(d is None for d in shape[1:]):
        raise ValueError(
            "`model` must have a static input shape (only the batch may be None): a "
            "binary convolution needs its height and width at conversion time. "
            f"Rebuild the model with a fixed input_shape; received: input shape {shape}"
        )
    policy = getattr(model, "dtype_policy", None)
    if policy is not None and policy.name != "float32":
        raise ValueError(
            "`model` must use the float32 dtype policy (TFLite converts float32 graphs); "
            f"received: dtype policy {policy.name!r}. Rebuild it under "
            "tf.keras.mixed_precision.set_global_policy('float32') and copy the weights."
        )


def _trace(model: tf.keras.Model):
    """The concrete inference function of `model` for a batch of one."""
    tensor = model.inputs[0]
    spec = tf.TensorSpec((1, *tensor.shape[1:]), tensor.dtype, name=model.input_names[0])

    def infer(x):
        return model(x, training=False)

    try:
        return tf.function(infer, input_signature=[spec], autograph=False).get_concrete_function()
    except tf.errors.OperatorNotAllowedInGraphError:
        log.info("Model %r branches on tensors in Python; tracing it with autograph.", model.name)
        return tf.function(infer, input_signature=[spec], autograph=True).get_concrete_function()


def _tensor_name(tensor) -> str:
    # A graph tensor is "op:0"; the converter wants the op name for output 0.
    name = tensor.name
    return name[:-2] if name.endswith(":0") else name


def _has_fake_quant(graph_def) -> bool:
    nodes = list(graph_def.node)
    for function in graph_def.library.function:
        nodes.extend(function.node_def)
    return any(node.op in _FAKE_QUANT_OPS for node in nodes)


def _not_quantized_message(inference_input_type, inference_output_type) -> str:
    return (
        "`inference_input_type` and `inference_output_type` may be tf.int8 only for a "
        "quantized graph; received: inference_input_type="
        f"{inference_input_type.name}, inference_output_type={inference_output_type.name} "
        "for a model without quantization ranges (no FakeQuant ops), which Larq Compute "
        "Engine converts with float32 input and output. Export with float32 input and "
        "output, train with quantization-aware FakeQuant ops, or pass "
        "experimental_default_int8_range=(min, max) to measure int8 latency with dummy "
        "ranges (not for accuracy)."
    )


def _check_io_types(flatbuffer: bytes, inference_input_type, inference_output_type) -> None:
    summary = inspect_flatbuffer(flatbuffer)
    for arg, wanted, tensors in (
        ("inference_input_type", inference_input_type, summary.inputs),
        ("inference_output_type", inference_output_type, summary.outputs),
    ):
        got = sorted({t.dtype for t in tensors})
        if got != [wanted.name]:
            if wanted == tf.int8:
                raise ValueError(
                    _not_quantized_message(inference_input_type, inference_output_type)
                    + f" The converted model has {arg.split('_')[1]} type {got}."
                )
            raise ValueError(
                f"`{arg}` asked for {wanted.name}, but the converted model has {got}; "
                "the graph was quantized by FakeQuant ops or a default int8 range: "
                f"pass {arg}=tf.int8, or remove the quantization."
            )
