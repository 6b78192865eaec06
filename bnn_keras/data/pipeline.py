"""The input pipeline common to every source: `get_info` and `make_dataset`.

The order of the stages, and why:

1. `load`: `(image, label)` pairs of one split; sources that read files shuffle
   the file list (or tfds shards) here, before anything is read.
2. `cache` for training: the decoded images of small datasets, or the encoded
   bytes of folders and variable-size tfds datasets that fit, so later epochs
   read memory, and augmentation still differs from epoch to epoch. The
   embedded digits are in memory already and skip it.
3. `shuffle`: the whole split when it is in memory, else a buffer of 10,000
   examples on top of the file shuffle (none for folders, whose file list is
   shuffled whole).
4. Per-example seeds: each example is zipped with two draws of a
   `tf.data.Dataset.random` stream that is rerandomized on each iteration, and
   the augmentation is stateless. So the pipeline is reproducible for a given
   `seed` whatever `num_parallel_calls` does, and each epoch sees new crops.
5. `map` decode + augment + normalise, `num_parallel_calls=AUTOTUNE`. For
   evaluation the output is deterministic, so small splits are cached after it.
6. `batch` (parallel), then `prefetch(AUTOTUNE)`.

`options.deterministic` is on when `seed` is an int and off for `seed=None`,
which lets the parallel stages hand elements over as soon as they are ready.
The shuffle order and the augmentation seeds are a function of `seed` and of
TensorFlow's global seed (`tf.keras.utils.set_random_seed`), as for any seeded
TensorFlow op. `repeat` is never applied: Keras `fit` iterates once per epoch.

Distribution: `batch_size` is the global batch size. Given an `input_context`
(from `strategy.distribute_datasets_from_function`), the split is sharded by
input pipeline and batched per replica. Without one, pass the dataset to
`strategy.experimental_distribute_dataset`, which splits each global batch.
"""

from __future__ import annotations

import logging

import tensorflow as tf

from bnn_keras.data import preprocessing
from bnn_keras.data.info import DatasetInfo
from bnn_keras.data.sources import AUGMENTATIONS, Source, resolve

__all__ = ["CACHE_LIMIT_BYTES", "SPLITS", "get_info", "make_dataset"]

log = logging.getLogger(__name__)

SPLITS = ("train", "validation")
# Cache a split in memory by default when what would be cached fits in this.
CACHE_LIMIT_BYTES = 1 << 30


def get_info(
    name: str,
    *,
    data_dir: str | None = None,
    image_size: int | None = None,
    validation_fraction: float = 0.1,
    download: bool = False,
) -> DatasetInfo:
    """Describes a dataset: classes, input shape, normalisation, split sizes.

    Args:
        name: `"mnist_5k"` (embedded, the default dataset), a tensorflow-datasets
            image classification name (`"cifar10"`, `"imagenet2012"`, ...; see
            `names()`), or `"folder:/path/to/images"`.
        data_dir: tensorflow-datasets' data directory (its default when None);
            ignored by the other kinds.
        image_size: side of the square images the model receives, for datasets
            whose images vary in size (folders, ImageNet: 224 when None); for
            fixed-size datasets, resizes their images when given.
        validation_fraction: share of each class held out for validation in a
            folder without `train/` and `validation/` sub-folders.
        download: let tensorflow-datasets download and prepare a dataset that is
            not in `data_dir` (off: such a dataset raises `DataNotFoundError`).

    Returns:
        The `DatasetInfo`.

    Raises:
        ValueError: an unknown name, a folder with fewer than 2 class
            sub-folders, or a bad argument.
        DataNotFoundError: a missing folder, or a tfds dataset that is not
            prepared (for imagenet2012, the message names the files to download
            and the directory they go in). It is also a `FileNotFoundError`.

    Example:

    >>> info = get_info("mnist_5k")
    >>> info.input_shape, info.num_classes, info.num_train, info.num_validation
    ((28, 28, 1), 10, 4000, 1000)
    """
    return resolve(
        name,
        data_dir=data_dir,
        image_size=image_size,
        validation_fraction=validation_fraction,
        download=download,
    ).info


def _check_bool_or_none(arg: str, value) -> None:
    if value is not None and not isinstance(value, bool):
        raise TypeError(f"`{arg}` must be None or a bool; received: {arg}={value!r}")


def _check_int(arg: str, value, minimum: int, allow_none: bool) -> None:
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        none = "None or " if allow_none else ""
        raise ValueError(
            f"`{arg}` must be {none}an int of at least {minimum}; received: {arg}={value!r}"
        )


def _check_arguments(
    split,
    batch_size,
    training,
    seed,
    shuffle_buffer,
    drop_remainder,
    cache,
    augmentation,
    input_context,
) -> None:
    if split not in SPLITS:
        raise ValueError(f"`split` must be one of {list(SPLITS)}; received: split={split!r}")
    _check_int("batch_size", batch_size, 1, allow_none=False)
    _check_bool_or_none("training", training)
    _check_bool_or_none("drop_remainder", drop_remainder)
    _check_bool_or_none("cache", cache)
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise TypeError(f"`seed` must be an int or None; received: seed={seed!r}")
    _check_int("shuffle_buffer", shuffle_buffer, 1, allow_none=True)
    if augmentation is not None and augmentation not in AUGMENTATIONS:
        raise ValueError(
            f"`augmentation` must be None or one of {list(AUGMENTATIONS)}; received: "
            f"augmentation={augmentation!r}"
        )
    if input_context is not None and not isinstance(input_context, tf.distribute.InputContext):
        raise TypeError(
            "`input_context` must be None or a tf.distribute.InputContext; received: "
            f"input_context={input_context!r}"
        )


def make_dataset(
    name: str,
    split: str,
    *,
    batch_size: int,
    data_dir: str | None = None,
    training: bool | None = None,
    seed: int | None = 0,
    shuffle_buffer: int | None = None,
    drop_remainder: bool | None = None,
    cache: bool | None = None,
    image_size: int | None = None,
    validation_fraction: float = 0.1,
    augmentation: str | None = None,
    download: bool = False,
    input_context: tf.distribute.InputContext | None = None,
) -> tf.data.Dataset:
    """Builds the batched, prefetched `tf.data` pipeline of one split.

    Elements are `(images, labels)`: `float32` images of shape
    `(batch, *info.input_shape)`, normalised as `(x / 255 - mean) / std` per
    channel, and `int64` class indices of shape `(batch,)`.

    Args:
        name, data_dir, image_size, validation_fraction, download: as for
            `get_info`.
        split: `"train"` or `"validation"`.
        batch_size: the global batch size.
        training: shuffle and augment; defaults to `split == "train"`.
        seed: seeds the shuffle and the augmentation; None for a nondeterministic
            (slightly faster) pipeline. Workers of a multi-worker job without an
            `input_context` must use the same int seed.
        shuffle_buffer: element shuffle buffer (training only); by default the
            whole split when it is in memory, else 10,000.
        drop_remainder: drop a last partial batch; defaults to `training`, which
            keeps batch statistics and shapes static while training and
            evaluates every example.
        cache: keep the split in memory (training: decoded or encoded images
            before augmentation; evaluation: the preprocessed images); by
            default when that takes under `CACHE_LIMIT_BYTES` (1 GiB).
        augmentation: overrides the dataset's training augmentation: one of
            `"translate"` (up to 2 px shifts per 28 px, for digits),
            `"crop_flip"` (CIFAR: 4 px per 32 padding, random crop, flip),
            `"imagenet"` (random resized crop, lighting, flip) or `"none"`.
        input_context: shard for `strategy.distribute_datasets_from_function`
            and batch per replica.

    Returns:
        A `tf.data.Dataset` that is not repeated.

    Raises:
        ValueError, TypeError: a bad argument, unknown name or split, an empty
            split, or a training split smaller than one batch.
        DataNotFoundError: see `get_info`.

    Example:

    >>> ds = make_dataset("mnist_5k", "validation", batch_size=100)
    >>> images, labels = next(iter(ds))
    >>> images.shape, images.dtype.name, labels.dtype.name, int(ds.cardinality())
    (TensorShape([100, 28, 28, 1]), 'float32', 'int64', 10)
    """
    _check_arguments(
        split,
        batch_size,
        training,
        seed,
        shuffle_buffer,
        drop_remainder,
        cache,
        augmentation,
        input_context,
    )
    source = resolve(
        name,
        data_dir=data_dir,
        image_size=image_size,
        validation_fraction=validation_fraction,
        download=download,
    )
    info = source.info
    training = split == "train" if training is None else training
    drop_remainder = training if drop_remainder is None else drop_remainder
    augmentation = augmentation or source.augmentation
    num_examples = info.num_train if split == "train" else info.num_validation
    if num_examples == 0:
        raise ValueError(
            f"`split` must name a split with examples; received: split={split!r}, which is "
            f"empty in {name!r}"
        )
    if training and drop_remainder and num_examples < batch_size:
        raise ValueError(
            f"`batch_size` must be at most the {num_examples} examples of the {split!r} split "
            f"of {name!r} when whole batches are kept (drop_remainder); received: "
            f"batch_size={batch_size}"
        )
    if input_context is not None:
        per_replica = input_context.get_per_replica_batch_size(batch_size)
        aug_seed = (
            None
            if seed is None
            else seed * input_context.num_input_pipelines + input_context.input_pipeline_id
        )
        num_examples //= input_context.num_input_pipelines
    else:
        per_replica, aug_seed = batch_size, seed
    height, width, channels = info.input_shape
    if cache is None:
        cached_bytes = (
            source.split_bytes[split] if training else num_examples * height * width * channels * 4
        )
        cache = cached_bytes <= CACHE_LIMIT_BYTES

    ds = source.load(split, training and not cache, seed, input_context)
    if training:
        # An in-memory source needs no cache (and a cache would warn on every
        # epoch that `take` cuts short).
        if cache and not source.in_memory:
            ds = ds.cache()
        if shuffle_buffer is None and (cache or not source.file_shuffled):
            in_memory = cache or source.in_memory
            shuffle_buffer = num_examples if in_memory else source.shuffle_buffer
        if shuffle_buffer:
            ds = ds.shuffle(
                min(shuffle_buffer, max(num_examples, 1)), seed=seed, reshuffle_each_iteration=True
            )
        seeds = tf.data.Dataset.random(seed=aug_seed, rerandomize_each_iteration=True)
        ds = tf.data.Dataset.zip((ds, seeds.batch(2, drop_remainder=True)))
        preprocess = _train_fn(source, augmentation)
        ds = ds.map(
            lambda pair, s: preprocess(pair[0], pair[1], s), num_parallel_calls=tf.data.AUTOTUNE
        )
    else:
        ds = ds.map(_eval_fn(source), num_parallel_calls=tf.data.AUTOTUNE)
        if cache:
            ds = ds.cache()
    ds = ds.batch(per_replica, drop_remainder=drop_remainder, num_parallel_calls=tf.data.AUTOTUNE)
    ds = ds.prefetch(tf.data.AUTOTUNE)
    options = tf.data.Options()
    options.deterministic = seed is not None
    ds = ds.with_options(options)
    log.info(
        "%s/%s: %d examples, batch %d, training=%s (%s), cache=%s, shuffle_buffer=%s, seed=%s",
        name,
        split,
        num_examples,
        per_replica,
        training,
        augmentation if training else "eval",
        cache,
        shuffle_buffer if training else None,
        seed,
    )
    return ds


def _resize_fixed(image: tf.Tensor, source: Source) -> tf.Tensor:
    """Fixed-size images as float32, resized if `image_size` asked for another size."""
    image = tf.cast(image, tf.float32)
    target = source.info.input_shape[:2]
    if tuple(source.stored_shape[:2]) != tuple(target):
        image = preprocessing.resize_bilinear(image, target)
        image.set_shape([*target, source.stored_shape[2]])
    return image


def _deterministic_part(image: tf.Tensor, source: Source) -> tf.Tensor:
    """The evaluation transform before normalisation: decode, resize, centre-crop."""
    height, _, channels = source.info.input_shape
    if source.encoded:
        return preprocessing.imagenet_eval(image, image_size=height, channels=channels)
    return _resize_fixed(image, source)


def _eval_fn(source: Source):
    info = source.info

    def fn(image, label):
        image = _deterministic_part(image, source)
        image = preprocessing.normalize(image, info.mean, info.std)
        image.set_shape(info.input_shape)
        return image, label

    return fn


def _train_fn(source: Source, augmentation: str):
    info = source.info
    height, _, channels = info.input_shape

    def fn(image, label, seed):
        if augmentation == "imagenet":
            if not source.encoded:
                image = tf.cast(image, tf.uint8)
            image = preprocessing.imagenet_train(image, seed, image_size=height, channels=channels)
        else:
            image = _deterministic_part(image, source)
            if augmentation == "translate":
                image = preprocessing.random_translate(image, seed, max(1, round(height / 14)))
            elif augmentation == "crop_flip":
                image = preprocessing.random_crop_flip(image, seed, max(1, height // 8))
        image = preprocessing.normalize(image, info.mean, info.std)
        image.set_shape(info.input_shape)
        return image, label

    return fn
