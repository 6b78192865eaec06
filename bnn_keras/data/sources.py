"""Where examples come from: one `Source` per dataset name, and the name rules.

A dataset name is one of three kinds, and each kind has its own module:

- `"mnist_5k"`: the embedded digits (`bnn_keras.data.embedded`);
- `"folder:/path"`: a folder of images, one sub-folder per class
  (`bnn_keras.data.folder`);
- anything else: a tensorflow-datasets name such as `"cifar10"`,
  `"imagenet2012"` or `"imagenette/160px"` (`bnn_keras.data.tfds_source`).

A `Source` says what the pipeline needs to know: the `DatasetInfo`, whether
elements are encoded image bytes (decoded per element, after shuffling) or
fixed-size `uint8` images, the default augmentation, and a `load` function
returning the `(image, label)` pairs of one split, with its files shuffled on
request.
Everything else (caching, shuffling, augmentation, batching) is common and lives
in `bnn_keras.data.pipeline`.

Splits made here are deterministic on every machine: `stratified_split` orders
examples by a SHA-256 hash of a stable key (a row index, a relative path), so it
depends on neither NumPy's nor TensorFlow's random generators, nor on where a
folder sits on disk.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable, Sequence

import numpy as np
import tensorflow as tf

from bnn_keras.data.info import DatasetInfo

__all__ = [
    "AUGMENTATIONS",
    "FOLDER_PREFIX",
    "EMBEDDED_NAME",
    "KNOWN_TFDS_NAMES",
    "Source",
    "names",
    "resolve",
    "stratified_split",
]

EMBEDDED_NAME = "mnist_5k"
FOLDER_PREFIX = "folder:"
# tensorflow-datasets names with known statistics and augmentation, tested with
# `tfds.testing.mock_data`; other tfds image classification datasets work too.
KNOWN_TFDS_NAMES = ("cifar10", "cifar100", "fashion_mnist", "imagenet2012", "imagenette", "mnist")
# "translate": digits; "crop_flip": CIFAR; "imagenet": the paper's ImageNet recipe.
AUGMENTATIONS = ("translate", "crop_flip", "imagenet", "none")
DEFAULT_IMAGE_SIZE = 224

# load(split, shuffle_files, seed, input_context) -> Dataset of (image, int64 label).
LoadFn = Callable[[str, bool, "int | None", "tf.distribute.InputContext | None"], tf.data.Dataset]


@dataclasses.dataclass(frozen=True)
class Source:
    """One dataset as the pipeline sees it.

    Attributes:
        info: the dataset's `DatasetInfo`.
        load: returns the `(image, label)` pairs of `"train"` or `"validation"`;
            with `shuffle_files=True` it shuffles what is cheap to shuffle before
            reading (file names, tfds shards), with `seed`.
        encoded: elements are scalar strings of encoded image bytes, of any
            size; otherwise `uint8` images of shape `stored_shape`.
        stored_shape: `(H, W, C)` of the stored images when not `encoded`.
        augmentation: the default training augmentation, one of `AUGMENTATIONS`.
        split_bytes: bytes of each split as `load` yields it (for caching).
        file_shuffled: `load(shuffle_files=True)` shuffles every example, so
            no element shuffle is needed unless the data is cached.
        shuffle_buffer: element shuffle buffer when the data is not cached.
        in_memory: `load` reads from memory, so shuffling the whole split is cheap.
    """

    info: DatasetInfo
    load: LoadFn
    encoded: bool
    stored_shape: tuple[int, int, int] | None
    augmentation: str
    split_bytes: dict[str, int]
    file_shuffled: bool = False
    shuffle_buffer: int = 10_000
    in_memory: bool = False


def names() -> list[str]:
    """The built-in dataset names, sorted: `"mnist_5k"` and the known tfds names.

    Any other tensorflow-datasets image classification name, and
    `"folder:/path/to/images"`, are accepted too.

    >>> "mnist_5k" in names() and "imagenet2012" in names()
    True
    """
    return sorted((EMBEDDED_NAME, *KNOWN_TFDS_NAMES))


def unknown_name_message(name: object, detail: str = "") -> str:
    """The message of the error raised for a dataset name that does not resolve."""
    suffix = f" ({detail})" if detail else ""
    return (
        f"`name` must be one of {names()}, another tensorflow-datasets image "
        f"classification dataset, or '{FOLDER_PREFIX}/path/to/images' (a folder with "
        f"one sub-folder of images per class); received: name={name!r}{suffix}"
    )


def resolve(
    name: str,
    *,
    data_dir: str | None = None,
    image_size: int | None = None,
    validation_fraction: float = 0.1,
    download: bool = False,
) -> Source:
    """Returns the `Source` for a dataset name (see the module docstring).

    Raises:
        ValueError: an unknown name, or arguments that do not fit it.
        DataNotFoundError: the data is not on disk.
    """
    if not isinstance(name, str) or not name.strip():
        raise ValueError(unknown_name_message(name))
    if image_size is not None and (
        isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 8
    ):
        raise ValueError(
            "`image_size` must be None or an int of at least 8; received: "
            f"image_size={image_size!r}"
        )
    if name == EMBEDDED_NAME:
        from bnn_keras.data import embedded

        return embedded.mnist_5k_source(image_size=image_size)
    if name.startswith(FOLDER_PREFIX):
        from bnn_keras.data import folder

        return folder.folder_source(
            name, image_size=image_size, validation_fraction=validation_fraction
        )
    # tensorflow_datasets takes seconds to import: only tfds names pay for it.
    from bnn_keras.data import tfds_source

    return tfds_source.tfds_source(
        name, data_dir=data_dir, image_size=image_size, download=download
    )


def stratified_split(
    keys: Sequence[str], labels: np.ndarray, fraction: float, salt: str
) -> tuple[np.ndarray, np.ndarray]:
    """Splits examples into train and validation indices, per class, by hash.

    Examples are ordered by `sha256(salt + "/" + key)`; in each class the first
    `round(n * fraction)` examples of that order (at least 1 and at most `n - 1`
    when `n >= 2` and `fraction > 0`) go to validation. Both index arrays come in
    hash order, so classes are interleaved.

    Args:
        keys: a stable, unique key per example (row index, relative path).
        labels: the class of each example.
        fraction: the share of each class that goes to validation, in `[0, 1)`.
        salt: mixed into the hash; another salt gives another split.

    Returns:
        `(train_indices, validation_indices)`.

    Example:

    >>> train, val = stratified_split([str(i) for i in range(8)],
    ...                               np.array([0, 0, 0, 0, 1, 1, 1, 1]), 0.5, "doc")
    >>> sorted(np.array([0, 0, 0, 0, 1, 1, 1, 1])[val].tolist())
    [0, 0, 1, 1]
    """
    labels = np.asarray(labels)
    digests = np.array(
        [
            int.from_bytes(hashlib.sha256(f"{salt}/{key}".encode()).digest()[:8], "big")
            for key in keys
        ],
        dtype=np.uint64,
    )
    order = np.argsort(digests, kind="stable")
    in_validation = np.zeros(len(labels), dtype=bool)
    for label in np.unique(labels):
        members = order[labels[order] == label]
        count = int(round(len(members) * fraction))
        if fraction > 0 and len(members) >= 2:
            count = min(max(count, 1), len(members) - 1)
        elif len(members) < 2:
            count = 0
        in_validation[members[:count]] = True
    return order[~in_validation[order]], order[in_validation[order]]


def shard_arrays(arrays: Sequence[np.ndarray], input_context) -> list[np.ndarray]:
    """Keeps every `num_input_pipelines`-th example, starting at the pipeline's id."""
    if input_context is None:
        return list(arrays)
    step, start = input_context.num_input_pipelines, input_context.input_pipeline_id
    return [a[start::step] for a in arrays]
