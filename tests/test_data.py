"""Tests of `bnn_keras.data`: the embedded digits, tfds, folders, preprocessing.

No network: tensorflow-datasets is exercised with `tfds.testing.mock_data` over
metadata files written into a temporary directory (what tfds recommends for
realistic split names and sizes), and folders of small JPEGs and PNGs are
generated in `tmp_path`.
"""

import hashlib
import json
import os
import shutil

import numpy as np
import pytest
import tensorflow as tf

from bnn_keras import data
from bnn_keras.data import embedded, preprocessing

MNIST_LOW = (0 - 0.1307) / 0.3081
MNIST_HIGH = (1 - 0.1307) / 0.3081
BAD_BATCH_SIZES = (0, -1, 2.5, True, None)
FOLDER_CLASSES = ("cat", "dog", "fish")
# SHA-256 of the images and labels of each mnist_5k split (see the test).
PINNED_MNIST_5K_DIGESTS = {"train": "8974df926f68292a", "validation": "967b0447c2369b65"}


def _collect(ds):
    images, labels = zip(*[(x.numpy(), y.numpy()) for x, y in ds])
    return np.concatenate(images), np.concatenate(labels)


def _first_batch(ds):
    x, y = next(iter(ds))
    return x.numpy(), y.numpy()


class TestDatasetInfo:
    def test_json_round_trip(self):
        info = data.get_info("mnist_5k")
        restored = data.DatasetInfo.from_json(json.loads(json.dumps(info.to_json())))
        assert restored == info
        assert isinstance(restored.input_shape, tuple)

    def test_from_json_rejects_missing_field(self):
        d = data.get_info("mnist_5k").to_json()
        del d["std"]
        with pytest.raises(ValueError, match="`d` must be a dict with the keys"):
            data.DatasetInfo.from_json(d)

    def test_channels_must_agree(self):
        with pytest.raises(ValueError, match="`mean` must have 3 entries"):
            data.DatasetInfo("x", 2, (8, 8, 3), (0.5,), (0.5,), ("a", "b"), 1, 1)


class TestMnist5k:
    def test_info(self):
        info = data.get_info("mnist_5k")
        assert (info.num_classes, info.input_shape) == (10, (28, 28, 1))
        assert (info.num_train, info.num_validation) == (4000, 1000)
        assert info.label_names == tuple("0123456789")
        assert "mnist_5k" in data.names() and "cifar10" in data.names()

    def test_split_is_stratified_and_disjoint(self):
        splits = embedded.load_mnist_5k()
        (x_train, y_train), (x_val, y_val) = splits["train"], splits["validation"]
        assert np.bincount(y_train).tolist() == [400] * 10
        assert np.bincount(y_val).tolist() == [100] * 10
        train_rows = {row.tobytes() for row in x_train}
        assert not any(row.tobytes() in train_rows for row in x_val)
        # The source file is sorted by label; the split must not be.
        assert len(set(y_val[:20].tolist())) > 3

    def test_split_is_the_same_on_every_machine(self):
        # Pinned digests: the split depends only on SHA-256 of row indices, not on
        # any random generator, so these hold on every machine and version.
        splits = embedded.load_mnist_5k()
        digests = {
            split: hashlib.sha256(x.tobytes() + y.tobytes()).hexdigest()[:16]
            for split, (x, y) in splits.items()
        }
        assert digests == PINNED_MNIST_5K_DIGESTS

    def test_validation_is_the_same_on_every_call(self):
        a = _collect(data.make_dataset("mnist_5k", "validation", batch_size=300))
        b = _collect(data.make_dataset("mnist_5k", "validation", batch_size=1000, cache=False))
        np.testing.assert_array_equal(a[0], b[0])
        np.testing.assert_array_equal(a[1], b[1])
        x_val, y_val = embedded.load_mnist_5k()["validation"]
        np.testing.assert_array_equal(a[1], y_val)
        np.testing.assert_allclose(a[0], (x_val / 255 - 0.1307) / 0.3081, atol=1e-5)

    def test_normalised_value_range(self):
        images, _ = _collect(data.make_dataset("mnist_5k", "validation", batch_size=500))
        assert images.dtype == np.float32 and images.shape == (1000, 28, 28, 1)
        assert images.min() == pytest.approx(MNIST_LOW, abs=1e-5)
        assert images.max() == pytest.approx(MNIST_HIGH, abs=1e-5)
        assert abs(images.mean()) < 0.05 and abs(images.std() - 1) < 0.05

    def test_augmentation_translates_training_images_only(self):
        plain = _collect(data.make_dataset("mnist_5k", "train", batch_size=500, training=False))
        # shuffle_buffer=1 keeps the order, so images can be compared one by one.
        augmented = _collect(
            data.make_dataset(
                "mnist_5k",
                "train",
                batch_size=500,
                training=True,
                shuffle_buffer=1,
                drop_remainder=False,
            )
        )
        np.testing.assert_array_equal(plain[1], augmented[1])
        changed = np.any(plain[0] != augmented[0], axis=(1, 2, 3))
        assert changed.mean() > 0.8
        background = np.float32(MNIST_LOW)
        for original, shifted in zip(plain[0][:20], augmented[0][:20]):
            padded = np.pad(original[..., 0], 2, constant_values=background)
            windows = [padded[dy : dy + 28, dx : dx + 28] for dy in range(5) for dx in range(5)]
            assert any(np.array_equal(w, shifted[..., 0]) for w in windows)
        again = _collect(data.make_dataset("mnist_5k", "train", batch_size=500, training=False))
        np.testing.assert_array_equal(plain[0], again[0])

    def test_training_order_and_crops_are_seeded_and_change_per_epoch(self):
        ds = data.make_dataset("mnist_5k", "train", batch_size=64, seed=3)
        epoch1, epoch2 = _first_batch(ds), _first_batch(ds)
        again = _first_batch(data.make_dataset("mnist_5k", "train", batch_size=64, seed=3))
        other = _first_batch(data.make_dataset("mnist_5k", "train", batch_size=64, seed=4))
        np.testing.assert_array_equal(epoch1[0], again[0])
        assert not np.array_equal(epoch1[0], epoch2[0])
        assert not np.array_equal(epoch1[1], other[1])

    def test_batches_and_cardinality(self):
        train = data.make_dataset("mnist_5k", "train", batch_size=256)
        val = data.make_dataset("mnist_5k", "validation", batch_size=256)
        assert int(train.cardinality()) == 4000 // 256
        assert train.element_spec[0].shape.as_list() == [256, 28, 28, 1]
        assert int(val.cardinality()) == 4 and val.element_spec[1].dtype == tf.int64

    def test_image_size_resizes(self):
        assert data.get_info("mnist_5k", image_size=32).input_shape == (32, 32, 1)
        x, _ = _first_batch(data.make_dataset("mnist_5k", "train", batch_size=8, image_size=32))
        assert x.shape == (8, 32, 32, 1)

    def test_input_context_shards_and_batches_per_replica(self, mirrored_strategy):
        dist = mirrored_strategy.distribute_datasets_from_function(
            lambda ctx: data.make_dataset(
                "mnist_5k", "validation", batch_size=100, input_context=ctx
            )
        )
        x, y = next(iter(dist))
        assert [v.shape[0] for v in mirrored_strategy.experimental_local_results(x)] == [50, 50]
        total = sum(
            int(
                tf.reduce_sum(
                    [tf.shape(v)[0] for v in mirrored_strategy.experimental_local_results(b)]
                )
            )
            for b, _ in dist
        )
        assert total == 1000

    def test_keras_fit_runs_on_the_pipeline(self):
        model = tf.keras.Sequential(
            [
                tf.keras.Input((28, 28, 1)),
                tf.keras.layers.Conv2D(4, 3, strides=2),
                tf.keras.layers.GlobalAveragePooling2D(),
                tf.keras.layers.Dense(10, activation="softmax"),
            ]
        )
        # Eager: the data handling under test is the same, and the first graph-mode
        # fit of a process spends ~20 s in autograph on a 2-core machine.
        model.compile(
            "sgd", "sparse_categorical_crossentropy", metrics=["accuracy"], run_eagerly=True
        )
        train = data.make_dataset("mnist_5k", "train", batch_size=200).take(3)
        val = data.make_dataset("mnist_5k", "validation", batch_size=500)
        history = model.fit(train, validation_data=val, epochs=2, verbose=0)
        assert len(history.history["val_accuracy"]) == 2


def _write_tfds_metadata(data_dir, name, splits):
    """Writes the dataset_info.json that a prepared tfds dataset would have."""
    import tensorflow_datasets as tfds
    from tensorflow_datasets.core import splits as splits_lib

    builder = tfds.builder(name, data_dir=str(data_dir))
    builder.info.set_splits(
        splits_lib.SplitDict(
            [
                splits_lib.SplitInfo(name=k, shard_lengths=[n], num_bytes=n * 1000)
                for k, n in splits.items()
            ]
        )
    )
    builder.data_path.mkdir(parents=True)
    builder.info.write_to_directory(builder.data_path)


# Split sizes written into the metadata of each known tfds dataset.
TFDS_SPLITS = {
    "cifar10": {"train": 500, "test": 100},
    "cifar100": {"train": 500, "test": 100},
    "fashion_mnist": {"train": 600, "test": 100},
    "imagenet2012": {"train": 1200, "validation": 50},
    "imagenette": {"train": 900, "validation": 40},
    "mnist": {"train": 600, "test": 100},
}


@pytest.fixture(scope="module")
def tfds_metadata_dir(tmp_path_factory):
    """A tfds data_dir holding the metadata (no examples) of the known datasets."""
    data_dir = tmp_path_factory.mktemp("tfds")
    for name, splits in TFDS_SPLITS.items():
        _write_tfds_metadata(data_dir, name, splits)
    return str(data_dir)


@pytest.fixture
def mock_tfds(tfds_metadata_dir):
    """tfds reading that metadata and generating random examples."""
    import tensorflow_datasets as tfds

    with tfds.testing.mock_data(
        num_examples=12, policy=tfds.testing.MockPolicy.USE_FILES, data_dir=tfds_metadata_dir
    ):
        yield tfds_metadata_dir


class TestTfds:
    def test_cifar10_info_and_batches(self, mock_tfds):
        info = data.get_info("cifar10", data_dir=mock_tfds)
        assert (info.num_classes, info.input_shape) == (10, (32, 32, 3))
        assert (info.num_train, info.num_validation) == (500, 100)
        for split in ("train", "validation"):
            x, y = _first_batch(
                data.make_dataset("cifar10", split, batch_size=4, data_dir=mock_tfds)
            )
            assert x.shape == (4, 32, 32, 3) and x.dtype == np.float32
            assert y.dtype == np.int64 and ((0 <= y) & (y < 10)).all()

    @pytest.mark.parametrize("name", sorted(TFDS_SPLITS))
    def test_every_known_name_loads(self, mock_tfds, name):
        assert name in data.names()
        info = data.get_info(name, data_dir=mock_tfds, image_size=16)
        assert (info.num_train, info.num_validation) == tuple(TFDS_SPLITS[name].values())
        assert len(info.label_names) == info.num_classes
        for split in ("train", "validation"):
            x, y = _first_batch(
                data.make_dataset(name, split, batch_size=2, data_dir=mock_tfds, image_size=16)
            )
            assert x.shape == (2, *info.input_shape) and np.isfinite(x).all()
            assert ((0 <= y) & (y < info.num_classes)).all()

    def test_imagenet2012_decodes_and_crops(self, mock_tfds):
        info = data.get_info("imagenet2012", data_dir=mock_tfds, image_size=32)
        assert (info.num_classes, info.input_shape) == (1000, (32, 32, 3))
        assert info.mean == preprocessing.IMAGENET_MEAN
        for split in ("train", "validation"):
            ds = data.make_dataset(
                "imagenet2012", split, batch_size=3, data_dir=mock_tfds, image_size=32
            )
            x, _ = _first_batch(ds)
            assert x.shape == (3, 32, 32, 3) and np.isfinite(x).all()

    def test_imagenet_missing_manual_files(self, tmp_path):
        manual_dir = os.path.join(str(tmp_path), "downloads", "manual")
        with pytest.raises(data.DataNotFoundError) as raised:
            data.get_info("imagenet2012", data_dir=str(tmp_path))
        message = str(raised.value)
        assert "ILSVRC2012_img_train.tar" in message and "ILSVRC2012_img_val.tar" in message
        assert manual_dir in message and "\n" not in message
        assert isinstance(raised.value, FileNotFoundError) and isinstance(raised.value, ValueError)
        with pytest.raises(FileNotFoundError, match="ILSVRC2012_img_val.tar"):
            data.make_dataset("imagenet2012", "validation", batch_size=8, data_dir=str(tmp_path))

    def test_unprepared_dataset_is_an_error_not_a_download(self, tmp_path):
        with pytest.raises(data.DataNotFoundError, match="tfds build cifar10"):
            data.make_dataset("cifar10", "train", batch_size=8, data_dir=str(tmp_path))
        assert not os.path.exists(os.path.join(str(tmp_path), "downloads"))

    def test_not_an_image_classification_dataset(self, tmp_path):
        with pytest.raises(ValueError, match="not an image classification dataset"):
            data.get_info("imdb_reviews", data_dir=str(tmp_path))


def _write_images(folder, sizes, seed):
    """Writes JPEG and PNG images of the given sizes, alternately, into `folder`."""
    os.makedirs(folder, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i, (h, w) in enumerate(sizes):
        image = tf.constant(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
        if i % 2:
            tf.io.write_file(os.path.join(folder, f"img{i}.png"), tf.io.encode_png(image))
        else:
            tf.io.write_file(os.path.join(folder, f"img{i}.JPG"), tf.io.encode_jpeg(image))


@pytest.fixture
def image_folder(tmp_path):
    root = tmp_path / "images"
    for c, name in enumerate(FOLDER_CLASSES):
        _write_images(root / name, [(20 + c, 30), (40, 24), (16, 16), (24, 36), (30, 30)], c)
    (root / "cat" / "notes.txt").write_text("not an image")
    return root


class TestFolder:
    def test_info_and_split(self, image_folder):
        info = data.get_info(f"folder:{image_folder}", image_size=16, validation_fraction=0.2)
        assert info.label_names == FOLDER_CLASSES and info.input_shape == (16, 16, 3)
        assert (info.num_train, info.num_validation) == (12, 3)

    def test_batches_from_jpeg_and_png(self, image_folder):
        name = f"folder:{image_folder}"
        x, y = _collect(
            data.make_dataset(
                name,
                "train",
                batch_size=4,
                image_size=16,
                validation_fraction=0.2,
                drop_remainder=False,
            )
        )
        assert x.shape == (12, 16, 16, 3) and np.isfinite(x).all()
        assert np.bincount(y).tolist() == [4, 4, 4]
        val = data.make_dataset(
            name, "validation", batch_size=8, image_size=16, validation_fraction=0.2
        )
        assert np.bincount(_collect(val)[1]).tolist() == [1, 1, 1]

    def test_split_does_not_depend_on_where_the_folder_is(self, image_folder, tmp_path):
        moved = tmp_path / "elsewhere" / "copy"
        shutil.copytree(image_folder, moved)
        a, b = (
            _collect(
                data.make_dataset(
                    f"folder:{root}",
                    "validation",
                    batch_size=8,
                    image_size=16,
                    validation_fraction=0.4,
                )
            )
            for root in (image_folder, moved)
        )
        np.testing.assert_array_equal(a[0], b[0])
        np.testing.assert_array_equal(a[1], b[1])

    def test_train_and_val_subfolders(self, tmp_path):
        root = tmp_path / "split"
        for name in ("a", "b"):
            _write_images(root / "train" / name, [(12, 12)] * 3, 0)
        _write_images(root / "val" / "b", [(12, 14)] * 2, 1)
        info = data.get_info(f"folder:{root}", image_size=8)
        assert info.label_names == ("a", "b") and (info.num_train, info.num_validation) == (6, 2)
        _, labels = _collect(
            data.make_dataset(f"folder:{root}", "validation", batch_size=4, image_size=8)
        )
        assert labels.tolist() == [1, 1]

    def test_missing_folder(self, tmp_path):
        with pytest.raises(data.DataNotFoundError, match="existing folder.*nowhere"):
            data.get_info(f"folder:{tmp_path / 'nowhere'}")

    def test_needs_two_class_folders(self, tmp_path):
        _write_images(tmp_path / "only" / "one", [(8, 8)], 0)
        with pytest.raises(ValueError, match="at least 2 class sub-folders.*has 1"):
            data.get_info(f"folder:{tmp_path / 'only'}")

    def test_validation_classes_must_be_training_classes(self, tmp_path):
        root = tmp_path / "split"
        for name in ("a", "b"):
            _write_images(root / "train" / name, [(12, 12)], 0)
        _write_images(root / "validation" / "c", [(12, 12)], 1)
        with pytest.raises(ValueError, match=r"validation/ classes \['c'\] not in train/"):
            data.get_info(f"folder:{root}")

    def test_folder_without_a_path(self):
        with pytest.raises(ValueError, match="followed by the path of a folder"):
            data.get_info("folder:")

    def test_no_images(self, tmp_path):
        for name in ("a", "b"):
            (tmp_path / "empty" / name).mkdir(parents=True)
        with pytest.raises(data.DataNotFoundError, match="no images"):
            data.get_info(f"folder:{tmp_path / 'empty'}")


# (input shape, output size): downscale, upscale, both, and a large factor.
RESIZE_CASES = (
    ((375, 500, 3), (256, 341)),
    ((20, 30, 1), (64, 48)),
    ((40, 90, 3), (60, 30)),
    ((600, 900, 3), (32, 48)),
)


class TestPreprocessing:
    @pytest.mark.parametrize("shape, size", RESIZE_CASES)
    def test_resize_bilinear_equals_tf_antialiased_resize(self, shape, size):
        image = tf.random.stateless_uniform(shape, (0, 3), maxval=255)
        expected = tf.image.resize(image, size, method="bilinear", antialias=True)
        np.testing.assert_allclose(preprocessing.resize_bilinear(image, size), expected, atol=2e-3)

    def test_imagenet_train_is_seeded_random_crop(self):
        image = tf.cast(
            tf.random.stateless_uniform((300, 400, 3), (1, 2), maxval=256, dtype=tf.int32), tf.uint8
        )
        a = preprocessing.imagenet_train(image, tf.constant([0, 1]))
        b = preprocessing.imagenet_train(image, tf.constant([0, 1]))
        c = preprocessing.imagenet_train(image, tf.constant([0, 2]))
        assert a.shape == (224, 224, 3) and a.dtype == tf.float32
        np.testing.assert_array_equal(a, b)
        assert not np.array_equal(a, c)

    def test_imagenet_eval_is_the_centre_crop(self):
        # The shorter side is already 256, so evaluation only crops the centre.
        image = tf.cast(
            tf.random.stateless_uniform((256, 320, 3), (3, 4), maxval=256, dtype=tf.int32), tf.uint8
        )
        expected = image[16:240, 48:272].numpy().astype(np.float32)
        np.testing.assert_array_equal(preprocessing.imagenet_eval(image), expected)
        from_png = preprocessing.imagenet_eval(tf.io.encode_png(image))
        np.testing.assert_array_equal(from_png, expected)

    def test_imagenet_eval_matches_torchvision_resize_and_centre_crop(self):
        # torchvision's Resize(256) + CenterCrop(224) on a PIL image: PIL's bilinear
        # resize is antialiased and rounds to uint8, hence the tolerance of 1.
        from PIL import Image

        small = np.random.default_rng(0).integers(0, 256, (47, 63, 3), dtype=np.uint8)
        image = np.asarray(Image.fromarray(small).resize((500, 375), Image.BICUBIC))
        resized = np.asarray(Image.fromarray(image).resize((341, 256), Image.BILINEAR))
        expected = resized[16:240, 58:282].astype(np.float32)
        ours = preprocessing.imagenet_eval(tf.constant(image)).numpy()
        np.testing.assert_allclose(ours, expected, atol=1.0)
        assert np.abs(ours - expected).mean() < 0.5

    def test_imagenet_eval_resizes_the_shorter_side_to_256(self):
        image = tf.fill((512, 600, 3), tf.constant(200, tf.uint8))
        out = preprocessing.imagenet_eval(image)
        assert out.shape == (224, 224, 3)
        np.testing.assert_allclose(out, 200.0, atol=1e-3)
        window = preprocessing.resize_shorter_center_crop(tf.zeros((512, 600, 1)), size=224)
        assert window.shape == (224, 224, 1)

    def test_crop_window_follows_the_recipe(self):
        windows = np.array(
            [
                preprocessing.random_resized_crop_window(
                    tf.constant([300, 400, 3]), tf.constant([i, 0])
                ).numpy()
                for i in range(200)
            ]
        )
        top, left, h, w = windows.T
        area = h * w / (300 * 400)
        assert (top >= 0).all() and (top + h <= 300).all() and (left + w <= 400).all()
        assert area.min() >= 0.07 and area.max() <= 1.0 and area.min() < 0.2
        assert ((w / h > 0.73) & (w / h < 1.37)).all()

    def test_crop_window_falls_back_to_a_clamped_centre_crop(self):
        window = preprocessing.random_resized_crop_window(
            tf.constant([10, 1000, 3]), tf.constant([0, 0])
        )
        assert window.numpy().tolist() == [0, 493, 10, 13]

    def test_jpeg_bytes_decode_only_the_window(self):
        image = tf.cast(
            tf.image.resize(tf.random.stateless_uniform((60, 80, 3), (5, 6)) * 255, (240, 320)),
            tf.uint8,
        )
        jpeg = tf.io.encode_jpeg(image, quality=95)
        decoded = tf.io.decode_jpeg(jpeg, dct_method="INTEGER_ACCURATE")
        for i in range(3):
            seed = tf.constant([i, 9])
            from_bytes = preprocessing.random_resized_crop(jpeg, seed, 64)
            from_image = preprocessing.random_resized_crop(decoded, seed, 64)
            assert float(tf.reduce_mean(tf.abs(from_bytes - from_image))) < 0.5

    def test_lighting_shifts_every_pixel_alike(self):
        image = tf.random.stateless_uniform((8, 8, 3), (0, 0), maxval=255)
        out = preprocessing.lighting(image, tf.constant([1, 1]), std=0.1)
        offset = (out - image).numpy().reshape(-1, 3)
        np.testing.assert_allclose(offset, np.broadcast_to(offset[0], offset.shape), atol=1e-4)
        assert 0 < np.abs(offset[0]).max() < 30
        np.testing.assert_array_equal(
            preprocessing.lighting(image, tf.constant([1, 1]), std=0.0), image
        )


class TestErrors:
    def test_unknown_name_lists_the_choices(self):
        with pytest.raises(ValueError, match=r"mnist_5k.*folder:/path/to/images.*name='nope'"):
            data.get_info("nope")

    def test_unknown_split(self):
        with pytest.raises(ValueError, match=r"`split` must be one of \['train', 'validation'\]"):
            data.make_dataset("mnist_5k", "test", batch_size=8)

    @pytest.mark.parametrize("batch_size", BAD_BATCH_SIZES)
    def test_bad_batch_size(self, batch_size):
        with pytest.raises(ValueError, match="`batch_size` must be an int of at least 1"):
            data.make_dataset("mnist_5k", "train", batch_size=batch_size)

    def test_bad_augmentation_and_training(self):
        with pytest.raises(ValueError, match="`augmentation` must be"):
            data.make_dataset("mnist_5k", "train", batch_size=8, augmentation="rotate")
        with pytest.raises(TypeError, match="`training` must be None or a bool"):
            data.make_dataset("mnist_5k", "train", batch_size=8, training="yes")

    def test_batch_larger_than_the_training_split(self, image_folder):
        with pytest.raises(ValueError, match="`batch_size` must be at most the 12 examples"):
            data.make_dataset(
                f"folder:{image_folder}", "train", batch_size=13, validation_fraction=0.2
            )

    def test_empty_validation_split(self, image_folder):
        with pytest.raises(ValueError, match="split with examples"):
            data.make_dataset(
                f"folder:{image_folder}", "validation", batch_size=2, validation_fraction=0.0
            )
