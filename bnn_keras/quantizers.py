"""Kernel quantizers for binary convolutions, static and switchable.

ReActNet (and Bi-Real Net before it) binarize a latent real-valued kernel `W` to
`alpha * sign(W)`, with one scale `alpha = mean(|W|)` per output channel. The
gradient reaches the latent weights through `clip(W, -1, 1)`: it is passed
unchanged where `|W| <= 1` and is zero elsewhere. The scale is treated as a
constant in the backward pass, exactly as in the official PyTorch code.

The two-stage schedule of Liu, Shen et al. (ICML 2021) trains real-valued
weights first and binary weights second. `SwitchableQuantizer` lets one model
do both: its `binarize` switch is a `tf.Variable` read inside the graph, so a
callback can turn binarization on in the middle of `fit` without rebuilding or
recompiling anything.

Why the switch is hidden from `weights`: a stage-1 and a stage-2 model then have
exactly the same weight list, so weights move freely between the two (and into
the static `ScaledSign` graph that export builds), and `larq.models.summary`
counts parameters and MACs of the convolutions only. The switch is still tracked
as an attribute, so SavedModel export and `tf.train.Checkpoint` see it, and
`get_config` returns its current value, so `.keras` files keep the stage.

Both quantizers are registered under an alias, so strings work as in Larq:

>>> import larq as lq
>>> conv = lq.layers.QuantConv2D(4, 3, input_quantizer="approx_sign",
...                              kernel_quantizer="scaled_sign")
>>> type(conv.kernel_quantizer).__name__
'ScaledSign'
"""

from __future__ import annotations

import logging

import larq as lq
import tensorflow as tf

from bnn_keras.utils import flat_layers

__all__ = [
    "ScaledSign",
    "SwitchableQuantizer",
    "scaled_sign",
    "set_kernel_binarization",
    "switchable_quantizers",
]

log = logging.getLogger(__name__)


def scaled_sign(w: tf.Tensor, clip_value: float | None = 1.0) -> tf.Tensor:
    """Returns `mean(|w|) * sign(w)` per output channel with a clipped gradient.

    The scale is the mean absolute value over every axis but the last (the output
    channels of a Keras kernel). The gradient is `dy` where `|w| <= clip_value`
    and zero elsewhere; the scale gets no gradient.

    Args:
        w: a kernel, output channels last.
        clip_value: where the straight-through gradient is cut off; `None` passes
            every gradient.

    Returns:
        A tensor of the shape of `w` whose entries are `+alpha_c` or `-alpha_c`.

    Example:

    >>> w = tf.constant([[0.5, -2.0], [-1.5, 1.0]])
    >>> scaled_sign(w).numpy().tolist()
    [[1.0, -1.5], [-1.0, 1.5]]
    """

    @tf.custom_gradient
    def _call(w):
        axes = list(range(len(w.shape) - 1))
        scale = tf.reduce_mean(tf.abs(w), axis=axes)

        def grad(dy):
            if clip_value is None:
                return dy
            return tf.where(tf.abs(w) <= clip_value, dy, tf.zeros_like(dy))

        return scale * lq.math.sign(w), grad

    return _call(w)


@tf.keras.utils.register_keras_serializable(package="bnn_keras")
@lq.utils.register_alias("scaled_sign")
class ScaledSign(lq.quantizers.Quantizer):
    r"""Binary kernel quantizer of ReActNet: per-channel scaled sign.

    \\[ q(W)_{\cdot c} = \frac{1}{n}\lVert W_{\cdot c}\rVert_1 \operatorname{sign}(W_{\cdot c}) \\]

    with gradient \\(\partial q / \partial W = 1_{|W| \le 1}\\) (the scale is a
    constant). Larq Compute Engine turns a convolution with this kernel quantizer
    and a sign-based input quantizer into a binary `LceBconv2d`.

    Example:

    >>> q = ScaledSign()
    >>> q(tf.constant([[3.0], [-1.0]])).numpy().ravel().tolist()
    [2.0, -2.0]

    Args:
        clip_value: the straight-through gradient is zero where `|W| > clip_value`;
            `None` passes every gradient.

    References:
        - Liu et al., ReActNet, ECCV 2020, https://arxiv.org/abs/2003.03488
        - Liu et al., Bi-Real Net, ECCV 2018, https://arxiv.org/abs/1808.00278
    """

    precision = 1

    def __init__(self, clip_value: float | None = 1.0, **kwargs):
        _check_clip_value(clip_value)
        self.clip_value = clip_value
        super().__init__(**kwargs)

    def call(self, inputs):
        return scaled_sign(inputs, clip_value=self.clip_value)

    def get_config(self):
        return {**super().get_config(), "clip_value": self.clip_value}


@tf.keras.utils.register_keras_serializable(package="bnn_keras")
@lq.utils.register_alias("switchable")
class SwitchableQuantizer(lq.quantizers.Quantizer):
    """Wraps a kernel quantizer so that a variable turns it on and off in training.

    With `binarize` off the kernel passes through unchanged (stage 1: real-valued
    weights); with it on the wrapped quantizer applies (stage 2). The switch is a
    scalar boolean `tf.Variable`; `set_kernel_binarization(model, True)` or the
    `bnn_keras.callbacks.StageSwitch` callback flips it.

    Example:

    >>> q = SwitchableQuantizer("scaled_sign", binarize=False)
    >>> w = tf.constant([[3.0], [-1.0]])
    >>> q(w).numpy().ravel().tolist()
    [3.0, -1.0]
    >>> q.set_binarize(True)
    >>> q(w).numpy().ravel().tolist()
    [2.0, -2.0]

    Args:
        quantizer: the kernel quantizer used while binarizing: an alias such as
            `"scaled_sign"` or `"ste_sign"`, a config dict, or an instance.
        binarize: whether the kernel is quantized at first.
    """

    def __init__(self, quantizer="scaled_sign", binarize: bool = True, **kwargs):
        if not isinstance(binarize, bool):
            raise TypeError(f"`binarize` must be a bool; received: binarize={binarize!r}")
        inner = lq.quantizers.get(quantizer)
        if inner is None:
            raise ValueError(
                "`quantizer` must name a kernel quantizer such as 'scaled_sign'; "
                f"received: quantizer={quantizer!r}"
            )
        super().__init__(**kwargs)
        self.quantizer = inner
        self._binarize = self.add_weight(
            name="binarize",
            shape=(),
            dtype=tf.bool,
            initializer=tf.keras.initializers.Constant(binarize),
            trainable=False,
            aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA,
        )

    @property
    def non_trainable_weights(self):
        # The switch is state of the schedule, not a model weight (module docstring).
        return []

    @property
    def binarize(self) -> bool:
        """Whether the kernel is quantized now."""
        return bool(tf.keras.backend.get_value(self._binarize))

    @property
    def binarize_variable(self) -> tf.Variable:
        """The boolean variable that the graph reads."""
        return self._binarize

    @property
    def precision(self) -> int:
        """The wrapped precision while quantizing, else 32 (for `larq.models.summary`)."""
        return getattr(self.quantizer, "precision", 32) if self.binarize else 32

    def set_binarize(self, binarize: bool) -> None:
        """Turns quantization on or off; takes effect at the next step."""
        self._binarize.assign(bool(binarize))

    def call(self, inputs):
        # A cond, not a where: in stage 1 the sign and its gradient are not
        # computed at all (a where evaluated both branches on every kernel).
        return tf.cond(
            self._binarize, lambda: self.quantizer(inputs), lambda: tf.identity(inputs)
        )

    def get_config(self):
        return {
            **super().get_config(),
            "quantizer": lq.quantizers.serialize(self.quantizer),
            "binarize": self.binarize,
        }


def _check_clip_value(clip_value):
    if clip_value is not None and not (
        isinstance(clip_value, (int, float)) and clip_value > 0
    ):
        raise ValueError(
            f"`clip_value` must be a positive number or None; received: "
            f"clip_value={clip_value!r}"
        )


def switchable_quantizers(model: tf.keras.Model) -> list[SwitchableQuantizer]:
    """Returns the `SwitchableQuantizer` kernel quantizers of a model's layers.

    Nested models are searched too. The list is in layer order.
    """
    found = []
    for layer in flat_layers(model):
        quantizer = getattr(layer, "kernel_quantizer", None)
        if isinstance(quantizer, SwitchableQuantizer):
            found.append(quantizer)
    return found


def set_kernel_binarization(model: tf.keras.Model, binarize: bool) -> int:
    """Turns kernel binarization on or off in every switchable layer of `model`.

    Args:
        model: a Keras model with `SwitchableQuantizer` kernel quantizers.
        binarize: the new state.

    Returns:
        The number of quantizers switched.

    Raises:
        ValueError: the model has no switchable kernel quantizer.
    """
    layers = [
        layer
        for layer in flat_layers(model)
        if isinstance(getattr(layer, "kernel_quantizer", None), SwitchableQuantizer)
    ]
    if not layers:
        raise ValueError(
            f"Model {model.name!r} has no layer with a `SwitchableQuantizer` kernel "
            "quantizer, so kernel binarization cannot be switched. Build it with "
            "`stage=1` (bnn_keras models), or give your binary layers "
            "`kernel_quantizer=SwitchableQuantizer('scaled_sign', binarize=False)`."
        )
    for layer in layers:
        layer.kernel_quantizer.set_binarize(binarize)
        # Larq's QuantizedVariable caches its precision; keep `summary` truthful.
        if hasattr(getattr(layer, "kernel", None), "precision"):
            layer.kernel.precision = layer.kernel_quantizer.precision
    return len(layers)
