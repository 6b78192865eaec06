"""Model builders and the name registry.

`get(name, **kwargs)` builds any registered model: bnn_keras's ReActNet-A and
ReActNet-18, and the larq-zoo models, so one recipe trains them all.

>>> from bnn_keras import models
>>> "reactnet_a" in models.names() and "quicknet" in models.names()
True
>>> model = models.get("reactnet18", input_shape=(32, 32, 3), num_classes=10,
...                    width_multiplier=0.25)
>>> model.name
'reactnet18'
"""

from __future__ import annotations

from collections.abc import Callable

import tensorflow as tf

from bnn_keras.models.float_twin import float_twin
from bnn_keras.models.reactnet18 import ReActNet18
from bnn_keras.models.reactnet_a import ReActNetA
from bnn_keras.models.zoo import ZOO_MODELS, make_switchable, zoo_builder

__all__ = [
    "ReActNet18",
    "ReActNetA",
    "float_twin",
    "get",
    "make_switchable",
    "names",
    "register",
]

_REGISTRY: dict[str, Callable[..., tf.keras.Model]] = {
    "reactnet_a": ReActNetA,
    "reactnet18": ReActNet18,
}
_REGISTRY.update({name: zoo_builder(name) for name in ZOO_MODELS})


def names() -> list[str]:
    """The registered model names, sorted."""
    return sorted(_REGISTRY)


def register(name: str, builder: Callable[..., tf.keras.Model]) -> None:
    """Registers a model builder under `name` (keyword-only arguments, as ours).

    Raises:
        ValueError: `name` is already registered.
    """
    if name in _REGISTRY:
        raise ValueError(f"`name` must be new; received: name={name!r}, already registered")
    _REGISTRY[name] = builder


def get(name: str, **kwargs) -> tf.keras.Model:
    """Builds the model registered as `name` with the builder's keyword arguments.

    Raises:
        ValueError: unknown `name`, or a bad argument of the builder.
    """
    try:
        builder = _REGISTRY[name]
    except (KeyError, TypeError):
        raise ValueError(
            f"`name` must be one of {names()}; received: name={name!r}"
        ) from None
    return builder(**kwargs)
