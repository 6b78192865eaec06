"""Mixed precision with Larq: does ReActNet-A train, is it correct, what does it give?

Run: `python -m benchmarks.mixed_precision [--policies=float32,mixed_bfloat16,mixed_float16 ...]`.

Method. One stage-2 ReActNet-A (`--image_size` px, width `--width_multiplier`,
batch `--batch_size`, 10 classes) is built and compiled as the trainer does
(`benchmarks.common.build_model`) under each Keras global dtype policy in turn;
the float32 model's weights are copied into the others, so all start equal.
`compile` wraps the optimizer in a `LossScaleOptimizer` under mixed_float16.
Checks, per policy:

- the compute dtype of the binary convolutions, and that their quantized
  activations are exactly +-1 and their kernels +-alpha (one magnitude per
  output channel) in that dtype;
- top-1 agreement of the untrained model's predictions with float32's on one
  batch, and the largest difference of the softmax outputs;
- the loss stays finite over every timed step.

Speed: after a warm-up `fit`, `--repeats` interleaved rounds of one `fit` of
`--steps` steps per policy (synthetic in-memory data); reported are the step
time and the paired ratio to float32 (min and median over rounds).
"""

from __future__ import annotations

import math
import statistics
import time

# isort: off
import bnn_keras  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)

# isort: on
import numpy as np
import tensorflow as tf
from absl import app, flags

from benchmarks import publish

from benchmarks import common
from bnn_keras import callbacks

__all__ = ["POLICIES", "define_flags", "format_table", "main", "run"]

POLICIES = ("float32", "mixed_bfloat16", "mixed_float16")

FLAGS = flags.FLAGS


def define_flags() -> None:
    """Defines the command-line flags (only when run as a script: other modules
    of `benchmarks` and `bnn_keras.train` use some of the same names)."""
    flags.DEFINE_list("policies", list(POLICIES), "Keras dtype policies to compare.")
    flags.DEFINE_integer("image_size", 32, "Image side.")
    flags.DEFINE_integer("batch_size", 64, "Batch size.")
    flags.DEFINE_float("width_multiplier", 0.25, "ReActNet-A width multiplier.")
    flags.DEFINE_integer("steps", 2, "Timed steps per fit.")
    flags.DEFINE_integer("repeats", 2, "Interleaved rounds.")
    flags.DEFINE_string("model", "reactnet_a", "Model name of bnn_keras.models.")
    flags.DEFINE_string("output", "mixed_precision.json", "Where to write the JSON results.")


def _quantizer_check(model: tf.keras.Model, images) -> dict:
    """Quantized activations and kernels of the first binary conv, in its dtype."""
    layer = callbacks.binary_layers(model)[1]
    probe = tf.keras.Model(model.input, layer.input)
    activations = layer.input_quantizer(tf.cast(probe(images), layer.compute_dtype))
    kernel = layer.kernel_quantizer(tf.cast(layer.kernel, layer.compute_dtype))
    values = np.unique(np.asarray(activations, np.float32))
    magnitudes = np.abs(np.asarray(kernel, np.float32)).reshape(-1, kernel.shape[-1])
    return {
        "layer": layer.name,
        "compute_dtype": layer.compute_dtype,
        "activation_values": values.tolist(),
        "activations_are_pm1": bool(set(values.tolist()) <= {-1.0, 1.0}),
        "kernel_one_magnitude_per_channel": bool(
            np.all(magnitudes.max(axis=0) == magnitudes.min(axis=0))
        ),
    }


def run(
    *,
    policies=POLICIES,
    image_size: int = 32,
    batch_size: int = 64,
    width_multiplier: float = 0.25,
    steps: int = 2,
    repeats: int = 2,
    model: str = "reactnet_a",
) -> dict:
    """Runs the benchmark (see the module docstring); returns its numbers."""
    unknown = [p for p in policies if p not in POLICIES]
    if unknown:
        raise ValueError(f"`policies` must be among {POLICIES}; received: {unknown}")
    start = time.perf_counter()
    tf.keras.utils.set_random_seed(0)
    dataset = common.synthetic_dataset(batch_size, image_size)
    images = next(iter(dataset))[0]
    nets, checks, build_s = {}, {}, {}
    previous = tf.keras.mixed_precision.global_policy()
    weights = None
    try:
        for policy in ("float32", *[p for p in policies if p != "float32"]):
            t = time.perf_counter()
            tf.keras.mixed_precision.set_global_policy(policy)
            net = common.build_model(
                "stage2", model=model, image_size=image_size, width_multiplier=width_multiplier
            )
            if weights is None:
                weights = net.get_weights()
            else:
                net.set_weights(weights)
            nets[policy] = net
            checks[policy] = _quantizer_check(net, images)
            checks[policy]["optimizer"] = type(net.optimizer).__name__
            common.timed_fit(net, dataset, 1)  # trace and compile
            build_s[policy] = time.perf_counter() - t
            print(f"built {policy} in {build_s[policy]:.0f} s", flush=True)
    finally:
        tf.keras.mixed_precision.set_global_policy(previous)

    # The warm-up fits moved the weights: compare the models on equal ones.
    for net in nets.values():
        net.set_weights(weights)
    reference = np.asarray(nets["float32"](images, training=False), np.float32)
    for policy, net in nets.items():
        out = np.asarray(net(images, training=False), np.float32)
        checks[policy]["top1_agreement_with_float32"] = float(
            np.mean(out.argmax(-1) == reference.argmax(-1))
        )
        checks[policy]["max_abs_softmax_diff"] = float(np.abs(out - reference).max())

    timer, losses = common.StepTimer(), {p: [] for p in nets}
    step_s = {p: [] for p in nets}
    for r in range(repeats):
        order = list(nets) if r % 2 == 0 else list(reversed(nets))
        for policy in order:
            history = nets[policy].fit(
                dataset, steps_per_epoch=steps, epochs=1, verbose=0,
                callbacks=timer.callbacks(),
            )
            step_s[policy].append(statistics.median(timer.step_times()))
            timer.reset()
            losses[policy] += history.history["loss"]
        print(f"round {r + 1}/{repeats} done at {time.perf_counter() - start:.0f} s", flush=True)

    results = {}
    for policy in nets:
        results[policy] = {
            **checks[policy],
            "losses": losses[policy],
            "loss_finite": all(math.isfinite(v) for v in losses[policy]),
            "step_s": {"min": min(step_s[policy]), "median": statistics.median(step_s[policy])},
            "images_per_s": batch_size / statistics.median(step_s[policy]),
            "vs_float32": common.ratio_summary(step_s[policy], step_s["float32"]),
            "build_and_first_step_s": build_s[policy],
        }
    return {
        "config": {
            "policies": list(nets),
            "image_size": image_size,
            "batch_size": batch_size,
            "width_multiplier": width_multiplier,
            "steps": steps,
            "repeats": repeats,
            "model": model,
        },
        "machine": common.machine(),
        "results": results,
        "total_s": time.perf_counter() - start,
    }


def format_table(result: dict) -> str:
    """The results as a text table."""
    config, machine = result["config"], result["machine"]
    rows = [["policy", "conv dtype", "+-1 / +-alpha", "top-1 agree", "loss finite", "img/s",
             "step vs f32 min/med"]]
    for policy, r in result["results"].items():
        rows.append(
            [
                policy,
                r["compute_dtype"],
                f"{r['activations_are_pm1']} / {r['kernel_one_magnitude_per_channel']}",
                f"{r['top1_agreement_with_float32']:.2f}",
                str(r["loss_finite"]),
                f"{r['images_per_s']:.1f}",
                f"{r['vs_float32']['min']:.2f} / {r['vs_float32']['median']:.2f}",
            ]
        )
    head = (
        f"stage-2 {config['model']} {config['image_size']} px, width {config['width_multiplier']}, "
        f"batch {config['batch_size']}; {config['repeats']} interleaved rounds of "
        f"{config['steps']} steps; {machine['cpu']}, {machine['cpus']} CPUs, load "
        f"{machine['load_average'][0]:.1f}, TF {machine['tensorflow']}"
    )
    return "\n".join([head, common.format_rows(rows), f"total {result['total_s']:.0f} s"])


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    result = run(
        policies=FLAGS.policies,
        image_size=FLAGS.image_size,
        batch_size=FLAGS.batch_size,
        width_multiplier=FLAGS.width_multiplier,
        steps=FLAGS.steps,
        repeats=FLAGS.repeats,
        model=FLAGS.model,
    )
    publish(result, format_table(result), FLAGS.output)


if __name__ == "__main__":
    define_flags()
    app.run(main)
