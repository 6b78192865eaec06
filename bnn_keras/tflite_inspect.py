"""Read a TFLite flatbuffer: which ops it runs, and what goes in and comes out.

The export checks a converted model from the file itself, not from what the
converter was asked to do: Larq Compute Engine (LCE) quietly keeps a float
convolution when it cannot build a binary one, and quietly returns float
input/output when int8 was asked for a graph without quantization ranges. Only
the flatbuffer tells the truth.

The file is parsed with the flatbuffer schema that TensorFlow ships
(`tensorflow.lite.python.schema_py_generated`), read-only and without copying the
weight buffers, so inspecting a 100 MB float model costs milliseconds. LCE's own
ops are `CUSTOM` operators and are counted under their custom code
(`"LceBconv2d"`, `"LceQuantize"`, `"LceDequantize"`); builtin operators under
their schema name (`"CONV_2D"`, `"FULLY_CONNECTED"`, ...). The options of each
`LceBconv2d` (a flexbuffer map: strides, padding, `pad_values`, ...) are decoded
too, because zero-padded binary convolutions run on LCE's slower path.

Example:

>>> import tensorflow as tf
>>> from bnn_keras.lce_convert import convert_keras_model
>>> model = tf.keras.Sequential([tf.keras.Input((4,)), tf.keras.layers.Dense(2)])
>>> summary = inspect_flatbuffer(convert_keras_model(model))
>>> summary.op_counts
{'FULLY_CONNECTED': 1}
>>> summary.inputs[0].shape, summary.inputs[0].dtype
((1, 4), 'float32')
"""

from __future__ import annotations

import collections
import dataclasses
from typing import Any

from flatbuffers import flexbuffers
from tensorflow.lite.python import schema_py_generated as schema

__all__ = [
    "FlatbufferSummary",
    "OpInfo",
    "TensorInfo",
    "inspect_flatbuffer",
]

_BUILTIN_NAMES = {
    value: name for name, value in vars(schema.BuiltinOperator).items() if not name.startswith("_")
}
_TENSOR_TYPE_NAMES = {
    value: name.lower()
    for name, value in vars(schema.TensorType).items()
    if not name.startswith("_")
}


@dataclasses.dataclass(frozen=True)
class TensorInfo:
    """One tensor of the model.

    Attributes:
        name: the tensor's name (TFLite truncates long names).
        shape: the static shape, batch first.
        dtype: the numpy name of the element type: `"float32"`, `"int8"`, ...
        scale: quantization scale of an int8 tensor, else None.
        zero_point: quantization zero point of an int8 tensor, else None.
    """

    name: str
    shape: tuple[int, ...]
    dtype: str
    scale: float | None = None
    zero_point: int | None = None

    def to_json(self) -> dict[str, Any]:
        """A dict of plain JSON types."""
        return {**dataclasses.asdict(self), "shape": list(self.shape)}


@dataclasses.dataclass(frozen=True)
class OpInfo:
    """One operator: its name, the names of its tensors and its custom options.

    Attributes:
        name: builtin name (`"CONV_2D"`) or custom code (`"LceBconv2d"`).
        inputs: names of the input tensors (`None` for an omitted optional one).
        outputs: names of the output tensors.
        options: the decoded custom options of an LCE op, else an empty dict.
    """

    name: str
    inputs: tuple[str | None, ...]
    outputs: tuple[str, ...]
    options: dict[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def tensor_names(self) -> tuple[str, ...]:
        """Every named input and output tensor."""
        return tuple(n for n in self.inputs + self.outputs if n is not None)


@dataclasses.dataclass(frozen=True)
class FlatbufferSummary:
    """What `inspect_flatbuffer` reads from a model's main subgraph.

    Attributes:
        op_counts: number of operators per name, most frequent first.
        ops: every operator in execution order.
        inputs: the model's input tensors.
        outputs: the model's output tensors.
        size_bytes: size of the flatbuffer.
    """

    op_counts: dict[str, int]
    ops: tuple[OpInfo, ...]
    inputs: tuple[TensorInfo, ...]
    outputs: tuple[TensorInfo, ...]
    size_bytes: int

    def count(self, name: str) -> int:
        """The number of operators called `name` (0 when there is none)."""
        return self.op_counts.get(name, 0)


def inspect_flatbuffer(flatbuffer: bytes) -> FlatbufferSummary:
    """Counts the operators of a TFLite model and describes its inputs and outputs.

    Args:
        flatbuffer: the bytes of a `.tflite` file.

    Returns:
        A `FlatbufferSummary` of the main subgraph (subgraph 0).

    Raises:
        TypeError: `flatbuffer` is not bytes.
        ValueError: the bytes are not a TFLite model.
    """
    if not isinstance(flatbuffer, (bytes, bytearray, memoryview)):
        raise TypeError(
            "`flatbuffer` must be the bytes of a .tflite file; received: "
            f"flatbuffer of type {type(flatbuffer).__name__}"
        )
    data = bytes(flatbuffer)
    if len(data) < 8 or not schema.Model.ModelBufferHasIdentifier(data, 0):
        raise ValueError(
            "`flatbuffer` must be a TFLite model (file identifier 'TFL3'); received: "
            f"{len(data)} bytes starting with {data[:8]!r}"
        )
    model = schema.Model.GetRootAs(data, 0)
    if model.SubgraphsLength() < 1:
        raise ValueError("`flatbuffer` must contain a subgraph; received: a model without one")
    op_names = [_operator_name(model.OperatorCodes(i)) for i in range(model.OperatorCodesLength())]
    subgraph = model.Subgraphs(0)

    def tensor_name(index):
        return None if index < 0 else subgraph.Tensors(index).Name().decode("utf-8", "replace")

    ops = []
    for i in range(subgraph.OperatorsLength()):
        op = subgraph.Operators(i)
        name = op_names[op.OpcodeIndex()]
        options = {}
        if name.startswith("Lce") and op.CustomOptionsLength() >= 3:
            # A flexbuffer's root takes at least three bytes; LceQuantize has none.
            options = flexbuffers.Loads(op.CustomOptionsAsNumpy().tobytes())
        ops.append(
            OpInfo(
                name=name,
                inputs=tuple(tensor_name(op.Inputs(j)) for j in range(op.InputsLength())),
                outputs=tuple(tensor_name(op.Outputs(j)) for j in range(op.OutputsLength())),
                options=options,
            )
        )
    counts = collections.Counter(op.name for op in ops)
    return FlatbufferSummary(
        op_counts=dict(counts.most_common()),
        ops=tuple(ops),
        inputs=tuple(
            _tensor_info(subgraph, subgraph.Inputs(i)) for i in range(subgraph.InputsLength())
        ),
        outputs=tuple(
            _tensor_info(subgraph, subgraph.Outputs(i)) for i in range(subgraph.OutputsLength())
        ),
        size_bytes=len(data),
    )


def _operator_name(code) -> str:
    # Schema 3a moved builtin codes past 127 into `builtin_code`; older writers fill
    # only `deprecated_builtin_code`. The larger of the two is the real one.
    builtin = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
    if builtin == schema.BuiltinOperator.CUSTOM:
        return code.CustomCode().decode("utf-8", "replace")
    return _BUILTIN_NAMES.get(builtin, f"BUILTIN_{builtin}")


def _tensor_info(subgraph, index: int) -> TensorInfo:
    tensor = subgraph.Tensors(index)
    shape = tuple(int(d) for d in tensor.ShapeAsNumpy()) if tensor.ShapeLength() else ()
    dtype = _TENSOR_TYPE_NAMES.get(tensor.Type(), f"type_{tensor.Type()}")
    scale = zero_point = None
    quant = tensor.Quantization()
    if quant is not None and quant.ScaleLength() == 1:
        scale = float(quant.Scale(0))
        zero_point = int(quant.ZeroPoint(0)) if quant.ZeroPointLength() else 0
    return TensorInfo(
        name=tensor.Name().decode("utf-8", "replace"),
        shape=shape,
        dtype=dtype,
        scale=scale,
        zero_point=zero_point,
    )
