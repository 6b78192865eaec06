r"""`python -m bnn_keras.train`: the two-stage trainer's command line.

Examples::

    python -m bnn_keras.train --stage=all                      # quickstart, embedded digits
    python -m bnn_keras.train --flagfile=flags/reactnet_a_imagenet_stage1.cfg \
        --data_dir=/data/tfds --model_dir=runs/reactnet_a

Flags live here only: `main` turns them into a `bnn_keras.config.TrainConfig`,
saves them into the run directory as `flags.cfg` (rerun with
`--flagfile=MODEL_DIR/flags.cfg`) and calls `bnn_keras.training.run`.
Rerunning the same command resumes an interrupted run.
"""

from __future__ import annotations

import dataclasses
import sys

import bnn_keras  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)

from absl import app, flags, logging

from bnn_keras.config import MIXED_PRECISION, OPTIMIZERS, STAGE_CHOICES, STRATEGIES, TrainConfig

__all__ = ["main", "run_main"]

_DEFAULTS = TrainConfig()

flags.DEFINE_enum("stage", _DEFAULTS.stage, list(STAGE_CHOICES), "Stage to train: 1, 2 or all.")
flags.DEFINE_string("model", _DEFAULTS.model, "Model name (bnn_keras.models.names()).")
flags.DEFINE_float("width_multiplier", _DEFAULTS.width_multiplier, "Width of ReActNet models.")
flags.DEFINE_float("bn_momentum", _DEFAULTS.bn_momentum,
                   "BatchNormalization momentum of ReActNet models (official code: 0.9).")
flags.DEFINE_string("dataset", _DEFAULTS.dataset, "Dataset: mnist_5k, a tfds name, or folder:PATH.")
flags.DEFINE_string("data_dir", _DEFAULTS.data_dir, "tensorflow-datasets data directory.")
flags.DEFINE_integer(
    "image_size", _DEFAULTS.image_size, "Image side for folders/ImageNet (0: default)."
)
flags.DEFINE_string(
    "model_dir", _DEFAULTS.model_dir, "Run directory (resumed if it has a checkpoint)."
)
flags.DEFINE_integer("epochs", _DEFAULTS.epochs, "Epochs per stage.")
flags.DEFINE_integer("batch_size", _DEFAULTS.batch_size, "Global batch size.")
flags.DEFINE_float("learning_rate", _DEFAULTS.learning_rate, "Initial learning rate.")
flags.DEFINE_integer(
    "lr_batch_size",
    _DEFAULTS.lr_batch_size,
    "Batch size that --learning_rate refers to; scaled linearly (0: none).",
)
flags.DEFINE_enum("optimizer", _DEFAULTS.optimizer, list(OPTIMIZERS), "adam or sgd (momentum 0.9).")
flags.DEFINE_float("weight_decay", _DEFAULTS.weight_decay, "L2 decay of conv kernels in stage 1.")
flags.DEFINE_float("stage2_weight_decay", _DEFAULTS.stage2_weight_decay, "The same in stage 2.")
flags.DEFINE_bool(
    "decoupled_weight_decay",
    _DEFAULTS.decoupled_weight_decay,
    "AdamW-style decoupled decay instead of L2 in the gradient.",
)
flags.DEFINE_string(
    "teacher",
    _DEFAULTS.teacher,
    "Distillation teacher: saved model path or " "a tf.keras.applications name ('' for none).",
)
flags.DEFINE_string(
    "init_from",
    _DEFAULTS.init_from,
    "Stage-2 start: '' (stage-1 result in " "--model_dir), 'scratch', or a saved model path.",
)
flags.DEFINE_enum(
    "distribution_strategy",
    _DEFAULTS.distribution_strategy,
    list(STRATEGIES),
    "tf.distribute strategy; the batch size is global.",
)
flags.DEFINE_integer("seed", _DEFAULTS.seed, "Random seed.")
flags.DEFINE_bool("jit_compile", _DEFAULTS.jit_compile, "Compile the train step with XLA.")
flags.DEFINE_integer(
    "steps_per_epoch", _DEFAULTS.steps_per_epoch, "Cap on steps per epoch (0: all)."
)
flags.DEFINE_string(
    "mixed_precision",
    _DEFAULTS.mixed_precision,
    f"Keras dtype policy: one of {MIXED_PRECISION} ('': float32).",
)

FLAGS = flags.FLAGS


def config_from_flags() -> TrainConfig:
    """The `TrainConfig` of the parsed flags."""
    return TrainConfig(**{f.name: FLAGS[f.name].value for f in dataclasses.fields(TrainConfig)})


def _flagfile_text(config: TrainConfig) -> str:
    lines = ["# Resolved flags of this run; repeat it with --flagfile=THIS_FILE"]
    for name, value in config.to_json().items():
        if isinstance(value, bool):
            lines.append(f"--{name}" if value else f"--no{name}")
        else:
            lines.append(f"--{name}={value}")
    return "\n".join(lines) + "\n"


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
    from bnn_keras import training  # TensorFlow loads here, after flag parsing

    config = config_from_flags()
    logging.info("Configuration:\n%s", config.dumps())
    try:
        results = training.run(config, flagfile=_flagfile_text(config))
    except (ValueError, FileNotFoundError) as e:
        sys.stderr.write(f"bnn_keras.train: error: {e}\n")
        return 2
    for stage, result in sorted(results.items()):
        logging.info("Stage %d: val top-1 %.4f", stage, result["val_top1"])
    return 0


def run_main():
    """Console-script entry point."""
    app.run(main)


if __name__ == "__main__":
    run_main()
