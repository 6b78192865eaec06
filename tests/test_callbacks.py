"""Tests of bnn_keras.callbacks against numpy oracles, inside plain `model.fit`."""

import glob
import logging

import larq as lq
import numpy as np
import pytest
import tensorflow as tf

from bnn_keras import callbacks, optim
from bnn_keras.models import ReActNetA
from bnn_keras.quantizers import SwitchableQuantizer, set_kernel_binarization
from conftest import make_images, make_tiny_bnn

BATCH = 16  # 64 images: 4 iterations per epoch
# (compile kwargs, fit kwargs, iterations per epoch)
FIT_CONFIGS = {
    "plain": ({}, {}, 4),
    "validation": ({}, {"validation_data": make_images(n=32, seed=1)}, 4),
    "steps_per_execution": ({"steps_per_execution": 2}, {}, 2),
}
BAD_STAGE_SWITCH_ARGS = [
    ({"epoch": 0}, ValueError, "epoch"),
    ({"epoch": 2.0}, ValueError, "epoch"),
    ({"epoch": 1, "kernel_decay": float("inf")}, ValueError, "kernel_decay"),
    ({"epoch": 1, "reset_optimizer": "yes"}, TypeError, "reset_optimizer"),
    ({"epoch": 1, "listeners": [object()]}, TypeError, "listeners"),
]
BAD_CALLBACK_ARGS = [
    (lambda: callbacks.FlipFlopRatio(per_layer=1), TypeError),
    (lambda: callbacks.FlipFlopRatio(log_dir=3), TypeError),
    (lambda: callbacks.C2IRatio(reference="init"), ValueError),
    (lambda: callbacks.ActivationSaturation(None), TypeError),
    (lambda: callbacks.ActivationSaturation(np.ones(3), threshold=0), ValueError),
    (lambda: callbacks.LatentWeightHistogram(), ValueError),
    (lambda: callbacks.LatentWeightHistogram("d", every_n_epochs=0), ValueError),
]
KERNEL_QUANTIZERS = [  # (kernel_quantizer, binary in stage 2)
    ("ste_sign", True),
    ("scaled_sign", True),
    (SwitchableQuantizer("scaled_sign", binarize=False), True),
    (None, False),
    (lq.quantizers.DoReFa(k_bit=2), False),
]


def switchable_bnn():
    return make_tiny_bnn(
        kernel_quantizer=SwitchableQuantizer("scaled_sign", binarize=False)
    )


class SignSnapshots(tf.keras.callbacks.Callback):
    """Test-only: numpy signs of the latent binary kernels at every batch hook."""

    def on_train_begin(self, logs=None):
        self.layers = callbacks.binary_layers(self.model)
        self.start = self.signs()
        self.epochs = []

    def signs(self):
        return [callbacks.latent_kernel(layer).numpy() >= 0 for layer in self.layers]

    def on_epoch_begin(self, epoch, logs=None):
        self.epochs.append({"begin": self.signs(), "steps": []})

    def on_train_batch_end(self, batch, logs=None):
        self.epochs[-1]["steps"].append(self.signs())


def oracle_flips(snapshots):
    """Per epoch, per layer: sign flips summed over the epoch's iterations."""
    previous, per_epoch = snapshots.start, []
    for epoch in snapshots.epochs:
        counts = np.zeros(len(previous), np.int64)
        for signs in epoch["steps"]:
            counts += [np.count_nonzero(a != b) for a, b in zip(signs, previous)]
            previous = signs
        per_epoch.append(counts)
    return per_epoch


def oracle_changed(reference, signs):
    return np.array(
        [np.count_nonzero(a != b) for a, b in zip(signs, reference)], np.int64
    )


def compile_adam(model, lr=0.05, **kwargs):
    model.compile(
        tf.keras.optimizers.Adam(lr), "sparse_categorical_crossentropy", **kwargs
    )


def fit(model, images, cbs, epochs=2, **kwargs):
    return model.fit(
        *images,
        batch_size=BATCH,
        epochs=epochs,
        shuffle=False,
        verbose=0,
        callbacks=cbs,
        **kwargs,
    )


def check_against_oracle(history, snapshots, ff, c2i, iterations):
    sizes = np.array([ff.sizes[name] for name in ff.layer_names])
    total = sizes.sum()
    flips = oracle_flips(snapshots)
    for epoch, counts in enumerate(flips):
        assert len(snapshots.epochs[epoch]["steps"]) == iterations
        # Equal counts, not approximately: the logged ratio times N*T is the count.
        assert history["ff_ratio"][epoch] * total * iterations == pytest.approx(
            counts.sum(), abs=1e-6
        )
        assert history["ff_ratio"][epoch] == counts.sum() / (total * iterations)
        for name, count, size in zip(ff.layer_names, counts, sizes):
            assert history[f"ff_ratio/{name}"][epoch] == count / (size * iterations)
        changed = oracle_changed(snapshots.start, snapshots.epochs[epoch]["steps"][-1])
        assert history["changed_from_init"][epoch] == changed.sum() / total
        assert history["c2i"][epoch] == 1 - 2 * (changed.sum() / total)
    assert ff.epoch_flips == dict(zip(ff.layer_names, flips[-1].tolist()))
    assert ff.epoch_iterations == iterations
    assert c2i.epoch_changed == dict(zip(c2i.layer_names, changed.tolist()))
    assert sum(f.sum() for f in flips) > 0 and changed.sum() > 0  # the test can fail


class TestOracle:
    @pytest.mark.parametrize("config", sorted(FIT_CONFIGS))
    def test_logged_values_equal_numpy_snapshot_counts(self, config, tiny_bnn, images):
        compile_kwargs, fit_kwargs, iterations = FIT_CONFIGS[config]
        compile_adam(tiny_bnn, **compile_kwargs)
        ff, c2i, snapshots = (
            callbacks.FlipFlopRatio(),
            callbacks.C2IRatio(),
            SignSnapshots(),
        )
        history = fit(tiny_bnn, images, [ff, c2i, snapshots], **fit_kwargs).history
        check_against_oracle(history, snapshots, ff, c2i, iterations)
        if "validation_data" in fit_kwargs:
            assert "val_loss" in history and "val_ff_ratio" not in history

    def test_mirrored_strategy(self, mirrored_strategy, images, tmp_path):
        with mirrored_strategy.scope():
            model = make_tiny_bnn()
            compile_adam(model)
        ff, c2i, snapshots = (
            callbacks.FlipFlopRatio(),
            callbacks.C2IRatio(),
            SignSnapshots(),
        )
        monitors = [
            callbacks.ActivationSaturation(images[0][:8]),
            callbacks.LatentWeightHistogram(png_path=str(tmp_path / "w.png")),
        ]
        history = fit(model, images, [ff, c2i, snapshots, *monitors], epochs=1).history
        check_against_oracle(history, snapshots, ff, c2i, iterations=4)
        assert 0 < history["saturation"][0] < 1 and (tmp_path / "w.png").exists()

    def test_one_instance_serves_two_fits(self, tiny_bnn, images):
        compile_adam(tiny_bnn)
        ff, c2i = callbacks.FlipFlopRatio(), callbacks.C2IRatio()
        first = SignSnapshots()
        fit(tiny_bnn, images, [ff, c2i, first], epochs=1)
        second = SignSnapshots()
        history = fit(tiny_bnn, images, [ff, c2i, second], epochs=1).history
        # FF restarts from the second fit's start; C2I keeps the first fit's reference.
        total = sum(ff.sizes.values())
        assert history["ff_ratio"][0] == oracle_flips(second)[0].sum() / (total * 4)
        changed = oracle_changed(first.start, second.epochs[0]["steps"][-1])
        assert history["changed_from_init"][0] == changed.sum() / total
        # A different model: the state is rebuilt for its layers.
        other = tf.keras.Sequential(
            [
                tf.keras.Input((8, 8, 1)),
                lq.layers.QuantConv2D(
                    2,
                    3,
                    kernel_quantizer="ste_sign",
                    kernel_constraint="weight_clip",
                    name="solo",
                ),
                tf.keras.layers.Flatten(),
                tf.keras.layers.Dense(4, activation="softmax"),
            ]
        )
        compile_adam(other)
        fit(other, images, [ff, c2i], epochs=1)
        assert ff.layer_names == c2i.layer_names == ["solo"]

    def test_per_iteration_series_in_tensorboard(self, tiny_bnn, images, tmp_path):
        compile_adam(tiny_bnn)
        ff, snapshots = callbacks.FlipFlopRatio(log_dir=str(tmp_path)), SignSnapshots()
        fit(tiny_bnn, images, [ff, snapshots])
        values = {}
        for path in glob.glob(str(tmp_path / "events.out.tfevents.*")):
            for event in tf.compat.v1.train.summary_iterator(path):
                for value in event.summary.value:
                    if value.tag == "ff_ratio_per_iteration":
                        values[event.step] = float(tf.make_ndarray(value.tensor))
        total = sum(ff.sizes.values())
        previous, want = snapshots.start, []
        for epoch in snapshots.epochs:
            for signs in epoch["steps"]:
                want.append(
                    sum(np.count_nonzero(a != b) for a, b in zip(signs, previous))
                    / total
                )
                previous = signs
        assert sorted(values) == list(range(1, 9))
        np.testing.assert_allclose([values[s] for s in sorted(values)], want, rtol=1e-6)

    def test_values_reach_csv_logger(self, tiny_bnn, images, tmp_path):
        compile_adam(tiny_bnn)
        path = tmp_path / "log.csv"
        cbs = [
            callbacks.FlipFlopRatio(per_layer=False),
            callbacks.C2IRatio(per_layer=False),
            callbacks.ActivationSaturation(images[0][:8], per_layer=False),
            tf.keras.callbacks.CSVLogger(str(path)),
        ]
        fit(tiny_bnn, images, cbs, epochs=1)
        header = path.read_text().splitlines()[0].split(",")
        assert {"ff_ratio", "c2i", "changed_from_init", "saturation"} <= set(header)


class TestC2IReference:
    def test_checkpoint_and_resume_restore_the_reference(self, images, tmp_path):
        model = make_tiny_bnn()
        compile_adam(model)
        c2i, snapshots = callbacks.C2IRatio(), SignSnapshots()
        fit(model, images, [c2i, snapshots], epochs=1)
        checkpoint = tf.train.Checkpoint(
            model=model, optimizer=model.optimizer, c2i=c2i.checkpoint_state()
        )
        path = checkpoint.save(str(tmp_path / "ckpt"))

        tf.keras.utils.set_random_seed(99)  # a different initialisation
        resumed = make_tiny_bnn()
        compile_adam(resumed)
        resumed_c2i, resumed_snapshots = callbacks.C2IRatio(), SignSnapshots()
        resumed_c2i.set_model(resumed)
        tf.train.Checkpoint(
            model=resumed,
            optimizer=resumed.optimizer,
            c2i=resumed_c2i.checkpoint_state(),
        ).restore(path).assert_existing_objects_matched()
        assert resumed_c2i.has_reference
        history = fit(
            resumed, images, [resumed_c2i, resumed_snapshots], epochs=2, initial_epoch=1
        ).history
        final = resumed_snapshots.epochs[-1]["steps"][-1]
        total = sum(resumed_c2i.sizes.values())
        want = oracle_changed(snapshots.start, final).sum() / total
        assert history["changed_from_init"] == [want]
        assert want != oracle_changed(resumed_snapshots.start, final).sum() / total

    def test_a_wrapper_around_the_same_kernels_keeps_the_reference(
        self, tiny_bnn, images
    ):
        # E.g. a distillation model that trains `tiny_bnn`: fit calls set_model with
        # the wrapper, and the reference (maybe restored) must not be dropped.
        c2i, snapshots = callbacks.C2IRatio(), SignSnapshots()
        c2i.set_model(tiny_bnn)
        state = c2i.checkpoint_state()
        c2i.reset_reference()
        layers = callbacks.binary_layers(tiny_bnn)
        reference = [callbacks.latent_kernel(layer).numpy() >= 0 for layer in layers]
        kernel = callbacks.latent_kernel(layers[0])
        kernel.assign(-kernel)  # a reference taken now would differ
        wrapper = tf.keras.Sequential([tiny_bnn])
        compile_adam(wrapper)
        history = fit(wrapper, images, [c2i, snapshots], epochs=1).history
        assert c2i.checkpoint_state() is state
        changed = oracle_changed(reference, snapshots.epochs[0]["steps"][-1])
        assert history["changed_from_init"] == [changed.sum() / sum(c2i.sizes.values())]

    def test_reset_reference_and_run_mode(self, tiny_bnn, images):
        compile_adam(tiny_bnn)
        run, stage = callbacks.C2IRatio(reference="run"), callbacks.C2IRatio()
        fit(tiny_bnn, images, [run, stage], epochs=1)
        run.on_stage_begin(2, 1)
        stage.on_stage_begin(2, 1)
        logs_run, logs_stage = {}, {}
        run.on_epoch_end(1, logs_run)
        stage.on_epoch_end(1, logs_stage)
        assert logs_stage["changed_from_init"] == 0.0 and logs_stage["c2i"] == 1.0
        assert logs_run["changed_from_init"] > 0.0

    def test_checkpoint_state_needs_a_model(self):
        with pytest.raises(ValueError, match="no model"):
            callbacks.C2IRatio().checkpoint_state()


def stage_optimizer(model, decay, steps_per_epoch=4, epochs=2):
    schedule = optim.LinearEpochDecay(
        0.02, epochs=epochs, steps_per_epoch=steps_per_epoch
    )
    opt = optim.KernelDecayAdam(learning_rate=schedule, kernel_decay=decay)
    opt.set_decay_variables(optim.conv_kernels(model))
    return opt


class TestStageSwitch:
    def test_one_fit_equals_two_separate_fits(self, images):
        one = switchable_bnn()
        one.compile(stage_optimizer(one, 0.05), "sparse_categorical_crossentropy")
        history = fit(one, images, [callbacks.StageSwitch(2)], epochs=4).history

        tf.keras.utils.set_random_seed(1234)  # the fixture's seed: the same init
        two = switchable_bnn()
        two.compile(stage_optimizer(two, 0.05), "sparse_categorical_crossentropy")
        fit(two, images, [], epochs=2)
        set_kernel_binarization(two, True)
        two.compile(stage_optimizer(two, 0.0), "sparse_categorical_crossentropy")
        fit(two, images, [], epochs=2)

        assert history["stage"] == [1, 1, 2, 2]
        assert int(one.optimizer.iterations) == int(two.optimizer.iterations) == 8
        # Same ops on the same data; only float re-association can differ.
        for a, b in zip(one.get_weights(), two.get_weights()):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
        # The switch mattered: stage-2 training moved the weights with binary kernels.
        assert not np.allclose(one.get_layer("bconv0").kernel.numpy(), 0)

    def test_switch_effects_logs_and_listeners(self, images, caplog):
        model = switchable_bnn()
        model.compile(stage_optimizer(model, 5e-6), "sparse_categorical_crossentropy")
        ff, c2i, snapshots = (
            callbacks.FlipFlopRatio(),
            callbacks.C2IRatio(),
            SignSnapshots(),
        )
        switch = callbacks.StageSwitch(1, listeners=[ff, c2i])
        with caplog.at_level(logging.INFO, logger="bnn_keras.callbacks.stage"):
            history = fit(model, images, [switch, ff, c2i, snapshots], epochs=2).history
        assert (
            "StageSwitch at epoch 1" in caplog.text
            and "kernel_decay 5e-06 -> 0" in caplog.text
        )
        assert float(model.optimizer.kernel_decay.numpy()) == 0.0
        assert all(
            layer.kernel_quantizer.binarize for layer in callbacks.binary_layers(model)
        )
        assert int(model.optimizer.iterations) == 4
        total = sum(c2i.sizes.values())
        stage_start = snapshots.epochs[1]["begin"]
        changed = oracle_changed(stage_start, snapshots.epochs[1]["steps"][-1]).sum()
        assert history["changed_from_init"][1] == changed / total
        assert history["ff_ratio"][1] == oracle_flips(snapshots)[1].sum() / (total * 4)

    @pytest.mark.parametrize("kwargs, error, match", BAD_STAGE_SWITCH_ARGS)
    def test_bad_arguments(self, kwargs, error, match):
        with pytest.raises(error, match=match):
            callbacks.StageSwitch(**kwargs)

    def test_epoch_beyond_the_run(self, images):
        model = switchable_bnn()
        compile_adam(model)
        with pytest.raises(ValueError, match="below fit's epochs=2"):
            fit(model, images, [callbacks.StageSwitch(2)], epochs=2)

    def test_model_without_switchable_kernels(self, tiny_bnn, images):
        compile_adam(tiny_bnn)
        with pytest.raises(ValueError, match="SwitchableQuantizer"):
            fit(tiny_bnn, images, [callbacks.StageSwitch(1)])

    def test_nonzero_decay_needs_a_decay_optimizer(self, images):
        model = switchable_bnn()
        compile_adam(model)
        with pytest.raises(ValueError, match="kernel_decay"):
            fit(model, images, [callbacks.StageSwitch(1, kernel_decay=1e-6)])


class UnbuiltBNN(tf.keras.Model):
    def __init__(self):
        super().__init__()
        self.conv = lq.layers.QuantConv2D(
            2, 3, kernel_quantizer="ste_sign", kernel_constraint="weight_clip"
        )
        self.head = tf.keras.layers.Dense(4, activation="softmax")

    def call(self, x):
        return self.head(tf.keras.layers.Flatten()(self.conv(x)))


class TestBadModels:
    TRACKERS = {
        "ff": callbacks.FlipFlopRatio,
        "c2i": callbacks.C2IRatio,
        "histogram": lambda: callbacks.LatentWeightHistogram(png_path="unused.png"),
    }

    @pytest.mark.parametrize("tracker", sorted(TRACKERS))
    def test_model_without_binary_conv(self, tracker, images):
        inputs = tf.keras.Input((8, 8, 1))
        x = tf.keras.layers.Conv2D(2, 3)(inputs)
        model = tf.keras.Model(
            inputs, tf.keras.layers.Dense(4)(tf.keras.layers.Flatten()(x))
        )
        model.compile("adam", "mse")
        with pytest.raises(ValueError, match="at least one binary conv layer"):
            fit(model, images, [self.TRACKERS[tracker]()])

    @pytest.mark.parametrize("tracker", sorted(TRACKERS))
    def test_unbuilt_model(self, tracker, images):
        model = UnbuiltBNN()
        compile_adam(model)
        with pytest.raises(ValueError, match="unbuilt model"):
            fit(model, images, [self.TRACKERS[tracker]()])

    def test_saturation_needs_sign_inputs(self, images):
        model = tf.keras.Sequential(
            [
                tf.keras.Input((8, 8, 1)),
                lq.layers.QuantConv2D(
                    2, 3, kernel_quantizer="ste_sign", kernel_constraint="weight_clip"
                ),
            ]
        )
        model.compile("adam", "mse")
        cb = callbacks.ActivationSaturation(images[0][:4])
        cb.set_model(model)
        with pytest.raises(ValueError, match="1-bit input_quantizer"):
            cb.on_train_begin()

    @pytest.mark.parametrize("make, error", BAD_CALLBACK_ARGS)
    def test_bad_arguments(self, make, error):
        with pytest.raises(error, match="must be"):
            make()


class TestSelection:
    @pytest.mark.parametrize("quantizer, binary", KERNEL_QUANTIZERS)
    def test_is_binary_layer(self, quantizer, binary):
        layer = lq.layers.QuantConv2D(2, 1, kernel_quantizer=quantizer)
        assert callbacks.is_binary_layer(layer) is binary


class TestSaturation:
    def test_matches_numpy_on_the_sign_inputs(self, tiny_bnn, images):
        compile_adam(tiny_bnn)
        x = images[0][:16]
        history = fit(
            tiny_bnn, images, [callbacks.ActivationSaturation(x)], epochs=1
        ).history
        h0 = tiny_bnn.get_layer("stem_bn")(
            tiny_bnn.get_layer("stem")(x), training=False
        )
        h1 = tiny_bnn.get_layer("bn0")(tiny_bnn.get_layer("bconv0")(h0), training=False)
        counts = [np.count_nonzero(np.abs(h.numpy()) > 1) for h in (h0, h1)]
        sizes = [h.numpy().size for h in (h0, h1)]
        assert history["saturation/bconv0"] == [counts[0] / sizes[0]]
        assert history["saturation/bconv1"] == [counts[1] / sizes[1]]
        assert history["saturation"] == [sum(counts) / sum(sizes)]
        assert 0 < history["saturation"][0] < 1

    def test_probes_the_given_model_when_fitting_a_wrapper(self, tiny_bnn, images):
        # A subclassed wrapper (as a distillation trainer is) has no layer graph to
        # probe; `model=` names the functional model inside it.
        class Wrapper(tf.keras.Model):
            def __init__(self, inner):
                super().__init__()
                self.inner = inner

            def call(self, x, training=None):
                return self.inner(x, training=training)

        x = images[0][:16]
        wrapper = Wrapper(tiny_bnn)
        compile_adam(wrapper)
        direct = callbacks.ActivationSaturation(x, per_layer=False, model=tiny_bnn)
        history = fit(wrapper, images, [direct], epochs=1).history
        check = callbacks.ActivationSaturation(x, per_layer=False)
        check.set_model(tiny_bnn)
        check.on_train_begin()
        logs = {}
        check.on_epoch_end(0, logs)
        assert history["saturation"] == [logs["saturation"]]
        with pytest.raises(TypeError, match="model"):
            callbacks.ActivationSaturation(x, model="tiny")

    def test_reactnet_stage1(self):
        # Switchable stage-1 kernels count (the stem does not), and the sign inputs
        # are the outputs of the LearnableBias layers in front of the binary convs.
        model = ReActNetA(
            input_shape=(32, 32, 3), num_classes=10, stage=1, width_multiplier=0.25
        )
        names = [layer.name for layer in callbacks.binary_layers(model)]
        assert len(names) == 31 and "stem_conv" not in names
        assert names == [layer.name for layer in callbacks.sign_input_layers(model)]
        x = np.random.default_rng(0).normal(size=(2, 32, 32, 3)).astype("float32") * 3
        cb = callbacks.ActivationSaturation(x)
        cb.set_model(model)
        cb.on_train_begin()
        logs = {}
        cb.on_epoch_end(0, logs)
        assert sorted(k for k in logs if k != "saturation") == sorted(
            f"saturation/{n}" for n in names
        )
        bias = tf.keras.Model(model.inputs, model.get_layer("block1_rsign1").output)(
            x
        ).numpy()
        assert (
            logs["saturation/block1_conv3x3"]
            == np.count_nonzero(np.abs(bias) > 1) / bias.size
        )


class TestLatentWeightHistogram:
    def test_tensorboard_histograms_and_png(self, tiny_bnn, images, tmp_path):
        compile_adam(tiny_bnn)
        png = tmp_path / "plots" / "latent.png"
        cb = callbacks.LatentWeightHistogram(str(tmp_path / "tb"), png_path=str(png))
        fit(tiny_bnn, images, [cb])
        tags = set()
        for path in glob.glob(str(tmp_path / "tb" / "events.out.tfevents.*")):
            for event in tf.compat.v1.train.summary_iterator(path):
                tags |= {(v.tag, event.step) for v in event.summary.value}
        names = ["latent_kernel/bconv0", "latent_kernel/bconv1", "latent_kernel/all"]
        assert {(name, step) for name in names for step in (0, 1)} <= tags
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    def test_plot_refuses_models_without_binary_layers(self, tmp_path):
        model = tf.keras.Sequential([tf.keras.Input((3,)), tf.keras.layers.Dense(2)])
        with pytest.raises(ValueError, match="binary conv layer"):
            callbacks.plot_latent_distribution(model, str(tmp_path / "x.png"))
