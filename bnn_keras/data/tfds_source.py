"""tensorflow-datasets image classification datasets, without surprise downloads.

`tfds.builder(name, data_dir=...)` gives the dataset's features and splits. A
dataset that is not prepared in `data_dir` is never downloaded silently (the
machine may have no network, and a hung download is worse than an error):

- a manual-download dataset (imagenet2012) whose manual files are present in
  tfds's manual directory, `<data_dir>/downloads/manual/`, is prepared from
  them, which needs no network (ImageNet takes hours, once);
- one whose manual files are missing raises `DataNotFoundError` naming the
  files and the directory they go in;
- any other raises `DataNotFoundError` saying how to prepare it
  (`tfds build`, or `download=True`), unless `download=True` was passed.

Datasets with images of one size (MNIST, CIFAR) are decoded by tfds and cached
decoded. Datasets with images of any size (ImageNet) are read as encoded bytes
(`tfds.decode.SkipDecoding`), so the pipeline decodes each image after
shuffling, and for a random crop decodes only the crop window.

The validation split is tfds's "validation" split where there is one, else its
"test" split (CIFAR and MNIST have no other held-out labelled split).
"""

from __future__ import annotations

import logging
import os

import tensorflow as tf

from bnn_keras.data import preprocessing
from bnn_keras.data.info import DataNotFoundError, DatasetInfo
from bnn_keras.data.sources import DEFAULT_IMAGE_SIZE, Source, unknown_name_message

__all__ = ["MANUAL_FILES", "MANUAL_SOURCES", "tfds_source"]

log = logging.getLogger(__name__)

# Files a manual-download dataset needs in tfds's manual directory.
MANUAL_FILES = {
    "imagenet2012": ("ILSVRC2012_img_train.tar", "ILSVRC2012_img_val.tar"),
}
MANUAL_SOURCES = {
    "imagenet2012": "download them from https://image-net.org/download-images after registering",
}
# Normalisation statistics (in [0, 1] pixel units) and training augmentation.
_KNOWN = {
    "mnist": ((0.1307,), (0.3081,), "translate"),
    "fashion_mnist": ((0.2860,), (0.3530,), "translate"),
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616), "crop_flip"),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762), "crop_flip"),
    "imagenet2012": (preprocessing.IMAGENET_MEAN, preprocessing.IMAGENET_STD, "imagenet"),
    "imagenette": (preprocessing.IMAGENET_MEAN, preprocessing.IMAGENET_STD, "imagenet"),
}


def _base_name(name: str) -> str:
    """`"imagenette/160px:1.0.0"` -> `"imagenette"`."""
    return name.split(":")[0].split("/")[0]


def tfds_source(
    name: str, *, data_dir: str | None, image_size: int | None, download: bool
) -> Source:
    """The `Source` of a tensorflow-datasets image classification dataset.

    Raises:
        ValueError: an unknown name, or a dataset without an image and a class label.
        DataNotFoundError: the dataset is not prepared in `data_dir` (see the
            module docstring).
    """
    import tensorflow_datasets as tfds

    try:
        builder = tfds.builder(name, data_dir=data_dir)
    except ValueError as e:  # DatasetNotFoundError is a ValueError.
        raise ValueError(unknown_name_message(name, str(e).splitlines()[0])) from e
    features = builder.info.features
    if not (
        isinstance(features, tfds.features.FeaturesDict)
        and "image" in features.keys()
        and isinstance(features["image"], tfds.features.Image)
        and "label" in features.keys()
        and isinstance(features["label"], tfds.features.ClassLabel)
    ):
        raise ValueError(
            unknown_name_message(
                name,
                "not an image classification dataset: it needs " "an 'image' and a 'label' feature",
            )
        )
    # is_prepared() logs a warning for a missing folder: look for it first.
    if not (builder.data_path.exists() and builder.is_prepared()):
        _prepare_or_raise(builder, name, data_dir, download)

    splits = builder.info.splits
    validation_split = "validation" if "validation" in splits else "test"
    if "train" not in splits or validation_split not in splits:
        raise DataNotFoundError(
            f"{name} in data_dir={os.fspath(builder.data_dir_root)!r} must have a 'train' "
            f"and a 'validation' or 'test' split; received: splits={sorted(splits)}"
        )
    tfds_splits = {"train": "train", "validation": validation_split}

    stored = tuple(features["image"].shape)
    channels = stored[-1] or 3
    encoded = None in stored[:2]
    base = _base_name(name)
    default_mean = preprocessing.IMAGENET_MEAN if channels == 3 else (0.449,) * channels
    default_std = preprocessing.IMAGENET_STD if channels == 3 else (0.226,) * channels
    mean, std, augmentation = _KNOWN.get(
        base, (default_mean, default_std, "imagenet" if encoded else "crop_flip")
    )
    if encoded:
        size = image_size or DEFAULT_IMAGE_SIZE
        input_shape = (size, size, channels)
    else:
        input_shape = (image_size, image_size, channels) if image_size else stored

    label = features["label"]
    info = DatasetInfo(
        name=name,
        num_classes=label.num_classes,
        input_shape=tuple(int(d) for d in input_shape),
        mean=mean,
        std=std,
        label_names=tuple(label.names),
        num_train=splits["train"].num_examples,
        num_validation=splits[validation_split].num_examples,
    )

    def split_bytes(split):
        info_split = splits[tfds_splits[split]]
        if encoded:
            return int(info_split.num_bytes)
        return info_split.num_examples * int(stored[0] * stored[1] * channels)

    def load(split, shuffle_files, seed, input_context):
        read_config = tfds.ReadConfig(
            shuffle_seed=seed, input_context=input_context, try_autocache=False
        )
        ds = builder.as_dataset(
            split=tfds_splits[split],
            shuffle_files=shuffle_files,
            decoders={"image": tfds.decode.SkipDecoding()} if encoded else None,
            read_config=read_config,
        )
        return ds.map(
            lambda example: (example["image"], tf.cast(example["label"], tf.int64)),
            num_parallel_calls=tf.data.AUTOTUNE,
        )

    return Source(
        info=info,
        load=load,
        encoded=encoded,
        stored_shape=None if encoded else tuple(int(d) for d in stored),
        augmentation=augmentation,
        split_bytes={split: split_bytes(split) for split in tfds_splits},
    )


def _prepare_or_raise(builder, name: str, data_dir: str | None, download: bool) -> None:
    import tensorflow_datasets as tfds

    root = os.fspath(builder.data_dir_root)
    manual_dir = os.path.join(root, "downloads", "manual")
    if builder.MANUAL_DOWNLOAD_INSTRUCTIONS:
        required = MANUAL_FILES.get(_base_name(name))
        if required:
            missing = [f for f in required if not os.path.exists(os.path.join(manual_dir, f))]
        else:
            missing = [] if os.path.isdir(manual_dir) and os.listdir(manual_dir) else ["files"]
        if missing and required:
            raise DataNotFoundError(
                f"{name} is not prepared in data_dir={root!r} and needs a manual download: "
                f"put {' and '.join(required)} into {manual_dir}/ (missing: "
                f"{', '.join(missing)}; {MANUAL_SOURCES.get(_base_name(name), 'see tfds')}), "
                f"then rerun to prepare it, which needs no network"
            )
        if missing:
            instructions = " ".join(builder.MANUAL_DOWNLOAD_INSTRUCTIONS.split())
            raise DataNotFoundError(
                f"{name} is not prepared in data_dir={root!r} and needs a manual download "
                f"into {manual_dir}/, then a rerun to prepare it; tfds says: {instructions}"
            )
        log.warning(
            "Preparing %s from the manual download in %s into %s; this runs once and can "
            "take hours.",
            name,
            manual_dir,
            root,
        )
        builder.download_and_prepare(
            download_config=tfds.download.DownloadConfig(manual_dir=manual_dir)
        )
    elif download:
        log.warning("Downloading and preparing %s into %s.", name, root)
        builder.download_and_prepare()
    else:
        raise DataNotFoundError(
            f"{name} is not prepared in data_dir={root!r} and would need a download: run "
            f"`tfds build {name} --data_dir={root}` on a machine with network access (and "
            f"copy {os.path.join(root, _base_name(name))} here if that is another machine), "
            f"or pass download=True; received: data_dir={data_dir!r}"
        )
