"""Input-pipeline throughput against the training step's consumption, on the same cores.

Run: `python -m benchmarks.input_pipeline [--num_images=256 --repeats=3 ...]`.

Method. Two pipelines of `bnn_keras.data.make_dataset`, each with the model
that trains on it:

- `folder`: a folder of `--num_images` generated JPEGs (`--jpeg_size`, about
  ImageNet's mean size) in `--classes` class folders, read with the paper's
  ImageNet training preprocessing (random resized crop, lighting, flip) at
  224 px, batch `--imagenet_batch`, uncached as for ImageNet itself (whose
  encoded split is far above the pipeline's 1 GiB cache limit); its model is
  stage-2 ReActNet-A at 224 px (`--width_multiplier`, 1000 classes);
- `mnist_5k`: the embedded digits as the quickstart reads them (translation
  augmentation, batch 64); its model is the quickstart's: stage-2 ReActNet-A,
  width `TrainConfig().width_multiplier`, 28x28x1, 10 classes.

Each round, interleaved: the pipeline alone (a fresh iterator; the first three
batches are not timed, then `--batches` batches as fast as they come), the
model's step on in-memory synthetic data, and the model's step fed by the
pipeline itself (`fit` on it). Reported: images/s of each, and per round the
paired ratios pipeline / step (goal: at least 2) and fed-by-pipeline /
synthetic step time (1.0 when the pipeline never stalls the step), min and
median over rounds.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time

# isort: off
import bnn_keras  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)

# isort: on
import numpy as np
import tensorflow as tf
from absl import app, flags

from benchmarks import publish

from benchmarks import common
from bnn_keras import data
from bnn_keras.config import TrainConfig

__all__ = [
    "define_flags",
    "format_table",
    "main",
    "make_jpeg_folder",
    "pipeline_rate",
    "run",
]

FLAGS = flags.FLAGS


def define_flags() -> None:
    """Defines the command-line flags (only when run as a script: other modules
    of `benchmarks` and `bnn_keras.train` use some of the same names)."""
    flags.DEFINE_integer("num_images", 256, "Generated JPEGs in the folder.")
    flags.DEFINE_integer("classes", 4, "Class folders of the generated JPEGs.")
    flags.DEFINE_list("jpeg_size", ["375", "500"], "Height and width of the generated JPEGs.")
    flags.DEFINE_integer("imagenet_batch", 16, "Batch size of the 224 px folder pipeline.")
    flags.DEFINE_integer("image_size", 224, "Image side of the folder pipeline.")
    flags.DEFINE_integer("batches", 12, "Timed batches per pipeline measurement.")
    flags.DEFINE_integer("steps", 2, "Timed training steps per fit.")
    flags.DEFINE_integer("repeats", 3, "Interleaved rounds.")
    flags.DEFINE_float("width_multiplier", 1.0, "Width of the 224 px ReActNet-A.")
    flags.DEFINE_list("pipelines", ["folder", "mnist_5k"], "Pipelines to measure.")
    flags.DEFINE_string("model", "reactnet_a", "Model name of bnn_keras.models.")
    flags.DEFINE_string("output", "input_pipeline.json", "Where to write the JSON results.")


PIPELINE_GOAL = 2.0
SKIPPED_BATCHES = 3


def make_jpeg_folder(root: str, *, num_images: int, classes: int, size=(375, 500)) -> str:
    """Writes `num_images` JPEGs of smooth random colour fields under `root/class_i/`.

    Returns `root`.
    """
    rng = np.random.default_rng(0)
    height, width = size
    for i in range(num_images):
        class_dir = os.path.join(root, f"class_{i % classes}")
        os.makedirs(class_dir, exist_ok=True)
        coarse = rng.integers(0, 256, size=(height // 16 + 1, width // 16 + 1, 3), dtype=np.uint8)
        image = np.kron(coarse, np.ones((16, 16, 1), np.uint8))[:height, :width]
        image = np.clip(image + rng.integers(-20, 21, size=image.shape), 0, 255).astype(np.uint8)
        jpeg = tf.io.encode_jpeg(image, quality=90).numpy()
        with open(os.path.join(class_dir, f"{i:05d}.jpg"), "wb") as f:
            f.write(jpeg)
    return root


def pipeline_rate(dataset: tf.data.Dataset, batches: int) -> float:
    """Images/s of a fresh iterator over `dataset` (repeated), after 3 untimed batches."""
    iterator = iter(dataset.repeat())
    for _ in range(SKIPPED_BATCHES):
        next(iterator)
    images = 0
    start = time.perf_counter()
    for _ in range(batches):
        images += int(next(iterator)[1].shape[0])
    return images / (time.perf_counter() - start)


def _cases(names, folder, image_size, imagenet_batch, width_multiplier, model):
    cases = {}
    if "folder" in names:
        cases["folder"] = dict(
            dataset=data.make_dataset(
                f"folder:{folder}",
                "train",
                batch_size=imagenet_batch,
                image_size=image_size,
                seed=0,
                cache=False,
            ),
            model=dict(
                model=model,
                image_size=image_size,
                num_classes=1000,
                width_multiplier=width_multiplier,
            ),
            batch=imagenet_batch,
        )
    if "mnist_5k" in names:
        info = data.get_info("mnist_5k")
        cases["mnist_5k"] = dict(
            dataset=data.make_dataset("mnist_5k", "train", batch_size=64, seed=0),
            model=dict(
                model=model,
                image_size=info.input_shape[0],
                channels=info.input_shape[2],
                num_classes=info.num_classes,
                width_multiplier=TrainConfig().width_multiplier,
            ),
            batch=64,
        )
    return cases


def run(
    *,
    pipelines=("folder", "mnist_5k"),
    num_images: int = 256,
    classes: int = 4,
    jpeg_size=(375, 500),
    image_size: int = 224,
    imagenet_batch: int = 16,
    width_multiplier: float = 1.0,
    batches: int = 12,
    steps: int = 2,
    repeats: int = 3,
    model: str = "reactnet_a",
) -> dict:
    """Runs the benchmark (see the module docstring); returns its numbers."""
    start = time.perf_counter()
    tf.keras.utils.set_random_seed(0)
    with tempfile.TemporaryDirectory(prefix="bnn_keras_jpegs_") as folder:
        if "folder" in pipelines:
            make_jpeg_folder(folder, num_images=num_images, classes=classes, size=jpeg_size)
        cases = _cases(pipelines, folder, image_size, imagenet_batch, width_multiplier, model)
        for name, case in cases.items():
            t = time.perf_counter()
            case["net"] = common.build_model("stage2", **case["model"])
            case["synthetic"] = common.synthetic_dataset(
                case["batch"],
                case["model"]["image_size"],
                channels=case["model"].get("channels", 3),
                num_classes=case["model"]["num_classes"],
            )
            case["fed"] = case["dataset"].repeat()
            common.timed_fit(case["net"], case["synthetic"], 1)  # trace and compile
            common.timed_fit(case["net"], case["fed"], 1)
            print(f"built {name} model in {time.perf_counter() - t:.0f} s", flush=True)

        timer = common.StepTimer()
        measured = {name: {"pipeline": [], "synthetic": [], "fed": []} for name in cases}
        for r in range(repeats):
            order = list(cases) if r % 2 == 0 else list(reversed(cases))
            for name in order:
                case, m = cases[name], measured[name]
                m["pipeline"].append(pipeline_rate(case["dataset"], batches))
                for kind in ("synthetic", "fed"):
                    times = common.timed_fit(case["net"], case[kind], steps, (), timer)
                    m[kind].append(case["batch"] / statistics.median(times))
            elapsed = time.perf_counter() - start
            print(f"round {r + 1}/{repeats} done at {elapsed:.0f} s", flush=True)

    results = {}
    for name, m in measured.items():
        results[name] = {
            "images_per_s": {k: statistics.median(v) for k, v in m.items()},
            "per_round": m,
            "batch": cases[name]["batch"],
            "model": cases[name]["model"],
            "pipeline_vs_step": common.ratio_summary(m["pipeline"], m["synthetic"]),
            # step time fed by the pipeline / on synthetic data = rate ratio inverted
            "fed_slowdown": common.ratio_summary(m["synthetic"], m["fed"]),
        }
    return {
        "config": {
            "pipelines": list(pipelines),
            "num_images": num_images,
            "classes": classes,
            "jpeg_size": list(jpeg_size),
            "image_size": image_size,
            "imagenet_batch": imagenet_batch,
            "width_multiplier": width_multiplier,
            "batches": batches,
            "steps": steps,
            "repeats": repeats,
            "model": model,
        },
        "machine": common.machine(),
        "results": results,
        "goal": PIPELINE_GOAL,
        "total_s": time.perf_counter() - start,
    }


def format_table(result: dict) -> str:
    """The results as a text table."""
    machine = result["machine"]
    rows = [["pipeline (model)", "pipeline img/s", "step img/s", "fed step img/s",
             "pipeline/step min/med", "fed slowdown min/med"]]
    for name, r in result["results"].items():
        rate, ratio, slow = r["images_per_s"], r["pipeline_vs_step"], r["fed_slowdown"]
        m = r["model"]
        rows.append(
            [
                f"{name} ({m['model']} {m['image_size']} px b{r['batch']}, "
                f"width {m['width_multiplier']})",
                f"{rate['pipeline']:.1f}",
                f"{rate['synthetic']:.1f}",
                f"{rate['fed']:.1f}",
                f"{ratio['min']:.1f} / {ratio['median']:.1f}",
                f"{slow['min']:.2f} / {slow['median']:.2f}",
            ]
        )
    head = (
        f"bnn_keras.data pipelines against stage-2 ReActNet-A steps; "
        f"{result['config']['repeats']} interleaved rounds; {machine['cpu']}, "
        f"{machine['cpus']} CPUs, load {machine['load_average'][0]:.1f}, TF {machine['tensorflow']}"
    )
    foot = (
        f"goal: pipeline/step >= {result['goal']:.0f}; fed slowdown = step time fed by "
        f"the pipeline / on in-memory data; total {result['total_s']:.0f} s"
    )
    return "\n".join([head, common.format_rows(rows), foot])


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    result = run(
        pipelines=FLAGS.pipelines,
        num_images=FLAGS.num_images,
        classes=FLAGS.classes,
        jpeg_size=tuple(int(v) for v in FLAGS.jpeg_size),
        image_size=FLAGS.image_size,
        imagenet_batch=FLAGS.imagenet_batch,
        width_multiplier=FLAGS.width_multiplier,
        batches=FLAGS.batches,
        steps=FLAGS.steps,
        repeats=FLAGS.repeats,
        model=FLAGS.model,
    )
    publish(result, format_table(result), FLAGS.output)


if __name__ == "__main__":
    define_flags()
    app.run(main)
