"""The real-valued layers of ReActNet: learnable shifts and RPReLU.

ReActNet reshapes activations around each binary convolution with two cheap
per-channel layers:

- RSign: a learnable threshold before the sign. Here it is a `LearnableBias`
  feeding a Larq `QuantConv2D` whose `input_quantizer` is `"approx_sign"`, so
  that the sign sits directly in front of the convolution, which is the pattern
  Larq Compute Engine converts into a binary convolution.
- RPReLU: shift, PReLU with one slope per channel, shift.

`RPReLU` computes the PReLU as `tf.where(x >= 0, x, alpha * x)` with its slope
initialised to 0.25 (PyTorch's `nn.PReLU` default, which the official code
uses). `tf.keras.layers.PReLU` defaults to a zero slope, which turns each RPReLU
into a shifted ReLU at initialisation; see `docs/prelu_nan.md` for what that does
to a binary network.
"""

from __future__ import annotations

import tensorflow as tf

__all__ = ["LearnableBias", "RPReLU"]


@tf.keras.utils.register_keras_serializable(package="bnn_keras")
class LearnableBias(tf.keras.layers.Layer):
    """Adds a learnable per-channel bias: `y = x + b` (ReActNet's "move").

    Example:

    >>> layer = LearnableBias()
    >>> layer(tf.ones((1, 2, 2, 3))).shape
    TensorShape([1, 2, 2, 3])
    >>> [w.shape.as_list() for w in layer.weights]
    [[3]]

    Args:
        bias_initializer: initializer of the bias (zeros by default).
    """

    def __init__(self, bias_initializer="zeros", **kwargs):
        super().__init__(**kwargs)
        self.bias_initializer = tf.keras.initializers.get(bias_initializer)

    def build(self, input_shape):
        self.bias = self.add_weight(
            name="bias",
            shape=(input_shape[-1],),
            initializer=self.bias_initializer,
            trainable=True,
        )
        super().build(input_shape)

    def call(self, inputs):
        return inputs + tf.cast(self.bias, inputs.dtype)

    def get_config(self):
        return {
            **super().get_config(),
            "bias_initializer": tf.keras.initializers.serialize(self.bias_initializer),
        }


@tf.keras.utils.register_keras_serializable(package="bnn_keras")
class RPReLU(tf.keras.layers.Layer):
    r"""ReActNet's RPReLU: a shift, a per-channel PReLU and another shift.

    \\[ f(x_c) = \begin{cases} x_c - \gamma_c + \zeta_c & x_c > \gamma_c \\
    \beta_c (x_c - \gamma_c) + \zeta_c & x_c \le \gamma_c \end{cases} \\]

    Example:

    >>> layer = RPReLU()
    >>> layer(tf.constant([[-4.0, 2.0]])).numpy().tolist()
    [[-1.0, 2.0]]

    Args:
        alpha_initializer: initializer of the PReLU slopes `beta` (0.25, as
            PyTorch's `nn.PReLU`).

    References:
        - Liu et al., ReActNet, ECCV 2020, Section 3.2,
          https://arxiv.org/abs/2003.03488
    """

    def __init__(self, alpha_initializer=None, **kwargs):
        super().__init__(**kwargs)
        if alpha_initializer is None:
            alpha_initializer = tf.keras.initializers.Constant(0.25)
        self.alpha_initializer = tf.keras.initializers.get(alpha_initializer)

    def build(self, input_shape):
        channels = (input_shape[-1],)
        self.shift_in = self.add_weight(
            name="shift_in", shape=channels, initializer="zeros", trainable=True
        )
        self.alpha = self.add_weight(
            name="alpha", shape=channels, initializer=self.alpha_initializer, trainable=True
        )
        self.shift_out = self.add_weight(
            name="shift_out", shape=channels, initializer="zeros", trainable=True
        )
        super().build(input_shape)

    def call(self, inputs):
        dtype = inputs.dtype
        x = inputs + tf.cast(self.shift_in, dtype)
        # Three TFLite ops (GREATER_EQUAL, MUL, SELECT); the relu(x) - alpha * relu(-x)
        # form converts to five, and neither becomes a single PRELU.
        x = tf.where(x >= 0, x, tf.cast(self.alpha, dtype) * x)
        return x + tf.cast(self.shift_out, dtype)

    def get_config(self):
        return {
            **super().get_config(),
            "alpha_initializer": tf.keras.initializers.serialize(self.alpha_initializer),
        }
