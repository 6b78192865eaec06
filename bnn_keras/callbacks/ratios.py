"""The paper's two optimisation ratios, tracked inside the graph during `fit`.

Design choices:

- State in variables, updates in a `tf.function`: the signs of the latent
  kernels are kept as boolean variables and compared with
  `not_equal(w >= 0, signs)`, so a batch costs one pass over the binary kernels
  and nothing is copied to numpy; values reach Python once per epoch. Under
  `tf.distribute` each replica updates its own copy (see `tracking`).
- The C2I reference is the only state worth keeping across a restart, so
  `C2IRatio.checkpoint_state()` returns it as a trackable object for
  `tf.train.Checkpoint`. The flip-flop state is not saved: a resumed run
  measures its first iteration against the weights it resumed from.
- Stage switches are announced, not guessed: `StageSwitch(listeners=[...])`
  calls `on_stage_begin(stage, epoch)` on these callbacks.

Put these callbacks before CSVLogger, TensorBoard and EarlyStopping in the
callback list, so that those see the values written into `logs`.
"""

from __future__ import annotations

import logging
import os

import numpy as np
import tensorflow as tf

from bnn_keras.callbacks.tracking import (
    LOCAL_VARIABLE,
    KernelTracker,
    count_true,
    signs,
)

__all__ = ["C2IRatio", "FlipFlopRatio"]

log = logging.getLogger(__name__)


class FlipFlopRatio(KernelTracker):
    r"""Logs the flip-flop ratio of the latent binary kernels (paper eq. 4-5).

    For iteration `t` (one update, `w_t -> w_{t+1}`), over all binary layers
    `l` and their `N` latent kernel weights together:

    \\[ \mathrm{FF}_t = \frac{1}{N} \sum_l \sum_{i}
        \frac{|\operatorname{sign}(w^l_{t+1,i}) - \operatorname{sign}(w^l_{t,i})|}{2} \\]

    i.e. the fraction of weights whose sign changed. The first iteration of a
    `fit` is measured against the weights at `on_train_begin`. `ff_ratio` in
    `logs` is the mean of `FF_t` over the epoch's iterations, as the paper's
    Table 1 averages over iterations; validation steps are not iterations.
    Per layer, `ff_ratio/<layer name>` is the same over that layer's weights.
    With `log_dir`, the per-iteration series is written as the TensorBoard scalar
    `ff_ratio_per_iteration` from inside the graph.

    The binary layers are those of `bnn_keras.callbacks.selection.is_binary_layer`;
    stage-1 switchable kernels count too.

    With `model.compile(steps_per_execution=K)`, Keras calls batch hooks once
    per execution, after `K` optimizer steps, so here an iteration is one
    execution: `FF_t` compares the weights `K` steps apart (a sign that flips
    and flips back inside one execution is not seen). Use `K = 1` to measure
    the paper's per-step ratio.

    Example:

    >>> import larq as lq, numpy as np
    >>> model = tf.keras.Sequential([
    ...     tf.keras.Input((4,)),
    ...     lq.layers.QuantDense(2, kernel_quantizer="ste_sign", name="bdense")])
    >>> model.compile("sgd", "mse")
    >>> ff = FlipFlopRatio()
    >>> h = model.fit(np.ones((8, 4)), np.ones((8, 2)), batch_size=4, epochs=1,
    ...               callbacks=[ff], verbose=0)
    >>> sorted(k for k in h.history if k.startswith("ff"))
    ['ff_ratio', 'ff_ratio/bdense']
    >>> ff.epoch_iterations
    2

    Args:
        per_layer: also log `ff_ratio/<layer name>`.
        log_dir: a directory for the per-iteration TensorBoard series (chief
            only), or `None`.

    Raises:
        TypeError: a bad `per_layer` or `log_dir`.
        ValueError: (in `fit`) an unbuilt model, or one without binary layers.

    References:
        - Liu, Shen et al., How Do Adam and Training Strategies Help BNNs
          Optimization?, ICML 2021, Section 3, https://arxiv.org/abs/2106.11309
    """

    def __init__(
        self, *, per_layer: bool = True, log_dir: str | os.PathLike | None = None
    ):
        super().__init__(per_layer)
        if log_dir is not None and not isinstance(log_dir, (str, os.PathLike)):
            raise TypeError(
                f"`log_dir` must be a path or None; received: log_dir={log_dir!r}"
            )
        self.log_dir = None if log_dir is None else os.fspath(log_dir)
        # Batch hooks receive the logs as tensors: no device sync per batch.
        self._supports_tf_logs = True
        self.epoch_flips: dict[str, int] = {}
        self.epoch_iterations = 0
        self._update = None
        self._writer = None

    def _create_state(self):
        self._previous = [
            tf.Variable(
                tf.zeros(k.shape, tf.bool), name=f"ff_signs_{i}", **LOCAL_VARIABLE
            )
            for i, k in enumerate(self._kernels)
        ]
        self._flips = tf.Variable(
            tf.zeros([len(self._kernels)], tf.int64), name="ff_flips", **LOCAL_VARIABLE
        )
        self._iterations = tf.Variable(
            tf.constant(0, tf.int64), name="ff_iterations", **LOCAL_VARIABLE
        )
        self._step = tf.Variable(
            tf.constant(0, tf.int64), name="ff_step", **LOCAL_VARIABLE
        )

        def snapshot():
            for kernel, previous in zip(self._kernels, self._previous):
                previous.assign(signs(kernel))

        def zero():
            self._flips.assign(tf.zeros_like(self._flips))
            self._iterations.assign(0)

        self._snapshot = self._replicated(snapshot)
        self._zero = self._replicated(zero)
        self._update = None

    def _make_update(self, writer):
        total_size = float(self._sizes.sum())

        def count_flips():
            flips = []
            for kernel, previous in zip(self._kernels, self._previous):
                current = signs(kernel)
                flips.append(count_true(tf.not_equal(current, previous)))
                previous.assign(current)
            flips = tf.stack(flips)
            self._flips.assign_add(flips)
            self._iterations.assign_add(1)
            self._step.assign_add(1)
            return tf.reduce_sum(flips), self._step.read_value()

        update = self._replicated(count_flips)
        if writer is None:
            return update

        @tf.function
        def update_and_write():
            total, step = update()
            with writer.as_default(step=step):
                tf.summary.scalar(
                    "ff_ratio_per_iteration", tf.cast(total, tf.float64) / total_size
                )

        return update_and_write

    def on_train_begin(self, logs=None):
        self._ensure_state()
        chief = self._strategy.extended.should_save_summary
        if self.log_dir is not None and chief and self._writer is None:
            self._writer = tf.summary.create_file_writer(self.log_dir)
        if self._update is None:  # traced once per model, not once per fit
            self._update = self._make_update(self._writer)
        self._snapshot()
        self._zero()
        self.epoch_flips, self.epoch_iterations = {}, 0

    def on_epoch_begin(self, epoch, logs=None):
        self._zero()

    def on_train_batch_end(self, batch, logs=None):
        self._update()

    def on_epoch_end(self, epoch, logs=None):
        iterations = int(tf.keras.backend.get_value(self._iterations))
        flips = np.asarray(tf.keras.backend.get_value(self._flips), np.int64)
        self.epoch_iterations = iterations
        self.epoch_flips = dict(zip(self.layer_names, flips.tolist()))
        if self._writer is not None:
            self._writer.flush()
        if logs is None:
            return
        if iterations == 0:
            log.warning(
                "FlipFlopRatio: epoch %d ran no training step; no ff_ratio", epoch
            )
            return
        logs["ff_ratio"] = float(flips.sum()) / float(self._sizes.sum() * iterations)
        if self.per_layer:
            for name, count, size in zip(self.layer_names, flips, self._sizes):
                logs[f"ff_ratio/{name}"] = float(count) / float(size * iterations)

    def on_stage_begin(self, stage: int, epoch: int) -> None:
        """Takes the current signs as the reference of the next iteration."""
        if self._state_model is not None:
            self._snapshot()


class _ReferenceState(tf.Module):
    """The C2I reference: one boolean sign variable per layer, and a set flag."""

    def __init__(self, names, kernels):
        super().__init__(name="c2i_reference")
        self.signs = {
            name: tf.Variable(
                tf.zeros(k.shape, tf.bool), name=f"c2i_ref_{i}", **LOCAL_VARIABLE
            )
            for i, (name, k) in enumerate(zip(names, kernels))
        }
        self.has_reference = tf.Variable(
            False, name="c2i_has_reference", **LOCAL_VARIABLE
        )


class C2IRatio(KernelTracker):
    r"""Logs the correlation of the latent binary kernels to a reference (paper eq. 7).

    With `p` the fraction of the binary layers' `N` latent kernel weights whose
    sign differs from the reference's:

    \\[ \mathrm{changed\_from\_init} = p, \qquad
        \mathrm{c2i} = \frac{1}{N}\sum_i \operatorname{sign}(w^{ref}_i)
        \operatorname{sign}(w_i) = 1 - 2p \\]

    Why not eq. 7 as printed: it cannot produce the paper's own Table 1 values
    (a C2I of 0.4810, below 0.5); those fit the sign correlation `1 - 2p`. Both
    numbers are logged, overall and per layer (`c2i/<layer>`,
    `changed_from_init/<layer>`), at the end of every epoch, from one in-graph
    comparison (no cost per batch).

    The reference is taken at `on_train_begin` when the callback holds none
    yet. It is kept across `fit` calls on the same model and can be saved with
    `tf.train.Checkpoint(..., c2i=callback.checkpoint_state())`: a restored
    reference is used as is. With `reference="stage"` it is taken again when
    `StageSwitch` (given this callback in `listeners`) starts a stage;
    `reset_reference()` takes it at any time.

    Example:

    >>> import larq as lq, numpy as np
    >>> model = tf.keras.Sequential([
    ...     tf.keras.Input((4,)),
    ...     lq.layers.QuantDense(2, kernel_quantizer="ste_sign", name="bdense")])
    >>> model.compile("sgd", "mse")
    >>> c2i = C2IRatio(per_layer=False)
    >>> h = model.fit(np.ones((8, 4)), np.ones((8, 2)), epochs=1, callbacks=[c2i],
    ...               verbose=0)
    >>> h.history["c2i"][0] == 1 - 2 * h.history["changed_from_init"][0]
    True

    Args:
        reference: `"stage"` (retaken at each stage switch) or `"run"` (kept).
        per_layer: also log the per-layer values.

    Raises:
        ValueError: a bad `reference`; (in `fit`) an unbuilt model, or one
            without binary layers.
        TypeError: a non-bool `per_layer`.

    References:
        - Liu, Shen et al., ICML 2021, Section 3 and Table 1,
          https://arxiv.org/abs/2106.11309
    """

    REFERENCES = ("stage", "run")

    def __init__(self, *, reference: str = "stage", per_layer: bool = True):
        super().__init__(per_layer)
        if reference not in self.REFERENCES:
            raise ValueError(
                f"`reference` must be one of {self.REFERENCES}; received: "
                f"reference={reference!r}"
            )
        self.reference = reference
        self.epoch_changed: dict[str, int] = {}

    def _create_state(self):
        self._state = _ReferenceState(self.layer_names, self._kernels)
        refs = list(self._state.signs.values())

        def capture():
            for kernel, ref in zip(self._kernels, refs):
                ref.assign(signs(kernel))
            self._state.has_reference.assign(True)

        def changed():
            return tf.stack(
                [
                    count_true(tf.not_equal(signs(k), ref))
                    for k, ref in zip(self._kernels, refs)
                ]
            )

        self._capture = self._replicated(capture)
        self._changed = self._replicated(changed)

    def checkpoint_state(self) -> tf.Module:
        """The reference, as a trackable for `tf.train.Checkpoint`.

        Needs the model: call `set_model(model)` first when restoring before
        `fit`. Restore it before `fit` starts; `on_train_begin` keeps a
        restored reference.

        Example:

        >>> import larq as lq
        >>> model = tf.keras.Sequential([
        ...     tf.keras.Input((4,)),
        ...     lq.layers.QuantDense(2, kernel_quantizer="ste_sign", name="bdense")])
        >>> c2i = C2IRatio()
        >>> c2i.set_model(model)
        >>> checkpoint = tf.train.Checkpoint(model=model, c2i=c2i.checkpoint_state())
        >>> sorted(c2i.checkpoint_state().signs)
        ['bdense']
        """
        self._ensure_state()
        return self._state

    @property
    def has_reference(self) -> bool:
        """Whether a reference has been taken (or restored)."""
        if self._state_model is None:
            return False
        return bool(tf.keras.backend.get_value(self._state.has_reference))

    def reset_reference(self) -> None:
        """Takes the current latent kernels as the reference."""
        self._ensure_state()
        self._capture()

    def on_train_begin(self, logs=None):
        self._ensure_state()
        if not self.has_reference:
            self._capture()
        self.epoch_changed = {}

    def on_epoch_end(self, epoch, logs=None):
        changed = np.asarray(self._changed(), np.int64)
        self.epoch_changed = dict(zip(self.layer_names, changed.tolist()))
        if logs is None:
            return
        p = float(changed.sum()) / float(self._sizes.sum())
        logs["changed_from_init"] = p
        logs["c2i"] = 1.0 - 2.0 * p
        if self.per_layer:
            for name, count, size in zip(self.layer_names, changed, self._sizes):
                p = float(count) / float(size)
                logs[f"changed_from_init/{name}"] = p
                logs[f"c2i/{name}"] = 1.0 - 2.0 * p

    def on_stage_begin(self, stage: int, epoch: int) -> None:
        """With `reference="stage"`, takes the reference anew."""
        if self.reference == "stage":
            self.reset_reference()
