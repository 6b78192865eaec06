"""Weight decay that can change inside `fit`, and the paper's learning-rate schedule.

Why a `tf.Variable` coefficient: a tf-keras optimizer reads its float
`weight_decay` once, when `fit` traces the train step, so a callback that sets
`optimizer.weight_decay = 0.0` in the middle of `fit` changes nothing. Here the
coefficient is a variable that the traced step reads at every update, so
`bnn_keras.callbacks.StageSwitch` (or any callback) can turn the decay off at the
start of stage 2 by assigning it.

Why coupled L2 by default: Liu, Shen et al. train with PyTorch's
`Adam(weight_decay=5e-6)`, which adds `lambda * w` to the gradient before Adam's
moments (L2 regularisation, not AdamW). `decoupled=True` gives the AdamW form.

Why the decay is applied in `apply_gradients`: that is the public place where
the gradients are already summed over replicas, so under `tf.distribute` the term
`lambda * w` is added once, not once per replica. Only the variables handed to
`set_decay_variables` are decayed; `conv_kernels(model)` returns the kernels of
every `Conv2D` layer (larq's `QuantConv2D` included, and the real-valued stem),
which is what the paper decays. BatchNorm, biases, learnable thresholds, PReLU
slopes and the dense head get no decay.

The schedule `LinearEpochDecay` is the official code's `LambdaLR(lambda e: 1 -
e / E)` stepped at the start of every epoch: epoch `e` (from 0) trains with
`lr * (1 - (e + 1) / E)`, so the last epoch has a learning rate of zero.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable

import tensorflow as tf

from bnn_keras.utils import flat_layers

__all__ = [
    "KernelDecay",
    "KernelDecayAdam",
    "KernelDecaySGD",
    "LinearEpochDecay",
    "conv_kernels",
    "kernel_decay_variable",
    "optimizer_state_variables",
    "reset_optimizer_state",
    "set_kernel_decay",
]

log = logging.getLogger(__name__)


def conv_kernels(model: tf.keras.Model) -> list[tf.Variable]:
    """Returns the kernels of the `Conv2D` layers of `model`, nested models included.

    These are the variables the paper decays: the real-valued stem conv and every
    binary conv (larq's `QuantConv2D` is a `Conv2D`). For a larq layer the
    returned object is its `QuantizedVariable`, the one that
    `model.trainable_variables` holds and the optimizer receives.

    Example:

    >>> import larq as lq
    >>> inputs = tf.keras.Input((8, 8, 1))
    >>> x = tf.keras.layers.Conv2D(4, 3, name="stem")(inputs)
    >>> x = lq.layers.QuantConv2D(4, 3, kernel_quantizer="ste_sign", name="bconv")(x)
    >>> x = tf.keras.layers.Dense(2, name="head")(tf.keras.layers.Flatten()(x))
    >>> [v.name for v in conv_kernels(tf.keras.Model(inputs, x))]
    ['stem/kernel:0', 'bconv/kernel:0']
    """
    return [layer.kernel for layer in flat_layers(model) if _is_conv2d(layer)]


def _is_conv2d(layer) -> bool:
    return (
        isinstance(layer, tf.keras.layers.Conv2D)
        and getattr(layer, "kernel", None) is not None
    )


def _latent(variable):
    """The raw variable behind a larq `QuantizedVariable` (itself otherwise)."""
    return getattr(variable, "latent_variable", variable)


def _refs(variable) -> set:
    refs = {variable.ref()}
    latent = _latent(variable)
    if latent is not variable:
        refs.add(latent.ref())
    return refs


def _check_decay(value, arg="kernel_decay"):
    # Negative values are allowed on purpose: they push kernels away from zero,
    # the "-1e-5" row of the paper's Table 1.
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
    ):
        raise ValueError(f"`{arg}` must be a finite number; received: {arg}={value!r}")
    return float(value)


class KernelDecay:
    r"""Mixin: weight decay on chosen variables with a `tf.Variable` coefficient.

    Coupled (default, PyTorch `Adam(weight_decay=...)`, the paper's form):

    \\[ g \leftarrow g + \lambda w \\]

    before the optimizer's update. Decoupled (AdamW):

    \\[ w \leftarrow (1 - \eta_t \lambda)\,(w - \eta_t u_t) \\]

    applied after the optimizer's update `u_t` with that step's learning rate
    `eta_t`; this differs from PyTorch's AdamW ordering by
    `eta_t**2 * lambda * u_t`, far below float32 resolution for the paper's
    values. The coupled term is added after the cross-replica gradient sum and
    before Keras's `clipnorm`/`clipvalue`.

    The decayed variables are set with `set_decay_variables` (usually
    `conv_kernels(model)`) before the first `fit`; a train step traced without
    them raises a `ValueError` (an empty selection decays nothing, on purpose).

    Args:
        kernel_decay: the initial coefficient `lambda` (stored in the variable
            `optimizer.kernel_decay`). A negative value pushes kernels away from
            zero (the paper's Table 1 tries -1e-5).
        decoupled: `True` for the AdamW form.
        **kwargs: the wrapped optimizer's arguments. Its own `weight_decay`
            (decoupled, on every variable) is refused.

    Raises:
        ValueError: a `kernel_decay` that is not a finite number, or `weight_decay` given.
        TypeError: a non-bool `decoupled`.
    """

    def __init__(
        self, *args, kernel_decay: float = 0.0, decoupled: bool = False, **kwargs
    ):
        kernel_decay = _check_decay(kernel_decay)
        if not isinstance(decoupled, bool):
            raise TypeError(
                f"`decoupled` must be a bool; received: decoupled={decoupled!r}"
            )
        weight_decay = kwargs.pop("weight_decay", None)
        if weight_decay is not None:
            raise ValueError(
                "`weight_decay` must be None: it decays every variable with a float "
                "baked into the train step. Use `kernel_decay` (a variable, on the "
                f"selected kernels only); received: weight_decay={weight_decay!r}"
            )
        super().__init__(*args, **kwargs)
        self.decoupled = decoupled
        self._decay_refs = None
        with tf.init_scope():
            self._kernel_decay = tf.Variable(
                kernel_decay, name="kernel_decay", dtype=tf.float32, trainable=False
            )

    @property
    def kernel_decay(self) -> tf.Variable:
        """The decay coefficient, a scalar float32 variable read by every step."""
        return self._kernel_decay

    def set_decay_variables(self, variables: Iterable) -> None:
        """Chooses the variables that are decayed (usually `conv_kernels(model)`).

        Takes effect when the train step is traced, so call it before the first
        `fit` (or `compile` again afterwards).

        Raises:
            TypeError: an element is not a variable.
        """
        variables = list(variables)
        refs = set()
        for v in variables:
            if not isinstance(v, tf.Variable):
                raise TypeError(
                    "`variables` must hold tf.Variables (e.g. conv_kernels(model)); "
                    f"received an element {v!r}"
                )
            refs |= _refs(v)
        # A frozenset is not tracked, so the model's variables do not become
        # dependencies of the optimizer in checkpoints.
        self._decay_refs = frozenset(refs)

    def apply_gradients(
        self, grads_and_vars, name=None, skip_gradients_aggregation=False, **kwargs
    ):
        """Applies the gradients with weight decay on the chosen variables."""
        if self._decay_refs is None:
            raise ValueError(
                f"{type(self).__name__} has no decay variables: call "
                "`optimizer.set_decay_variables(bnn_keras.optim.conv_kernels(model))` "
                "before training (an empty list decays nothing)."
            )
        grads_and_vars = list(grads_and_vars)
        aggregate = kwargs.pop("experimental_aggregate_gradients", True)
        if aggregate and not skip_gradients_aggregation:
            grads_and_vars = self.aggregate_gradients(grads_and_vars)
        decayed = [
            v
            for g, v in grads_and_vars
            if g is not None and v.ref() in self._decay_refs
        ]
        if not self.decoupled and decayed:
            grads_and_vars = [
                (
                    (
                        self._add_l2(g, v)
                        if g is not None and v.ref() in self._decay_refs
                        else g
                    ),
                    v,
                )
                for g, v in grads_and_vars
            ]
        iteration = super().apply_gradients(
            grads_and_vars, name=name, skip_gradients_aggregation=True, **kwargs
        )
        if self.decoupled and decayed:
            self._decay_after_update(decayed)
        return iteration

    def _add_l2(self, grad, variable):
        latent = _latent(variable)
        if isinstance(grad, tf.IndexedSlices):
            grad = tf.convert_to_tensor(grad)
        return grad + tf.cast(self._kernel_decay, grad.dtype) * tf.convert_to_tensor(
            latent
        )

    def _decay_after_update(self, variables):
        def decay_all(strategy, variables):
            def shrink(var):
                factor = 1.0 - tf.cast(self.learning_rate, var.dtype) * tf.cast(
                    self._kernel_decay, var.dtype
                )
                return var.assign(tf.convert_to_tensor(_latent(var)) * factor)

            for v in variables:
                strategy.extended.update(v, shrink, group=False)

        replica_context = tf.distribute.get_replica_context()
        if replica_context is None:
            decay_all(tf.distribute.get_strategy(), variables)
        else:
            replica_context.merge_call(decay_all, args=(variables,))

    def get_config(self):
        config = super().get_config()
        config.pop("weight_decay", None)
        config["kernel_decay"] = float(tf.keras.backend.get_value(self._kernel_decay))
        config["decoupled"] = self.decoupled
        return config


@tf.keras.utils.register_keras_serializable(package="bnn_keras")
class KernelDecayAdam(KernelDecay, tf.keras.optimizers.Adam):
    """Adam with `KernelDecay`: the paper's optimizer (coupled L2 on conv kernels).

    Example (a gradient of zero: only the decay term moves the kernel):

    >>> kernel = tf.Variable([[1.0, -2.0]])
    >>> bias = tf.Variable([1.0])
    >>> opt = KernelDecayAdam(learning_rate=0.1, kernel_decay=0.5)
    >>> opt.set_decay_variables([kernel])
    >>> _ = opt.apply_gradients([(tf.zeros((1, 2)), kernel), (tf.zeros(1), bias)])
    >>> kernel.numpy().round(3).tolist(), bias.numpy().tolist()
    ([[0.9, -1.9]], [1.0])
    >>> opt.kernel_decay.assign(0.0).numpy()
    0.0

    Args:
        kernel_decay: the decay coefficient (paper: 5e-6 in stage 1, 0 in stage 2).
        decoupled: `True` for AdamW-style decay.
        **kwargs: `tf.keras.optimizers.Adam`'s arguments (`learning_rate`, ...).

    References:
        - Liu, Shen et al., How Do Adam and Training Strategies Help BNNs
          Optimization?, ICML 2021, Section 4, https://arxiv.org/abs/2106.11309
    """


@tf.keras.utils.register_keras_serializable(package="bnn_keras")
class KernelDecaySGD(KernelDecay, tf.keras.optimizers.SGD):
    """SGD with `KernelDecay` (the paper's SGD baseline with weight decay).

    Example:

    >>> kernel = tf.Variable([2.0])
    >>> opt = KernelDecaySGD(learning_rate=0.1, kernel_decay=0.5)
    >>> opt.set_decay_variables([kernel])
    >>> _ = opt.apply_gradients([(tf.zeros(1), kernel)])
    >>> kernel.numpy().round(3).tolist()
    [1.9]

    Args:
        kernel_decay: the decay coefficient.
        decoupled: `True` for decoupled decay.
        **kwargs: `tf.keras.optimizers.SGD`'s arguments.
    """


def _unwrap(optimizer):
    return getattr(optimizer, "inner_optimizer", optimizer)


def kernel_decay_variable(optimizer) -> tf.Variable | None:
    """The `kernel_decay` variable of a `KernelDecay` optimizer (or of the one a
    `LossScaleOptimizer` wraps); `None` for any other optimizer."""
    optimizer = _unwrap(optimizer)
    return optimizer.kernel_decay if isinstance(optimizer, KernelDecay) else None


def set_kernel_decay(optimizer, value: float) -> None:
    """Sets the decay coefficient; it takes effect at the next step, inside `fit` too.

    Raises:
        ValueError: a negative `value`.
        TypeError: `optimizer` has no `kernel_decay` variable.
    """
    value = _check_decay(value, "value")
    variable = kernel_decay_variable(optimizer)
    if variable is None:
        raise TypeError(
            "`optimizer` must be a bnn_keras.optim.KernelDecay optimizer such as "
            f"KernelDecayAdam; received: optimizer={type(optimizer).__name__}"
        )
    variable.assign(value)


def optimizer_state_variables(optimizer) -> list[tf.Variable]:
    """The variables that make an optimizer's state: its iteration count and slots.

    Slots are created at the first update, so the list grows then.

    Raises:
        TypeError: not a tf-keras optimizer (`tf.keras.optimizers.Optimizer`).
        ValueError: an optimizer with `use_ema=True` (zeroing its averages would
            not give a fresh state).
    """
    inner = _unwrap(optimizer)
    if not isinstance(inner, tf.keras.optimizers.Optimizer):
        raise TypeError(
            "`optimizer` must be a tf.keras.optimizers.Optimizer (the Keras 2.11+ "
            f"optimizers); received: optimizer={type(optimizer).__name__}"
        )
    if getattr(inner, "use_ema", False):
        raise ValueError(
            "`optimizer` must have use_ema=False to be reset; received an optimizer "
            "with use_ema=True"
        )
    return list(inner.variables)


def reset_optimizer_state(optimizer) -> int:
    """Zeroes an optimizer's iteration count and slots: it then acts as a fresh one.

    For Adam this restarts the moments and the bias correction; a
    `LearningRateSchedule` restarts too, because it is evaluated at
    `optimizer.iterations`. The learning rate itself and `kernel_decay` are not
    optimizer state and are kept. The loss scale of a `LossScaleOptimizer` is
    kept as well.

    Example:

    >>> var = tf.Variable([1.0])
    >>> opt = tf.keras.optimizers.Adam(0.1)
    >>> _ = opt.apply_gradients([(tf.constant([1.0]), var)])
    >>> reset_optimizer_state(opt), int(opt.iterations)
    (3, 0)

    Returns:
        The number of variables zeroed (the iteration counter included).

    Raises:
        TypeError: not a tf-keras optimizer.
        ValueError: an optimizer with `use_ema=True`.
    """
    variables = optimizer_state_variables(optimizer)
    for v in variables:
        v.assign(tf.zeros_like(v))
    return len(variables)


@tf.keras.utils.register_keras_serializable(package="bnn_keras")
class LinearEpochDecay(tf.keras.optimizers.schedules.LearningRateSchedule):
    r"""The paper's linear decay, constant within an epoch: `lr * (1 - (e + 1) / E)`.

    \\[ \eta(t) = \eta_0 \max\left(0, 1 - \frac{\lfloor t / S \rfloor + 1}{E}\right) \\]

    for optimizer step `t`, `S = steps_per_epoch`. As in the official code the
    first epoch already trains with `eta_0 (1 - 1/E)` and the last with 0.
    `StageSwitch` resets `optimizer.iterations`, which restarts the schedule,
    so with two stages `epochs` is the length of one stage (the paper uses
    the same length for both); past `epochs` the rate stays 0.

    Example:

    >>> schedule = LinearEpochDecay(1.0, epochs=4, steps_per_epoch=10)
    >>> [float(schedule(step)) for step in (0, 9, 10, 35, 99)]
    [0.75, 0.75, 0.5, 0.0, 0.0]

    Args:
        initial_learning_rate: `eta_0`.
        epochs: `E`, the number of epochs of the decay (> 0).
        steps_per_epoch: optimizer steps per epoch (> 0).

    Raises:
        ValueError: a non-positive argument.
    """

    def __init__(self, initial_learning_rate: float, epochs: int, steps_per_epoch: int):
        if (
            isinstance(initial_learning_rate, bool)
            or not isinstance(initial_learning_rate, (int, float))
            or initial_learning_rate <= 0
        ):
            raise ValueError(
                "`initial_learning_rate` must be a positive number; received: "
                f"initial_learning_rate={initial_learning_rate!r}"
            )
        for arg, value in (("epochs", epochs), ("steps_per_epoch", steps_per_epoch)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(
                    f"`{arg}` must be a positive integer; received: {arg}={value!r}"
                )
        self.initial_learning_rate = float(initial_learning_rate)
        self.epochs = epochs
        self.steps_per_epoch = steps_per_epoch

    def __call__(self, step):
        step = tf.cast(step, tf.int64)
        epoch = tf.cast(step // self.steps_per_epoch, tf.float32)
        factor = tf.maximum(0.0, 1.0 - (epoch + 1.0) / float(self.epochs))
        return self.initial_learning_rate * factor

    def get_config(self):
        return {
            "initial_learning_rate": self.initial_learning_rate,
            "epochs": self.epochs,
            "steps_per_epoch": self.steps_per_epoch,
        }
