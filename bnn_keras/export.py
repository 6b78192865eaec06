"""Export a trained binary network to a verified Larq Compute Engine TFLite file.

A binary network is only worth its one bit where Larq Compute Engine (LCE) runs
it with binary kernels, so an export is a chain of checks, and each is an error:

1. What to export is a Keras model, a training run (its newest stage) or a saved
   model (`bnn_keras.export_source`). Its inference graph is rebuilt with static
   quantizers; a stage-1 model (real-valued weights) is refused unless float
   weights are asked for, and so is a model without any binary layer
   (`bnn_keras.inference_graph`).
2. `convert` (`bnn_keras.binary_convert`) converts it (`bnn_keras.lce_convert`)
   and reads the flatbuffer back (`bnn_keras.tflite_inspect`): every binary
   `QuantConv2D` must have become an `LceBconv2d`, and the error names the
   layers that did not, with the likely cause. The input and output types are
   read back too, so int8 I/O is real.
3. `verify`: LCE's interpreter and Keras run the same images, the first
   validation images of the run's dataset, else seeded standard-normal noise
   (what normalised images look like to the first layer); top-1 agreement below
   99% (90% on noise) is an error (`bnn_keras.tflite_verify` explains why).
4. `evaluate` (optional): top-1 of the `.tflite` on the whole validation split
   must be within half a point of the Keras model's on the same images.

`export` then writes the `.tflite` and a JSON beside it (`model.tflite` ->
`model.json`, described in `bnn_keras.export_files`) through temporary files
renamed at the end, so a failed export leaves nothing behind; an output in a
missing directory is refused before any work.

Command line (flags are defined only when the module runs as a program):

    python -m bnn_keras.export --model_dir=RUN --output=model.tflite \\
        [--evaluate] [--num_verify=N] [--int8_io] [--allow_float_weights]
"""

from __future__ import annotations

import dataclasses
import json
import logging
from typing import Any

import tensorflow as tf

from bnn_keras.binary_convert import convert, convert_source
from bnn_keras.export_files import build_metadata, check_output_path, write_atomically
from bnn_keras.export_source import (
    dataset_info,
    load_source,
    validation_dataset,
    verification_images,
)
from bnn_keras.tflite_verify import (
    DEFAULT_MIN_AGREEMENT,
    Evaluation,
    Verification,
    evaluate,
    verify,
)

__all__ = [
    "DEFAULT_MAX_TOP1_DROP",
    "DEFAULT_MIN_AGREEMENT",
    "DEFAULT_NUM_VERIFY",
    "Evaluation",
    "ExportResult",
    "Verification",
    "convert",
    "define_flags",
    "evaluate",
    "export",
    "main",
    "verify",
]

log = logging.getLogger(__name__)

DEFAULT_NUM_VERIFY = 100
DEFAULT_MAX_TOP1_DROP = 0.005  # half a point of validation top-1


@dataclasses.dataclass(frozen=True)
class ExportResult:
    """What `export` wrote.

    Attributes:
        tflite_path: the `.tflite` file.
        metadata_path: the JSON beside it.
        metadata: the JSON's content.
    """

    tflite_path: str
    metadata_path: str
    metadata: dict[str, Any]


def export(
    model,
    output,
    *,
    target: str = "arm",
    int8_io: bool = False,
    allow_float_weights: bool = False,
    experimental_default_int8_range=None,
    num_verify: int = DEFAULT_NUM_VERIFY,
    min_agreement: float | None = None,
    evaluate_accuracy: bool = False,
    max_top1_drop: float = DEFAULT_MAX_TOP1_DROP,
    dataset: str | None = None,
    data_dir: str | None = None,
    num_threads: int | None = None,
    progress: bool = False,
) -> ExportResult:
    """Converts, verifies and writes `output` (`.tflite`) and its JSON metadata.

    Example:

    >>> import os, tempfile
    >>> import larq as lq
    >>> model = tf.keras.Sequential([
    ...     tf.keras.Input((8, 8, 1)),
    ...     tf.keras.layers.Conv2D(4, 3),
    ...     lq.layers.QuantConv2D(4, 3, padding="same", pad_values=1.0,
    ...                           input_quantizer="ste_sign", kernel_quantizer="ste_sign"),
    ...     tf.keras.layers.GlobalAveragePooling2D(),
    ...     tf.keras.layers.Dense(2)])
    >>> out = os.path.join(tempfile.mkdtemp(), "model.tflite")
    >>> result = export(model, out, num_verify=4)
    >>> result.metadata["op_counts"]["LceBconv2d"], os.path.exists(out[:-7] + ".json")
    (1, True)

    Args:
        model: as for `convert`: a Keras model or the path of a run directory,
            stage directory, `.keras` / `.h5` file or SavedModel directory.
        output: the `.tflite` path; its directory must exist. The JSON goes
            beside it with the suffix `.json`.
        target: `"arm"` or `"xcore"`.
        int8_io: int8 input and output (the graph must be quantized).
        allow_float_weights: accept a stage-1 model (see `convert`).
        experimental_default_int8_range: see `convert`; dummy ranges lose the
            accuracy, so pass `min_agreement=0` with them.
        num_verify: number of images for `verify`.
        min_agreement: top-1 agreement required by `verify` (None: its default for
            the kind of images, 0.99 on validation images, 0.9 on random ones).
        evaluate_accuracy: also measure top-1 on the whole validation split and
            require it within `max_top1_drop` of the Keras model's.
        max_top1_drop: the largest allowed drop of top-1 (a fraction: 0.005 is
            half a point).
        dataset: the dataset for verification, evaluation and the metadata; by
            default the run's (`dataset.json`). Without one, verification uses
            random inputs and the metadata has no normalisation or labels.
        data_dir: tensorflow-datasets' data directory, if the dataset needs one;
            by default the run's (`config.json`).
        num_threads: interpreter threads.
        progress: show a progress bar while evaluating.

    Returns:
        An `ExportResult`.

    Raises:
        ValueError: as `convert` and `verify`; an output that does not end with
            `.tflite` or is in a missing directory; `evaluate_accuracy` without a
            dataset, or a drop larger than `max_top1_drop`. Nothing is written.
        TypeError: as `convert`.
    """
    output = check_output_path(output)
    _check_number("num_verify", num_verify, minimum=1, integer=True)
    if min_agreement is not None:
        _check_number("min_agreement", min_agreement, minimum=0.0, maximum=1.0)
    _check_number("max_top1_drop", max_top1_drop, minimum=0.0)
    source = load_source(model)
    if data_dir is None:  # where the run read its data, if the trainer recorded it
        data_dir = (source.config or {}).get("data_dir") or None
    dataset_name = dataset or (source.dataset or {}).get("name")
    if evaluate_accuracy and dataset_name is None:
        raise ValueError(
            "`evaluate_accuracy` needs a dataset: export a run directory (with "
            "dataset.json) or pass dataset=NAME (--dataset); received: dataset=None "
            f"for model {source.path or source.model.name!r}"
        )
    io_type = tf.int8 if int8_io else tf.float32
    conversion = convert_source(
        source,
        target=target,
        inference_input_type=io_type,
        inference_output_type=io_type,
        allow_float_weights=allow_float_weights,
        experimental_default_int8_range=experimental_default_int8_range,
    )
    info = dataset_info(source, dataset, data_dir=data_dir)
    input_shape = tuple(source.model.inputs[0].shape[1:])
    images, kind = verification_images(
        dataset_name, input_shape, num_verify, data_dir=data_dir, required=evaluate_accuracy
    )
    verification = verify(
        conversion.flatbuffer,
        source.model,
        images,
        min_agreement=min_agreement,
        inputs=kind,
        num_threads=num_threads,
    )

    evaluation = None
    if evaluate_accuracy:
        evaluation = evaluate(
            conversion.flatbuffer,
            source.model,
            validation_dataset(dataset_name, input_shape, data_dir=data_dir),
            name=dataset_name,
            num_threads=num_threads,
            progress=progress,
        )
        log.info("Evaluation: %s", evaluation)
        if evaluation.top1 < evaluation.keras_top1 - max_top1_drop:
            raise ValueError(
                f"The .tflite's validation top-1 must be within {max_top1_drop:.2%} of the "
                f"Keras model's; received: {evaluation.top1:.2%} against "
                f"{evaluation.keras_top1:.2%} on {evaluation.num_examples} images."
            )

    metadata = build_metadata(
        tflite_name=output.name,
        flatbuffer=conversion.flatbuffer,
        summary=conversion.summary,
        target=target,
        source=source,
        dataset_info=info,
        binary_convs=conversion.binary_convs,
        float_weight_layers=conversion.float_weight_layers,
        verification=verification.to_json(),
        evaluation=evaluation.to_json() if evaluation else None,
    )
    metadata_path = output.with_suffix(".json")
    write_atomically(
        {
            metadata_path: (json.dumps(metadata, indent=2) + "\n").encode("utf-8"),
            output: conversion.flatbuffer,
        }
    )
    log.info("Wrote %s (%d bytes) and %s", output, len(conversion.flatbuffer), metadata_path)
    return ExportResult(str(output), str(metadata_path), metadata)


def _check_number(arg, value, *, minimum=None, maximum=None, integer=False):
    kinds = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds):
        raise TypeError(
            f"`{arg}` must be a{'n integer' if integer else ' number'}; received: {arg}={value!r}"
        )
    if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        bounds = f">= {minimum}" if maximum is None else f"in [{minimum}, {maximum}]"
        raise ValueError(f"`{arg}` must be {bounds}; received: {arg}={value!r}")


# (kind, name, default, help, bounds) of the command-line flags.
_FLAGS = (
    ("string", "model_dir", None, "Run directory (its newest stage), stage directory, "
     ".keras/.h5 file or SavedModel directory to export.", {}),
    ("string", "output", None, "The .tflite file to write; the .json goes beside it.", {}),
    ("boolean", "evaluate", False, "Report the .tflite's top-1 on the validation split "
     "and fail if it drops more than --max_top1_drop below the Keras model's.", {}),
    ("integer", "num_verify", DEFAULT_NUM_VERIFY, "Images compared between Keras and "
     "the .tflite.", {"lower_bound": 1}),
    ("float", "min_agreement", None, "Top-1 agreement required (default: 0.99 on "
     "validation images, 0.9 on random ones).", {"lower_bound": 0.0, "upper_bound": 1.0}),
    ("float", "max_top1_drop", DEFAULT_MAX_TOP1_DROP, "With --evaluate: the largest "
     "allowed top-1 drop (a fraction).", {"lower_bound": 0.0}),
    ("boolean", "int8_io", False, "int8 input and output (the graph must be quantized).", {}),
    ("boolean", "allow_float_weights", False, "Export a stage-1 model (real-valued "
     "weights).", {}),
    ("list", "experimental_default_int8_range", None, "min,max: dummy int8 range for "
     "tensors without one (latency tests only; use with --min_agreement=0).", {}),
    ("enum", "target", "arm", "Conversion target.", {"enum_values": ["arm", "xcore"]}),
    ("string", "dataset", None, "Dataset for verification and --evaluate (default: the "
     "run's dataset.json).", {}),
    ("string", "data_dir", None, "tensorflow-datasets data directory.", {}),
    ("integer", "num_threads", None, "LCE interpreter threads.", {"lower_bound": 1}),
)  # fmt: skip


def define_flags(flag_values=None) -> None:
    """Defines the flags of `python -m bnn_keras.export` on `flag_values` (absl's FLAGS).

    Only the program's entry point (and tests, on their own `FlagValues`) call
    this, so importing `bnn_keras.export` defines no flag.
    """
    from absl import flags

    fv = flags.FLAGS if flag_values is None else flag_values
    for kind, name, default, help_text, extra in _FLAGS:
        if kind == "enum":
            extra = dict(extra)
            flags.DEFINE_enum(name, default, extra.pop("enum_values"), help_text, flag_values=fv)
        else:
            getattr(flags, f"DEFINE_{kind}")(name, default, help_text, flag_values=fv, **extra)
    flags.mark_flags_as_required(["model_dir", "output"], flag_values=fv)


def main(argv, flag_values=None) -> None:
    """Entry point of `python -m bnn_keras.export`: export, then print a summary.

    Bad input ends the program with a one-line error (exit status 1).
    """
    from absl import app, flags

    fv = flags.FLAGS if flag_values is None else flag_values
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
    default_range = fv.experimental_default_int8_range
    try:
        result = export(
            fv.model_dir,
            fv.output,
            target=fv.target,
            int8_io=fv.int8_io,
            allow_float_weights=fv.allow_float_weights,
            experimental_default_int8_range=(
                None if default_range is None else [float(v) for v in default_range]
            ),
            num_verify=fv.num_verify,
            min_agreement=fv.min_agreement,
            evaluate_accuracy=fv.evaluate,
            max_top1_drop=fv.max_top1_drop,
            dataset=fv.dataset,
            data_dir=fv.data_dir,
            num_threads=fv.num_threads,
            progress=True,
        )
    except (ValueError, TypeError) as e:
        raise SystemExit(f"Error: {e}") from e
    meta = result.metadata
    ver = meta["verification"]
    lines = [
        f"Wrote {result.tflite_path} ({meta['file_size_bytes'] / 1e6:.2f} MB) and "
        f"{result.metadata_path}",
        f"Ops: {meta['op_counts']}",
        f"Verification: top-1 agreement {ver['top1_agreement']:.2%} on "
        f"{ver['num_inputs']} {ver['inputs']} inputs, max |diff| {ver['max_abs_diff']:.3g}",
    ]
    if meta["evaluation"]:
        ev = meta["evaluation"]
        lines.append(
            f"Validation top-1 ({ev['dataset']}, {ev['num_examples']} images): "
            f".tflite {ev['top1']:.2%}, Keras {ev['keras_top1']:.2%}"
        )
    print("\n".join(lines))


if __name__ == "__main__":
    from absl import app

    define_flags()
    app.run(main)
