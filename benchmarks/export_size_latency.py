"""Size and host latency of ReActNet-A exported to LCE TFLite, binary against float.

Run: `python -m benchmarks.export_size_latency [--image_size=224 --runs=10 ...]`.

Method. One stage-2 ReActNet-A (random weights: size and latency do not depend
on them) is exported twice:

- binary: `bnn_keras.export.convert`, with every check (31 `LceBconv2d`);
- float twin: the same network and weights with every quantizer removed and
  zero padding, i.e. a plain float CNN, converted by the same LCE converter
  (`bnn_keras.lce_convert.convert_keras_model`).

Reported for each: conversion time, `.tflite` size, operator counts, and the
latency of one image in LCE's Python interpreter on this machine at 1 and 2
threads (median and mean over `--runs` runs after two warm-up runs).
`--lce_converter` also times `larq_compute_engine.convert_keras_model` on the
binary model, the SavedModel route that `bnn_keras.lce_convert` avoids.

Reading the latency: on x86 LCE runs its reference binary kernels (correct,
unoptimized), so the binary model is slower than its float twin here (we
measured ReActNet-A at 224 px: 222 ms binary against 64 ms float, one thread).
LCE's optimized binary kernels are for ARM (aarch64): measure there with
`export/benchmark_rpi.sh` or `export/benchmark_android.sh`.
"""

from __future__ import annotations

import os
import platform
import statistics
import time

from absl import app, flags

from benchmarks import publish

import bnn_keras  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow)
import larq_compute_engine as lce
import numpy as np
import tensorflow as tf

from bnn_keras import export
from bnn_keras.lce_convert import convert_keras_model
from bnn_keras.models import ReActNetA, float_twin
from bnn_keras.tflite_inspect import inspect_flatbuffer

__all__ = ["define_flags", "format_table", "host_latency_ms", "main", "run"]

FLAGS = flags.FLAGS


def define_flags() -> None:
    """Defines the command-line flags (only when run as a script: other
    benchmarks and `bnn_keras.train` use some of the same names)."""
    flags.DEFINE_integer("image_size", 224, "Height and width of the input images.")
    flags.DEFINE_integer("num_classes", 1000, "Classes of the classifier.")
    flags.DEFINE_float("width_multiplier", 1.0, "ReActNet-A width multiplier.")
    flags.DEFINE_integer("runs", 10, "Timed interpreter runs per model and thread count.")
    flags.DEFINE_list("threads", ["1", "2"], "Interpreter thread counts.")
    flags.DEFINE_boolean("lce_converter", False, "Also time larq_compute_engine.convert_keras_model.")
    flags.DEFINE_string("output", "export_size_latency.json", "Where to write the JSON results.")



def host_latency_ms(flatbuffer: bytes, *, num_threads: int, runs: int) -> dict[str, float]:
    """Latency of one inference in LCE's interpreter on this machine, in ms."""
    interpreter = lce.testing.Interpreter(flatbuffer, num_threads=num_threads)
    shape = interpreter.input_shapes[0]
    image = np.random.default_rng(0).standard_normal(shape).astype("float32")
    for _ in range(2):
        interpreter.predict(image)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        interpreter.predict(image)
        times.append((time.perf_counter() - start) * 1e3)
    return {"median": statistics.median(times), "mean": statistics.fmean(times)}


def _measure(name, convert, runs, threads) -> dict:
    start = time.perf_counter()
    flatbuffer = convert()
    seconds = time.perf_counter() - start
    summary = inspect_flatbuffer(flatbuffer)
    result = {
        "model": name,
        "conversion_s": seconds,
        "size_bytes": len(flatbuffer),
        "op_counts": summary.op_counts,
        "latency_ms": {
            str(t): host_latency_ms(flatbuffer, num_threads=t, runs=runs) for t in threads
        },
    }
    print(f"{name}: converted in {seconds:.1f} s, {len(flatbuffer) / 1e6:.2f} MB", flush=True)
    return result


def run(
    *,
    image_size: int = 224,
    num_classes: int = 1000,
    width_multiplier: float = 1.0,
    runs: int = 10,
    threads=(1, 2),
    lce_converter: bool = False,
) -> dict:
    """Exports the binary model and its float twin; returns the measurements."""
    tf.keras.utils.set_random_seed(0)
    model = ReActNetA(
        input_shape=(image_size, image_size, 3),
        num_classes=num_classes,
        width_multiplier=width_multiplier,
        stage=2,
    )
    twin = float_twin(model)
    results = [
        _measure("binary", lambda: export.convert(model), runs, threads),
        _measure("float twin", lambda: convert_keras_model(twin), runs, threads),
    ]
    lce_seconds = None
    if lce_converter:
        start = time.perf_counter()
        lce.convert_keras_model(model)
        lce_seconds = time.perf_counter() - start
    return {
        "config": {
            "image_size": image_size,
            "num_classes": num_classes,
            "width_multiplier": width_multiplier,
            "runs": runs,
            "threads": list(threads),
        },
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(),
            "cpus": os.cpu_count(),
        },
        "versions": {"tensorflow": tf.__version__, "larq_compute_engine": lce.__version__},
        "results": results,
        "lce_convert_keras_model_s": lce_seconds,
    }


def format_table(result: dict) -> str:
    """A plain-text table of `run`'s result."""
    threads = result["config"]["threads"]
    header = ["model", "convert s", "size MB", "LceBconv2d", "CONV_2D"] + [
        f"{t} thr ms" for t in threads
    ]
    rows = [header]
    for r in result["results"]:
        rows.append(
            [
                r["model"],
                f"{r['conversion_s']:.1f}",
                f"{r['size_bytes'] / 1e6:.2f}",
                str(r["op_counts"].get("LceBconv2d", 0)),
                str(r["op_counts"].get("CONV_2D", 0)),
            ]
            + [f"{r['latency_ms'][str(t)]['median']:.1f}" for t in threads]
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = ["  ".join(cell.rjust(w) for cell, w in zip(row, widths)) for row in rows]
    config = result["config"]
    lines.insert(
        0,
        f"ReActNet-A {config['image_size']} px, {config['num_classes']} classes, width "
        f"{config['width_multiplier']}; LCE interpreter on {result['machine']['processor']} "
        f"(median of {config['runs']} runs; x86 runs LCE's reference binary kernels)",
    )
    if result["lce_convert_keras_model_s"] is not None:
        lines.append(
            f"larq_compute_engine.convert_keras_model (binary): "
            f"{result['lce_convert_keras_model_s']:.1f} s"
        )
    return "\n".join(lines)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    result = run(
        image_size=FLAGS.image_size,
        num_classes=FLAGS.num_classes,
        width_multiplier=FLAGS.width_multiplier,
        runs=FLAGS.runs,
        threads=[int(t) for t in FLAGS.threads],
        lce_converter=FLAGS.lce_converter,
    )
    publish(result, format_table(result), FLAGS.output)


if __name__ == "__main__":
    define_flags()
    app.run(main)
