"""The files an export writes: the `.tflite`, the JSON beside it, and how both are written.

The JSON (`model.tflite` -> `model.json`) is what an app on the device needs to
feed the model and read its answer, plus where the file came from:

- `input`: name, shape (batch first, NHWC), dtype, and for int8 input the
  `scale` and `zero_point` (`q = round(x / scale + zero_point)`);
- `normalization`: `mean` and `std` per channel; the model expects
  `(pixel / 255 - mean[c]) / std[c]` with pixels in [0, 255], exactly as the
  training pipeline (`bnn_keras.data`) fed it;
- `output`: shape, dtype, int8 scale, and whether the values are probabilities
  (a softmax head) or scores; `label_names`, one per class;
- `op_counts`, `binary_layers`, `file_size_bytes`, `sha256`;
- `verification` and `evaluation` (see `bnn_keras.tflite_verify`);
- `source`: the run directory or file, the stage, the run's `run.json` and the
  stage's metrics (`result.json`); `runtime` and `versions`.

`write_atomically` writes every file to a temporary file in its target directory
and renames them only when all are written, so a failure leaves no partial file,
and a `.tflite` never appears without its JSON (the JSON is renamed first).
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

import tensorflow as tf

import bnn_keras
from bnn_keras.export_source import ExportSource
from bnn_keras.tflite_inspect import FlatbufferSummary

__all__ = ["LCE_RELEASE", "build_metadata", "check_output_path", "write_atomically"]

# The LCE release whose runtime (lce_benchmark_model, RegisterLCECustomOps)
# matches the converter installed with bnn_keras (larq-compute-engine 0.16).
LCE_RELEASE = "v0.16.0"


def build_metadata(
    *,
    tflite_name: str,
    flatbuffer: bytes,
    summary: FlatbufferSummary,
    target: str,
    source: ExportSource,
    dataset_info: dict[str, Any] | None,
    binary_convs: list[str],
    float_weight_layers: list[str],
    verification: dict[str, Any] | None,
    evaluation: dict[str, Any] | None,
) -> dict[str, Any]:
    """The content of the JSON written beside a `.tflite` (see the module docstring).

    Example:

    >>> from bnn_keras.lce_convert import convert_keras_model
    >>> from bnn_keras.tflite_inspect import inspect_flatbuffer
    >>> model = tf.keras.Sequential([tf.keras.Input((3,)), tf.keras.layers.Dense(2)])
    >>> flatbuffer = convert_keras_model(model)
    >>> meta = build_metadata(
    ...     tflite_name="m.tflite", flatbuffer=flatbuffer,
    ...     summary=inspect_flatbuffer(flatbuffer), target="arm",
    ...     source=ExportSource(model=model, kind="model"), dataset_info=None,
    ...     binary_convs=[], float_weight_layers=[], verification=None, evaluation=None)
    >>> meta["input"]["shape"], meta["file_size_bytes"] == len(flatbuffer)
    ([1, 3], True)

    Args:
        tflite_name: the file name of the `.tflite`.
        flatbuffer: its bytes.
        summary: `inspect_flatbuffer(flatbuffer)`.
        target: the conversion target.
        source: the exported model and its run record.
        dataset_info: a `DatasetInfo.to_json()` dict, or None.
        binary_convs: names of the layers that had to become `LceBconv2d`.
        float_weight_layers: names of the layers exported with float weights.
        verification: `Verification.to_json()`, or None.
        evaluation: `Evaluation.to_json()`, or None.

    Returns:
        A dict of plain JSON types.
    """
    info = dataset_info or {}
    last = source.model.layers[-1] if source.model.layers else None
    activation = getattr(last, "activation", None)
    activation_name = getattr(activation, "__name__", None)
    normalization = None
    if "mean" in info and "std" in info:
        normalization = {
            "mean": list(info["mean"]),
            "std": list(info["std"]),
            "formula": "x = (pixel / 255 - mean[c]) / std[c] for channel c, pixels in [0, 255]",
        }
    return {
        "tflite": tflite_name,
        "file_size_bytes": len(flatbuffer),
        "sha256": hashlib.sha256(flatbuffer).hexdigest(),
        "target": target,
        "input": {**summary.inputs[0].to_json(), "layout": "NHWC"},
        "normalization": normalization,
        "output": {
            **summary.outputs[0].to_json(),
            "values": "probabilities" if activation_name == "softmax" else "scores",
        },
        "label_names": list(info["label_names"]) if "label_names" in info else None,
        "op_counts": dict(summary.op_counts),
        "binary_layers": {
            "expected_lce_bconv2d": len(binary_convs),
            "lce_bconv2d": summary.count("LceBconv2d"),
            "float_weight_layers": list(float_weight_layers),
        },
        "verification": verification,
        "evaluation": evaluation,
        "source": {
            "kind": source.kind,
            "path": source.path,
            "model_name": source.model.name,
            "stage": source.stage,
            "dataset": info.get("name"),
            "run": source.run,
            "metrics": source.metrics,
        },
        "runtime": {
            "lce_release": LCE_RELEASE,
            "note": "Runs only where LCE's binary ops are registered: LCE's "
            "lce_benchmark_model, or an app linked with RegisterLCECustomOps. Stock "
            "tflite_runtime cannot run LceBconv2d.",
        },
        "versions": {
            "bnn_keras": bnn_keras.__version__,
            "larq_compute_engine": _version("larq-compute-engine"),
            "larq": _version("larq"),
            "tensorflow": tf.__version__,
        },
    }


def _version(package: str) -> str:
    try:
        return importlib_metadata.version(package)
    except importlib_metadata.PackageNotFoundError:
        return "unknown"


def write_atomically(files: dict[Path, bytes]) -> None:
    """Writes `{path: content}` through temporary files renamed in dict order.

    Example:

    >>> import tempfile
    >>> folder = Path(tempfile.mkdtemp())
    >>> write_atomically({folder / "a.json": b"{}", folder / "a.tflite": b"x"})
    >>> sorted(p.name for p in folder.iterdir())
    ['a.json', 'a.tflite']

    Raises:
        OSError: a file could not be written; no temporary file is left behind.
    """
    temporary = []
    try:
        for path, content in files.items():
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
            temporary.append(tmp)
            with os.fdopen(fd, "wb") as f:
                f.write(content)
            os.chmod(tmp, 0o644)  # mkstemp makes 0600 files
        for path, tmp in zip(files, temporary):
            os.replace(tmp, path)
    finally:
        for tmp in temporary:
            if os.path.exists(tmp):
                os.remove(tmp)


def check_output_path(output) -> Path:
    """Checks where an export will write, before any work; returns the absolute path.

    Example:

    >>> check_output_path("/no/such/dir/model.tflite")
    Traceback (most recent call last):
    ...
    ValueError: `output` must be in an existing directory; ...

    Raises:
        TypeError: `output` is not a path.
        ValueError: it does not end with `.tflite`, its directory is missing or
            not writable, or it is a directory.
    """
    if not isinstance(output, (str, os.PathLike)):
        raise TypeError(
            f"`output` must be a path; received: output of type {type(output).__name__}"
        )
    path = Path(output).expanduser().absolute()
    if path.suffix != ".tflite":
        raise ValueError(f"`output` must end with .tflite; received: output={str(output)!r}")
    if not path.parent.is_dir():
        raise ValueError(
            f"`output` must be in an existing directory; received: output={str(output)!r} "
            f"(no directory {str(path.parent)!r})"
        )
    if path.is_dir():
        raise ValueError(
            f"`output` must be a file path; received: output={str(output)!r}, a directory"
        )
    if not os.access(path.parent, os.W_OK):
        raise ValueError(
            f"`output` must be in a writable directory; received: output={str(output)!r}"
        )
    return path
