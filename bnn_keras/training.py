"""`run(config)`: the two-stage training of Liu, Shen et al. (ICML 2021) as `model.fit`.

One seam for the command line and for tests: `bnn_keras.train` builds a
`TrainConfig` from flags and calls `run`. Stage 1 trains binary activations with
real-valued weights and L2 weight decay on conv kernels; stage 2 starts from its
weights with binary weights and its own (by default zero) decay, a fresh
optimizer and a restarted learning-rate schedule, which is what the paper's two
separate runs do.

The run directory::

    MODEL_DIR/config.json       the recipe (a resume with another recipe is refused)
    MODEL_DIR/flags.cfg         the same as a flagfile, when run from the command line
    MODEL_DIR/dataset.json      `bnn_keras.data.DatasetInfo` of the data
    MODEL_DIR/run.json          model name and arguments, stages run
    MODEL_DIR/stage{1,2}/
        checkpoints/            one per epoch: model, optimizer, epoch, C2I reference
        metrics.csv             per-epoch metrics (appended across resumes), with
                                ff_ratio, c2i, changed_from_init and saturation
        tensorboard/            TensorBoard logs
        model.keras             the final model of the stage
        result.json             val_top1, val_top5, ff_ratio_mean, c2i, saturation,
                                wall_time_s

Everything is checked before anything is written: a bad argument, a missing
dataset, a stage 2 with nothing to start from or a corrupt checkpoint stop the
run with a `ValueError` (or `FileNotFoundError`) and leave the directory as it was.
Rerunning the same command resumes from the newest checkpoint; only the
unfinished epoch is lost. A stage with a `result.json` is done and is skipped.
"""

from __future__ import annotations

import csv
import json
import logging
import os
import shutil
import tempfile
import time

import numpy as np
import tensorflow as tf

from bnn_keras import callbacks as bnn_callbacks
from bnn_keras import data, models, optim
from bnn_keras.config import RECIPE_FIELDS, TrainConfig
from bnn_keras.distill import Distiller, load_teacher

__all__ = ["run", "make_strategy", "TrainConfig"]

log = logging.getLogger(__name__)

OWN_MODELS = ("reactnet_a", "reactnet18")
SATURATION_BATCH = 64  # validation images the saturation monitor probes


# One strategy of each kind per process. Every new MirroredStrategy numbers its
# collective ops from the same keys, and TensorFlow remembers the shape of each
# key: a second strategy in one process (a second `run` in a notebook, or a
# test after another) fails with "Shape mismatch in the collective instance".
_STRATEGIES: dict[str, tf.distribute.Strategy] = {}


def make_strategy(name: str) -> tf.distribute.Strategy:
    """The `tf.distribute` strategy called `name` (see `TrainConfig`).

    The same object is returned every time for a name other than "default", so
    that repeated runs in one process share their collective-op keys.

    >>> make_strategy("mirrored") is make_strategy("mirrored")
    True
    """
    if name == "default":
        return tf.distribute.get_strategy()
    if name not in _STRATEGIES:
        _STRATEGIES[name] = _new_strategy(name)
    return _STRATEGIES[name]


def _new_strategy(name: str) -> tf.distribute.Strategy:
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multi_worker_mirrored":
        return tf.distribute.MultiWorkerMirroredStrategy()
    if name == "tpu":
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver()
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
        return tf.distribute.TPUStrategy(resolver)
    raise ValueError(
        "`distribution_strategy` must be one of ('default', 'mirrored', "
        f"'multi_worker_mirrored', 'tpu'); received: distribution_strategy={name!r}"
    )


def _is_chief(strategy) -> bool:
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.cluster_spec().as_dict():
        return True
    return resolver.task_type in (None, "chief") or (
        resolver.task_type == "worker"
        and resolver.task_id == 0
        and "chief" not in resolver.cluster_spec().as_dict()
    )


def _model_kwargs(config: TrainConfig, info: data.DatasetInfo) -> dict:
    kwargs = dict(input_shape=tuple(info.input_shape), num_classes=info.num_classes)
    if config.model in OWN_MODELS:
        kwargs["width_multiplier"] = config.width_multiplier
        kwargs["bn_momentum"] = config.bn_momentum
    return kwargs


def _build(config: TrainConfig, info: data.DatasetInfo, stage: int) -> tf.keras.Model:
    return models.get(config.model, stage=stage, **_model_kwargs(config, info))


def _write_json(path: str, obj) -> None:
    _atomic_write(path, json.dumps(obj, indent=2, sort_keys=True).encode())


def _atomic_write(path: str, payload: bytes) -> None:
    directory = os.path.dirname(path) or "."
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(payload)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def _read_json(path: str):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


class _Stage:
    """Paths and state of one stage in the run directory."""

    def __init__(self, model_dir: str, stage: int):
        self.stage = stage
        self.dir = os.path.join(model_dir, f"stage{stage}")
        self.checkpoints = os.path.join(self.dir, "checkpoints")
        self.metrics = os.path.join(self.dir, "metrics.csv")
        self.tensorboard = os.path.join(self.dir, "tensorboard")
        self.model = os.path.join(self.dir, "model.keras")
        self.result = os.path.join(self.dir, "result.json")

    def done(self) -> bool:
        return os.path.exists(self.result) and os.path.exists(self.model)

    def latest_checkpoint(self) -> str | None:
        return tf.train.latest_checkpoint(self.checkpoints)


def _check_run_dir(config: TrainConfig) -> None:
    path = os.path.join(config.model_dir, "config.json")
    if not os.path.exists(path):
        return
    try:
        previous = _read_json(path)
    except (OSError, ValueError) as e:
        raise ValueError(
            f"`model_dir` holds an unreadable {path}; received: model_dir="
            f"{config.model_dir!r}. Use another --model_dir."
        ) from e
    current = config.to_json()
    diffs = [
        f"{k}: {previous.get(k)!r} there, {current[k]!r} now"
        for k in RECIPE_FIELDS
        if k in previous and previous[k] != current[k]
    ]
    if diffs:
        raise ValueError(
            f"`model_dir` was made by a different recipe ({'; '.join(diffs)}); received: "
            f"model_dir={config.model_dir!r}. Use another --model_dir, or the same flags."
        )


def _check_checkpoint(stage: _Stage) -> None:
    """Fails early, before anything is written, on a checkpoint that cannot be read."""
    latest = stage.latest_checkpoint()
    if latest is None:
        if os.path.exists(os.path.join(stage.checkpoints, "checkpoint")):
            raise ValueError(
                f"The checkpoint in {stage.checkpoints} is corrupt (its index names no "
                "readable checkpoint). Delete that directory to restart the stage, or use "
                "another --model_dir."
            )
        return
    try:
        tf.train.load_checkpoint(latest).get_variable_to_shape_map()
    except (tf.errors.OpError, ValueError) as e:
        raise ValueError(
            f"The checkpoint {latest} is corrupt ({type(e).__name__}). Delete "
            f"{stage.checkpoints} to restart the stage, or use another --model_dir."
        ) from e


def _initial_weights(config: TrainConfig, info, stage2_model: tf.keras.Model):
    """The weights stage 2 starts from, when stage 2 runs on its own (`stage=2`)."""
    source = config.init_from
    stage1 = _Stage(config.model_dir, 1)
    if source == "scratch":
        log.warning("Stage 2 starts from random weights (--init_from=scratch).")
        return None
    if not source:
        if not stage1.done():
            raise ValueError(
                f"`stage` 2 needs a stage-1 result, and {stage1.model} does not exist. "
                "Run --stage=1 (or --stage=all) with this --model_dir first, pass "
                "--init_from=PATH of a trained model, or --init_from=scratch to train "
                "fully binary from random weights."
            )
        source = stage1.model
    if not os.path.exists(source):
        raise ValueError(
            f"`init_from` must be an existing model file; received: init_from={source!r}"
        )
    try:
        loaded = tf.keras.models.load_model(source, compile=False)
    except (OSError, ValueError, TypeError) as e:
        raise ValueError(
            f"`init_from` could not be loaded as a Keras model: {source!r} ({e})"
        ) from e
    want = [tuple(w.shape) for w in stage2_model.weights]
    have = [tuple(w.shape) for w in loaded.weights]
    if want != have:
        raise ValueError(
            f"`init_from` is a model of another architecture or number of classes: "
            f"{source!r} has {len(have)} weights (last {have[-1:]}), the {config.model} "
            f"for {info.num_classes} classes needs {len(want)} (last {want[-1:]})."
        )
    log.info("Stage 2 starts from %s", source)
    return loaded.get_weights()


def _make_optimizer(config: TrainConfig, stage: int, steps_per_epoch: int):
    # tf-keras optimizers XLA-compile their update by default; on a CPU that
    # costs tens of seconds at the first step and gains nothing, so it follows
    # --jit_compile like the train step does.
    schedule = optim.LinearEpochDecay(
        config.scaled_learning_rate(), epochs=config.epochs, steps_per_epoch=steps_per_epoch
    )
    decay = config.weight_decay if stage == 1 else config.stage2_weight_decay
    if config.optimizer == "adam":
        return optim.KernelDecayAdam(
            learning_rate=schedule,
            kernel_decay=decay,
            decoupled=config.decoupled_weight_decay,
            jit_compile=config.jit_compile,
        )
    return optim.KernelDecaySGD(
        learning_rate=schedule,
        momentum=0.9,
        kernel_decay=decay,
        decoupled=config.decoupled_weight_decay,
        jit_compile=config.jit_compile,
    )


def _steps_per_epoch(config: TrainConfig, info: data.DatasetInfo) -> int:
    steps = max(1, info.num_train // config.batch_size)
    return min(steps, config.steps_per_epoch) if config.steps_per_epoch else steps


class _EpochCheckpoint(tf.keras.callbacks.Callback):
    """Saves model, optimizer, epoch and C2I reference at every epoch end."""

    def __init__(self, manager: tf.train.CheckpointManager, epoch: tf.Variable, clock):
        super().__init__()
        self.manager = manager
        self.epoch = epoch
        self.clock = clock

    def on_epoch_end(self, epoch, logs=None):
        self.epoch.assign(epoch + 1)
        self.clock.tick()
        self.manager.save(checkpoint_number=epoch + 1)


class _Clock:
    """Wall time of a stage, kept in a variable so that it survives a resume."""

    def __init__(self):
        self.seconds = tf.Variable(0.0, dtype=tf.float64, trainable=False, name="wall_time")
        self._start = time.monotonic()

    def tick(self):
        now = time.monotonic()
        self.seconds.assign_add(now - self._start)
        self._start = now


def _keep_csv_rows_before(csv_path: str, epoch: int) -> None:
    """Drops CSV rows of epochs >= `epoch`: they are about to be trained again."""
    if not os.path.exists(csv_path):
        return
    with open(csv_path, newline="", encoding="utf-8") as f:
        lines = f.read().splitlines(keepends=True)
    kept = lines[:1] + [l for l in lines[1:] if int(l.split(",", 1)[0]) < epoch]
    if len(kept) != len(lines):
        _atomic_write(csv_path, "".join(kept).encode())


def _epoch_means(csv_path: str, key: str) -> list[float]:
    if not os.path.exists(csv_path):
        return []
    with open(csv_path, newline="", encoding="utf-8") as f:
        return [float(row[key]) for row in csv.DictReader(f) if row.get(key) not in (None, "")]


def _save_model(model: tf.keras.Model, path: str, chief: bool) -> None:
    """Saves `model` atomically to `path` on the chief.

    Every worker saves: under MultiWorkerMirroredStrategy reading the variables
    runs collective ops that all workers must join, so a worker that skipped the
    save would wait in another collective and the run would fail with a shape
    mismatch. The other workers write into a temporary directory and delete it.
    """
    directory = os.path.dirname(path) if chief else tempfile.mkdtemp(prefix="bnn_keras_worker_")
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix=".keras")
    os.close(fd)
    try:
        model.save(tmp, overwrite=True)
        if chief:
            os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
        if not chief:
            shutil.rmtree(directory, ignore_errors=True)


def _train_stage(config, stage_no, strategy, info, init_weights, teacher, chief):
    stage = _Stage(config.model_dir, stage_no)
    steps = _steps_per_epoch(config, info)
    tf.keras.utils.set_random_seed(config.seed + stage_no)
    train_ds = data.make_dataset(
        config.dataset,
        "train",
        batch_size=config.batch_size,
        data_dir=config.data_dir or None,
        image_size=config.image_size or None,
        seed=config.seed + stage_no,
        drop_remainder=True,
    )
    val_ds = data.make_dataset(
        config.dataset,
        "validation",
        batch_size=config.batch_size,
        data_dir=config.data_dir or None,
        image_size=config.image_size or None,
    )
    if config.steps_per_epoch:
        train_ds = train_ds.take(steps)

    with strategy.scope():
        model = _build(config, info, stage_no)
        if init_weights is not None:
            model.set_weights(init_weights)
        optimizer = _make_optimizer(config, stage_no, steps)
        optimizer.set_decay_variables(optim.conv_kernels(model))
        metrics = [
            tf.keras.metrics.SparseCategoricalAccuracy(name="top1"),
            tf.keras.metrics.SparseTopKCategoricalAccuracy(k=5, name="top5"),
        ]
        loss = tf.keras.losses.SparseCategoricalCrossentropy()
        trainer = model if teacher is None else Distiller(model, teacher)
        trainer.compile(
            optimizer=optimizer, loss=loss, metrics=metrics, jit_compile=config.jit_compile
        )
        epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")
        clock = _Clock()

    ff = bnn_callbacks.FlipFlopRatio(per_layer=False, log_dir=stage.tensorboard if chief else None)
    c2i = bnn_callbacks.C2IRatio(reference="stage", per_layer=False)
    c2i.set_model(model)
    checkpoint = tf.train.Checkpoint(
        model=model,
        optimizer=optimizer,
        epoch=epoch,
        wall_time=clock.seconds,
        c2i=c2i.checkpoint_state(),
    )
    ckpt_dir = stage.checkpoints if chief else tempfile.mkdtemp(prefix="bnn_keras_worker_")
    manager = tf.train.CheckpointManager(checkpoint, ckpt_dir, max_to_keep=2)
    latest = stage.latest_checkpoint()
    if latest:
        checkpoint.restore(latest).expect_partial()
        log.info("Resuming stage %d from %s (epoch %d)", stage_no, latest, int(epoch.numpy()))
    initial_epoch = int(epoch.numpy())

    # The paper's Fig. 3 measure, once per epoch on a fixed validation batch,
    # read from an uncached copy: a partial read of a cached dataset makes
    # TensorFlow warn and drop the partial cache.
    probe_ds = data.make_dataset(
        config.dataset,
        "validation",
        batch_size=SATURATION_BATCH,
        data_dir=config.data_dir or None,
        image_size=config.image_size or None,
        cache=False,
    )
    probe_images = next(iter(probe_ds.take(1)))[0]
    saturation = bnn_callbacks.ActivationSaturation(probe_images, per_layer=False, model=model)

    os.makedirs(stage.dir, exist_ok=True)
    cbs = [ff, c2i, saturation]
    if chief:
        _keep_csv_rows_before(stage.metrics, initial_epoch)
        cbs += [
            tf.keras.callbacks.CSVLogger(stage.metrics, append=initial_epoch > 0),
            tf.keras.callbacks.TensorBoard(stage.tensorboard),
        ]
    # Last, so that an epoch's CSV row exists whenever its checkpoint does.
    cbs.append(_EpochCheckpoint(manager, epoch, clock))
    if initial_epoch < config.epochs:
        log.info(
            "Stage %d: %s on %s, epochs %d-%d, %d steps of %d, writing to %s",
            stage_no,
            config.model,
            config.dataset,
            initial_epoch + 1,
            config.epochs,
            steps,
            config.batch_size,
            stage.dir,
        )
        trainer.fit(
            train_ds,
            validation_data=val_ds,
            epochs=config.epochs,
            initial_epoch=initial_epoch,
            callbacks=cbs,
            verbose=1 if chief else 0,
        )
    clock.tick()
    if teacher is not None:  # the student itself was never compiled
        model.compile(metrics=metrics, loss=loss)
    evaluation = model.evaluate(val_ds, return_dict=True, verbose=0)
    result = {
        "stage": stage_no,
        "epochs": config.epochs,
        "val_top1": float(evaluation["top1"]),
        "val_top5": float(evaluation["top5"]),
        "ff_ratio_mean": float(np.mean(_epoch_means(stage.metrics, "ff_ratio") or [np.nan])),
        "c2i": float((_epoch_means(stage.metrics, "c2i") or [np.nan])[-1]),
        "saturation": float((_epoch_means(stage.metrics, "saturation") or [np.nan])[-1]),
        "wall_time_s": float(clock.seconds.numpy()),
    }
    _save_model(model, stage.model, chief)
    if not chief:
        shutil.rmtree(ckpt_dir, ignore_errors=True)
    if chief:
        _write_json(stage.result, result)
    log.info(
        "Stage %d done: val top-1 %.4f, top-5 %.4f, mean FF %.3g, C2I %.4f, %.0f s -> %s",
        stage_no,
        result["val_top1"],
        result["val_top5"],
        result["ff_ratio_mean"],
        result["c2i"],
        result["wall_time_s"],
        stage.dir,
    )
    return model, result


def run(config: TrainConfig, *, flagfile: str | None = None) -> dict[int, dict]:
    """Trains the stages of `config` into `config.model_dir`; resumes where it stopped.

    Example (a few steps on the embedded digits):

    >>> import tempfile
    >>> config = TrainConfig(model="reactnet18", width_multiplier=0.125, epochs=1,
    ...                      steps_per_epoch=2, model_dir=tempfile.mkdtemp())
    >>> results = run(config)  # doctest: +SKIP
    >>> sorted(results)  # doctest: +SKIP
    [1, 2]

    Args:
        config: the run.
        flagfile: text saved as `MODEL_DIR/flags.cfg` once every check passed (the
            command line passes its resolved flags).

    Returns:
        `{stage: result}` with the contents of each stage's `result.json`.

    Raises:
        ValueError: a bad field, an unknown model or dataset, a stage 2 with no
            stage-1 result, an `init_from` of another architecture, a run
            directory of another recipe, a corrupt checkpoint.
        FileNotFoundError: a dataset that is not present (e.g. a tfds manual
            download), as `bnn_keras.data.DataNotFoundError`.
    """
    config.validate()
    # The dtype policy is global Keras state: set for the models of this run only.
    previous_policy = tf.keras.mixed_precision.global_policy()
    if config.mixed_precision:
        tf.keras.mixed_precision.set_global_policy(config.mixed_precision)
    try:
        return _run(config, flagfile)
    finally:
        tf.keras.mixed_precision.set_global_policy(previous_policy)


def _run(config: TrainConfig, flagfile: str | None) -> dict[int, dict]:
    if config.model not in models.names():
        raise ValueError(
            f"`model` must be one of {models.names()}; received: model={config.model!r}"
        )
    info = data.get_info(
        config.dataset, data_dir=config.data_dir or None, image_size=config.image_size or None
    )
    _check_run_dir(config)
    stages = config.stages()
    for stage_no in stages:
        _check_checkpoint(_Stage(config.model_dir, stage_no))
    strategy = make_strategy(config.distribution_strategy)
    chief = _is_chief(strategy)

    init_weights = None
    if stages == (2,) and not _Stage(config.model_dir, 2).done():
        with strategy.scope():
            probe = _build(config, info, 2)
        init_weights = _initial_weights(config, info, probe)
        del probe
    teacher = None
    if config.teacher:
        with strategy.scope():
            teacher = load_teacher(config.teacher, info)

    if chief:
        os.makedirs(config.model_dir, exist_ok=True)
        _write_json(os.path.join(config.model_dir, "config.json"), config.to_json())
        if flagfile is not None:
            _atomic_write(os.path.join(config.model_dir, "flags.cfg"), flagfile.encode())
        _write_json(os.path.join(config.model_dir, "dataset.json"), info.to_json())
        _write_json(
            os.path.join(config.model_dir, "run.json"),
            {
                "model": config.model,
                "model_kwargs": _model_kwargs(config, info),
                "stages": list(stages),
            },
        )
    log.info("Run directory: %s", os.path.abspath(config.model_dir))

    results = {}
    for stage_no in stages:
        stage = _Stage(config.model_dir, stage_no)
        if stage.done():
            log.info("Stage %d is already finished in %s; skipping it.", stage_no, stage.dir)
            results[stage_no] = _read_json(stage.result)
            if stage_no == 1:
                init_weights = tf.keras.models.load_model(stage.model, compile=False).get_weights()
            continue
        model, results[stage_no] = _train_stage(
            config, stage_no, strategy, info, init_weights, teacher, chief
        )
        init_weights = model.get_weights()
    return results
