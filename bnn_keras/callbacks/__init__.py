"""Keras callbacks that measure and steer BNN optimisation (Liu, Shen et al., 2021).

They work in any `model.fit` on any larq model and write their values into
`logs`, so History, CSVLogger, TensorBoard and EarlyStopping see them (list
these callbacks first).

- `FlipFlopRatio`: `ff_ratio`, the fraction of latent binary weights whose sign
  flips per iteration (eq. 4-5).
- `C2IRatio`: `c2i` and `changed_from_init`, the sign correlation to a reference
  (eq. 7, see its docstring for why `c2i = 1 - 2 * changed_from_init`).
- `StageSwitch`: the two-stage schedule inside one `fit`.
- `ActivationSaturation`: `saturation`, the fraction of sign inputs with |x| > 1.
- `LatentWeightHistogram`: TensorBoard histograms and PNGs of latent weights.

The modules: `selection` (which layers count), `tracking` (per-replica sign
state), `ratios`, `stage`, `monitors`.

>>> from bnn_keras import callbacks
>>> callbacks.C2IRatio().reference
'stage'
"""

from bnn_keras.callbacks.monitors import (
    ActivationSaturation,
    LatentWeightHistogram,
    latent_values,
    plot_latent_distribution,
)
from bnn_keras.callbacks.ratios import C2IRatio, FlipFlopRatio
from bnn_keras.callbacks.selection import (
    binary_layers,
    is_binary_layer,
    is_sign_input_layer,
    latent_kernel,
    sign_input_layers,
)
from bnn_keras.callbacks.stage import StageListener, StageSwitch

__all__ = [
    "ActivationSaturation",
    "C2IRatio",
    "FlipFlopRatio",
    "LatentWeightHistogram",
    "StageListener",
    "StageSwitch",
    "binary_layers",
    "is_binary_layer",
    "is_sign_input_layer",
    "latent_kernel",
    "latent_values",
    "plot_latent_distribution",
    "sign_input_layers",
]
