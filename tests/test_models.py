"""ReActNet-A, ReActNet-18 and the model registry (issue: foundation)."""

import larq as lq
import larq_compute_engine as lce
import numpy as np
import pytest
import tensorflow as tf
from tensorflow.lite.python import schema_py_generated as tflite_schema

from bnn_keras import models
from bnn_keras.layers import LearnableBias, RPReLU
from bnn_keras.models import reactnet_a
from bnn_keras.quantizers import SwitchableQuantizer, set_kernel_binarization

SMALL = dict(input_shape=(32, 32, 3), num_classes=10, width_multiplier=0.25)
FAMILY = [models.ReActNetA, models.ReActNet18]


def profile(model):
    return lq.models.ModelProfile(model)


def binary_convs(model):
    return [l for l in model.layers if isinstance(l, lq.layers.QuantConv2D)]


def finite_gradients(model, batch):
    x = np.random.default_rng(0).normal(size=(batch, *model.input_shape[1:]))
    y = np.arange(batch) % model.output_shape[-1]
    with tf.GradientTape() as tape:
        out = model(x.astype("float32"), training=True)
        loss = tf.reduce_mean(tf.keras.losses.sparse_categorical_crossentropy(y, out))
    grads = tape.gradient(loss, model.trainable_variables)
    bad = [
        v.name
        for v, g in zip(model.trainable_variables, grads)
        if g is None or not np.all(np.isfinite(g.numpy()))
    ]
    return float(loss), bad


def tflite_op_counts(flatbuffer: bytes) -> dict:
    model = tflite_schema.ModelT.InitFromObj(tflite_schema.Model.GetRootAsModel(flatbuffer, 0))
    builtin = {v: k for k, v in vars(tflite_schema.BuiltinOperator).items() if not k.startswith("_")}
    counts = {}
    for op in model.subgraphs[0].operators:
        code = model.operatorCodes[op.opcodeIndex]
        if code.customCode:
            name = code.customCode.decode()
        else:
            name = builtin[max(code.builtinCode, code.deprecatedBuiltinCode)]
        counts[name] = counts.get(name, 0) + 1
    return counts


class TestCounts:
    """Parameter and operation counts against the paper and the official code."""

    def test_reactnet_a_imagenet(self, capsys):
        model = models.ReActNetA(input_shape=(224, 224, 3), num_classes=1000, stage=2)
        lq.models.summary(model)
        printed = capsys.readouterr().out
        p = profile(model)
        binary_macs = p.op_count("mac", 1)
        float_macs = p.op_count("mac", 32)
        ops = binary_macs / 64 + float_macs
        with capsys.disabled():
            print(
                f"\nReActNet-A 224px: 1-bit weights {p.weight_count(1):,}, binary MACs "
                f"{binary_macs:.4g} (paper 4.82e9 BOPs), float MACs {float_macs:.4g}, "
                f"OPs {ops:.4g} (paper 0.87e8)"
            )
        assert p.weight_count(1) == 28_253_184
        assert binary_macs == 4_816_896_000
        assert float_macs == pytest.approx(1.19e7, rel=0.01)
        assert ops == pytest.approx(0.87e8, rel=0.01)
        assert len(binary_convs(model)) == 31
        assert "28,253,184" in printed.replace(" ", "") or "28253184" in printed

    def test_reactnet18_imagenet(self, capsys):
        model = models.ReActNet18(input_shape=(224, 224, 3), num_classes=1000, stage=2)
        p = profile(model)
        ops = p.op_count("mac", 1) / 64 + p.op_count("mac", 32)
        with capsys.disabled():
            print(f"\nReActNet-18 224px: OPs {ops:.4g} (official repository 1.63e8)")
        assert ops == pytest.approx(1.63e8, rel=0.01)
        assert len(binary_convs(model)) == 16

    @pytest.mark.parametrize("builder", FAMILY)
    def test_stage1_has_real_weights_until_switched(self, builder):
        model = builder(stage=1, **SMALL)
        assert profile(model).weight_count(1) == 0
        set_kernel_binarization(model, True)
        assert profile(model).weight_count(1) == profile(builder(stage=2, **SMALL)).weight_count(1)


class TestShapes:
    @pytest.mark.parametrize("builder", FAMILY)
    @pytest.mark.parametrize("size", [28, 64, 65])
    def test_small_inputs_keep_spatial_size_in_the_stem(self, builder, size):
        model = builder(input_shape=(size, size, 1), num_classes=10, width_multiplier=0.25)
        stem = model.get_layer("stem_bn").output_shape
        expected = size if size <= 64 else None
        if expected is not None:
            assert stem[1:3] == (size, size)
        else:
            assert stem[1] < size
        assert model.output_shape == (None, 10)

    @pytest.mark.parametrize("builder", FAMILY)
    def test_include_top_false_and_width(self, builder):
        model = builder(include_top=False, input_shape=(32, 32, 3), width_multiplier=0.5)
        assert len(model.output_shape) == 4
        full = {models.ReActNetA: 1024, models.ReActNet18: 512}[builder]
        assert model.output_shape[-1] == full // 2

    def test_logits_when_no_classifier_activation(self):
        model = models.ReActNetA(classifier_activation=None, **SMALL)
        assert model.layers[-1].name == "logits"


class TestGradients:
    @pytest.mark.parametrize("stage", [1, 2])
    @pytest.mark.parametrize("size,batch", [(32, 8), (224, 2)])
    def test_reactnet_a_gradients_are_finite(self, stage, size, batch):
        model = models.ReActNetA(input_shape=(size, size, 3), num_classes=1000, stage=stage)
        loss, bad = finite_gradients(model, batch)
        assert np.isfinite(loss)
        assert bad == []

    @pytest.mark.parametrize("stage", [1, 2])
    def test_reactnet18_gradients_are_finite(self, stage):
        model = models.ReActNet18(stage=stage, **SMALL)
        assert finite_gradients(model, 8)[1] == []


def _keras_prelu_rprelu(name):
    """RPReLU written with tf.keras.layers.PReLU at its default (zero) slope."""

    def apply(x):
        x = LearnableBias(name=f"{name}_shift_in")(x)
        x = tf.keras.layers.PReLU(shared_axes=[1, 2], name=f"{name}_prelu")(x)
        return LearnableBias(name=f"{name}_shift_out")(x)

    return apply


class TestPReLUSlope:
    """The cause of the NaN gradients seen with Keras's PReLU (docs/prelu_nan.md)."""

    def sign_inputs_and_bn_variance(self, model):
        convs = binary_convs(model)[1:]  # after the first block's 3x3 conv
        bns = [
            model.get_layer(c.name.replace("conv3x3", "bn1").replace("conv1x1", "bn2"))
            for c in convs
        ]
        probe = tf.keras.Model(model.inputs, [c.input for c in convs] + [b.input for b in bns])
        x = np.random.default_rng(0).normal(size=(8, 32, 32, 3)).astype("float32")
        outs = [o.numpy() for o in probe(x, training=True)]
        signs, bn_inputs = outs[: len(convs)], outs[len(convs) :]
        negative = min(float(np.mean(s < 0)) for s in signs)
        variance = max(float(b.var(axis=(0, 1, 2)).max()) for b in bn_inputs)
        return negative, variance

    def test_zero_slope_makes_binary_inputs_constant_and_gradients_overflow(self, monkeypatch):
        monkeypatch.setattr(reactnet_a, "RPReLU", _keras_prelu_rprelu)
        model = reactnet_a.ReActNetA(input_shape=(32, 32, 3), num_classes=10)
        negative, variance = self.sign_inputs_and_bn_variance(model)
        assert negative == 0.0  # every sign input is >= 0: all binary inputs are +1
        assert variance < 1e-6  # so BN sees a constant: a x316 backward gain each
        assert finite_gradients(model, 8)[1] != []

    def test_rprelu_slope_keeps_both_signs_and_finite_gradients(self):
        model = models.ReActNetA(input_shape=(32, 32, 3), num_classes=10)
        negative, variance = self.sign_inputs_and_bn_variance(model)
        assert negative > 0.01  # both signs reach every binary conv
        assert variance > 1e-3
        assert finite_gradients(model, 8)[1] == []


class TestSerialization:
    @pytest.fixture(params=["stage1", "stage1_switched", "stage2"])
    def model(self, request):
        stage = 2 if request.param == "stage2" else 1
        model = models.ReActNetA(stage=stage, **SMALL)
        if request.param == "stage1_switched":
            set_kernel_binarization(model, True)
        # Move BN statistics and shifts away from their initial values.
        x = np.random.default_rng(1).normal(size=(4, 32, 32, 3)).astype("float32")
        model(x, training=True)
        for w in model.trainable_weights:
            w.assign(w + tf.random.normal(w.shape, stddev=0.01))
        return model

    @pytest.fixture
    def x(self):
        return np.random.default_rng(2).normal(size=(3, 32, 32, 3)).astype("float32")

    @pytest.mark.parametrize("fmt", ["model.keras", "weights.h5", "ckpt/weights"])
    def test_save_and_load_give_identical_outputs(self, model, x, tmp_path, fmt):
        expected = model(x, training=False).numpy()
        path = str(tmp_path / fmt)
        if fmt in ("model.keras", "savedmodel"):
            model.save(path)
            loaded = tf.keras.models.load_model(path)
        else:
            model.save_weights(path)
            loaded = tf.keras.Model.from_config(model.get_config())
            loaded.load_weights(path)
            # Weights-only files hold no stage: the rebuilt model takes it from the config.
        np.testing.assert_array_equal(loaded(x, training=False).numpy(), expected)
        assert [q.binarize for q in _switches(loaded)] == [q.binarize for q in _switches(model)]

    def test_savedmodel_gives_identical_outputs(self, x, tmp_path):
        # One case only, on the smaller family member: tracing a SavedModel is slow
        # on 2 cores. A switched stage-1 model is the hardest case (a hidden switch).
        model = models.ReActNet18(stage=1, **SMALL)
        set_kernel_binarization(model, True)
        model.save(str(tmp_path / "savedmodel"))
        loaded = tf.keras.models.load_model(str(tmp_path / "savedmodel"))
        np.testing.assert_array_equal(
            loaded(x, training=False).numpy(), model(x, training=False).numpy()
        )
        assert all(q.binarize for q in _switches(loaded))

    def test_from_config_rebuilds_the_model(self, model):
        clone = tf.keras.Model.from_config(model.get_config())
        assert [l.name for l in clone.layers] == [l.name for l in model.layers]
        assert [w.shape for w in clone.weights] == [w.shape for w in model.weights]

    def test_stage1_weights_load_into_a_stage2_model(self, model, x, tmp_path):
        path = str(tmp_path / "w.h5")
        model.save_weights(path)
        stage2 = models.ReActNetA(stage=2, **SMALL)
        stage2.load_weights(path)
        if all(q.binarize for q in _switches(model)):
            np.testing.assert_allclose(
                stage2(x, training=False).numpy(), model(x, training=False).numpy(), atol=1e-6
            )


def _switches(model):
    return [
        l.kernel_quantizer
        for l in model.layers
        if isinstance(getattr(l, "kernel_quantizer", None), SwitchableQuantizer)
    ]


class TestLCEConversion:
    def test_stage2_reactnet_a_converts_to_31_binary_convolutions(self):
        model = models.ReActNetA(input_shape=(224, 224, 3), num_classes=1000, stage=2)
        counts = tflite_op_counts(lce.convert_keras_model(model))
        assert counts.get("LceBconv2d") == 31
        assert counts.get("CONV_2D") == 1  # the real-valued stem


class TestRegistry:
    def test_every_name_builds(self):
        for name in ["reactnet_a", "reactnet18"]:
            assert models.get(name, **SMALL).output_shape == (None, 10)

    @pytest.mark.parametrize("name", ["quicknet", "birealnet"])
    @pytest.mark.parametrize("stage", [1, 2])
    def test_zoo_models_follow_the_stage(self, name, stage):
        model = models.get(name, input_shape=(32, 32, 3), num_classes=10, stage=stage)
        assert model.output_shape == (None, 10)
        n_switch = len(_switches(model))
        assert (n_switch > 0) == (stage == 1)
        assert (profile(model).weight_count(1) > 0) == (stage == 2)

    def test_zoo_names_are_registered(self):
        assert {"quicknet", "quicknet_large", "birealnet", "xnornet"} <= set(models.names())

    @pytest.mark.parametrize(
        "kwargs,argument",
        [
            (dict(name="resnet9000"), "name"),
            (dict(name="reactnet_a", stage=3), "stage"),
            (dict(name="reactnet_a", stage=0), "stage"),
            (dict(name="reactnet_a", num_classes=1), "num_classes"),
            (dict(name="reactnet_a", input_shape=(8, 8, 3)), "input_shape"),
            (dict(name="reactnet_a", input_shape=(100, 12, 3)), "input_shape"),
            (dict(name="reactnet18", input_shape=(4, 4, 1)), "input_shape"),
            (dict(name="reactnet_a", input_shape=(32, 32)), "input_shape"),
            (dict(name="reactnet_a", width_multiplier=0), "width_multiplier"),
            (dict(name="quicknet", input_shape=(16, 16, 3)), "input_shape"),
        ],
    )
    def test_bad_input_names_the_argument(self, kwargs, argument):
        name = kwargs.pop("name")
        with pytest.raises(ValueError, match=f"`{argument}`") as info:
            models.get(name, **kwargs)
        assert "received" in str(info.value)
