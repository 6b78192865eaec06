"""The benchmarks run end to end with tiny settings and report sane numbers.

Tiny: ReActNet-18 at width 0.125 (it traces in a fraction of ReActNet-A's time),
one round of one or two steps. The numbers are not checked for speed, only for
shape: every expected key, and positive finite times, rates and ratios.
"""

import math

import numpy as np
import pytest
import tensorflow as tf
from absl.testing import flagsaver

from benchmarks import common, input_pipeline, mixed_precision, train_step
from bnn_keras import models, training
from bnn_keras.config import TrainConfig

TINY = dict(model="reactnet18", width_multiplier=0.125)


def positive_finite(value):
    return isinstance(value, (int, float)) and math.isfinite(value) and value > 0


def check_ratio(summary):
    assert positive_finite(summary["min"]) and positive_finite(summary["median"])
    assert summary["min"] <= summary["median"]


class TestTrainStep:
    def test_ratios_of_binary_float_and_callbacks(self):
        result = train_step.run(
            sizes=[(32, 8)], variants=("float", "stage2"), steps=2, repeats=1,
            num_classes=10, **TINY,
        )
        assert set(result["results"]) == {
            "float 32px b8", "stage2 32px b8", "stage2 32px b8 +cb"
        }
        for r in result["results"].values():
            assert positive_finite(r["images_per_s"])
            assert positive_finite(r["step_s"]["median"])
        check_ratio(result["ratios"]["binary_vs_float"]["stage2 32px b8"])
        check_ratio(result["ratios"]["callbacks"]["stage2 32px b8"])
        assert result["ratios"]["xla"] == {}
        rows = train_step.format_table(result).splitlines()
        assert [r.split()[0] for r in rows[2:-1]] == ["float", "stage2"]  # +cb as a column


class TestInputPipeline:
    def test_folder_pipeline_against_its_model(self, tmp_path):
        result = input_pipeline.run(
            pipelines=("folder",), num_images=8, classes=2, jpeg_size=(40, 48),
            image_size=32, imagenet_batch=4, batches=2, steps=1, repeats=1, **TINY,
        )
        r = result["results"]["folder"]
        for kind in ("pipeline", "synthetic", "fed"):
            assert positive_finite(r["images_per_s"][kind])
        check_ratio(r["pipeline_vs_step"])
        check_ratio(r["fed_slowdown"])
        assert "folder" in input_pipeline.format_table(result)

    def test_generated_jpegs_read_by_the_library(self, tmp_path):
        input_pipeline.make_jpeg_folder(str(tmp_path), num_images=6, classes=3, size=(20, 30))
        assert sorted(p.name for p in tmp_path.iterdir()) == ["class_0", "class_1", "class_2"]
        from bnn_keras import data

        ds = data.make_dataset(
            f"folder:{tmp_path}", "train", batch_size=2, image_size=16, cache=False
        )
        assert positive_finite(input_pipeline.pipeline_rate(ds, 2))


class TestMixedPrecision:
    def test_bfloat16_trains_with_binary_quantizers(self):
        result = mixed_precision.run(
            policies=("float32", "mixed_bfloat16"), image_size=32, batch_size=8,
            steps=1, repeats=1, **TINY,
        )
        assert tf.keras.mixed_precision.global_policy().name == "float32"
        bf16 = result["results"]["mixed_bfloat16"]
        assert bf16["compute_dtype"] == "bfloat16"
        assert bf16["activations_are_pm1"] and bf16["kernel_one_magnitude_per_channel"]
        assert bf16["loss_finite"]
        assert 0.0 <= bf16["top1_agreement_with_float32"] <= 1.0
        check_ratio(bf16["vs_float32"])
        assert result["results"]["float32"]["top1_agreement_with_float32"] == 1.0
        assert "mixed_bfloat16" in mixed_precision.format_table(result)

    def test_unknown_policy_is_refused(self):
        with pytest.raises(ValueError, match="`policies` must be among"):
            mixed_precision.run(policies=("float64",))


class TestTrainerMixedPrecision:
    def test_config_names_the_accepted_policies(self):
        with pytest.raises(ValueError, match="`mixed_precision` must be one of"):
            TrainConfig(mixed_precision="float16").validate()
        TrainConfig(mixed_precision="mixed_bfloat16").validate()

    def test_run_restores_the_global_policy_on_error(self, tmp_path):
        config = TrainConfig(
            mixed_precision="mixed_bfloat16", dataset="no_such_dataset_xyz",
            model_dir=str(tmp_path / "run"),
        )
        with pytest.raises(ValueError):
            training.run(config)
        assert tf.keras.mixed_precision.global_policy().name == "float32"

    def test_flag_reaches_the_config(self):
        from bnn_keras import train

        with flagsaver.flagsaver(mixed_precision="mixed_bfloat16"):
            assert train.config_from_flags().mixed_precision == "mixed_bfloat16"


class TestCommon:
    def test_float_twin_has_no_quantizers_and_the_same_weights(self):
        model = models.get("reactnet18", input_shape=(32, 32, 3), num_classes=4,
                           width_multiplier=0.125)
        twin = models.float_twin(model)
        quantized = [l for l in twin.layers if getattr(l, "input_quantizer", None)
                     or getattr(l, "kernel_quantizer", None)]
        assert quantized == []
        for a, b in zip(model.get_weights(), twin.get_weights()):
            np.testing.assert_array_equal(a, b)

    def test_float_twin_refuses_a_layer(self):
        with pytest.raises(TypeError, match="`model` must be a tf.keras.Model"):
            models.float_twin(tf.keras.layers.Dense(2))

    def test_parse_sizes_refuses_a_bad_pair(self):
        with pytest.raises(ValueError, match="SIDE:BATCH"):
            common.parse_sizes(["32x64"])

    def test_build_model_refuses_an_unknown_variant(self):
        with pytest.raises(ValueError, match="`variant` must be one of"):
            common.build_model("stage3", image_size=32)
