"""ReActNet-18: the ResNet-18-shaped ReActNet (Bi-Real Net with RSign and RPReLU).

The ResNet-18 BNN that Liu, Shen et al. (ICML 2021) use for their analysis
(Table 1), after the official ReActNet code: 16 binary 3x3 convs in four stages
of four blocks, each block a single residual binary conv; the stride-2 blocks
take a real-valued shortcut (2x2 average pool, 1x1 conv, BN).
"""

from __future__ import annotations

import tensorflow as tf

from bnn_keras.layers import LearnableBias, RPReLU
from bnn_keras.models import common

__all__ = ["ReActNet18"]

STAGE_WIDTHS = (64, 128, 256, 512)
BLOCKS_PER_STAGE = 4


def reactnet18_block(
    x, *, in_channels, out_channels, stride, stage, kernel_initializer, name,
    bn_momentum=common.BN_MOMENTUM,
):
    """RSign -> binary 3x3 conv -> BN -> + shortcut -> RPReLU."""
    y = LearnableBias(name=f"{name}_rsign")(x)
    y = common.binary_conv(
        out_channels, 3, strides=stride, stage=stage,
        kernel_initializer=kernel_initializer, name=f"{name}_conv3x3",
    )(y)
    y = common.batch_norm(f"{name}_bn", bn_momentum)(y)
    shortcut = x
    if stride != 1 or in_channels != out_channels:
        if stride != 1:
            shortcut = tf.keras.layers.AveragePooling2D(
                2, strides=stride, padding="same", name=f"{name}_down_pool"
            )(shortcut)
        shortcut = tf.keras.layers.Conv2D(
            out_channels, 1, use_bias=False, kernel_initializer=kernel_initializer,
            name=f"{name}_down_conv",
        )(shortcut)
        shortcut = common.batch_norm(f"{name}_down_bn", bn_momentum)(shortcut)
    y = tf.keras.layers.Add(name=f"{name}_add")([shortcut, y])
    return RPReLU(name=f"{name}_rprelu")(y)


def ReActNet18(
    *,
    input_shape=(224, 224, 3),
    num_classes: int = 1000,
    include_top: bool = True,
    stage: int = 2,
    width_multiplier: float = 1.0,
    input_tensor=None,
    kernel_initializer="glorot_uniform",
    classifier_activation="softmax",
    bn_momentum: float = common.BN_MOMENTUM,
    name: str = "reactnet18",
) -> tf.keras.Model:
    """Builds ReActNet-18.

    - Stem: a real-valued 7x7 conv with 64 channels, stride 2, BN and a 3x3
      max pool with stride 2; for inputs of at most 64 px a 3x3 conv with stride 1,
      BN and no pool (see `bnn_keras.models.common`).
    - Four stages of four `reactnet18_block`s, widths 64, 128, 256, 512.
    - Head: global average pool and a real-valued dense layer.

    Example:

    >>> model = ReActNet18(input_shape=(32, 32, 3), num_classes=10, width_multiplier=0.25)
    >>> model.output_shape
    (None, 10)

    Args: as `bnn_keras.models.ReActNetA`.

    Returns:
        A `tf.keras.Model`.

    Raises:
        ValueError: as `bnn_keras.models.ReActNetA`.
    """
    shape = common.validate_common(
        input_shape=input_shape, num_classes=num_classes, include_top=include_top,
        stage=stage, width_multiplier=width_multiplier,
        total_stride_small=8, total_stride_large=32,
    )
    bn_momentum = common.check_bn_momentum(bn_momentum)
    base = common.scaled_width(STAGE_WIDTHS[0], width_multiplier)
    inputs = common.make_input(shape, input_tensor)

    with common.quiet_constraint_warning():
        if common.is_small_input(shape):
            x = tf.keras.layers.Conv2D(
                base, 3, padding="same", use_bias=False,
                kernel_initializer=kernel_initializer, name="stem_conv",
            )(inputs)
            x = common.batch_norm("stem_bn", bn_momentum)(x)
        else:
            x = tf.keras.layers.Conv2D(
                base, 7, strides=2, padding="same", use_bias=False,
                kernel_initializer=kernel_initializer, name="stem_conv",
            )(inputs)
            x = common.batch_norm("stem_bn", bn_momentum)(x)
            x = tf.keras.layers.MaxPooling2D(3, strides=2, padding="same", name="stem_pool")(x)

        in_channels = base
        block = 0
        for s, width in enumerate(STAGE_WIDTHS):
            out_channels = base * width // STAGE_WIDTHS[0]
            for i in range(BLOCKS_PER_STAGE):
                block += 1
                stride = 2 if (s > 0 and i == 0) else 1
                x = reactnet18_block(
                    x, in_channels=in_channels, out_channels=out_channels, stride=stride,
                    stage=stage, kernel_initializer=kernel_initializer, name=f"block{block}",
                    bn_momentum=bn_momentum,
                )
                in_channels = out_channels

    if include_top:
        x = common.classifier_head(
            x, num_classes=num_classes, classifier_activation=classifier_activation
        )
    return tf.keras.Model(inputs, x, name=name)
