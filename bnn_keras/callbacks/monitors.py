"""Epoch-end monitors: activation saturation and latent-weight distributions.

Both run once per epoch and cost nothing per step.

Saturation is measured with a probe, `tf.keras.Model(model.inputs, [inputs of
the sign functions])`, built once and run on a fixed batch in inference mode.
For a larq layer the sign function is its `input_quantizer`, applied to
`layer.input`; in ReActNet that is the output of the `LearnableBias` in front of
each binary conv. The probe shares the model's layers, so it always sees the
current weights.

The PNG is drawn with matplotlib's object-oriented API on an Agg canvas, so the
library never changes the process-wide matplotlib backend.
"""

from __future__ import annotations

import logging
import os

import numpy as np
import tensorflow as tf

from bnn_keras.callbacks.selection import (
    latent_kernel,
    require_binary_layers,
    sign_input_layers,
)

__all__ = [
    "ActivationSaturation",
    "LatentWeightHistogram",
    "latent_values",
    "plot_latent_distribution",
]

log = logging.getLogger(__name__)


def _check_path(value, arg):
    if value is not None and not isinstance(value, (str, os.PathLike)):
        raise TypeError(f"`{arg}` must be a path or None; received: {arg}={value!r}")
    return None if value is None else os.fspath(value)


def _check_positive_int(value, arg):
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(
            f"`{arg}` must be a positive integer; received: {arg}={value!r}"
        )
    return value


class ActivationSaturation(tf.keras.callbacks.Callback):
    r"""Logs the fraction of sign-function inputs with `|x| > threshold` (paper Fig. 3).

    There the clipped straight-through gradient of the sign is zero, so these
    activations cannot learn: Liu, Shen et al. find 23.8% under Adam and 38.6%
    under SGD. Measured at the end of every epoch on the fixed batch `x`
    (inference mode), over the inputs of every layer whose `input_quantizer`
    is 1-bit (`ste_sign`, `approx_sign`, `swish_sign`, ...):

    \\[ \mathrm{saturation} = \frac{\sum_l |\{i : |x^l_i| > 1\}|}{\sum_l n_l} \\]

    logged as `saturation`, and per layer as `saturation/<layer name>`.

    Example:

    >>> import larq as lq, numpy as np
    >>> model = tf.keras.Sequential([tf.keras.Input((4,)), lq.layers.QuantDense(
    ...     2, input_quantizer="ste_sign", kernel_quantizer="ste_sign", name="b")])
    >>> model.compile("sgd", "mse")
    >>> x = np.array([[0.5, -2.0, 3.0, 0.1]], "float32")
    >>> h = model.fit(x, np.ones((1, 2)), verbose=0,
    ...               callbacks=[ActivationSaturation(x)])
    >>> h.history["saturation"], h.history["saturation/b"]
    ([0.5], [0.5])

    Args:
        x: the fixed input batch (an array or tensor the model accepts).
        threshold: the clip value of the straight-through gradient.
        per_layer: also log `saturation/<layer name>`.
        model: the functional model to probe; `None` (default) probes the model
            being fit. Give the student when fitting a wrapper around it, such as
            `bnn_keras.distill.Distiller`.

    Raises:
        ValueError: a bad `threshold`; (in `fit`) a model without sign inputs.
        TypeError: a bad `per_layer` or `model`.

    References:
        - Liu, Shen et al., ICML 2021, Section 3.2 and Figure 3,
          https://arxiv.org/abs/2106.11309
    """

    def __init__(
        self,
        x,
        *,
        threshold: float = 1.0,
        per_layer: bool = True,
        model: tf.keras.Model | None = None,
    ):
        super().__init__()
        if model is not None and not isinstance(model, tf.keras.Model):
            raise TypeError(
                f"`model` must be a tf.keras.Model or None; received: model={model!r}"
            )
        self.probed_model = model
        if x is None:
            raise TypeError(
                "`x` must be an input batch for the model; received: x=None"
            )
        if (
            isinstance(threshold, bool)
            or not isinstance(threshold, (int, float))
            or threshold <= 0
        ):
            raise ValueError(
                f"`threshold` must be a positive number; received: threshold={threshold!r}"
            )
        if not isinstance(per_layer, bool):
            raise TypeError(
                f"`per_layer` must be a bool; received: per_layer={per_layer!r}"
            )
        self.x = x
        self.threshold = float(threshold)
        self.per_layer = per_layer
        self._probe_model = None

    def on_train_begin(self, logs=None):
        model = self.probed_model if self.probed_model is not None else self.model
        if self._probe_model is model:
            return
        if not model.built:
            raise ValueError(
                "ActivationSaturation needs a built model; received the unbuilt model "
                f"{model.name!r}. Build it first: model.build(input_shape)."
            )
        layers = sign_input_layers(model)
        if not layers:
            raise ValueError(
                "ActivationSaturation needs layers with a 1-bit input_quantizer (a "
                f"sign function); received model {model.name!r}, which has none."
            )
        try:
            probe = tf.keras.Model(model.inputs, [layer.input for layer in layers])
        except (AttributeError, ValueError) as e:
            raise ValueError(
                "ActivationSaturation needs a functional model whose sign layers are "
                f"reachable from its inputs; received model {model.name!r}"
            ) from e
        threshold = self.threshold

        @tf.function
        def counts(x):
            inputs = tf.nest.flatten(probe(x, training=False))
            saturated = [
                tf.math.count_nonzero(tf.abs(t) > threshold, dtype=tf.int64)
                for t in inputs
            ]
            sizes = [tf.size(t, out_type=tf.int64) for t in inputs]
            return tf.stack(saturated), tf.stack(sizes)

        self._names = [layer.name for layer in layers]
        self._counts = counts
        self._probe_model = model

    def on_epoch_end(self, epoch, logs=None):
        if logs is None:
            return
        saturated, sizes = (np.asarray(t) for t in self._counts(self.x))
        logs["saturation"] = float(saturated.sum()) / float(sizes.sum())
        if self.per_layer:
            for name, count, size in zip(self._names, saturated, sizes):
                logs[f"saturation/{name}"] = float(count) / float(size)


def _latent_values(layers) -> np.ndarray:
    return np.concatenate([np.ravel(latent_kernel(layer).numpy()) for layer in layers])


def latent_values(model: tf.keras.Model) -> np.ndarray:
    """All latent kernel weights of the model's binary layers, as one flat array.

    Example:

    >>> import larq as lq
    >>> model = tf.keras.Sequential([tf.keras.Input((4,)),
    ...     lq.layers.QuantDense(8, kernel_quantizer="ste_sign")])
    >>> latent_values(model).shape
    (32,)

    Raises:
        ValueError: an unbuilt model, or one without binary layers.
    """
    return _latent_values(require_binary_layers(model, "latent_values"))


def plot_latent_distribution(model: tf.keras.Model, path, *, bins: int = 200) -> str:
    """Saves a PNG histogram of all binary layers' latent kernel weights.

    Adam-trained BNNs show three peaks, near -1, 0 and +1 (paper Fig. 5).

    Example:

    >>> import larq as lq, os, tempfile
    >>> model = tf.keras.Sequential([tf.keras.Input((4,)),
    ...     lq.layers.QuantDense(8, kernel_quantizer="ste_sign")])
    >>> path = plot_latent_distribution(model, os.path.join(tempfile.mkdtemp(), "w.png"))
    >>> open(path, "rb").read(4)
    b'\\x89PNG'

    Args:
        model: a built model with binary layers.
        path: where to write the PNG; its directory is created.
        bins: the number of histogram bins.

    Returns:
        `path`, as a string.

    Raises:
        ValueError: an unbuilt model, one without binary layers, or bad `bins`.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    layers = require_binary_layers(model, "plot_latent_distribution")
    _check_positive_int(bins, "bins")
    path = _check_path(path, "path")
    values = _latent_values(layers)
    figure = Figure(figsize=(6, 4))
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    axes.hist(values, bins=bins, color="tab:blue")
    axes.set_xlabel("latent weight")
    axes.set_ylabel("count")
    axes.set_title(
        f"{model.name}: {values.size} latent weights of {len(layers)} binary layers"
    )
    directory = os.path.dirname(path)
    if directory:
        os.makedirs(directory, exist_ok=True)
    figure.savefig(path, dpi=100)
    return path


class LatentWeightHistogram(tf.keras.callbacks.Callback):
    """Writes histograms of the binary layers' latent kernels, and on request a PNG.

    Every `every_n_epochs` epochs, TensorBoard histograms `latent_kernel/<layer>`
    and `latent_kernel/all` go to `log_dir`; with `png_path`, a PNG of the whole
    network's distribution (`plot_latent_distribution`) is written at the end
    of training, or every `every_n_epochs` epochs when `png_path` holds an
    `{epoch}` field (from 1, as Keras names checkpoints). Only the chief writes.

    Example:

    >>> import larq as lq, numpy as np, os, tempfile
    >>> model = tf.keras.Sequential([tf.keras.Input((4,)),
    ...     lq.layers.QuantDense(2, kernel_quantizer="ste_sign")])
    >>> model.compile("sgd", "mse")
    >>> png = os.path.join(tempfile.mkdtemp(), "latent_{epoch}.png")
    >>> _ = model.fit(np.ones((4, 4)), np.ones((4, 2)), epochs=2, verbose=0,
    ...               callbacks=[LatentWeightHistogram(png_path=png)])
    >>> sorted(os.listdir(os.path.dirname(png)))
    ['latent_1.png', 'latent_2.png']

    Args:
        log_dir: directory of the TensorBoard histograms, or `None`.
        png_path: path of the PNG, or `None`.
        every_n_epochs: how often to write.
        bins: bins of the PNG histogram.

    Raises:
        ValueError: neither `log_dir` nor `png_path`, or bad `every_n_epochs`
            or `bins`; (in `fit`) a model without binary layers.
        TypeError: a path that is not a string.
    """

    def __init__(
        self, log_dir=None, *, png_path=None, every_n_epochs: int = 1, bins: int = 200
    ):
        super().__init__()
        self.log_dir = _check_path(log_dir, "log_dir")
        self.png_path = _check_path(png_path, "png_path")
        if self.log_dir is None and self.png_path is None:
            raise ValueError(
                "`log_dir` or `png_path` must be given; received: log_dir=None, png_path=None"
            )
        self.every_n_epochs = _check_positive_int(every_n_epochs, "every_n_epochs")
        self.bins = _check_positive_int(bins, "bins")
        self._writer = None

    def on_train_begin(self, logs=None):
        self._layers = require_binary_layers(self.model, type(self).__name__)
        self._chief = self.model.distribute_strategy.extended.should_save_summary
        if self.log_dir is not None and self._chief and self._writer is None:
            self._writer = tf.summary.create_file_writer(self.log_dir)

    def on_epoch_end(self, epoch, logs=None):
        if not self._chief or (epoch + 1) % self.every_n_epochs:
            return
        if self._writer is not None:
            with self._writer.as_default(step=epoch):
                for layer in self._layers:
                    tf.summary.histogram(
                        f"latent_kernel/{layer.name}", latent_kernel(layer)
                    )
                tf.summary.histogram("latent_kernel/all", _latent_values(self._layers))
            self._writer.flush()
        if self.png_path is not None and "{epoch" in self.png_path:
            path = self.png_path.format(epoch=epoch + 1)
            plot_latent_distribution(self.model, path, bins=self.bins)

    def on_train_end(self, logs=None):
        if self._chief and self.png_path is not None and "{epoch" not in self.png_path:
            plot_latent_distribution(self.model, self.png_path, bins=self.bins)
            log.info("LatentWeightHistogram: wrote %s", self.png_path)
