"""Training-step throughput of ReActNet-A, binary against its float twin.

Run: `python -m benchmarks.train_step [--sizes=32:64,224:16 --jit=off,on ...]`.

Method. For each image size and batch (`--sizes`, SIDE:BATCH) and each XLA
setting (`--jit`), three models are built and compiled once, as
`bnn_keras.training` compiles them (`benchmarks.common.build_model`):

- `stage1`: ReActNet-A with binary activations and real-valued weights;
- `stage2`: binary activations and binary weights;
- `float`: the stage-2 network with every quantizer removed
  (`bnn_keras.models.float_twin`), i.e. the same architecture as a float CNN.

The binary models run with and without the trainer's monitoring callbacks
(`FlipFlopRatio`, `C2IRatio`); where `--jit=on` is measured, only without them
(they run outside the compiled step, so their cost does not depend on XLA).
Every configuration runs one warm-up `fit` (tracing, compiling), then
`--repeats` rounds of one `fit` of `--steps` steps each, the order of the
configurations reversing every round, on in-memory synthetic data. A step is
timed from the first callback's batch begin to the last one's batch end
(`benchmarks.common.StepTimer`). Each round gives paired ratios of the round's
median step times: binary / float (same size, XLA setting, no callbacks),
with / without callbacks, and XLA on / off; reported are their min and median
over rounds. Images/s are the batch over the median step time (median over
rounds), indicative only on a shared machine.

Goals: a binary step at most 1.10x the float twin's; the callbacks at most 3%
(the per-epoch part of their cost is in `benchmarks.callback_overhead`).
"""

from __future__ import annotations

import statistics
import time

# isort: off
import bnn_keras  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)

# isort: on
import tensorflow as tf
from absl import app, flags

from benchmarks import publish

from benchmarks import common

__all__ = ["define_flags", "format_table", "main", "run"]

FLAGS = flags.FLAGS


def define_flags() -> None:
    """Defines the command-line flags (only when run as a script: other modules
    of `benchmarks` and `bnn_keras.train` use some of the same names)."""
    flags.DEFINE_list("sizes", ["32:64", "224:16"], "SIDE:BATCH pairs: image side and batch size.")
    flags.DEFINE_list("variants", list(common.VARIANTS), "Models: float, stage1, stage2.")
    flags.DEFINE_list("jit", ["off"], "XLA settings of the train step to measure: off, on.")
    flags.DEFINE_integer("steps", 2, "Timed steps per fit.")
    flags.DEFINE_integer("repeats", 3, "Interleaved rounds.")
    flags.DEFINE_float("width_multiplier", 1.0, "ReActNet-A width multiplier.")
    flags.DEFINE_string("model", "reactnet_a", "Model name of bnn_keras.models.")
    flags.DEFINE_integer("num_classes", 1000, "Classes of the classifier.")
    flags.DEFINE_string("output", "train_step.json", "Where to write the JSON results.")


BINARY_GOAL = 1.10
CALLBACK_GOAL = 1.03


def _name(variant, side, batch, jit, cbs):
    return f"{variant} {side}px b{batch}{' xla' if jit else ''}{' +cb' if cbs else ''}"


def run(
    *,
    sizes=((32, 64), (224, 16)),
    variants=common.VARIANTS,
    jit=(False,),
    steps: int = 2,
    repeats: int = 3,
    width_multiplier: float = 1.0,
    model: str = "reactnet_a",
    num_classes: int = 1000,
) -> dict:
    """Runs the benchmark (see the module docstring); returns its numbers."""
    start = time.perf_counter()
    tf.keras.utils.set_random_seed(0)
    cases = {}  # name -> (model, dataset, callbacks, batch)
    build_s = {}
    for side, batch in sizes:
        data = common.synthetic_dataset(batch, side, num_classes=num_classes)
        for j in jit:
            for variant in variants:
                t = time.perf_counter()
                net = common.build_model(
                    variant,
                    model=model,
                    image_size=side,
                    num_classes=num_classes,
                    width_multiplier=width_multiplier,
                    jit_compile=j,
                )
                cbs = [()]
                if variant != "float" and not j:
                    cbs.append(tuple(common.callbacks_for(net)))
                for extra in cbs:
                    name = _name(variant, side, batch, j, bool(extra))
                    cases[name] = (net, data, extra, batch)
                    common.timed_fit(net, data, 1, extra)  # trace and compile
                build_s[_name(variant, side, batch, j, False)] = time.perf_counter() - t
                print(f"built {_name(variant, side, batch, j, False)} in "
                      f"{build_s[_name(variant, side, batch, j, False)]:.0f} s", flush=True)

    timer = common.StepTimer()
    medians = {name: [] for name in cases}
    for r in range(repeats):
        order = list(cases) if r % 2 == 0 else list(reversed(cases))
        for name in order:
            net, data, extra, _ = cases[name]
            times = common.timed_fit(net, data, steps, extra, timer)
            medians[name].append(statistics.median(times))
        print(f"round {r + 1}/{repeats} done at {time.perf_counter() - start:.0f} s", flush=True)

    results = {
        name: {
            "step_s": {"min": min(m), "median": statistics.median(m), "per_round": m},
            "images_per_s": cases[name][3] / statistics.median(m),
            "build_and_first_step_s": build_s.get(name),
        }
        for name, m in medians.items()
    }
    ratios = {"binary_vs_float": {}, "callbacks": {}, "xla": {}}
    for side, batch in sizes:
        for j in jit:
            for variant in variants:
                base = _name(variant, side, batch, j, False)
                twin = _name("float", side, batch, j, False)
                if variant != "float" and twin in medians:
                    ratios["binary_vs_float"][base] = common.ratio_summary(
                        medians[base], medians[twin]
                    )
                tracked = _name(variant, side, batch, j, True)
                if tracked in medians:
                    ratios["callbacks"][base] = common.ratio_summary(
                        medians[tracked], medians[base]
                    )
                if j:
                    off = _name(variant, side, batch, False, False)
                    if off in medians:
                        ratios["xla"][_name(variant, side, batch, False, False)] = (
                            common.ratio_summary(medians[base], medians[off])
                        )
    return {
        "config": {
            "model": model,
            "sizes": [list(s) for s in sizes],
            "variants": list(variants),
            "jit": list(jit),
            "steps": steps,
            "repeats": repeats,
            "width_multiplier": width_multiplier,
            "num_classes": num_classes,
        },
        "machine": common.machine(),
        "results": results,
        "ratios": ratios,
        "goals": {"binary_vs_float": BINARY_GOAL, "callbacks": CALLBACK_GOAL},
        "total_s": time.perf_counter() - start,
    }


def format_table(result: dict) -> str:
    """The results as a text table."""
    config, machine = result["config"], result["machine"]
    rows = [["configuration", "img/s", "step s med", "vs float min/med", "+cb min/med",
             "xla/off min/med"]]
    ratios = result["ratios"]

    def pair(summary):
        return "-" if summary is None else f"{summary['min']:.2f} / {summary['median']:.2f}"

    for name, r in result["results"].items():
        if name.endswith("+cb"):
            continue
        xla_key = name.replace(" xla", "")
        rows.append(
            [
                name,
                f"{r['images_per_s']:.1f}",
                f"{r['step_s']['median']:.3f}",
                pair(ratios["binary_vs_float"].get(name)),
                pair(ratios["callbacks"].get(name)),
                pair(ratios["xla"].get(xla_key)) if " xla" in name else "-",
            ]
        )
    head = (
        f"{config['model']} width {config['width_multiplier']}, {config['num_classes']} "
        f"classes; {config['repeats']} interleaved rounds of {config['steps']} steps; "
        f"{machine['cpu']}, {machine['cpus']} CPUs, load {machine['load_average'][0]:.1f}, "
        f"TF {machine['tensorflow']}"
    )
    foot = (
        f"ratios: min / median over rounds of paired ratios; goals: binary/float <= "
        f"{BINARY_GOAL:.2f}, +callbacks <= {CALLBACK_GOAL:.2f}; total "
        f"{result['total_s']:.0f} s"
    )
    return "\n".join([head, common.format_rows(rows), foot])


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    bad = [j for j in FLAGS.jit if j not in ("off", "on")]
    if bad:
        raise app.UsageError(f"--jit takes off and on; received: {bad}")
    result = run(
        sizes=common.parse_sizes(FLAGS.sizes),
        variants=FLAGS.variants,
        jit=[j == "on" for j in FLAGS.jit],
        steps=FLAGS.steps,
        repeats=FLAGS.repeats,
        width_multiplier=FLAGS.width_multiplier,
        model=FLAGS.model,
        num_classes=FLAGS.num_classes,
    )
    publish(result, format_table(result), FLAGS.output)


if __name__ == "__main__":
    define_flags()
    app.run(main)
