"""What the benchmarks share: models compiled as the trainer does, step timing, ratios.

No flags here (they live in each script), and no copies of library code: models
come from `bnn_keras.models.get` and `bnn_keras.models.float_twin`, the optimizer
from the trainer's own `bnn_keras.training._make_optimizer`, the callbacks from
`bnn_keras.callbacks`.

Why ratios: these benchmarks run on small shared CPUs whose speed drifts by tens
of percent within a minute. Configurations compared with each other are built
once in one process, measured in interleaved rounds (the order reverses every
round), and each round gives one paired ratio; the min and the median of those
ratios are reported, next to absolute rates that are only indicative.
"""

from __future__ import annotations

import os
import platform
import statistics
import time

# isort: off
import bnn_keras  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)

# isort: on
import numpy as np
import tensorflow as tf

from bnn_keras import callbacks, models, optim, training
from bnn_keras.config import TrainConfig

__all__ = [
    "VARIANTS",
    "StepTimer",
    "build_model",
    "callbacks_for",
    "format_rows",
    "machine",
    "parse_sizes",
    "ratio_summary",
    "synthetic_dataset",
    "timed_fit",
]

# "stage1": binary activations, real weights; "stage2": both binary; "float":
# the stage-2 network with every quantizer removed (`bnn_keras.models.float_twin`).
VARIANTS = ("float", "stage1", "stage2")


def parse_sizes(values) -> list[tuple[int, int]]:
    """`["32:64", "224:16"]` -> `[(32, 64), (224, 16)]` (image side, batch size).

    >>> parse_sizes(["32:64", "224:16"])
    [(32, 64), (224, 16)]
    """
    sizes = []
    for value in values:
        try:
            side, batch = (int(v) for v in str(value).split(":"))
        except ValueError as e:
            raise ValueError(
                f"`sizes` must be SIDE:BATCH pairs such as 32:64; received: {value!r}"
            ) from e
        sizes.append((side, batch))
    return sizes


def machine() -> dict:
    """The machine and versions, for the JSON record."""
    model_name = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    model_name = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {
        "cpu": model_name,
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "load_average": os.getloadavg(),
        "tensorflow": tf.__version__,
    }


def build_model(
    variant: str,
    *,
    model: str = "reactnet_a",
    image_size: int,
    channels: int = 3,
    num_classes: int = 10,
    width_multiplier: float = 1.0,
    jit_compile: bool = False,
    steps_per_epoch: int = 1000,
) -> tf.keras.Model:
    """One model of `VARIANTS`, compiled as `bnn_keras.training` compiles it.

    The optimizer is the trainer's (`KernelDecayAdam` with decay on the conv
    kernels, linear learning-rate decay), as are the loss and the top-1/top-5
    metrics; the twin gets the same optimizer.

    Raises:
        ValueError: an unknown `variant`.
    """
    if variant not in VARIANTS:
        raise ValueError(f"`variant` must be one of {VARIANTS}; received: variant={variant!r}")
    stage = 1 if variant == "stage1" else 2
    net = models.get(
        model,
        stage=stage,
        input_shape=(image_size, image_size, channels),
        num_classes=num_classes,
        width_multiplier=width_multiplier,
    )
    if variant == "float":
        net = models.float_twin(net)
    config = TrainConfig(model=model, jit_compile=jit_compile, epochs=100)
    optimizer = training._make_optimizer(config, stage, steps_per_epoch)
    optimizer.set_decay_variables(optim.conv_kernels(net))
    net.compile(
        optimizer=optimizer,
        loss=tf.keras.losses.SparseCategoricalCrossentropy(),
        metrics=[
            tf.keras.metrics.SparseCategoricalAccuracy(name="top1"),
            tf.keras.metrics.SparseTopKCategoricalAccuracy(k=5, name="top5"),
        ],
        jit_compile=jit_compile,
    )
    return net


def callbacks_for(model: tf.keras.Model) -> list[tf.keras.callbacks.Callback]:
    """The trainer's monitoring callbacks: `FlipFlopRatio` and `C2IRatio`, not per layer."""
    c2i = callbacks.C2IRatio(reference="stage", per_layer=False)
    c2i.set_model(model)
    return [callbacks.FlipFlopRatio(per_layer=False), c2i]


def synthetic_dataset(
    batch_size: int, image_size: int, *, channels: int = 3, num_classes: int = 10, seed: int = 0
) -> tf.data.Dataset:
    """Four in-memory batches of random images, repeated: costs the step nothing."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(4 * batch_size, image_size, image_size, channels)).astype("float32")
    y = rng.integers(0, num_classes, size=4 * batch_size)
    return (
        tf.data.Dataset.from_tensor_slices((x, y))
        .batch(batch_size, drop_remainder=True)
        .repeat()
        .prefetch(2)
    )


class StepTimer:
    """Times each step from the first callback's batch begin to the last one's end.

    `callbacks(others)` returns `[begin, *others, end]`, so a step covers the
    train function and every callback's batch hooks (the flip-flop update runs
    in `on_train_batch_end`), and each step of a `fit`, the first included,
    gives a time. Epoch hooks are outside the steps.
    """

    def __init__(self):
        self.begins, self.ends = [], []
        timer = self

        class _Begin(tf.keras.callbacks.Callback):
            def on_train_batch_begin(self, batch, logs=None):
                timer.begins.append(time.perf_counter())

        class _End(tf.keras.callbacks.Callback):
            def on_train_batch_end(self, batch, logs=None):
                timer.ends.append(time.perf_counter())

        self._begin, self._end = _Begin(), _End()
        for cb in (self._begin, self._end):
            cb._supports_tf_logs = True  # no conversion of the logs to numpy

    def callbacks(self, others=()) -> list[tf.keras.callbacks.Callback]:
        return [self._begin, *others, self._end]

    def reset(self) -> None:
        self.begins, self.ends = [], []

    def step_times(self) -> list[float]:
        return [e - b for b, e in zip(self.begins, self.ends)]


def timed_fit(model, dataset, steps: int, extra_callbacks=(), timer=None) -> list[float]:
    """Runs `steps` training steps in one `fit`; returns each step's seconds."""
    timer = timer or StepTimer()
    timer.reset()
    model.fit(
        dataset,
        steps_per_epoch=steps,
        epochs=1,
        verbose=0,
        callbacks=timer.callbacks(extra_callbacks),
    )
    return timer.step_times()


def ratio_summary(numerators, denominators) -> dict:
    """Min and median of the paired ratios `numerators[i] / denominators[i]`.

    >>> ratio_summary([2.0, 3.0, 2.2], [1.0, 1.0, 2.0])["min"]
    1.1
    """
    paired = [n / d for n, d in zip(numerators, denominators)]
    return {"min": min(paired), "median": statistics.median(paired), "paired": paired}


def format_rows(rows: list[list[str]]) -> str:
    """Right-aligned columns, the first left-aligned."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = []
    for row in rows:
        cells = [row[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(row[1:], widths[1:])]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)
