"""Folders of images, one sub-folder per class: `"folder:/path/to/images"`.

Two layouts are accepted:

- `root/<class>/**/<image>`: the validation split is a share
  (`validation_fraction`) of every class, chosen by `sources.stratified_split`
  from a hash of each image's path relative to `root`, so the split is the
  same on every machine, wherever the folder sits, and adding images moves no
  other image between splits;
- `root/train/<class>/...` with `root/validation/<class>/...` (or `root/val/`):
  the split is the folders'.

Classes are the sub-folder names, sorted, as in
`tf.keras.utils.image_dataset_from_directory`; hidden entries are skipped.
Images are `.jpg`, `.jpeg`, `.png`, `.bmp` or `.gif` files (any case), in
sub-folders of a class folder too. Images may have any size: they are decoded
to RGB after shuffling, cropped and resized to `image_size` (224 by default)
with the ImageNet recipe, and normalised with ImageNet's statistics.
"""

from __future__ import annotations

import logging
import os

import numpy as np
import tensorflow as tf

from bnn_keras.data import preprocessing
from bnn_keras.data.info import DataNotFoundError, DatasetInfo
from bnn_keras.data.sources import (
    DEFAULT_IMAGE_SIZE,
    FOLDER_PREFIX,
    Source,
    stratified_split,
)

__all__ = ["IMAGE_EXTENSIONS", "folder_source"]

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif")
_SALT = "bnn_keras/folder"


def _visible_dirs(path: str) -> list[str]:
    with os.scandir(path) as entries:
        return sorted(e.name for e in entries if e.is_dir() and not e.name.startswith("."))


def _scan(root: str, classes: list[str]) -> tuple[list[str], list[int], int]:
    """Returns the image paths under `root/<class>`, their labels and total bytes."""
    paths, labels, total = [], [], 0
    for label, name in enumerate(classes):
        class_dir = os.path.join(root, name)
        found = 0
        for dirpath, dirnames, filenames in os.walk(class_dir):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            for filename in sorted(filenames):
                if filename.startswith(".") or not filename.lower().endswith(IMAGE_EXTENSIONS):
                    continue
                path = os.path.join(dirpath, filename)
                paths.append(path)
                labels.append(label)
                total += os.path.getsize(path)
                found += 1
        if not found:
            log.warning("Class folder %s holds no images.", class_dir)
    return paths, labels, total


def _check_fraction(validation_fraction: float) -> None:
    if (
        isinstance(validation_fraction, bool)
        or not isinstance(validation_fraction, (int, float))
        or not 0 <= validation_fraction < 1
    ):
        raise ValueError(
            "`validation_fraction` must be a number in [0, 1); received: "
            f"validation_fraction={validation_fraction!r}"
        )


def folder_source(
    name: str, *, image_size: int | None = None, validation_fraction: float = 0.1
) -> Source:
    """The `Source` of `"folder:/path"` (see the module docstring).

    Raises:
        DataNotFoundError: the folder does not exist or holds no images.
        ValueError: fewer than 2 class sub-folders, a validation class that
            training does not have, or a bad `validation_fraction`.
    """
    _check_fraction(validation_fraction)
    path = name[len(FOLDER_PREFIX) :]
    if not path.strip():
        raise ValueError(
            f"`name` must be '{FOLDER_PREFIX}' followed by the path of a folder; received: "
            f"name={name!r}"
        )
    root = os.path.abspath(os.path.expanduser(path))
    if not os.path.isdir(root):
        raise DataNotFoundError(
            f"`name` must be '{FOLDER_PREFIX}' followed by an existing folder; received: "
            f"name={name!r}, and {root} is not a folder"
        )
    subdirs = _visible_dirs(root)
    validation_dir = next((d for d in ("validation", "val") if d in subdirs), None)
    layout_root = os.path.join(root, "train") if "train" in subdirs and validation_dir else root
    classes = _visible_dirs(layout_root)
    if len(classes) < 2:
        raise ValueError(
            f"`name` must be a folder with at least 2 class sub-folders (one per class, "
            f"holding its images); received: name={name!r}, whose folder {layout_root} "
            f"has {len(classes)}: {classes}"
        )
    if layout_root != root:
        train_paths, train_labels, train_bytes = _scan(layout_root, classes)
        extra = sorted(set(_visible_dirs(os.path.join(root, validation_dir))) - set(classes))
        if extra:
            raise ValueError(
                f"`name` must be a folder whose {validation_dir}/ classes are among its "
                f"train/ classes {classes}; received: name={name!r}, with {validation_dir}/ "
                f"classes {extra} not in train/"
            )
        val_paths, val_labels, val_bytes = _scan(os.path.join(root, validation_dir), classes)
        splits = {
            "train": (train_paths, train_labels),
            "validation": (val_paths, val_labels),
        }
        split_bytes = {"train": train_bytes, "validation": val_bytes}
    else:
        paths, labels, total = _scan(root, classes)
        relative = [os.path.relpath(p, root).replace(os.sep, "/") for p in paths]
        train, validation = stratified_split(
            relative, np.asarray(labels), validation_fraction, salt=_SALT
        )
        splits = {
            "train": ([paths[i] for i in train], [labels[i] for i in train]),
            "validation": ([paths[i] for i in validation], [labels[i] for i in validation]),
        }
        share = len(train) / max(len(paths), 1)
        split_bytes = {"train": int(total * share), "validation": int(total * (1 - share))}
    if not splits["train"][0]:
        raise DataNotFoundError(
            f"`name` must be a folder holding images ({', '.join(IMAGE_EXTENSIONS)}) in its "
            f"class sub-folders; received: name={name!r}, with no images for training"
        )

    size = image_size or DEFAULT_IMAGE_SIZE
    info = DatasetInfo(
        name=name,
        num_classes=len(classes),
        input_shape=(size, size, 3),
        mean=preprocessing.IMAGENET_MEAN,
        std=preprocessing.IMAGENET_STD,
        label_names=tuple(classes),
        num_train=len(splits["train"][0]),
        num_validation=len(splits["validation"][0]),
    )

    def load(split, shuffle_files, seed, input_context):
        paths, labels = splits[split]
        paths = np.asarray(paths, dtype=object)
        labels = np.asarray(labels, dtype=np.int64)
        if input_context is not None:
            step, start = input_context.num_input_pipelines, input_context.input_pipeline_id
            paths, labels = paths[start::step], labels[start::step]
        ds = tf.data.Dataset.from_tensor_slices((paths.astype(str), labels))
        if shuffle_files:
            # File names are cheap to hold: shuffle them all before reading.
            ds = ds.shuffle(len(labels), seed=seed, reshuffle_each_iteration=True)
        return ds.map(
            lambda path, label: (tf.io.read_file(path), label),
            num_parallel_calls=tf.data.AUTOTUNE,
        )

    return Source(
        info=info,
        load=load,
        encoded=True,
        stored_shape=None,
        augmentation="imagenet",
        split_bytes=split_bytes,
        file_shuffled=True,
    )
