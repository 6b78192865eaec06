"""Pieces shared by the model builders: argument checks, stems, heads, quantizers.

The small-input rule: an input of at most `SMALL_INPUT_MAX` (64) pixels on its
shorter side (MNIST, CIFAR) gets a stem that does not downsample. ReActNet-A then
downsamples 16 times in all instead of 32, ReActNet-18 8 times instead of 32, so
a 32 px image still reaches the head as a 2x2 (ReActNet-A) or 4x4 (ReActNet-18)
feature map. An input smaller than the network's total stride is refused.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Sequence

import larq as lq
import tensorflow as tf

from bnn_keras.quantizers import SwitchableQuantizer

__all__ = [
    "BN_MOMENTUM",
    "SMALL_INPUT_MAX",
    "STAGES",
    "batch_norm",
    "binary_conv",
    "check_bn_momentum",
    "classifier_head",
    "is_small_input",
    "kernel_quantizer_for_stage",
    "make_input",
    "quiet_constraint_warning",
    "scaled_width",
    "validate_common",
]

SMALL_INPUT_MAX = 64
STAGES = (1, 2)
BN_MOMENTUM = 0.9  # PyTorch's BatchNorm2d momentum=0.1
BN_EPSILON = 1e-5  # PyTorch's default


def is_small_input(input_shape: Sequence[int]) -> bool:
    """Whether the stem keeps the spatial size (the small-input rule above)."""
    return min(input_shape[0], input_shape[1]) <= SMALL_INPUT_MAX


def validate_common(
    *,
    input_shape,
    num_classes: int,
    include_top: bool,
    stage: int,
    width_multiplier: float,
    total_stride_small: int,
    total_stride_large: int,
) -> tuple[int, int, int]:
    """Checks the arguments every bnn_keras builder takes; returns the input shape.

    Raises:
        ValueError: naming the argument, what was received and what is accepted.
    """
    if stage not in STAGES:
        raise ValueError(f"`stage` must be one of {STAGES}; received: stage={stage!r}")
    if include_top and (not isinstance(num_classes, int) or num_classes < 2):
        raise ValueError(
            "`num_classes` must be an integer of at least 2 when include_top=True; "
            f"received: num_classes={num_classes!r}"
        )
    if not isinstance(width_multiplier, (int, float)) or width_multiplier <= 0:
        raise ValueError(
            "`width_multiplier` must be a positive number; "
            f"received: width_multiplier={width_multiplier!r}"
        )
    try:
        shape = tuple(int(d) for d in input_shape)
    except (TypeError, ValueError) as e:
        raise ValueError(
            "`input_shape` must be a tuple (height, width, channels) of positive "
            f"integers; received: input_shape={input_shape!r}"
        ) from e
    if len(shape) != 3 or min(shape) < 1:
        raise ValueError(
            "`input_shape` must be a tuple (height, width, channels) of positive "
            f"integers; received: input_shape={input_shape!r}"
        )
    stride = total_stride_small if is_small_input(shape) else total_stride_large
    if min(shape[:2]) < stride:
        raise ValueError(
            f"`input_shape` is too small for this network: it downsamples {stride} "
            f"times, so height and width must be at least {stride}; received: "
            f"input_shape={input_shape!r}"
        )
    return shape


def scaled_width(channels: int, width_multiplier: float) -> int:
    """`channels * width_multiplier`, rounded, at least 1."""
    return max(1, int(round(channels * width_multiplier)))


def kernel_quantizer_for_stage(stage: int):
    """The kernel quantizer of a binary conv: switchable (off) in stage 1, static in 2."""
    if stage == 1:
        return SwitchableQuantizer("scaled_sign", binarize=False)
    return "scaled_sign"


def make_input(input_shape, input_tensor):
    """A Keras `Input`, or the given tensor (as in `tf.keras.applications`)."""
    if input_tensor is None:
        return tf.keras.Input(shape=input_shape)
    if not tf.keras.backend.is_keras_tensor(input_tensor):
        return tf.keras.Input(tensor=input_tensor, shape=input_shape)
    return input_tensor


def batch_norm(name: str, momentum: float = BN_MOMENTUM) -> tf.keras.layers.BatchNormalization:
    return tf.keras.layers.BatchNormalization(momentum=momentum, epsilon=BN_EPSILON, name=name)


def check_bn_momentum(bn_momentum) -> float:
    if isinstance(bn_momentum, bool) or not isinstance(bn_momentum, (int, float)) or not (
        0.0 <= bn_momentum < 1.0
    ):
        raise ValueError(
            f"`bn_momentum` must be a number in [0, 1); received: bn_momentum={bn_momentum!r}"
        )
    return float(bn_momentum)


def binary_conv(
    filters: int,
    kernel_size: int,
    *,
    strides: int = 1,
    stage: int,
    kernel_initializer,
    name: str,
) -> lq.layers.QuantConv2D:
    """A ReActNet binary convolution: ApproxSign input, scaled-sign kernel.

    Padding is "same" with the value 1 (Larq Compute Engine's fast path; the
    official PyTorch code pads the binary input with 0).
    """
    return lq.layers.QuantConv2D(
        filters,
        kernel_size,
        strides=strides,
        padding="same",
        pad_values=1.0,
        use_bias=False,
        input_quantizer="approx_sign",
        kernel_quantizer=kernel_quantizer_for_stage(stage),
        kernel_initializer=kernel_initializer,
        name=name,
    )


def classifier_head(x, *, num_classes: int, classifier_activation):
    """Global average pool, a real-valued dense layer, then the activation."""
    x = tf.keras.layers.GlobalAveragePooling2D(name="global_pool")(x)
    x = tf.keras.layers.Dense(num_classes, name="logits")(x)
    if classifier_activation is not None:
        x = tf.keras.layers.Activation(
            classifier_activation, dtype="float32", name="predictions"
        )(x)
    return x


class _DropStarvedWeightWarning(logging.Filter):
    def filter(self, record):
        return "starved weights" not in record.getMessage()


@contextlib.contextmanager
def quiet_constraint_warning():
    """Silences Larq's "binary quantizer without kernel_constraint" warning.

    ReActNet deliberately has no weight clip: the clipped straight-through
    gradient plays that role, as in the official code.
    """
    logger = logging.getLogger("larq.layers_base")
    flt = _DropStarvedWeightWarning()
    logger.addFilter(flt)
    try:
        yield
    finally:
        logger.removeFilter(flt)
