"""What a dataset looks like to the model: `DatasetInfo`, and the missing-data error.

`DatasetInfo` is a frozen dataclass, so one value can be shared by the model
builder, the trainer and the run record without anyone changing it. `to_json`
writes lists where the dataclass holds tuples, so the dict survives `json.dump`
and `from_json` gives back an equal object.

`DataNotFoundError` subclasses both `FileNotFoundError` and `ValueError`: data
that is not on disk is a missing file to a caller that thinks in files, and a bad
argument (`name` or `data_dir`) to a command-line front end that turns every
`ValueError` into a one-line error.
"""

from __future__ import annotations

import dataclasses
from typing import Any

__all__ = ["DataNotFoundError", "DatasetInfo"]


class DataNotFoundError(FileNotFoundError, ValueError):
    """The dataset's files are not where `name` and `data_dir` say they are.

    The message says what is missing, where it was looked for and how to get it.
    """


def _check_tuple(field: str, value: Any, item_type: type, length: int | None = None) -> tuple:
    if not isinstance(value, (tuple, list)) or not all(isinstance(v, item_type) for v in value):
        raise TypeError(
            f"`{field}` must be a tuple of {item_type.__name__}; received: {field}={value!r}"
        )
    if length is not None and len(value) != length:
        raise ValueError(f"`{field}` must have {length} entries; received: {field}={value!r}")
    return tuple(value)


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
    """Describes the images and labels that `make_dataset` yields for a dataset.

    The pipeline normalises every image `x` (RGB or grayscale values in
    `[0, 255]`) per channel `c` as

        x_normalised[..., c] = (x[..., c] / 255 - mean[c]) / std[c]

    Example:

    >>> info = DatasetInfo(name="toy", num_classes=2, input_shape=(8, 8, 1),
    ...                    mean=(0.5,), std=(0.25,), label_names=("no", "yes"),
    ...                    num_train=10, num_validation=4)
    >>> DatasetInfo.from_json(info.to_json()) == info
    True
    >>> info.to_json()["input_shape"]
    [8, 8, 1]

    Attributes:
        name: the dataset name as given to `get_info`, e.g. `"mnist_5k"`,
            `"cifar10"`, `"imagenet2012"` or `"folder:/path/to/images"`.
        num_classes: number of classes; labels are `0 .. num_classes - 1`.
        input_shape: `(height, width, channels)` of the images the model receives.
        mean: per-channel mean, in `[0, 1]` pixel units.
        std: per-channel standard deviation, in `[0, 1]` pixel units.
        label_names: one name per class, in label order.
        num_train: number of examples in the "train" split.
        num_validation: number of examples in the "validation" split.

    Raises:
        TypeError, ValueError: a field of the wrong type, or `mean`, `std` and
            `input_shape` disagree on the number of channels.
    """

    name: str
    num_classes: int
    input_shape: tuple[int, int, int]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    label_names: tuple[str, ...]
    num_train: int
    num_validation: int

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name:
            raise TypeError(f"`name` must be a non-empty str; received: name={self.name!r}")
        for field in ("num_classes", "num_train", "num_validation"):
            value = getattr(self, field)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise TypeError(
                    f"`{field}` must be a non-negative int; received: {field}={value!r}"
                )
        shape = _check_tuple("input_shape", self.input_shape, int, 3)
        mean = _check_tuple("mean", tuple(map(_as_float, self.mean)), float, shape[2])
        std = _check_tuple("std", tuple(map(_as_float, self.std)), float, shape[2])
        names = _check_tuple("label_names", self.label_names, str, self.num_classes)
        # Frozen dataclass: normalise lists to tuples through object.__setattr__.
        object.__setattr__(self, "input_shape", shape)
        object.__setattr__(self, "mean", mean)
        object.__setattr__(self, "std", std)
        object.__setattr__(self, "label_names", names)

    def to_json(self) -> dict[str, Any]:
        """Returns a dict of plain JSON types (lists for the tuples)."""
        return {
            field.name: list(value) if isinstance(value, tuple) else value
            for field in dataclasses.fields(self)
            for value in [getattr(self, field.name)]
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> DatasetInfo:
        """Builds a `DatasetInfo` from the dict that `to_json` returns.

        Raises:
            ValueError: `d` lacks a field or has an unknown one.
        """
        expected = {field.name for field in dataclasses.fields(cls)}
        if not isinstance(d, dict) or set(d) != expected:
            received = sorted(d) if isinstance(d, dict) else d
            raise ValueError(
                f"`d` must be a dict with the keys {sorted(expected)}; received: d={received!r}"
            )
        return cls(
            **{key: tuple(value) if isinstance(value, list) else value for key, value in d.items()}
        )


def _as_float(value: Any) -> Any:
    # Accept ints and numpy floats in `mean`/`std`; leave other types to the check.
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    return value
