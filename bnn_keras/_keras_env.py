"""Make sure TensorFlow routes `tf.keras` to legacy Keras 2 (`tf_keras`).

Larq is written against Keras 2. TensorFlow 2.16 decides which Keras `tf.keras`
means once, when `tensorflow` is first imported, from the environment variable
`TF_USE_LEGACY_KERAS`. Setting the variable later changes nothing, so this module
must run before the first TensorFlow import; `bnn_keras/__init__.py` imports it
first of all.
"""

import os
import sys

__all__ = ["ensure_legacy_keras"]

_TRUE_VALUES = ("true", "True", "1")


def ensure_legacy_keras() -> None:
    """Sets `TF_USE_LEGACY_KERAS=1`, or explains why it is too late.

    Raises:
        ImportError: TensorFlow was imported before bnn_keras with Keras 3 active.
    """
    tf_module = sys.modules.get("tensorflow")
    if tf_module is None:
        os.environ["TF_USE_LEGACY_KERAS"] = "1"
        return
    if getattr(tf_module, "_tf_uses_legacy_keras", True):
        return
    raise ImportError(
        "bnn_keras needs legacy Keras 2 (the `tf_keras` package), because Larq does "
        "not support Keras 3, but TensorFlow was already imported with Keras 3 "
        "active. Fix: set the environment variable TF_USE_LEGACY_KERAS=1 before "
        "TensorFlow is first imported (for example `export TF_USE_LEGACY_KERAS=1` in "
        "the shell, or `os.environ['TF_USE_LEGACY_KERAS'] = '1'` at the top of your "
        "script), or import bnn_keras before tensorflow."
    )
