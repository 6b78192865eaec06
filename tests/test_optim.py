"""Tests of bnn_keras.optim: kernel weight decay, optimizer reset, the LR schedule."""

import contextlib

import larq as lq
import numpy as np
import pytest
import tensorflow as tf

from bnn_keras import optim
from bnn_keras.quantizers import SwitchableQuantizer
from conftest import make_tiny_bnn

BASE_CLASSES = {
    optim.KernelDecayAdam: tf.keras.optimizers.Adam,
    optim.KernelDecaySGD: tf.keras.optimizers.SGD,
}
DECAY_CLASSES = tuple(BASE_CLASSES)
BAD_OPTIMIZER_ARGS = [
    ({"kernel_decay": float("nan")}, ValueError),
    ({"kernel_decay": "5e-6"}, ValueError),
    ({"decoupled": 1}, TypeError),
    ({"weight_decay": 1e-4}, ValueError),
]
BAD_SCHEDULE_ARGS = [
    {"initial_learning_rate": 0.0, "epochs": 2, "steps_per_epoch": 1},
    {"initial_learning_rate": 1e-3, "epochs": 0, "steps_per_epoch": 1},
    {"initial_learning_rate": 1e-3, "epochs": 2, "steps_per_epoch": 1.5},
]


def _zero_loss(y_true, y_pred):
    # Every gradient is exactly zero, so only weight decay moves the weights.
    return 0.0 * tf.reduce_sum(y_pred)


def _values(variables):
    return [np.array(v.numpy()) for v in variables]


def _latent(variable):
    return getattr(variable, "latent_variable", variable)


class TestConvKernels:
    def test_selects_stem_and_binary_conv_kernels_only(self, tiny_bnn):
        names = [v.name for v in optim.conv_kernels(tiny_bnn)]
        assert names == ["stem/kernel:0", "bconv0/kernel:0", "bconv1/kernel:0"]

    def test_nested_model(self, tiny_bnn):
        outer = tf.keras.Sequential([tiny_bnn])
        assert len(optim.conv_kernels(outer)) == 3


class TestKernelDecayStep:
    """One `apply_gradients` against the wrapped optimizer fed `g + lambda * w`."""

    @pytest.mark.parametrize("cls", DECAY_CLASSES)
    def test_coupled_equals_l2_added_to_the_gradient(self, cls):
        rng = np.random.default_rng(0)
        w0, b0 = rng.normal(size=(3, 3, 2, 4)), rng.normal(size=4)
        g_w, g_b = rng.normal(size=w0.shape), rng.normal(size=b0.shape)
        kernel, bias = tf.Variable(w0, dtype="float32"), tf.Variable(
            b0, dtype="float32"
        )
        opt = cls(learning_rate=0.1, kernel_decay=0.3)
        opt.set_decay_variables([kernel])
        for _ in range(3):
            opt.apply_gradients(
                [
                    (tf.constant(g_w, "float32"), kernel),
                    (tf.constant(g_b, "float32"), bias),
                ]
            )

        ref_kernel, ref_bias = tf.Variable(w0, dtype="float32"), tf.Variable(
            b0, dtype="float32"
        )
        base = BASE_CLASSES[cls](learning_rate=0.1)
        for _ in range(3):
            g = tf.constant(g_w, "float32") + 0.3 * ref_kernel
            base.apply_gradients(
                [(g, ref_kernel), (tf.constant(g_b, "float32"), ref_bias)]
            )
        np.testing.assert_allclose(
            kernel.numpy(), ref_kernel.numpy(), rtol=1e-6, atol=1e-7
        )
        np.testing.assert_array_equal(bias.numpy(), ref_bias.numpy())

    def test_decoupled_shrinks_after_the_update(self):
        w0 = np.array([[1.0, -2.0, 0.5]], "float32")
        g = tf.constant([[0.5, 0.5, -1.0]])
        kernel = tf.Variable(w0)
        opt = optim.KernelDecayAdam(learning_rate=0.1, kernel_decay=0.5, decoupled=True)
        opt.set_decay_variables([kernel])
        opt.apply_gradients([(g, kernel)])
        ref = tf.Variable(w0)
        tf.keras.optimizers.Adam(learning_rate=0.1).apply_gradients([(g, ref)])
        np.testing.assert_allclose(
            kernel.numpy(), ref.numpy() * (1 - 0.1 * 0.5), rtol=1e-6
        )

    def test_quantized_variable_decays_its_latent_weights(self):
        layer = lq.layers.QuantConv2D(
            2, 1, kernel_quantizer="ste_sign", kernel_constraint="weight_clip"
        )
        layer.build((None, 4, 4, 1))
        before = layer.kernel.latent_variable.numpy().copy()
        opt = optim.KernelDecaySGD(learning_rate=0.5, kernel_decay=0.2)
        opt.set_decay_variables([layer.kernel])
        opt.apply_gradients([(tf.zeros_like(before), layer.kernel)])
        np.testing.assert_allclose(
            layer.kernel.latent_variable.numpy(), before * 0.9, rtol=1e-6
        )

    def test_missing_selection_is_a_clear_error(self):
        var = tf.Variable([1.0])
        opt = optim.KernelDecayAdam(kernel_decay=1e-4)
        with pytest.raises(ValueError, match="set_decay_variables"):
            opt.apply_gradients([(tf.constant([1.0]), var)])


def _fit_with_decay_schedule(schedule, strategy=None, epochs=3):
    """Fits the tiny BNN on a zero loss; `schedule[e]` is the decay of epoch e."""
    x, y = np.ones((16, 8, 8, 1), "float32"), np.zeros(16, "int64")
    scope = strategy.scope() if strategy else contextlib.nullcontext()
    with scope:
        model = make_tiny_bnn()
        opt = optim.KernelDecaySGD(learning_rate=0.1, kernel_decay=schedule[0])
        opt.set_decay_variables(optim.conv_kernels(model))
        model.compile(opt, _zero_loss)
    snapshots = []

    class Recorder(tf.keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            optim.set_kernel_decay(self.model.optimizer, schedule[epoch])

        def on_epoch_end(self, epoch, logs=None):
            snapshots.append(_values(self.model.trainable_variables))

    before = _values(model.trainable_variables)
    model.fit(
        x,
        y,
        batch_size=8,
        epochs=epochs,
        shuffle=False,
        verbose=0,
        callbacks=[Recorder()],
    )
    return model, before, snapshots


class TestDecayInsideFit:
    def test_a_mid_fit_change_takes_effect(self, tiny_bnn):
        # Decay off in epoch 0, on (0.5) in epoch 1, off again in epoch 2; 2 steps
        # per epoch with lr 0.1, so an epoch of decay multiplies by 0.95**2.
        model, before, after = _fit_with_decay_schedule([0.0, 0.5, 0.0])
        decayed = {id(_latent(v)) for v in optim.conv_kernels(model)}
        for i, v in enumerate(model.trainable_variables):
            if id(_latent(v)) in decayed:
                np.testing.assert_array_equal(after[0][i], before[i])  # off: unchanged
                np.testing.assert_allclose(after[1][i], before[i] * 0.95**2, rtol=1e-5)
                np.testing.assert_array_equal(after[2][i], after[1][i])  # off again
                assert np.abs(after[1][i]).sum() < np.abs(before[i]).sum()
            else:  # BN, dense head, biases: no decay
                np.testing.assert_array_equal(after[2][i], before[i])

    def test_mirrored_strategy_decays_once_not_per_replica(self, mirrored_strategy):
        model, before, after = _fit_with_decay_schedule(
            [0.5], mirrored_strategy, epochs=1
        )
        kernel = model.get_layer("bconv0").kernel
        index = [i for i, v in enumerate(model.trainable_variables) if v is kernel][0]
        np.testing.assert_allclose(after[0][index], before[index] * 0.95**2, rtol=1e-5)

    def test_adam_decay_shrinks_conv_kernels_and_negative_decay_grows_them(self, images):
        norms = {}
        for decay in (-0.05, 0.0, 0.05):
            tf.keras.utils.set_random_seed(3)
            model = make_tiny_bnn()
            opt = optim.KernelDecayAdam(learning_rate=0.01, kernel_decay=decay)
            opt.set_decay_variables(optim.conv_kernels(model))
            model.compile(opt, "sparse_categorical_crossentropy")
            model.fit(*images, batch_size=16, epochs=2, shuffle=False, verbose=0)
            norms[decay] = sum(
                np.abs(_latent(v).numpy()).sum() for v in optim.conv_kernels(model)
            )
        assert norms[0.05] < 0.9 * norms[0.0]
        assert norms[-0.05] > 1.1 * norms[0.0]


class TestArgumentsAndConfig:
    @pytest.mark.parametrize("kwargs, error", BAD_OPTIMIZER_ARGS)
    def test_bad_arguments(self, kwargs, error):
        with pytest.raises(error, match=next(iter(kwargs))):
            optim.KernelDecayAdam(**kwargs)

    def test_set_decay_variables_rejects_non_variables(self):
        with pytest.raises(TypeError, match="variables"):
            optim.KernelDecayAdam().set_decay_variables([np.ones(3)])

    def test_set_kernel_decay_needs_a_decay_optimizer(self):
        with pytest.raises(TypeError, match="optimizer"):
            optim.set_kernel_decay(tf.keras.optimizers.Adam(), 0.0)

    @pytest.mark.parametrize("cls", DECAY_CLASSES)
    def test_config_round_trip_keeps_the_current_decay(self, cls):
        opt = cls(learning_rate=0.01, kernel_decay=5e-6, decoupled=True)
        opt.kernel_decay.assign(1e-3)
        config = opt.get_config()
        assert (
            config["kernel_decay"] == pytest.approx(1e-3)
            and "weight_decay" not in config
        )
        clone = cls.from_config(config)
        assert float(clone.kernel_decay.numpy()) == pytest.approx(1e-3)
        assert clone.decoupled and clone.get_config() == config

    def test_save_and_load_with_the_model(self, tiny_bnn, images, tmp_path):
        schedule = optim.LinearEpochDecay(1e-3, epochs=4, steps_per_epoch=2)
        opt = optim.KernelDecayAdam(learning_rate=schedule, kernel_decay=5e-6)
        opt.set_decay_variables(optim.conv_kernels(tiny_bnn))
        tiny_bnn.compile(opt, "sparse_categorical_crossentropy")
        tiny_bnn.fit(*images, batch_size=32, epochs=1, verbose=0)
        path = str(tmp_path / "model.keras")
        tiny_bnn.save(path)
        loaded = tf.keras.models.load_model(path)
        assert isinstance(loaded.optimizer, optim.KernelDecayAdam)
        assert float(loaded.optimizer.kernel_decay.numpy()) == pytest.approx(5e-6)
        assert loaded.optimizer.learning_rate is not None
        np.testing.assert_allclose(
            loaded.predict(images[0][:4], verbose=0),
            tiny_bnn.predict(images[0][:4], verbose=0),
            rtol=1e-5,
        )

    def test_checkpoint_saves_the_decay_variable(self, tmp_path):
        opt = optim.KernelDecayAdam(kernel_decay=5e-6)
        path = tf.train.Checkpoint(optimizer=opt).save(str(tmp_path / "ckpt"))
        opt.kernel_decay.assign(0.0)
        tf.train.Checkpoint(optimizer=opt).restore(path)
        assert float(opt.kernel_decay.numpy()) == pytest.approx(5e-6)


class TestResetOptimizerState:
    def test_reset_adam_equals_a_fresh_adam(self):
        var = tf.Variable([1.0, -1.0])
        opt = tf.keras.optimizers.Adam(0.1)
        for _ in range(3):
            opt.apply_gradients([(tf.constant([1.0, 2.0]), var)])
        optim.reset_optimizer_state(opt)
        start = var.numpy().copy()
        opt.apply_gradients([(tf.constant([0.5, -0.5]), var)])
        ref = tf.Variable(start)
        tf.keras.optimizers.Adam(0.1).apply_gradients([(tf.constant([0.5, -0.5]), ref)])
        np.testing.assert_allclose(var.numpy(), ref.numpy(), rtol=1e-6)

    def test_kernel_decay_is_not_optimizer_state(self):
        opt = optim.KernelDecayAdam(kernel_decay=5e-6)
        optim.reset_optimizer_state(opt)
        assert float(opt.kernel_decay.numpy()) == pytest.approx(5e-6)

    def test_refuses_ema_and_legacy_optimizers(self):
        with pytest.raises(ValueError, match="use_ema"):
            optim.reset_optimizer_state(tf.keras.optimizers.Adam(use_ema=True))
        with pytest.raises(TypeError, match="optimizer"):
            optim.reset_optimizer_state(tf.keras.optimizers.legacy.Adam())


class TestLinearEpochDecay:
    def test_official_formula_per_epoch(self):
        schedule = optim.LinearEpochDecay(5e-4, epochs=5, steps_per_epoch=3)
        got = [float(schedule(step)) for step in range(0, 18, 3)]
        want = [5e-4 * (1 - (e + 1) / 5) for e in range(5)] + [0.0]
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-12)

    def test_config_round_trip_and_registration(self):
        schedule = optim.LinearEpochDecay(1e-3, epochs=3, steps_per_epoch=7)
        config = tf.keras.optimizers.schedules.serialize(schedule)
        clone = tf.keras.optimizers.schedules.deserialize(config)
        assert isinstance(clone, optim.LinearEpochDecay)
        assert clone.get_config() == {
            "initial_learning_rate": 1e-3,
            "epochs": 3,
            "steps_per_epoch": 7,
        }

    @pytest.mark.parametrize("kwargs", BAD_SCHEDULE_ARGS)
    def test_bad_arguments(self, kwargs):
        with pytest.raises(ValueError, match="must be a positive"):
            optim.LinearEpochDecay(**kwargs)


def test_switchable_kernels_are_decayed_in_stage_one():
    inputs = tf.keras.Input((4, 4, 1))
    conv = lq.layers.QuantConv2D(
        2, 1, kernel_quantizer=SwitchableQuantizer("scaled_sign", binarize=False)
    )
    model = tf.keras.Model(inputs, conv(inputs))
    assert [v.name for v in optim.conv_kernels(model)] == [conv.kernel.name]
