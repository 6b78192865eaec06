"""PIL's antialiased bilinear resize, fast on CPU: `resize_bilinear`.

The paper's recipe comes from torchvision on PIL images, and PIL resizes with a
triangle filter whose width grows with the downscale factor (antialiasing).
`tf.image.resize(..., antialias=True)` computes the same values, but its
`ScaleAndTranslate` kernel is about 4x slower on CPU than plain bilinear
resizing, which made it the bottleneck of ImageNet preprocessing. A separable
filter with a few taps per output pixel is a sparse matrix: each axis here is
one `tf.sparse.sparse_dense_matmul`, which gives the same values (to float
rounding) as fast as plain bilinear resizing.
"""

from __future__ import annotations

import tensorflow as tf

__all__ = ["resize_bilinear"]


def _triangle_resize_rows(x: tf.Tensor, out_size) -> tf.Tensor:
    """Resizes axis 0 of `x` (float32, rank 3) with PIL's bilinear filter."""
    shape = tf.shape(x)
    in_size = shape[0]
    scale = tf.cast(in_size, tf.float32) / tf.cast(out_size, tf.float32)
    # The triangle's half-width: 1 input pixel, widened by the downscale factor.
    support = tf.maximum(scale, 1.0)
    taps = 2 * tf.cast(tf.math.ceil(support), tf.int32) + 1
    center = (tf.cast(tf.range(out_size), tf.float32) + 0.5) * scale
    first = tf.maximum(tf.cast(tf.floor(center - support + 0.5), tf.int32), 0)
    index = first[:, None] + tf.range(taps)[None, :]
    distance = (tf.cast(index, tf.float32) + 0.5 - center[:, None]) / support
    weight = tf.where(index < in_size, tf.maximum(0.0, 1.0 - tf.abs(distance)), 0.0)
    weight /= tf.reduce_sum(weight, axis=1, keepdims=True)
    rows = tf.repeat(tf.range(out_size), taps)
    columns = tf.reshape(tf.minimum(index, in_size - 1), [-1])
    matrix = tf.sparse.SparseTensor(
        tf.cast(tf.stack([rows, columns], axis=1), tf.int64),
        tf.reshape(weight, [-1]),
        tf.cast(tf.stack([out_size, in_size]), tf.int64),
    )
    flat = tf.reshape(x, [in_size, -1])
    out = tf.sparse.sparse_dense_matmul(matrix, flat)
    return tf.reshape(out, tf.concat([[out_size], shape[1:]], axis=0))


def resize_bilinear(image: tf.Tensor, size) -> tf.Tensor:
    """Resizes to `size = [height, width]` with PIL's antialiased bilinear filter.

    PIL (and so torchvision on PIL images) resizes with a triangle filter whose
    width grows with the downscale factor. `tf.image.resize(antialias=True)`
    computes the same values, but its kernel is slow on CPU; here each axis is
    one sparse matrix product (a few taps per output pixel), which gives the same
    values (to float rounding) about 4x faster, as fast as plain bilinear.

    Args:
        image: `[H, W, C]`, any real or integer dtype.
        size: `[height, width]` of the output.

    Returns:
        A `float32` image `[height, width, C]`.

    Example:

    >>> image = tf.random.stateless_uniform((30, 50, 3), (1, 1), maxval=255)
    >>> out = resize_bilinear(image, [20, 70])
    >>> expected = tf.image.resize(image, [20, 70], antialias=True)
    >>> out.shape, bool(tf.reduce_max(tf.abs(out - expected)) < 1e-3)
    (TensorShape([20, 70, 3]), True)
    """
    size = tf.convert_to_tensor(size, tf.int32)
    x = _triangle_resize_rows(tf.cast(image, tf.float32), size[0])
    x = _triangle_resize_rows(tf.transpose(x, [1, 0, 2]), size[1])
    return tf.transpose(x, [1, 0, 2])
