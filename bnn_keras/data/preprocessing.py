"""Image preprocessing: decoding, the augmentation recipes and normalisation.

Every random operation here is *stateless*: it takes a `seed`, a shape-`[2]`
integer tensor, as `tf.random.stateless_uniform` does. The pipeline gives each
element its own seed, drawn from a `tf.data.Dataset.random` stream, so the
augmentation is reproducible whatever the number of parallel calls, and differs
from one epoch to the next.

The functions work in pixel units (`[0, 255]`) and return `float32`; `normalize`
comes last, so zero padding is black and the lighting noise is added where the
recipe adds it.

The recipes:

- digits (`random_translate`): shift by up to 2 pixels, zero fill; no flip,
  which would turn some digits into others.
- CIFAR (`random_crop_flip`): pad 4 pixels with zeros, crop 32 back at random,
  flip horizontally with probability 1/2.
- ImageNet, the recipe of ReActNet and of Liu, Shen et al. (ICML 2021), whose
  official code uses torchvision: for training, `RandomResizedCrop(224,
  scale=(0.08, 1))`, lighting noise with std 0.1, horizontal flip; for
  evaluation, `Resize(256)` then `CenterCrop(224)`.

Why the ImageNet recipe is written here rather than taken from larq-zoo: larq-zoo
(`larq_zoo/training/data.py`) follows the EfficientNet TPU code, which differs
from the recipe in ways that change the training distribution:
`min_object_covered=0.1` makes the smallest crop 10% of the image, not 8%; the
aspect ratio is drawn uniformly rather than log-uniformly; a failed draw falls
back to a centre crop instead of torchvision's ratio-clamped centre crop; images
are resized bicubically; there is no lighting noise; and both paths read JPEG
bytes only (`extract_jpeg_shape`), so PNG images in a folder would fail. Its
evaluation crop covers the same region as resize-256-then-crop-224 but crops
before resizing, bicubically. `random_resized_crop_window` below draws the crop
exactly as torchvision does (10 attempts, log-uniform ratio, the same fallback),
and resizing is bilinear with antialiasing (`resize_bilinear`), as PIL's resize
is: the evaluation crop matches torchvision's on PIL images to within PIL's
rounding to integers. For JPEG bytes only the crop window is decoded
(`decode_and_crop_jpeg`), which is what makes ImageNet training input fast.

Lighting noise is AlexNet's PCA colour augmentation: `x += 255 * V (alpha *
lambda)` with `alpha ~ N(0, 0.1^2)` per image and ImageNet's RGB eigenvalues
`lambda` and eigenvectors `V`, in `[0, 1]` pixel units as in fb.resnet.torch,
without clipping. It applies to 3-channel images only.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import tensorflow as tf

from bnn_keras.data.resize import resize_bilinear

__all__ = [
    "IMAGENET_EIGVAL",
    "IMAGENET_EIGVEC",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "decode_image",
    "imagenet_eval",
    "imagenet_train",
    "lighting",
    "normalize",
    "random_crop_flip",
    "random_resized_crop",
    "random_resized_crop_window",
    "random_translate",
    "resize_bilinear",
    "resize_shorter_center_crop",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# PCA of ImageNet's RGB pixels in [0, 1] units, as published with fb.resnet.torch
# for AlexNet's lighting augmentation: eigenvalues, and eigenvectors as columns.
IMAGENET_EIGVAL = (0.2175, 0.0188, 0.0045)
IMAGENET_EIGVEC = (
    (-0.5675, 0.7192, 0.4009),
    (-0.5808, -0.0045, -0.8140),
    (-0.5836, -0.6948, 0.4203),
)
# Evaluation resizes the shorter side to image_size * 256 / 224 (256 for 224).
EVAL_RESIZE_RATIO = 256 / 224


def normalize(image: tf.Tensor, mean: Sequence[float], std: Sequence[float]) -> tf.Tensor:
    """Returns `(image / 255 - mean) / std` in `float32`, per channel.

    Example:

    >>> normalize(tf.constant([[[0, 255]]], tf.uint8), mean=(0.5, 0.5), std=(0.5, 0.25))
    <tf.Tensor: shape=(1, 1, 2), dtype=float32, numpy=array([[[-1.,  2.]]], dtype=float32)>
    """
    image = tf.cast(image, tf.float32)
    scale = tf.constant([1.0 / (255.0 * s) for s in std], tf.float32)
    shift = tf.constant([m / s for m, s in zip(mean, std)], tf.float32)
    return image * scale - shift


def decode_image(image_bytes: tf.Tensor, channels: int = 3) -> tf.Tensor:
    """Decodes JPEG, PNG, BMP or GIF bytes into a `uint8` image with `channels`.

    JPEG goes through `tf.io.decode_jpeg` with `dct_method="INTEGER_ACCURATE"`
    (libjpeg's default, which PIL uses); other formats through
    `tf.io.decode_image` (first frame of a GIF).
    """

    def _jpeg():
        return tf.io.decode_jpeg(image_bytes, channels=channels, dct_method="INTEGER_ACCURATE")

    def _other():
        image = tf.io.decode_image(image_bytes, channels=channels, expand_animations=False)
        return tf.ensure_shape(image, [None, None, channels])

    image = tf.cond(tf.io.is_jpeg(image_bytes), _jpeg, _other)
    image.set_shape([None, None, channels])
    return image


def random_translate(image: tf.Tensor, seed: tf.Tensor, max_shift: int = 2) -> tf.Tensor:
    """Shifts `image` by up to `max_shift` pixels each way, filling with zeros.

    Example:

    >>> image = tf.ones((4, 4, 1))
    >>> out = random_translate(image, seed=tf.constant([1, 2]), max_shift=1)
    >>> out.shape, float(tf.reduce_sum(out)) in (9.0, 12.0, 16.0)
    (TensorShape([4, 4, 1]), True)
    """
    image = tf.convert_to_tensor(image)
    padded = tf.pad(image, [[max_shift, max_shift], [max_shift, max_shift], [0, 0]])
    return tf.image.stateless_random_crop(padded, tf.shape(image), seed=seed)


def random_crop_flip(image: tf.Tensor, seed: tf.Tensor, padding: int = 4) -> tf.Tensor:
    """Pads with `padding` zeros, crops the original size back, flips left-right.

    The CIFAR recipe: `RandomCrop(32, padding=4)` and `RandomHorizontalFlip()`.

    Example:

    >>> random_crop_flip(tf.ones((32, 32, 3)), seed=tf.constant([0, 1])).shape
    TensorShape([32, 32, 3])
    """
    crop_seed, flip_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
    image = random_translate(image, crop_seed, max_shift=padding)
    return tf.image.stateless_random_flip_left_right(image, seed=flip_seed)


def random_resized_crop_window(
    image_shape: tf.Tensor,
    seed: tf.Tensor,
    scale: tuple[float, float] = (0.08, 1.0),
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
    attempts: int = 10,
) -> tf.Tensor:
    """Draws a crop window `[top, left, height, width]` as torchvision does.

    The crop's area is a uniform fraction `scale` of the image's, its aspect
    ratio `width / height` log-uniform in `ratio`; the first of `attempts` draws
    that fits in the image wins. If none fits, the window is a centre crop of the
    whole image with its aspect ratio clamped into `ratio`.

    Args:
        image_shape: `[height, width, ...]` of the image (int32).
        seed: stateless seed, shape `[2]`.
        scale: range of the crop area as a fraction of the image area.
        ratio: range of the crop's aspect ratio, width over height.
        attempts: number of draws before the fallback.

    Returns:
        An int32 tensor `[top, left, height, width]`.

    Example:

    >>> window = random_resized_crop_window(tf.constant([300, 400, 3]), tf.constant([0, 7]))
    >>> top, left, height, width = window.numpy().tolist()
    >>> 0 <= top <= 300 - height and 0 <= left <= 400 - width
    True
    """
    height = tf.cast(image_shape[0], tf.float32)
    width = tf.cast(image_shape[1], tf.float32)
    area_seed, ratio_seed, offset_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 3))
    area = (
        height
        * width
        * tf.random.stateless_uniform([attempts], area_seed, minval=scale[0], maxval=scale[1])
    )
    aspect = tf.exp(
        tf.random.stateless_uniform(
            [attempts], ratio_seed, minval=math.log(ratio[0]), maxval=math.log(ratio[1])
        )
    )
    crop_w = tf.round(tf.sqrt(area * aspect))
    crop_h = tf.round(tf.sqrt(area / aspect))
    fits = (crop_w > 0) & (crop_h > 0) & (crop_w <= width) & (crop_h <= height)
    first = tf.argmax(tf.cast(fits, tf.int32), output_type=tf.int32)

    # Fallback: the whole image, cut to the nearest allowed aspect ratio.
    image_ratio = width / height
    fallback_w = tf.where(image_ratio > ratio[1], tf.round(height * ratio[1]), width)
    fallback_h = tf.where(image_ratio < ratio[0], tf.round(width / ratio[0]), height)

    found = tf.reduce_any(fits)
    h = tf.where(found, crop_h[first], fallback_h)
    w = tf.where(found, crop_w[first], fallback_w)
    u = tf.random.stateless_uniform([2], offset_seed)
    top = tf.where(found, tf.floor(u[0] * (height - h + 1)), tf.floor((height - h) / 2))
    left = tf.where(found, tf.floor(u[1] * (width - w + 1)), tf.floor((width - w) / 2))
    return tf.cast(tf.stack([top, left, h, w]), tf.int32)


def random_resized_crop(
    image: tf.Tensor,
    seed: tf.Tensor,
    size: int = 224,
    scale: tuple[float, float] = (0.08, 1.0),
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
    channels: int = 3,
) -> tf.Tensor:
    """Crops a window drawn by `random_resized_crop_window` and resizes it to `size`.

    Args:
        image: a `uint8` image `[H, W, C]`, or a scalar string of encoded image
            bytes; JPEG bytes are decoded only inside the window.
        seed: stateless seed, shape `[2]`.
        size: side of the square output.
        scale, ratio: see `random_resized_crop_window`.
        channels: channels to decode encoded bytes into.

    Returns:
        A `float32` image `[size, size, C]` in pixel units (bilinear, antialiased).
    """
    image = tf.convert_to_tensor(image)
    if image.dtype == tf.string:

        def _jpeg():
            window = random_resized_crop_window(
                tf.image.extract_jpeg_shape(image), seed, scale, ratio
            )
            return tf.image.decode_and_crop_jpeg(
                image, window, channels=channels, dct_method="INTEGER_ACCURATE"
            )

        def _other():
            decoded = tf.io.decode_image(image, channels=channels, expand_animations=False)
            decoded = tf.ensure_shape(decoded, [None, None, channels])
            return _crop(decoded, random_resized_crop_window(tf.shape(decoded), seed, scale, ratio))

        crop = tf.cond(tf.io.is_jpeg(image), _jpeg, _other)
        crop.set_shape([None, None, channels])
    else:
        crop = _crop(image, random_resized_crop_window(tf.shape(image), seed, scale, ratio))
    out = resize_bilinear(crop, [size, size])
    out.set_shape([size, size, crop.shape[-1]])
    return out


def _crop(image: tf.Tensor, window: tf.Tensor) -> tf.Tensor:
    return tf.slice(image, [window[0], window[1], 0], [window[2], window[3], -1])


def lighting(image: tf.Tensor, seed: tf.Tensor, std: float = 0.1) -> tf.Tensor:
    """Adds AlexNet's PCA lighting noise to an RGB image in pixel units.

    Every pixel gets the same RGB offset `255 * V (alpha * lambda)`, with
    `alpha ~ N(0, std^2)` per eigenvector.

    Example:

    >>> out = lighting(tf.fill((2, 2, 3), 100.0), seed=tf.constant([3, 4]))
    >>> bool(tf.reduce_all(out[0, 0] == out[1, 1])), bool(tf.reduce_any(out != 100.0))
    (True, True)
    """
    alpha = tf.random.stateless_normal([3], seed, stddev=std)
    eigvec = tf.constant(IMAGENET_EIGVEC, tf.float32)
    rgb = tf.linalg.matvec(eigvec, alpha * tf.constant(IMAGENET_EIGVAL, tf.float32))
    return tf.cast(image, tf.float32) + 255.0 * rgb


def resize_shorter_center_crop(
    image: tf.Tensor, size: int = 224, resize_size: int | None = None
) -> tf.Tensor:
    """Resizes the shorter side to `resize_size`, then centre-crops `size x size`.

    torchvision's `Resize(resize_size)` then `CenterCrop(size)`: the longer side
    becomes `floor(resize_size * long / short)`, resizing is bilinear with
    antialiasing, and the crop's offset is `round((side - size) / 2)`.

    Args:
        image: a `[H, W, C]` image of any size.
        size: side of the square output.
        resize_size: the shorter side before cropping; defaults to
            `round(size * 256 / 224)` (256 for 224).

    Returns:
        A `float32` image `[size, size, C]` in pixel units.

    Example:

    An 8x12 image whose shorter side is already 8 is only cropped: rows 2-5 and
    columns 4-7, so the first row of the crop is `image[2, 4:8]`.

    >>> image = tf.reshape(tf.range(8 * 12, dtype=tf.float32), (8, 12, 1))
    >>> resize_shorter_center_crop(image, size=4, resize_size=8)[..., 0].numpy()[0]
    array([28., 29., 30., 31.], dtype=float32)
    """
    if resize_size is None:
        resize_size = round(size * EVAL_RESIZE_RATIO)
    if resize_size < size:
        raise ValueError(
            f"`resize_size` must be at least `size`; received: resize_size={resize_size}, "
            f"size={size}"
        )
    shape = tf.shape(image)
    # float64, as Python computes torchvision's int(size * long / short).
    height = tf.cast(shape[0], tf.float64)
    width = tf.cast(shape[1], tf.float64)
    target = tf.constant(resize_size, tf.float64)
    portrait = width <= height
    new_h = tf.cast(tf.where(portrait, tf.floor(target * height / width), target), tf.int32)
    new_w = tf.cast(tf.where(portrait, target, tf.floor(target * width / height)), tf.int32)
    resized = resize_bilinear(image, tf.stack([new_h, new_w]))
    top = tf.cast(tf.round(tf.cast(new_h - size, tf.float32) / 2), tf.int32)
    left = tf.cast(tf.round(tf.cast(new_w - size, tf.float32) / 2), tf.int32)
    out = tf.slice(resized, [top, left, 0], [size, size, -1])
    out.set_shape([size, size, image.shape[-1]])
    return out


def imagenet_train(
    image: tf.Tensor,
    seed: tf.Tensor,
    *,
    image_size: int = 224,
    scale: tuple[float, float] = (0.08, 1.0),
    lighting_std: float = 0.1,
    channels: int = 3,
) -> tf.Tensor:
    """The paper's ImageNet training augmentation, before normalisation.

    `RandomResizedCrop(image_size, scale)`, lighting noise (`lighting_std`, RGB
    only), horizontal flip.

    Args:
        image: a `uint8` image `[H, W, C]` or a scalar string of encoded bytes.
        seed: stateless seed, shape `[2]`.
        image_size: side of the square output.
        scale: range of the crop area as a fraction of the image area.
        lighting_std: std of the PCA lighting noise; 0 turns it off.
        channels: channels to decode encoded bytes into.

    Returns:
        A `float32` image `[image_size, image_size, C]` in pixel units.

    Example:

    >>> image = tf.random.stateless_uniform((300, 400, 3), (0, 0), maxval=256, dtype=tf.int32)
    >>> image = tf.cast(image, tf.uint8)
    >>> imagenet_train(image, seed=tf.constant([0, 1])).shape
    TensorShape([224, 224, 3])
    """
    crop_seed, light_seed, flip_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 3))
    out = random_resized_crop(image, crop_seed, image_size, scale=scale, channels=channels)
    if lighting_std and out.shape[-1] == 3:
        out = lighting(out, light_seed, std=lighting_std)
    out = tf.image.stateless_random_flip_left_right(out, seed=flip_seed)
    out.set_shape([image_size, image_size, out.shape[-1]])
    return out


def imagenet_eval(
    image: tf.Tensor, *, image_size: int = 224, resize_size: int | None = None, channels: int = 3
) -> tf.Tensor:
    """The paper's ImageNet evaluation crop, before normalisation.

    Resizes the shorter side to `resize_size` (256 for 224) and takes the
    `image_size` centre crop; deterministic.

    Args:
        image: a `uint8` image `[H, W, C]` or a scalar string of encoded bytes.
        image_size: side of the square output.
        resize_size: see `resize_shorter_center_crop`.
        channels: channels to decode encoded bytes into.

    Returns:
        A `float32` image `[image_size, image_size, C]` in pixel units.

    Example:

    >>> image = tf.zeros((300, 400, 3), tf.uint8)
    >>> imagenet_eval(image).shape
    TensorShape([224, 224, 3])
    """
    image = tf.convert_to_tensor(image)
    if image.dtype == tf.string:
        image = decode_image(image, channels=channels)
    return resize_shorter_center_crop(image, image_size, resize_size)
