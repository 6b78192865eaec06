"""ReActNet-A: the MobileNetV1-shaped binary network of ReActNet.

The architecture of Liu et al. (ReActNet, ECCV 2020) and of the official code of
Liu, Shen et al. (ICML 2021), who train it with Adam and two stages to 70.5%
ImageNet top-1. Layer names are deterministic (`block{i}_...`), so checkpoints and
layer look-ups stay stable.
"""

from __future__ import annotations

import tensorflow as tf

from bnn_keras.layers import LearnableBias, RPReLU
from bnn_keras.models import common

__all__ = ["ReActNetA", "REACTNET_A_WIDTHS"]

# Output widths of the 13 blocks; the stem has 32 channels. A block strides by 2
# where the width changes, except 32 -> 64.
REACTNET_A_WIDTHS = (64, 128, 128, 256, 256, 512, 512, 512, 512, 512, 512, 1024, 1024)
STEM_WIDTH = 32


def reactnet_a_block(
    x, *, in_channels, out_channels, stride, stage, kernel_initializer, name,
    bn_momentum=common.BN_MOMENTUM,
):
    """One ReActNet-A block: a binary 3x3 conv and a binary 1x1 conv, each residual.

    Where the width doubles, the 1x1 part is two binary 1x1 convs, each with its
    own BN and shortcut add, concatenated.
    """
    shortcut = x
    y = LearnableBias(name=f"{name}_rsign1")(x)
    y = common.binary_conv(
        in_channels, 3, strides=stride, stage=stage,
        kernel_initializer=kernel_initializer, name=f"{name}_conv3x3",
    )(y)
    y = common.batch_norm(f"{name}_bn1", bn_momentum)(y)
    if stride == 2:
        shortcut = tf.keras.layers.AveragePooling2D(
            2, strides=2, padding="same", name=f"{name}_pool"
        )(shortcut)
    y = tf.keras.layers.Add(name=f"{name}_add1")([shortcut, y])
    y = RPReLU(name=f"{name}_rprelu1")(y)

    z = LearnableBias(name=f"{name}_rsign2")(y)
    if out_channels == in_channels:
        parts = [("", in_channels)]
    elif out_channels == 2 * in_channels:
        parts = [("_a", in_channels), ("_b", in_channels)]
    else:
        raise ValueError(
            f"A ReActNet-A block keeps or doubles its width; received: "
            f"in_channels={in_channels}, out_channels={out_channels}"
        )
    outs = []
    for suffix, filters in parts:
        p = common.binary_conv(
            filters, 1, stage=stage, kernel_initializer=kernel_initializer,
            name=f"{name}_conv1x1{suffix}",
        )(z)
        p = common.batch_norm(f"{name}_bn2{suffix}", bn_momentum)(p)
        outs.append(tf.keras.layers.Add(name=f"{name}_add2{suffix}")([y, p]))
    z = outs[0] if len(outs) == 1 else tf.keras.layers.Concatenate(name=f"{name}_concat")(outs)
    return RPReLU(name=f"{name}_rprelu2")(z)


def ReActNetA(
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
    name: str = "reactnet_a",
) -> tf.keras.Model:
    """Builds ReActNet-A.

    - Stem: a real-valued 3x3 conv with 32 channels, stride 2 (stride 1 for inputs
      of at most 64 px, see `bnn_keras.models.common`), then BN.
    - 13 blocks (`reactnet_a_block`) on the MobileNetV1 widths.
    - Head: global average pool and a real-valued dense layer.

    Example:

    >>> model = ReActNetA(input_shape=(32, 32, 3), num_classes=10, width_multiplier=0.25)
    >>> model.output_shape
    (None, 10)
    >>> sum(1 for l in model.layers if "conv3x3" in l.name or "conv1x1" in l.name)
    31

    Args:
        input_shape: (height, width, channels) of the images.
        num_classes: number of classes of the classifier (at least 2).
        include_top: whether to add the pooling and dense head.
        stage: 1 = binary activations and real-valued weights (the kernels are
            switchable, see `bnn_keras.quantizers.SwitchableQuantizer`);
            2 = binary activations and binary weights.
        width_multiplier: scales every width (0.25 gives 8, 16, ... 256).
        input_tensor: optional Keras tensor to use as the input.
        kernel_initializer: initializer of every conv kernel.
        classifier_activation: activation of the head; `None` returns logits.
        bn_momentum: momentum of every BatchNormalization's moving statistics
            (0.9 = PyTorch's 0.1, as the official code).
        name: the model's name.

    Returns:
        A `tf.keras.Model`.

    Raises:
        ValueError: a bad `stage`, `num_classes`, `width_multiplier` or an
            `input_shape` that is malformed or too small.
    """
    shape = common.validate_common(
        input_shape=input_shape, num_classes=num_classes, include_top=include_top,
        stage=stage, width_multiplier=width_multiplier,
        total_stride_small=16, total_stride_large=32,
    )
    bn_momentum = common.check_bn_momentum(bn_momentum)
    base = common.scaled_width(STEM_WIDTH, width_multiplier)
    scale = base / STEM_WIDTH
    inputs = common.make_input(shape, input_tensor)

    with common.quiet_constraint_warning():
        x = tf.keras.layers.Conv2D(
            base, 3, strides=1 if common.is_small_input(shape) else 2,
            padding="same", use_bias=False, kernel_initializer=kernel_initializer,
            name="stem_conv",
        )(inputs)
        x = common.batch_norm("stem_bn", bn_momentum)(x)

        in_channels = base
        for i, width in enumerate(REACTNET_A_WIDTHS, start=1):
            out_channels = int(round(width * scale))
            stride = 2 if (out_channels != in_channels and width != 64) else 1
            x = reactnet_a_block(
                x, in_channels=in_channels, out_channels=out_channels, stride=stride,
                stage=stage, kernel_initializer=kernel_initializer, name=f"block{i}",
                bn_momentum=bn_momentum,
            )
            in_channels = out_channels

    if include_top:
        x = common.classifier_head(
            x, num_classes=num_classes, classifier_activation=classifier_activation
        )
    return tf.keras.Model(inputs, x, name=name)
