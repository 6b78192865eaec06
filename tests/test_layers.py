"""Quantizers and layers: values, gradients, switching, and Keras serialization."""

import inspect

import larq as lq
import numpy as np
import pytest
import tensorflow as tf

from bnn_keras.layers import LearnableBias, RPReLU
from bnn_keras.quantizers import ScaledSign, SwitchableQuantizer, scaled_sign

SERIALIZABLE = [
    (ScaledSign, {}),
    (ScaledSign, {"clip_value": 0.5}),
    (SwitchableQuantizer, {"binarize": False}),
    (SwitchableQuantizer, {"quantizer": "ste_sign", "binarize": True}),
    (LearnableBias, {}),
    (RPReLU, {}),
]


class TestScaledSign:
    def test_values_are_plus_minus_mean_abs_per_output_channel(self):
        w = np.random.default_rng(0).normal(size=(3, 3, 4, 5)).astype("float32")
        q = scaled_sign(tf.constant(w)).numpy()
        alpha = np.abs(w).mean(axis=(0, 1, 2))
        np.testing.assert_allclose(np.abs(q), np.broadcast_to(alpha, w.shape), rtol=1e-6)
        assert np.all(np.sign(q) == np.where(w >= 0, 1, -1))

    def test_gradient_is_clipped_identity(self):
        w = tf.Variable([[0.5, -2.0], [-0.25, 1.5]])
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(scaled_sign(w) * tf.constant([[1.0, 2.0], [3.0, 4.0]]))
        np.testing.assert_array_equal(tape.gradient(loss, w).numpy(), [[1.0, 0.0], [3.0, 0.0]])

    def test_alias_resolves_in_larq(self):
        conv = lq.layers.QuantConv2D(2, 1, kernel_quantizer="scaled_sign")
        assert isinstance(conv.kernel_quantizer, ScaledSign)

    @pytest.mark.parametrize("clip_value", [0, -1.0, "1"])
    def test_bad_clip_value(self, clip_value):
        with pytest.raises(ValueError, match="`clip_value`"):
            ScaledSign(clip_value=clip_value)


class TestSwitchableQuantizer:
    def test_switch_takes_effect_inside_a_compiled_function_without_retracing(self):
        q = SwitchableQuantizer("scaled_sign", binarize=False)
        w = tf.constant([[3.0], [-1.0]])
        traces = []

        @tf.function
        def apply(x):
            traces.append(1)
            return q(x)

        np.testing.assert_array_equal(apply(w).numpy(), w.numpy())
        q.set_binarize(True)
        np.testing.assert_array_equal(apply(w).numpy().ravel(), [2.0, -2.0])
        assert len(traces) == 1

    def test_switch_is_hidden_from_weights_but_tracked(self, tmp_path):
        conv = lq.layers.QuantConv2D(
            2, 1, use_bias=False, kernel_quantizer=SwitchableQuantizer(binarize=False)
        )
        conv.build((None, 4, 4, 1))
        assert [w.name.split("/")[-1] for w in conv.weights] == ["kernel:0"]
        path = tf.train.Checkpoint(layer=conv).save(str(tmp_path / "ckpt"))
        assert any("binarize" in name for name, _ in tf.train.list_variables(path))

    def test_bad_binarize(self):
        with pytest.raises(TypeError, match="`binarize`"):
            SwitchableQuantizer(binarize=1)


@pytest.mark.parametrize("cls,kwargs", SERIALIZABLE)
def test_get_config_returns_exactly_the_constructor_arguments(cls, kwargs):
    layer = cls(**kwargs)
    config = layer.get_config()
    base = set(tf.keras.layers.Layer().get_config())
    own = set(config) - base
    params = set(inspect.signature(cls.__init__).parameters) - {"self", "kwargs"}
    assert own == params
    clone = cls.from_config(config)
    assert clone.get_config() == config
    registered = tf.keras.utils.get_registered_object(f"bnn_keras>{cls.__name__}")
    assert registered is cls


def test_rprelu_matches_its_definition():
    layer = RPReLU()
    x = tf.constant([[-4.0, -1.0, 0.0, 2.0]])
    layer.build(x.shape)
    layer.shift_in.assign([1.0] * 4)
    layer.shift_out.assign([0.5] * 4)
    expected = [[0.25 * -3.0 + 0.5, 0.0 + 0.5, 1.0 + 0.5, 3.0 + 0.5]]
    np.testing.assert_allclose(layer(x).numpy(), expected)
