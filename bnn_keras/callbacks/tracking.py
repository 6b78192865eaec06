"""Sign-tracking machinery shared by the ratio callbacks.

A `KernelTracker` finds the binary layers of its model (see `selection`) and
keeps per-replica state next to them. The state variables are `ON_READ` with
`ONLY_FIRST_REPLICA` aggregation, created in the model's strategy scope, and
every update runs through `strategy.run`: each replica compares its own copy of
the mirrored kernels with its own copy of the state, with no cross-device
traffic, and reading a variable in cross-replica context gives the first
replica's value. Without a strategy this is plain variables and a plain call.

A sign is `w >= 0`, so `sign(0) = +1`, as in larq.
"""

from __future__ import annotations

import functools

import numpy as np
import tensorflow as tf

from bnn_keras.callbacks.selection import (
    binary_layers,
    latent_kernel,
    require_binary_layers,
)

__all__ = ["LOCAL_VARIABLE", "KernelTracker", "count_true", "signs"]

LOCAL_VARIABLE = dict(
    trainable=False,
    synchronization=tf.VariableSynchronization.ON_READ,
    aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA,
)


def signs(kernel) -> tf.Tensor:
    """`kernel >= 0`: the sign of every weight as a bool (`True` is +1)."""
    return tf.greater_equal(kernel, tf.zeros((), kernel.dtype))


def count_true(mask) -> tf.Tensor:
    """The number of `True` entries, as an int64 scalar."""
    # int32 per layer (exact below 2**31 weights), int64 once summed over steps.
    return tf.cast(tf.reduce_sum(tf.cast(mask, tf.int32)), tf.int64)


class KernelTracker(tf.keras.callbacks.Callback):
    """Base of the ratio callbacks: the binary layers of the model and the strategy.

    Subclasses define `_create_state()`, called once per model in its strategy scope.
    """

    def __init__(self, per_layer: bool):
        super().__init__()
        if not isinstance(per_layer, bool):
            raise TypeError(
                f"`per_layer` must be a bool; received: per_layer={per_layer!r}"
            )
        self.per_layer = per_layer
        self._state_model = None
        self._layers = []
        self._kernels = []
        self._sizes = np.zeros(0, np.int64)

    def set_model(self, model):
        super().set_model(model)
        if self._state_model is None or model is self._state_model:
            return
        # Keep the state when `model` trains the same kernels, e.g. a distillation
        # wrapper around the model the state (and a restored C2I reference) was
        # made for; otherwise it is rebuilt for the new model at `on_train_begin`.
        kernels = [
            latent_kernel(layer)
            for layer in binary_layers(model)
            if getattr(layer, "kernel", None) is not None
        ]
        if [id(k) for k in kernels] == [id(k) for k in self._kernels]:
            self._state_model = model
        else:
            self._state_model = None

    @property
    def layer_names(self) -> list[str]:
        """The names of the tracked (binary) layers, in model order."""
        return [layer.name for layer in self._layers]

    @property
    def sizes(self) -> dict[str, int]:
        """The number of kernel weights of each tracked layer."""
        return dict(zip(self.layer_names, self._sizes.tolist()))

    def _ensure_state(self) -> None:
        if self._state_model is not None:
            return
        name = type(self).__name__
        if self.model is None:
            raise ValueError(
                f"{name} has no model: pass it to model.fit(callbacks=[...]) or call "
                "callback.set_model(model) first."
            )
        layers = require_binary_layers(self.model, name)
        self._layers = layers
        self._kernels = [latent_kernel(layer) for layer in layers]
        self._sizes = np.array(
            [k.shape.num_elements() for k in self._kernels], np.int64
        )
        self._strategy = self.model.distribute_strategy
        with self._strategy.scope():
            self._create_state()
        self._state_model = self.model

    def _replicated(self, fn):
        """A tf.function that runs `fn` on every replica; returns the first's result."""
        strategy = self._strategy

        # `wraps` gives each function its own key in TensorFlow's retracing
        # detector (the key is the code of the innermost wrapped function).
        @tf.function
        @functools.wraps(fn)
        def run():
            result = strategy.run(fn)
            return tf.nest.map_structure(
                lambda r: strategy.experimental_local_results(r)[0], result
            )

        return run
