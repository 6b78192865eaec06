"""What `FlipFlopRatio` + `C2IRatio` cost per training step of ReActNet-A.

Run: `python -m benchmarks.callback_overhead [--steps=6 --repeats=4 ...]`.

Method. One ReActNet-A (32x32 inputs, batch 64, Adam) and one compiled train
step serve both configurations, so the only difference is the callbacks:

- end to end: short `fit` runs with and without the two callbacks, interleaved
  (the order alternates every repeat) so that drifts of the machine hit both
  alike. A step is timed from one `on_train_batch_end` to the next, by a timer
  placed last in the callback list; the first step of each run (which traces
  the callbacks' functions) is not counted. Reported: the min and the median
  over repeats of the paired ratio (tracked / baseline median step time);
- direct: the callbacks' own work, timed alone: the flip-flop update that runs
  after every step, and the C2I comparison and flip-flop read-out that run once
  per epoch, spread over `--epoch_steps` steps (782 = CIFAR-10 at batch 64).

The goal is an overhead of at most 3%. On a small shared CPU the end-to-end
ratio is noisy (a step varies by tens of percent), which is why the direct
measure is reported next to it.
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
from absl import app, flags

from benchmarks import publish

from bnn_keras import callbacks
from bnn_keras.models import ReActNetA

__all__ = ["define_flags", "main", "run"]

FLAGS = flags.FLAGS


def define_flags() -> None:
    """Defines the command-line flags (only when run as a script: other
    benchmarks and `bnn_keras.train` use some of the same names)."""
    flags.DEFINE_integer(
        "steps", 5, "Training steps per timed fit (the first is not counted)."
    )
    flags.DEFINE_integer("repeats", 4, "Interleaved repeats of each configuration.")
    flags.DEFINE_integer("batch_size", 64, "Batch size.")
    flags.DEFINE_integer("image_size", 32, "Height and width of the inputs.")
    flags.DEFINE_float("width_multiplier", 1.0, "ReActNet-A width multiplier.")
    flags.DEFINE_integer("stage", 1, "ReActNet-A stage (1: switchable kernels, 2: binary).")
    flags.DEFINE_integer(
        "epoch_steps", 782, "Steps per epoch to spread the epoch-end costs over."
    )
    flags.DEFINE_integer("direct_calls", 20, "Calls of each callback function timed alone.")
    flags.DEFINE_string(
        "output", "callback_overhead.json", "Where to write the JSON results."
    )



class _StepTimer(tf.keras.callbacks.Callback):
    """Times each step from one batch end to the next: wall and process CPU time."""

    def __init__(self):
        super().__init__()
        self._supports_tf_logs = True
        self.ends = []

    def on_train_begin(self, logs=None):
        self.ends = []

    def on_train_batch_end(self, batch, logs=None):
        self.ends.append((time.perf_counter(), time.process_time()))

    def step_times(self) -> dict[str, list[float]]:
        ends = np.array(self.ends)
        return {
            "wall": np.diff(ends[:, 0]).tolist(),
            "cpu": np.diff(ends[:, 1]).tolist(),
        }


def _timed(fn, calls: int) -> list[float]:
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def run(
    *,
    steps: int,
    repeats: int,
    batch_size: int,
    image_size: int,
    width_multiplier: float,
    stage: int,
    epoch_steps: int,
    direct_calls: int,
) -> dict:
    """Runs the benchmark and returns its numbers (see the module docstring)."""
    tf.keras.utils.set_random_seed(0)
    model = ReActNetA(
        input_shape=(image_size, image_size, 3),
        num_classes=10,
        stage=stage,
        width_multiplier=width_multiplier,
    )
    model.compile(tf.keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(4 * batch_size, image_size, image_size, 3)).astype("float32")
    y = rng.integers(0, 10, size=4 * batch_size)
    data = (
        tf.data.Dataset.from_tensor_slices((x, y))
        .batch(batch_size)
        .repeat()
        .prefetch(2)
    )
    binary_weights = sum(
        callbacks.latent_kernel(layer).shape.num_elements()
        for layer in callbacks.binary_layers(model)
    )

    ff, c2i, timer = callbacks.FlipFlopRatio(), callbacks.C2IRatio(), _StepTimer()
    configs = {"baseline": [timer], "ff+c2i": [ff, c2i, timer]}

    def timed_fit(name, n):
        model.fit(data, steps_per_epoch=n, epochs=1, verbose=0, callbacks=configs[name])
        return timer.step_times()

    start = time.perf_counter()
    for name in configs:  # trace the train step and the callbacks once
        timed_fit(name, 2)
    warmup_s = time.perf_counter() - start

    runs = {name: [] for name in configs}
    for r in range(repeats):
        order = list(configs) if r % 2 == 0 else list(reversed(configs))
        for name in order:
            runs[name].append(timed_fit(name, steps))

    update = _timed(lambda: ff.on_train_batch_end(0), direct_calls)
    epoch_end = _timed(
        lambda: (c2i.on_epoch_end(0, {}), ff.on_epoch_end(0, {})), direct_calls
    )
    epoch_begin = _timed(lambda: ff.on_epoch_begin(0), direct_calls)
    per_step = (
        statistics.median(update)
        + (statistics.median(epoch_end) + statistics.median(epoch_begin)) / epoch_steps
    )

    clocks = {}
    for clock in ("wall", "cpu"):
        medians = {
            name: [statistics.median(r[clock]) for r in runs[name]] for name in configs
        }
        mins = {name: min(min(r[clock]) for r in runs[name]) for name in configs}
        paired = [t / b for t, b in zip(medians["ff+c2i"], medians["baseline"])]
        clocks[clock] = {
            "step_s": {
                name: {
                    "min": mins[name],
                    "median": statistics.median(medians[name]),
                    "per_repeat_median": medians[name],
                }
                for name in configs
            },
            "ratio": {
                "of_mins": mins["ff+c2i"] / mins["baseline"],
                "median_paired": statistics.median(paired),
                "paired": paired,
            },
        }
    wall = clocks["wall"]["step_s"]["baseline"]

    return {
        "model": f"ReActNet-A stage {stage}, width {width_multiplier}, "
        f"{image_size}x{image_size}, batch {batch_size}",
        "binary_weights": binary_weights,
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "load_average": os.getloadavg(),
            "tensorflow": tf.__version__,
        },
        "steps_per_run": steps,
        "repeats": repeats,
        "warmup_s": warmup_s,
        "end_to_end": clocks,
        "direct": {
            "ff_update_s": {"min": min(update), "median": statistics.median(update)},
            "epoch_end_s": statistics.median(epoch_end),
            "epoch_begin_s": statistics.median(epoch_begin),
            "epoch_steps": epoch_steps,
            "per_step_s": per_step,
            "overhead_vs_min_step": per_step / wall["min"],
            "overhead_vs_median_step": per_step / wall["median"],
        },
        "goal": 0.03,
    }


def format_table(result: dict) -> str:
    """The results as a text table."""
    e2e, direct = result["end_to_end"], result["direct"]
    row = "{:30s}" + "{:>11s}" * 4
    num = "{:30s}" + "{:11.3f}" * 4
    lines = [
        f"{result['model']}; {result['binary_weights']:,} latent binary weights; "
        f"load average {result['machine']['load_average'][0]:.1f} on "
        f"{result['machine']['cpus']} CPUs",
        row.format("", "wall min", "wall med", "cpu min", "cpu med"),
    ]
    for name in ("baseline", "ff+c2i"):
        w, c = e2e["wall"]["step_s"][name], e2e["cpu"]["step_s"][name]
        lines.append(
            num.format(
                f"step, {name} (s)", w["min"], w["median"], c["min"], c["median"]
            )
        )
    w, c = e2e["wall"]["ratio"], e2e["cpu"]["ratio"]
    lines.append(
        num.format(
            "ratio ff+c2i / baseline",
            w["of_mins"],
            w["median_paired"],
            c["of_mins"],
            c["median_paired"],
        )
    )
    lines += [
        "(ratio min = min step / min step; med = median over repeats of paired ratios)",
        f"ff update after each step: min {1e3 * direct['ff_update_s']['min']:.1f} ms, "
        f"median {1e3 * direct['ff_update_s']['median']:.1f} ms; epoch end + begin "
        f"{1e3 * (direct['epoch_end_s'] + direct['epoch_begin_s']):.1f} ms, spread over "
        f"{direct['epoch_steps']} steps",
        f"direct overhead: {100 * direct['overhead_vs_min_step']:.2f}% of the min baseline "
        f"step, {100 * direct['overhead_vs_median_step']:.2f}% of the median; goal <= "
        f"{100 * result['goal']:.0f}%",
    ]
    return "\n".join(lines)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    result = run(
        steps=FLAGS.steps,
        repeats=FLAGS.repeats,
        batch_size=FLAGS.batch_size,
        image_size=FLAGS.image_size,
        width_multiplier=FLAGS.width_multiplier,
        stage=FLAGS.stage,
        epoch_steps=FLAGS.epoch_steps,
        direct_calls=FLAGS.direct_calls,
    )
    publish(result, format_table(result), FLAGS.output)


if __name__ == "__main__":
    define_flags()
    app.run(main)
