"""What to export: a Keras model, a training run, or a saved model; its run record and data.

`load_source` accepts a Keras model, a run directory written by the trainer
(`RUN/stage2/model.keras`, else `RUN/stage1/model.keras`, beside
`RUN/dataset.json` and `RUN/run.json`), one stage directory of a run
(`RUN/stage2`), a `.keras` or `.h5` file, or a SavedModel directory. Besides the
model it keeps what the device app and the export report need from the run: the
dataset's normalisation and label names (`dataset.json`), the model recipe
(`run.json`) and the stage's metrics (`result.json`).

The newest stage wins because it is the one the two-stage schedule ends with;
when `stage2/` exists without its model (a stage 2 that did not finish), stage 1
is used with a warning, and the export then refuses it unless float weights are
asked for (`bnn_keras.inference_graph`).

The validation data comes from `bnn_keras.data` under the name in
`dataset.json`, at the model's input size. Verification falls back to seeded
standard-normal noise (what normalised images look like to the first layer) when
that data is not on this machine, and says so; evaluation needs the data.

Models are loaded with `compile=False`: exporting needs neither the optimizer
nor the losses, and a training-only custom object should not stand in the way.
Importing this module registers bnn_keras's layers and quantizers for loading.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf

import bnn_keras.layers  # noqa: F401  (registers the custom layers)
import bnn_keras.quantizers  # noqa: F401  (registers the quantizers)
from bnn_keras.models.common import quiet_constraint_warning

__all__ = [
    "MODEL_FILE",
    "STAGE_DIRS",
    "ExportSource",
    "dataset_info",
    "load_source",
    "validation_dataset",
    "verification_images",
]

log = logging.getLogger(__name__)

STAGE_DIRS = ("stage2", "stage1")  # newest first
MODEL_FILE = "model.keras"


@dataclasses.dataclass(frozen=True)
class ExportSource:
    """A model to export and what its training run recorded about it.

    Attributes:
        model: the Keras model as trained (it may have switchable quantizers).
        kind: `"model"` (an in-memory Keras model), `"run"`, `"stage"` (one stage
            directory of a run), `"keras_file"` or `"saved_model"`.
        path: the path given, made absolute, or None for an in-memory model.
        stage: the stage exported from a run (1 or 2), else None.
        dataset: the run's `dataset.json` (`DatasetInfo.to_json()`), else None.
        run: the run's `run.json`, else None.
        config: the run's `config.json` (the trainer's recipe; its `data_dir` is
            where the run read its data), else None.
        metrics: the stage's `result.json` (`val_top1`, ...), else None.
    """

    model: tf.keras.Model
    kind: str
    path: str | None = None
    stage: int | None = None
    dataset: dict[str, Any] | None = None
    run: dict[str, Any] | None = None
    config: dict[str, Any] | None = None
    metrics: dict[str, Any] | None = None


def load_source(source) -> ExportSource:
    """Loads the model to export from a Keras model or a path.

    Example:

    >>> import tempfile
    >>> load_source(tempfile.mkdtemp())
    Traceback (most recent call last):
    ...
    ValueError: `model` must be a Keras model, a run directory ...

    Args:
        source: a `tf.keras.Model`; or the path of a run directory, of one stage
            directory of a run (`RUN/stage2`), of a `.keras` / `.h5` file, or of a
            SavedModel directory.

    Returns:
        An `ExportSource`.

    Raises:
        TypeError: `source` is neither a Keras model nor a path.
        ValueError: the path does not exist or holds none of the above.
    """
    if isinstance(source, tf.keras.Model):
        return ExportSource(model=source, kind="model")
    if not isinstance(source, (str, os.PathLike)):
        raise TypeError(
            "`model` must be a tf.keras.Model or a path; received: "
            f"model of type {type(source).__name__}"
        )
    path = Path(source).expanduser().absolute()
    if path.is_dir():
        stages = {name: path / name / MODEL_FILE for name in STAGE_DIRS}
        for name, model_file in stages.items():
            if model_file.is_file():
                if name == "stage1" and (path / "stage2").is_dir():
                    log.warning(
                        "%s has a stage2 directory without %s (an unfinished stage 2?); "
                        "using stage 1.",
                        path,
                        MODEL_FILE,
                    )
                return ExportSource(
                    model=_load_model(model_file),
                    kind="run",
                    path=str(path),
                    stage=int(name[-1]),
                    dataset=_read_json(path / "dataset.json"),
                    run=_read_json(path / "run.json"),
                    config=_read_json(path / "config.json"),
                    metrics=_read_json(path / name / "result.json"),
                )
        if (path / MODEL_FILE).is_file():
            stage = int(path.name[-1]) if path.name in STAGE_DIRS else None
            return ExportSource(
                model=_load_model(path / MODEL_FILE),
                kind="stage",
                path=str(path),
                stage=stage,
                dataset=_read_json(path.parent / "dataset.json"),
                run=_read_json(path.parent / "run.json"),
                config=_read_json(path.parent / "config.json"),
                metrics=_read_json(path / "result.json"),
            )
        if (path / "saved_model.pb").is_file():
            return ExportSource(model=_load_model(path), kind="saved_model", path=str(path))
    elif path.is_file() and path.suffix in (".keras", ".h5"):
        return ExportSource(model=_load_model(path), kind="keras_file", path=str(path))
    reason = "no such file or directory" if not path.exists() else "not any of these"
    raise ValueError(
        "`model` must be a Keras model, a run directory (with stage2/model.keras or "
        "stage1/model.keras), a stage directory with model.keras, a .keras or .h5 "
        f"file, or a SavedModel directory; received: model={str(source)!r} ({reason})"
    )


def _load_model(path: Path) -> tf.keras.Model:
    # Rebuilding the layers repeats Larq's warning about binary kernels without a
    # weight clip, which ReActNet omits on purpose (`bnn_keras.models.common`).
    with quiet_constraint_warning():
        return tf.keras.models.load_model(str(path), compile=False)


def _read_json(path: Path) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    with open(path, encoding="utf-8") as f:
        try:
            return json.load(f)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path} must hold JSON; received: {e}") from e


def dataset_info(
    source: ExportSource, dataset: str | None = None, *, data_dir: str | None = None
) -> dict[str, Any] | None:
    """The `DatasetInfo.to_json()` of `dataset`, else of the source's run, else None.

    The run's own record is used when it names the same dataset, so a run whose
    data is not on this machine still exports its normalisation and labels.
    """
    if dataset is None or (source.dataset or {}).get("name") == dataset:
        return source.dataset
    from bnn_keras import data  # here: it imports tensorflow-datasets

    return data.get_info(dataset, data_dir=data_dir).to_json()


def validation_dataset(
    name: str, input_shape, *, batch_size: int = 32, data_dir: str | None = None
) -> tf.data.Dataset:
    """The validation split of `name` as `(images, labels)` batches at the model's input size.

    Example:

    >>> ds = validation_dataset("mnist_5k", (28, 28, 1), batch_size=100)
    >>> int(ds.cardinality()), ds.element_spec[0].shape.as_list()
    (10, [None, 28, 28, 1])

    Raises:
        ValueError: the dataset's images cannot have the model's input shape.
        FileNotFoundError: the data is not on this machine
            (`bnn_keras.data.DataNotFoundError`).
    """
    from bnn_keras import data  # here: it imports tensorflow-datasets

    input_shape = tuple(int(d) for d in input_shape)
    kwargs = {}
    if tuple(data.get_info(name, data_dir=data_dir).input_shape) != input_shape:
        kwargs["image_size"] = input_shape[0]
    ds = data.make_dataset(name, "validation", batch_size=batch_size, data_dir=data_dir, **kwargs)
    shape = tuple(ds.element_spec[0].shape[1:])
    if shape != input_shape:
        raise ValueError(
            f"`dataset` must give images of the model's input shape {input_shape}; "
            f"received: dataset={name!r} with images of shape {shape}"
        )
    return ds


def verification_images(
    name: str | None,
    input_shape,
    num_images: int,
    *,
    data_dir: str | None = None,
    required: bool = False,
) -> tuple[np.ndarray, str]:
    """The first `num_images` validation images of `name`, else seeded normal noise.

    Example:

    >>> images, kind = verification_images(None, (4, 4, 1), 3)
    >>> images.shape, kind
    ((3, 4, 4, 1), 'random')

    Args:
        name: a `bnn_keras.data` dataset name, or None for noise.
        input_shape: the model's `(height, width, channels)`.
        num_images: how many images.
        data_dir: tensorflow-datasets' data directory.
        required: raise instead of falling back to noise when the data is missing.

    Returns:
        `(images, kind)`: float32 images and `"validation"` or `"random"`.
    """
    if name is not None:
        try:
            ds = validation_dataset(name, input_shape, data_dir=data_dir).unbatch()
            images = [x for x, _ in ds.take(num_images).as_numpy_iterator()]
            return np.stack(images), "validation"
        except FileNotFoundError as e:  # bnn_keras.data.DataNotFoundError
            if required:
                raise
            log.warning("Verifying on random inputs: the validation data is missing (%s).", e)
    rng = np.random.default_rng(0)
    shape = (num_images, *(int(d) for d in input_shape))
    return rng.standard_normal(shape).astype("float32"), "random"
