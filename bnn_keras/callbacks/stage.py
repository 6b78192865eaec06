"""The two-stage schedule of Liu, Shen et al. inside one `fit`.

Stage 1 trains binary activations with real-valued weights and weight decay;
stage 2 starts from stage 1's weights as a fresh Adam run with binary weights and
no decay. `StageSwitch` does, at the start of one epoch, what a second `fit` with
a new optimizer would do:

1. turns kernel binarization on (`bnn_keras.quantizers.set_kernel_binarization`);
2. sets the optimizer's `kernel_decay` variable to the stage-2 value;
3. zeroes the optimizer's iteration count and slots (`reset_optimizer_state`),
   which restarts Adam's moments and bias correction, and any
   `LearningRateSchedule` (it is evaluated at `optimizer.iterations`, so stage
   2's epochs count from 0 again);
4. calls `on_stage_begin(stage, epoch)` on its `listeners`, so that
   `FlipFlopRatio` and `C2IRatio` take new references.

Everything it touches is a variable read inside the traced train step, which is
why this works without recompiling. The listeners are passed explicitly: a Keras
callback cannot see the other callbacks of a `fit`, and an explicit list keeps
the dependency visible.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import tensorflow as tf

from bnn_keras import optim
from bnn_keras.quantizers import set_kernel_binarization, switchable_quantizers

__all__ = ["StageListener", "StageSwitch"]

log = logging.getLogger(__name__)


@runtime_checkable
class StageListener(Protocol):
    """Anything `StageSwitch` tells about a new stage (e.g. `C2IRatio`)."""

    def on_stage_begin(self, stage: int, epoch: int) -> None:
        """Called at the start of `epoch` (from 0), the first epoch of `stage`."""


class StageSwitch(tf.keras.callbacks.Callback):
    """Switches from stage 1 to stage 2 at the start of epoch `epoch` (from 0).

    Writes `stage` (1 or 2) into the logs of every epoch and logs what it did
    at the switch. A `fit` resumed at `initial_epoch > epoch` is in stage 2
    already (restore the checkpoint, which holds the binarization switch, the
    decay variable and the optimizer state); nothing is switched again.

    Example (two epochs of each stage in one `fit`):

    >>> import larq as lq, numpy as np
    >>> from bnn_keras.quantizers import SwitchableQuantizer
    >>> model = tf.keras.Sequential([tf.keras.Input((4,)), lq.layers.QuantDense(
    ...     2, kernel_quantizer=SwitchableQuantizer("scaled_sign", binarize=False))])
    >>> model.compile(tf.keras.optimizers.Adam(1e-3), "mse")
    >>> h = model.fit(np.ones((4, 4)), np.ones((4, 2)), epochs=4, verbose=0,
    ...               callbacks=[StageSwitch(2)])
    >>> h.history["stage"], model.optimizer.iterations.numpy()
    ([1, 1, 2, 2], 2)

    Args:
        epoch: the first epoch of stage 2 (an integer >= 1, below `fit`'s `epochs`).
        kernel_decay: the stage-2 value of the optimizer's `kernel_decay`
            variable (paper: 0), or `None` to leave it. A non-zero value needs a
            `bnn_keras.optim.KernelDecay` optimizer.
        reset_optimizer: zero the optimizer's iteration count and slots.
        listeners: objects with `on_stage_begin(stage, epoch)`, usually the
            `FlipFlopRatio` and `C2IRatio` of the same `fit`.

    Raises:
        ValueError: a bad `epoch` or `kernel_decay`; in `fit`: `epoch` not
            below `epochs`, a model without `SwitchableQuantizer` kernels, a
            non-zero `kernel_decay` without a decay variable.
        TypeError: a bad `reset_optimizer` or listener; in `fit`, an optimizer
            that cannot be reset.
    """

    def __init__(
        self,
        epoch: int,
        *,
        kernel_decay: float | None = 0.0,
        reset_optimizer: bool = True,
        listeners: Sequence[StageListener] = (),
    ):
        super().__init__()
        if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 1:
            raise ValueError(
                f"`epoch` must be an integer >= 1 (the first epoch of stage 2, "
                f"counted from 0); received: epoch={epoch!r}"
            )
        if kernel_decay is not None and (
            isinstance(kernel_decay, bool)
            or not isinstance(kernel_decay, (int, float))
            or not math.isfinite(kernel_decay)
        ):
            raise ValueError(
                "`kernel_decay` must be a finite number or None; received: "
                f"kernel_decay={kernel_decay!r}"
            )
        if not isinstance(reset_optimizer, bool):
            raise TypeError(
                f"`reset_optimizer` must be a bool; received: reset_optimizer={reset_optimizer!r}"
            )
        listeners = tuple(listeners)
        for listener in listeners:
            if not isinstance(listener, StageListener):
                raise TypeError(
                    "`listeners` must hold objects with an `on_stage_begin(stage, "
                    f"epoch)` method; received: {listener!r}"
                )
        self.epoch = epoch
        self.kernel_decay = None if kernel_decay is None else float(kernel_decay)
        self.reset_optimizer = reset_optimizer
        self.listeners = listeners
        self.stage = 1
        self._first_epoch = True

    def _decay_variable(self):
        optimizer = getattr(self.model, "optimizer", None)
        return None if optimizer is None else optim.kernel_decay_variable(optimizer)

    def on_train_begin(self, logs=None):
        epochs = (self.params or {}).get("epochs")
        if epochs is not None and self.epoch >= epochs:
            raise ValueError(
                f"`epoch` must be below fit's epochs={epochs}, or the switch never "
                f"happens; received: epoch={self.epoch}"
            )
        if not switchable_quantizers(self.model):
            raise ValueError(
                f"StageSwitch needs a model with SwitchableQuantizer kernels to "
                f"binarize; received model {self.model.name!r}, which has none. "
                "Build it with stage=1 (bnn_keras models), or give your binary "
                "layers kernel_quantizer=SwitchableQuantizer('scaled_sign', binarize=False)."
            )
        optimizer = getattr(self.model, "optimizer", None)
        if self.reset_optimizer:
            optim.optimizer_state_variables(optimizer)  # raises if it cannot be reset
        if self.kernel_decay and self._decay_variable() is None:
            raise ValueError(
                f"`kernel_decay`={self.kernel_decay} needs an optimizer with a "
                "kernel_decay variable (bnn_keras.optim.KernelDecayAdam or "
                f"KernelDecaySGD); received optimizer {type(optimizer).__name__}"
            )
        self.stage = 1
        self._first_epoch = True

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == self.epoch:
            self._switch(epoch)
        elif self._first_epoch and epoch > self.epoch:
            off = [q for q in switchable_quantizers(self.model) if not q.binarize]
            if off:
                log.warning(
                    "StageSwitch: resuming at epoch %d, after the switch at epoch %d, "
                    "but %d switchable kernels are not binarized; restore the "
                    "checkpoint of the run (it holds the switch) before fit.",
                    epoch,
                    self.epoch,
                    len(off),
                )
        self.stage = 2 if epoch >= self.epoch else 1
        self._first_epoch = False

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["stage"] = self.stage

    def _switch(self, epoch):
        done = [f"binarized {set_kernel_binarization(self.model, True)} kernels"]
        variable = self._decay_variable()
        if self.kernel_decay is not None and variable is not None:
            old = float(tf.keras.backend.get_value(variable))
            variable.assign(self.kernel_decay)
            done.append(f"kernel_decay {old:g} -> {self.kernel_decay:g}")
        if self.reset_optimizer:
            optimizer = self.model.optimizer
            old_iterations = int(tf.keras.backend.get_value(optimizer.iterations))
            count = optim.reset_optimizer_state(optimizer)
            done.append(
                f"optimizer reset (iterations {old_iterations} -> 0, {count - 1} slot "
                "variables zeroed; a LearningRateSchedule restarts)"
            )
        for listener in self.listeners:
            listener.on_stage_begin(2, epoch)
        if self.listeners:
            names = ", ".join(type(x).__name__ for x in self.listeners)
            done.append(f"new references for {names}")
        log.info("StageSwitch at epoch %d: stage 2 begins; %s.", epoch, "; ".join(done))
