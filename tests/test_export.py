"""Tests of the export to Larq Compute Engine TFLite (`bnn_keras.export` and its helpers).

Conversion dominates the time (on two idle cores: about 1 s for a tiny model,
5 s for ReActNet-A at 32 px, 20 s at 224 px), so every test converts at most
once and everything but the one acceptance test runs at 32 px or less. The file
takes about a minute on two idle cores, the 224 px test half of it.

The run directory is built here, with the layout the trainer writes, from an
untrained ReActNet-A (binary behaviour does not need trained weights) and a tiny
image folder read through `bnn_keras.data` ("folder:" datasets), so
verification and `--evaluate` read real validation images with no network.

Tolerance in these tests: untrained networks have nearly tied classes, so a
rounding difference before a sign can change a top-1 decision more often than
in a trained one; the tests that compare Keras with the interpreter on such a
network ask for 90% agreement, which a broken export (about 1 / num_classes,
here 50%) cannot reach.
"""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import larq as lq
import numpy as np
import pytest
import tensorflow as tf
from absl import flags

from bnn_keras import data, export, models
from bnn_keras.export_files import write_atomically
from bnn_keras.export_source import load_source
from bnn_keras.inference_graph import inference_model, likely_causes
from bnn_keras.models.zoo import make_switchable
from bnn_keras.quantizers import SwitchableQuantizer, set_kernel_binarization
from bnn_keras.tflite_inspect import inspect_flatbuffer
from bnn_keras.tflite_verify import verify

REPO = Path(__file__).resolve().parents[1]
SIZE = 32
CLASSES = ("cat", "dog")
TEST_AGREEMENT = 0.9  # untrained networks: see the module docstring


# --- fixtures ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory):
    """A "folder:" dataset: 2 classes, 4 train and 8 validation PNGs each, 32 px RGB."""
    root = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    for split, count in (("train", 4), ("validation", 8)):
        for label, name in enumerate(CLASSES):
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(count):
                # Learnable enough for a label to mean something: brightness by class.
                pixels = rng.integers(0, 128, (SIZE, SIZE, 3)) + 100 * label
                png = tf.io.encode_png(tf.constant(pixels.clip(0, 255), tf.uint8))
                (folder / f"{i}.png").write_bytes(png.numpy())
    return f"folder:{root}"


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, image_folder):
    """A two-stage run as the trainer writes it: stage1/ and stage2/ of one ReActNet-A."""
    tf.keras.utils.set_random_seed(7)
    run = tmp_path_factory.mktemp("run")
    kwargs = dict(input_shape=(SIZE, SIZE, 3), num_classes=2, width_multiplier=0.25)
    model = models.get("reactnet_a", stage=1, **kwargs)
    _randomize_batch_norm(model)
    info = data.get_info(image_folder, image_size=SIZE)
    (run / "dataset.json").write_text(json.dumps(info.to_json()))
    (run / "run.json").write_text(
        json.dumps({"model": "reactnet_a", "model_kwargs": kwargs, "stages": [1, 2]})
    )
    for stage in (1, 2):
        set_kernel_binarization(model, stage == 2)
        (run / f"stage{stage}").mkdir()
        model.save(run / f"stage{stage}" / "model.keras")
        result = {
            "val_top1": 0.5,
            "val_top5": 1.0,
            "ff_ratio_mean": 0.01,
            "c2i": 0.1,
            "wall_time_s": 1.0,
            "epochs": 1,
        }
        (run / f"stage{stage}" / "result.json").write_text(json.dumps(result))
    return run


def _randomize_batch_norm(model):
    # Trained statistics rather than the defaults (0, 1), so that folding BN into the
    # binary convolution's output is exercised with real numbers.
    rng = np.random.default_rng(1)
    for layer in model.layers:
        if isinstance(layer, tf.keras.layers.BatchNormalization):
            gamma, beta, mean, var = layer.get_weights()
            layer.set_weights(
                [
                    rng.uniform(0.5, 1.5, gamma.shape),
                    rng.normal(0, 0.2, beta.shape),
                    rng.normal(0, 0.5, mean.shape),
                    rng.uniform(0.5, 2.0, var.shape),
                ]
            )


def user_bnn(
    *,
    padding="same",
    input_quantizer="ste_sign",
    kernel_quantizer="ste_sign",
    head_activation="softmax",
    name="user_bnn",
):
    """A user's own larq model, not ReActNet: a float stem, two binary convs, a head."""
    inputs = tf.keras.Input((8, 8, 1))
    x = tf.keras.layers.Conv2D(8, 3, padding="same", use_bias=False, name="stem")(inputs)
    x = tf.keras.layers.BatchNormalization(name="stem_bn")(x)
    for i, quantizer in enumerate(("ste_sign", input_quantizer)):
        x = lq.layers.QuantConv2D(
            8,
            3,
            padding=padding,
            pad_values=1.0 if padding == "same" else 0.0,
            use_bias=False,
            input_quantizer=quantizer,
            kernel_quantizer=kernel_quantizer,
            kernel_constraint="weight_clip",
            name=f"bconv{i}",
        )(x)
        x = tf.keras.layers.BatchNormalization(name=f"bn{i}")(x)
    x = tf.keras.layers.GlobalAveragePooling2D()(x)
    outputs = tf.keras.layers.Dense(4, activation=head_activation, name="head")(x)
    return tf.keras.Model(inputs, outputs, name=name)


def run_cli(args):
    """Runs `python -m bnn_keras.export` in-process on its own flags."""
    fv = flags.FlagValues()
    export.define_flags(fv)
    argv = fv(["bnn_keras.export", *args])
    export.main(argv, flag_values=fv)


# --- runs of the trainer ----------------------------------------------------------------------


def test_cli_exports_newest_stage_of_run_with_metadata_and_evaluation(run_dir, tmp_path, capsys):
    output = tmp_path / "model.tflite"
    run_cli(
        [
            f"--model_dir={run_dir}",
            f"--output={output}",
            "--num_verify=12",
            "--evaluate",
            f"--min_agreement={TEST_AGREEMENT}",
        ]
    )

    meta = json.loads((tmp_path / "model.json").read_text())
    dataset = json.loads((run_dir / "dataset.json").read_text())
    assert meta["op_counts"]["LceBconv2d"] == 31 and meta["op_counts"]["CONV_2D"] == 1
    assert meta["binary_layers"]["expected_lce_bconv2d"] == 31
    assert meta["input"]["shape"] == [1, SIZE, SIZE, 3] and meta["input"]["dtype"] == "float32"
    assert meta["normalization"]["mean"] == dataset["mean"]
    assert meta["normalization"]["std"] == dataset["std"]
    assert meta["label_names"] == list(CLASSES)
    assert meta["output"]["values"] == "probabilities"
    assert meta["file_size_bytes"] == output.stat().st_size
    assert meta["source"]["kind"] == "run" and meta["source"]["stage"] == 2
    assert meta["source"]["metrics"]["val_top1"] == 0.5
    assert meta["source"]["run"]["model"] == "reactnet_a"
    assert meta["verification"]["inputs"] == "validation"
    assert meta["verification"]["num_inputs"] == 12
    assert meta["verification"]["top1_agreement"] >= TEST_AGREEMENT
    evaluation = meta["evaluation"]
    assert evaluation["num_examples"] == 2 * 8
    assert abs(evaluation["top1"] - evaluation["keras_top1"]) <= export.DEFAULT_MAX_TOP1_DROP
    assert "LceBconv2d" in capsys.readouterr().out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.json", "model.tflite"]


def test_run_without_stage2_is_refused_with_advice_to_run_stage2(tmp_path):
    run = tmp_path / "run"
    (run / "stage1").mkdir(parents=True)
    make_switchable(user_bnn(), binarize=False).save(run / "stage1" / "model.keras")
    with pytest.raises(ValueError, match="Run stage 2") as info:
        export.export(run, tmp_path / "model.tflite")
    assert "allow_float_weights" in str(info.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


def test_stage1_exports_float_weights_when_asked(images):
    model = make_switchable(user_bnn(), binarize=False)
    with pytest.raises(ValueError, match="stage-1"):
        export.convert(model)
    flatbuffer = export.convert(model, allow_float_weights=True)
    counts = inspect_flatbuffer(flatbuffer).op_counts
    assert "LceBconv2d" not in counts and counts["CONV_2D"] == 3
    assert verify(flatbuffer, model, images[0]).top1_agreement >= 0.99


def test_switched_on_model_is_rebuilt_static_with_the_same_weights(images):
    trained = make_switchable(user_bnn(), binarize=True)
    static, float_layers = inference_model(trained)
    assert float_layers == []
    assert not any(
        isinstance(getattr(layer, "kernel_quantizer", None), SwitchableQuantizer)
        for layer in static.layers
    )
    x = images[0][:8]
    np.testing.assert_allclose(static(x, training=False), trained(x, training=False), atol=1e-6)


# --- a user's own larq model ------------------------------------------------------------------

USER_PADDINGS = ("same", "valid")


@pytest.mark.parametrize("padding", USER_PADDINGS)
def test_user_larq_model_exports_through_the_same_api(padding, images, tmp_path):
    model = user_bnn(padding=padding)
    result = export.export(model, tmp_path / "user.tflite", num_verify=32)
    meta = result.metadata
    assert meta["op_counts"]["LceBconv2d"] == 2 and meta["op_counts"]["CONV_2D"] == 1
    assert meta["source"]["kind"] == "model" and meta["normalization"] is None
    assert meta["verification"]["inputs"] == "random"
    assert meta["verification"]["top1_agreement"] >= 0.99
    flatbuffer = (tmp_path / "user.tflite").read_bytes()
    assert verify(flatbuffer, model, images[0]).top1_agreement >= 0.99


def test_model_without_binary_layer_is_refused(tmp_path):
    inputs = tf.keras.Input((8, 8, 1))
    x = tf.keras.layers.Conv2D(4, 3)(inputs)
    x = tf.keras.layers.GlobalAveragePooling2D()(x)
    model = tf.keras.Model(inputs, tf.keras.layers.Dense(2)(x), name="float_cnn")
    with pytest.raises(ValueError, match="at least one binary layer.*'float_cnn'"):
        export.export(model, tmp_path / "float.tflite")
    assert list(tmp_path.iterdir()) == []


UNCONVERTIBLE = [
    # (input quantizer of bconv1, words the error must contain)
    ("ste_heaviside", "input quantizer SteHeaviside is not sign-based"),
    (None, "input is not binarized"),
]


@pytest.mark.parametrize("input_quantizer, cause", UNCONVERTIBLE)
def test_binary_layer_that_stays_float_is_named_with_its_cause(input_quantizer, cause, tmp_path):
    model = user_bnn(input_quantizer=input_quantizer)
    with pytest.raises(ValueError, match="1 LceBconv2d for 2 binary QuantConv2D") as info:
        export.export(model, tmp_path / "bad.tflite")
    message = str(info.value)
    assert f"- bconv1: its {cause}" in message
    assert "bconv0" not in message
    assert list(tmp_path.iterdir()) == []


def test_likely_causes_reads_padding_and_kernel_quantizer():
    layer = lq.layers.QuantConv2D(
        4,
        3,
        padding="same",
        pad_values=-1.0,
        input_quantizer="ste_sign",
        kernel_quantizer=lq.quantizers.NoOp(precision=1),
    )
    layer.build((None, 8, 8, 2))
    causes = " | ".join(likely_causes(layer))
    assert "pad_values=-1.0" in causes
    assert "NoOp does not give one magnitude per output channel" in causes
    good = lq.layers.QuantConv2D(
        4, 3, input_quantizer="approx_sign", kernel_quantizer="scaled_sign"
    )
    good.build((None, 8, 8, 2))
    assert likely_causes(good) == []


# --- int8 input and output --------------------------------------------------------------------


def test_int8_io_on_a_float_graph_is_refused_and_leaves_no_file(tmp_path):
    with pytest.raises(ValueError, match="tf.int8 only for a quantized graph"):
        export.export(user_bnn(), tmp_path / "int8.tflite", int8_io=True)
    assert list(tmp_path.iterdir()) == []


def test_int8_io_with_quantization_ranges_gives_int8_tensors(images):
    model = user_bnn(head_activation=None)  # an int8 softmax needs the range (0, 1)
    flatbuffer = export.convert(
        model,
        inference_input_type=tf.int8,
        inference_output_type=tf.int8,
        experimental_default_int8_range=(-3.0, 3.0),
    )
    summary = inspect_flatbuffer(flatbuffer)
    assert summary.inputs[0].dtype == "int8" and summary.outputs[0].dtype == "int8"
    assert summary.inputs[0].scale > 0 and summary.count("LceBconv2d") == 2
    # Dummy ranges lose accuracy, but the int8 file still runs on float images.
    result = verify(flatbuffer, model, images[0][:8], min_agreement=0.0)
    assert result.num_inputs == 8 and np.isfinite(result.max_abs_diff)


# --- bad input --------------------------------------------------------------------------------


def test_path_that_holds_no_model_is_refused(tmp_path):
    with pytest.raises(ValueError, match="no such file or directory"):
        export.convert(tmp_path / "missing")
    (tmp_path / "notes.txt").write_text("not a model")
    with pytest.raises(ValueError, match="run directory"):
        export.convert(tmp_path / "notes.txt")
    with pytest.raises(ValueError, match="run directory"):
        export.convert(tmp_path)
    with pytest.raises(TypeError, match="`model` must be a tf.keras.Model or a path"):
        export.convert(42)


def test_output_in_missing_directory_is_refused_before_any_work(tmp_path):
    start = time.perf_counter()
    with pytest.raises(ValueError, match="existing directory"):
        # The source does not exist either: the output is checked first.
        export.export(tmp_path / "missing_run", tmp_path / "nowhere" / "model.tflite")
    with pytest.raises(ValueError, match="must end with .tflite"):
        export.export(tmp_path / "missing_run", tmp_path / "model.bin")
    assert time.perf_counter() - start < 1.0
    assert list(tmp_path.iterdir()) == []


def test_failed_write_leaves_no_partial_file(tmp_path, monkeypatch):
    def fail(*args):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(OSError, match="disk full"):
        write_atomically({tmp_path / "m.json": b"{}", tmp_path / "m.tflite": b"model"})
    assert list(tmp_path.iterdir()) == []


def test_verification_below_threshold_is_an_error(images):
    model = user_bnn()
    flatbuffer = export.convert(model)
    # A "broken export": the same network with its classes shifted by one.
    other = user_bnn(name="other")
    weights = model.get_weights()
    weights[-2], weights[-1] = np.roll(weights[-2], 1, axis=-1), np.roll(weights[-1], 1)
    other.set_weights(weights)
    with pytest.raises(ValueError, match=r"must agree .* on at least 90.0%"):
        verify(flatbuffer, other, images[0])
    with pytest.raises(ValueError, match=r"must agree .* on at least 99.0%"):
        verify(flatbuffer, other, images[0], inputs="validation")


def test_model_the_interpreter_cannot_prepare_is_an_error(images, tmp_path):
    with pytest.raises(ValueError, match="must run in LCE's interpreter"):
        export.export(
            user_bnn(),
            tmp_path / "m.tflite",
            int8_io=True,
            experimental_default_int8_range=(-3.0, 3.0),
        )
    assert list(tmp_path.iterdir()) == []


def test_command_line_reports_a_bad_model_dir_and_exits_with_1(tmp_path):
    output = tmp_path / "model.tflite"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "bnn_keras.export",
            f"--model_dir={tmp_path / 'nope'}",
            f"--output={output}",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    assert proc.returncode == 1
    assert "Error: `model` must be a Keras model, a run directory" in proc.stderr
    assert "no such file or directory" in proc.stderr
    assert not output.exists()


def test_inspect_flatbuffer_refuses_other_bytes():
    with pytest.raises(ValueError, match="TFL3"):
        inspect_flatbuffer(b"definitely not a tflite model")
    with pytest.raises(TypeError, match="bytes"):
        inspect_flatbuffer("model.tflite")


SAVED_FORMATS = [("user.keras", "keras_file"), ("user.h5", "keras_file"), ("saved", "saved_model")]


@pytest.mark.filterwarnings("ignore:You are saving your model as an HDF5 file")
@pytest.mark.parametrize("name, kind", SAVED_FORMATS)
def test_load_source_reads_keras_files_and_saved_models(name, kind, tmp_path, images):
    model = user_bnn()
    model.save(tmp_path / name)
    source = load_source(tmp_path / name)
    assert source.kind == kind and source.stage is None and source.dataset is None
    x = images[0][:4]
    np.testing.assert_allclose(source.model(x, training=False), model(x, training=False), atol=1e-6)


# --- acceptance: ReActNet-A at 224 px ---------------------------------------------------------


def test_reactnet_a_224_stage2_acceptance():
    """31 LceBconv2d, one float CONV_2D, at most 8 MB, and the interpreter agrees.

    The only 224 px test of the suite: about 30 s on two idle cores (build 6 s,
    conversion 20 s, 4 images through the interpreter and Keras 4 s). The network is untrained
    and the inputs are noise, so its classes nearly tie and a rounding flip before
    a sign can swap the top two (see `bnn_keras.tflite_verify`): the .tflite's
    top-1 must be among Keras's top 5 on every input and agree on most, where a
    broken export would hit Keras's top 5 on 0.5% of them.
    """
    model = models.get("reactnet_a", stage=2)  # 224 x 224 x 3, 1000 classes
    flatbuffer = export.convert(model)
    summary = inspect_flatbuffer(flatbuffer)
    assert summary.count("LceBconv2d") == 31
    assert summary.count("CONV_2D") == 1
    assert summary.size_bytes <= 8_000_000  # its float twin: 117 MB
    images = np.random.default_rng(0).standard_normal((4, 224, 224, 3)).astype("float32")
    result = verify(flatbuffer, model, images, min_agreement=0.5)
    assert result.top1_in_top5 == 1.0
