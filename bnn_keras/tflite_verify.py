"""Does the `.tflite` compute what the Keras model computes? Agreement and accuracy.

`verify` runs a converted model with Larq Compute Engine's interpreter and the
Keras model on the same images and compares their top-1 decisions; `evaluate`
measures the top-1 accuracy of both on a labelled dataset. On x86 the
interpreter uses LCE's reference binary kernels: exact, but slower than a float
model (the speed-up is on ARM).

Why top-1 agreement, and which threshold: the interpreter sums in another order
than TensorFlow and folds batch normalisation into the convolution, so outputs
differ by float rounding, and in a binary network a rounding difference just
before a sign function can flip one activation, which the next layers amplify.
The largest output difference is therefore reported but not bounded; what must
hold is the decision. A flip changes the top-1 class only when the top two
classes nearly tie. A broken export (wrong padding, weights not copied, a float
layer where a binary one belongs) agrees on about 1 / num_classes of the inputs.

- On validation images the default threshold is 99%: a trained network rarely
  has near ties on real images (a barely trained ReActNet-A disagreed on 3 of
  1,000 MNIST validation images, with the same accuracy for both).
- On random inputs (no dataset at hand) it is 90%: noise is far from what a
  trained network has learnt, and an untrained one has near ties everywhere
  (ReActNet-A at 224 px with random weights: 94% top-1 agreement on 32 noise
  images, while the .tflite's top-1 was among Keras's top-5 on all of them).

`top1_in_top5` (the share of inputs whose `.tflite` top-1 is among the Keras
model's top 5) is reported as well: it stays at 100% through such ties, and
near 5 / num_classes for a broken export. With N images one disagreement costs
1/N, so N >= 100 gives the 99% threshold its meaning.

Int8 input and output are quantized and dequantized with the file's own scale
and zero point, so callers always pass and get float32 values.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from typing import Any

import larq_compute_engine as lce
import numpy as np
import tensorflow as tf

__all__ = [
    "DEFAULT_MIN_AGREEMENT",
    "Evaluation",
    "Verification",
    "evaluate",
    "tflite_predict",
    "verify",
]

log = logging.getLogger(__name__)

# Top-1 agreement required by default, by the kind of inputs (see the module docstring).
DEFAULT_MIN_AGREEMENT = {"validation": 0.99, "random": 0.9}
_BATCH = 32


@dataclasses.dataclass(frozen=True)
class Verification:
    """How the `.tflite` agrees with Keras on the same inputs.

    Attributes:
        num_inputs: number of images compared.
        inputs: `"validation"` (the dataset's first validation images) or `"random"`.
        top1_agreement: share of images with the same top-1 class.
        top1_in_top5: share of images whose `.tflite` top-1 is among the
            Keras model's top 5 classes.
        max_abs_diff: largest absolute difference of any output value.
        min_agreement: the threshold that was applied.
    """

    num_inputs: int
    inputs: str
    top1_agreement: float
    top1_in_top5: float
    max_abs_diff: float
    min_agreement: float

    def to_json(self) -> dict[str, Any]:
        """A dict of plain JSON types."""
        return dataclasses.asdict(self)


def verify(
    flatbuffer: bytes,
    model: tf.keras.Model,
    images: np.ndarray,
    *,
    min_agreement: float | None = None,
    inputs: str = "random",
    num_threads: int | None = None,
) -> Verification:
    """Runs the `.tflite` (LCE interpreter) and the Keras model on `images` and compares.

    Int8 input and output are quantized and dequantized with the file's own scale
    and zero point.

    Example:

    >>> from bnn_keras.lce_convert import convert_keras_model
    >>> model = tf.keras.Sequential([tf.keras.Input((3,)), tf.keras.layers.Dense(4)])
    >>> images = np.random.default_rng(0).standard_normal((8, 3), "float32")
    >>> verify(convert_keras_model(model), model, images).top1_agreement
    1.0

    Args:
        flatbuffer: the converted model.
        model: the Keras model it was converted from.
        images: a float32 array `(N, height, width, channels)`, as the model takes them.
        min_agreement: the top-1 agreement below which the export is rejected;
            by default `DEFAULT_MIN_AGREEMENT[inputs]`.
        inputs: what the images are: `"validation"` or `"random"`.
        num_threads: interpreter threads (all CPUs, at most 4, by default).

    Returns:
        A `Verification`.

    Raises:
        ValueError: agreement below `min_agreement` (the message has the
            numbers); bad `images` or `min_agreement`.
    """
    images = np.asarray(images, dtype="float32")
    if images.ndim < 2 or len(images) == 0:
        raise ValueError(
            "`images` must be a non-empty batch (N, ...) of model inputs; received: "
            f"images of shape {images.shape}"
        )
    if inputs not in DEFAULT_MIN_AGREEMENT:
        raise ValueError(
            f"`inputs` must be one of {sorted(DEFAULT_MIN_AGREEMENT)}; received: inputs={inputs!r}"
        )
    if min_agreement is None:
        min_agreement = DEFAULT_MIN_AGREEMENT[inputs]
    if isinstance(min_agreement, bool) or not 0.0 <= min_agreement <= 1.0:
        raise ValueError(
            f"`min_agreement` must be in [0, 1]; received: min_agreement={min_agreement!r}"
        )
    expected = _keras_predict(model, images)
    got = tflite_predict(flatbuffer, images, num_threads=num_threads)
    top1 = np.argmax(got, -1)
    agreement = float(np.mean(top1 == np.argmax(expected, -1)))
    top5 = np.argsort(-expected, axis=-1)[:, :5]
    result = Verification(
        num_inputs=len(images),
        inputs=inputs,
        top1_agreement=agreement,
        top1_in_top5=float(np.mean(np.any(top5 == top1[:, None], axis=-1))),
        max_abs_diff=float(np.max(np.abs(got - expected))),
        min_agreement=float(min_agreement),
    )
    log.info("Verification: %s", result)
    if agreement < min_agreement:
        raise ValueError(
            f"The .tflite must agree with the Keras model on at least {min_agreement:.1%} of "
            f"top-1 decisions; received: {agreement:.1%} agreement on {len(images)} "
            f"{inputs} inputs (top-1 among Keras's top 5: {result.top1_in_top5:.1%}; "
            f"largest output difference {result.max_abs_diff:.4g})."
        )
    return result


@dataclasses.dataclass(frozen=True)
class Evaluation:
    """Top-1 accuracy of the `.tflite` and of Keras on one validation split.

    Attributes:
        dataset: the dataset name.
        num_examples: number of validation images.
        top1: the `.tflite`'s top-1 accuracy (a fraction).
        keras_top1: the Keras model's top-1 on the same images.
    """

    dataset: str
    num_examples: int
    top1: float
    keras_top1: float

    def to_json(self) -> dict[str, Any]:
        """A dict of plain JSON types."""
        return dataclasses.asdict(self)


def evaluate(
    flatbuffer: bytes,
    model: tf.keras.Model,
    dataset: tf.data.Dataset,
    *,
    name: str = "validation",
    num_threads: int | None = None,
    progress: bool = False,
) -> Evaluation:
    """Top-1 accuracy of the `.tflite` and of `model` on a dataset of `(images, labels)`.

    Example:

    >>> from bnn_keras.lce_convert import convert_keras_model
    >>> model = tf.keras.Sequential([tf.keras.Input((3,)), tf.keras.layers.Dense(2)])
    >>> images = np.random.default_rng(0).standard_normal((4, 3), "float32")
    >>> ds = tf.data.Dataset.from_tensor_slices((images, np.arange(4) % 2)).batch(2)
    >>> result = evaluate(convert_keras_model(model), model, ds)
    >>> result.num_examples, result.top1 == result.keras_top1
    (4, True)

    Args:
        flatbuffer: the converted model.
        model: the Keras model it was converted from.
        dataset: batches of `(images, integer labels)`.
        name: the dataset's name, for the report.
        num_threads: interpreter threads (all CPUs, at most 4, by default).
        progress: show a progress bar (on stdout).

    Returns:
        An `Evaluation`.

    Raises:
        ValueError: an empty dataset.
    """
    interpreter = _Interpreter(flatbuffer, num_threads)
    total = hits = keras_hits = 0
    steps = int(dataset.cardinality())
    bar = (
        tf.keras.utils.Progbar(
            steps if steps > 0 else None, stateful_metrics=["top1", "keras_top1"]
        )
        if progress
        else None
    )
    for step, (images, labels) in enumerate(dataset.as_numpy_iterator(), start=1):
        labels = np.asarray(labels).reshape(-1)
        hits += int(np.sum(np.argmax(interpreter.predict(images), -1) == labels))
        keras_hits += int(np.sum(np.argmax(_keras_predict(model, images), -1) == labels))
        total += len(labels)
        if bar is not None:
            bar.update(step, values=[("top1", hits / total), ("keras_top1", keras_hits / total)])
    if total == 0:
        raise ValueError("`dataset` must yield at least one example; received: an empty dataset")
    return Evaluation(
        dataset=name, num_examples=total, top1=hits / total, keras_top1=keras_hits / total
    )


class _Interpreter:
    """LCE's interpreter, with int8 input/output (de)quantized for the caller."""

    def __init__(self, flatbuffer: bytes, num_threads: int | None):
        if num_threads is None:
            num_threads = min(4, os.cpu_count() or 1)
        try:
            self._interpreter = lce.testing.Interpreter(flatbuffer, num_threads=num_threads)
        except RuntimeError as e:
            raise ValueError(
                "The .tflite must run in LCE's interpreter; received: a model it cannot "
                "prepare (TFLite printed the failing op above). A common cause is "
                "experimental_default_int8_range on an op with a fixed output range, such "
                "as an int8 SOFTMAX, which needs the range (0, 1)."
            ) from e

    def predict(self, images: np.ndarray) -> np.ndarray:
        it = self._interpreter
        x = np.asarray(images, dtype="float32")
        if it.input_types[0] == np.int8:
            scale, zero_point = it.input_scales[0], it.input_zero_points[0]
            x = np.clip(np.round(x / scale + zero_point), -128, 127).astype(np.int8)
        y = np.asarray(it.predict(x))
        if it.output_types[0] == np.int8:
            y = (y.astype("float32") - it.output_zero_points[0]) * it.output_scales[0]
        return y.astype("float32").reshape(len(x), -1)


def tflite_predict(
    flatbuffer: bytes, images: np.ndarray, *, num_threads: int | None = None
) -> np.ndarray:
    """Runs a `.tflite` on a batch of float32 images, one at a time; returns float32 outputs.

    Example:

    >>> from bnn_keras.lce_convert import convert_keras_model
    >>> model = tf.keras.Sequential([tf.keras.Input((3,)), tf.keras.layers.Dense(2)])
    >>> tflite_predict(convert_keras_model(model), np.ones((5, 3), "float32")).shape
    (5, 2)

    Args:
        flatbuffer: an LCE TFLite model with one input.
        images: the model inputs, batch first.
        num_threads: interpreter threads (all CPUs, at most 4, by default).
    """
    return _Interpreter(flatbuffer, num_threads).predict(images)


def _keras_predict(model, images) -> np.ndarray:
    outputs = [
        np.asarray(model(images[i : i + _BATCH], training=False))
        for i in range(0, len(images), _BATCH)
    ]
    return np.concatenate(outputs).astype("float32").reshape(len(images), -1)
