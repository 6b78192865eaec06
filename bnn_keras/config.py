"""`TrainConfig`: everything one training run needs, checked before anything runs.

The command line (`bnn_keras.train`) turns absl flags into a `TrainConfig`;
Python users build one directly and call `bnn_keras.training.run(config)`. Library
code never reads flags.

>>> config = TrainConfig(epochs=2, batch_size=32)
>>> config.stages()
(1, 2)
>>> TrainConfig(epochs=0).validate()
Traceback (most recent call last):
...
ValueError: `epochs` must be a positive integer; received: epochs=0
"""

from __future__ import annotations

import dataclasses
import json
import math

__all__ = ["TrainConfig", "RECIPE_FIELDS", "MIXED_PRECISION"]

STAGE_CHOICES = ("1", "2", "all")
OPTIMIZERS = ("adam", "sgd")
STRATEGIES = ("default", "mirrored", "multi_worker_mirrored", "tpu")
MIXED_PRECISION = ("", "mixed_float16", "mixed_bfloat16")


@dataclasses.dataclass
class TrainConfig:
    """A training run. Field names are the command-line flag names.

    Attributes:
        stage: "1" (binary activations, real weights), "2" (both binary) or "all".
        model: a name of `bnn_keras.models.names()`.
        width_multiplier: for bnn_keras's own models (ReActNet-A, ReActNet-18).
        bn_momentum: BatchNormalization momentum of those models. The official
            code's is 0.9 (PyTorch's 0.1); with few steps per epoch, as in the
            quickstart, 0.99 averages the moving statistics over more batches.
        dataset: a name of `bnn_keras.data.names()` or `folder:/path`.
        data_dir: where tensorflow-datasets data lives.
        image_size: image side for folders and ImageNet (0: the dataset's default).
        model_dir: the run directory (created; resumed when it holds a checkpoint).
        epochs: epochs per stage.
        batch_size: the global batch size (over all replicas).
        learning_rate: the initial learning rate.
        lr_batch_size: the batch size `learning_rate` refers to; the rate is scaled
            linearly to `batch_size` (0: no scaling).
        optimizer: "adam" or "sgd" (momentum 0.9).
        weight_decay: L2 coefficient on conv kernels in stage 1. Negative values
            push kernels away from zero (the paper's Table 1 tries -1e-5).
        stage2_weight_decay: the same in stage 2 (the paper: 0).
        decoupled_weight_decay: AdamW-style decay instead of L2 in the gradient.
        teacher: knowledge distillation from a saved Keras model (path) or a
            `tf.keras.applications` name; "" for none.
        init_from: weights for stage 2 when `stage=2` ("" = the stage-1 result in
            `model_dir`; "scratch" = random; else a saved Keras model).
        distribution_strategy: "default", "mirrored", "multi_worker_mirrored", "tpu".
        seed: seeds Python, NumPy, TensorFlow and the data pipeline.
        jit_compile: compile the train step with XLA.
        mixed_precision: "" (float32), "mixed_bfloat16" or "mixed_float16": the
            Keras dtype policy of the models (see docs/benchmarks.md for speed).
        steps_per_epoch: cap on steps per epoch (0: the whole training split).
    """

    stage: str = "all"
    model: str = "reactnet_a"
    width_multiplier: float = 0.25
    bn_momentum: float = 0.99
    dataset: str = "mnist_5k"
    data_dir: str = ""
    image_size: int = 0
    model_dir: str = "runs/quickstart"
    epochs: int = 12
    batch_size: int = 64
    learning_rate: float = 5e-3
    lr_batch_size: int = 0
    optimizer: str = "adam"
    weight_decay: float = 5e-6
    stage2_weight_decay: float = 0.0
    decoupled_weight_decay: bool = False
    teacher: str = ""
    init_from: str = ""
    distribution_strategy: str = "default"
    seed: int = 0
    jit_compile: bool = False
    steps_per_epoch: int = 0
    mixed_precision: str = ""

    def stages(self) -> tuple[int, ...]:
        """The stages this run trains, in order."""
        return (1, 2) if self.stage == "all" else (int(self.stage),)

    def scaled_learning_rate(self) -> float:
        """`learning_rate`, scaled linearly from `lr_batch_size` to `batch_size`."""
        if not self.lr_batch_size:
            return self.learning_rate
        return self.learning_rate * self.batch_size / self.lr_batch_size

    def validate(self) -> "TrainConfig":
        """Checks every field; returns self.

        Raises:
            ValueError: naming the field, what was received and what is accepted.
        """
        _choice("stage", self.stage, STAGE_CHOICES)
        _choice("optimizer", self.optimizer, OPTIMIZERS)
        _choice("distribution_strategy", self.distribution_strategy, STRATEGIES)
        _choice("mixed_precision", self.mixed_precision, MIXED_PRECISION)
        for name in ("epochs", "batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"`{name}` must be a positive integer; received: {name}={value!r}")
        for name in ("steps_per_epoch", "lr_batch_size", "image_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(
                    f"`{name}` must be an integer >= 0 (0: default); received: {name}={value!r}"
                )
        if not self.learning_rate > 0:
            raise ValueError(
                f"`learning_rate` must be positive; received: learning_rate={self.learning_rate!r}"
            )
        for name in ("weight_decay", "stage2_weight_decay"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ValueError(f"`{name}` must be a finite number; received: {name}={value!r}")
        if not self.width_multiplier > 0:
            raise ValueError(
                "`width_multiplier` must be positive; "
                f"received: width_multiplier={self.width_multiplier!r}"
            )
        if not 0.0 <= self.bn_momentum < 1.0:
            raise ValueError(
                f"`bn_momentum` must be in [0, 1); received: bn_momentum={self.bn_momentum!r}"
            )
        if not self.model_dir:
            raise ValueError("`model_dir` must be a directory path; received: model_dir=''")
        return self

    def to_json(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> "TrainConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    def dumps(self) -> str:
        return json.dumps(self.to_json(), indent=2, sort_keys=True)


# The fields that define a recipe: a run directory made with other values of
# these is refused, so a resume never mixes two recipes. The others (where to
# write, how to distribute, which stage to run now) may change between calls.
RECIPE_FIELDS = tuple(
    f.name
    for f in dataclasses.fields(TrainConfig)
    if f.name not in ("stage", "model_dir", "data_dir", "distribution_strategy", "init_from")
)


def _choice(name, value, choices):
    if value not in choices:
        raise ValueError(f"`{name}` must be one of {choices}; received: {name}={value!r}")
