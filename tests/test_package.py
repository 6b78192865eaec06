"""Importing bnn_keras routes tf.keras to legacy Keras 2, or explains why it cannot."""

import os
import subprocess
import sys

import pytest


def python(code, **env_changes):
    env = {k: v for k, v in os.environ.items() if k != "TF_USE_LEGACY_KERAS"}
    env.update(env_changes)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=env, timeout=300)


def test_import_before_tensorflow_selects_legacy_keras():
    proc = python("import bnn_keras, os, tensorflow as tf, larq; "
                  "print(os.environ['TF_USE_LEGACY_KERAS'], tf.keras.layers.Dense.__module__.split('.')[0])")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split() == ["1", "tf_keras"]


def test_tensorflow_first_with_keras3_explains_the_fix():
    proc = python("import tensorflow; import bnn_keras")
    assert proc.returncode != 0
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("ImportError:")
    assert "TF_USE_LEGACY_KERAS=1" in last and "before" in last


@pytest.mark.parametrize("value", ["1", "true", "True"])
def test_tensorflow_first_with_legacy_keras_is_fine(value):
    proc = python("import tensorflow; import bnn_keras; print('ok')", TF_USE_LEGACY_KERAS=value)
    assert proc.returncode == 0, proc.stderr[-2000:]
