"""Larq-zoo models behind the bnn_keras builder conventions.

Every larq-zoo architecture (QuickNet and the literature models) is built here
with random weights (larq-zoo's default is to download ImageNet weights, which
needs the network). `stage=2` returns the zoo model as larq-zoo defines it;
`stage=1` returns the same graph with each binary kernel quantizer wrapped in a
`SwitchableQuantizer` that starts switched off, so the two-stage schedule trains
these models exactly as it trains ReActNet.
"""

from __future__ import annotations

import functools

import larq as lq
import larq_zoo as lqz
import tensorflow as tf

from bnn_keras.models import common
from bnn_keras.quantizers import SwitchableQuantizer

__all__ = ["ZOO_MODELS", "make_switchable", "zoo_builder"]

ZOO_MODELS = {
    "quicknet": lqz.sota.QuickNet,
    "quicknet_small": lqz.sota.QuickNetSmall,
    "quicknet_large": lqz.sota.QuickNetLarge,
    "birealnet": lqz.literature.BiRealNet,
    "binary_resnet_e18": lqz.literature.BinaryResNetE18,
    "binary_densenet28": lqz.literature.BinaryDenseNet28,
    "binary_densenet37": lqz.literature.BinaryDenseNet37,
    "binary_densenet45": lqz.literature.BinaryDenseNet45,
    "meliusnet22": lqz.literature.MeliusNet22,
    "real_to_binary_net": lqz.literature.RealToBinaryNet,
    "xnornet": lqz.literature.XNORNet,
    "binary_alexnet": lqz.literature.BinaryAlexNet,
    "dorefanet": lqz.literature.DoReFaNet,
}


def _has_binary_kernel(layer) -> bool:
    quantizer = getattr(layer, "kernel_quantizer", None)
    return getattr(quantizer, "precision", None) == 1


def make_switchable(model: tf.keras.Model, *, binarize: bool = False) -> tf.keras.Model:
    """Clones `model`, wrapping each binary kernel quantizer in a `SwitchableQuantizer`.

    The clone has freshly initialised weights: call it on a model you are about
    to train, or copy the weights over with `set_weights` (the weight lists are
    identical, see `bnn_keras.quantizers`).

    Raises:
        ValueError: the model has no layer with a binary kernel quantizer.
    """
    if not any(_has_binary_kernel(layer) for layer in model.layers):
        raise ValueError(
            f"Model {model.name!r} has no layer with a binary kernel quantizer, so "
            "there is nothing to switch between stage 1 and stage 2."
        )

    def clone(layer):
        config = layer.get_config()
        if _has_binary_kernel(layer):
            config["kernel_quantizer"] = SwitchableQuantizer(
                lq.quantizers.serialize(layer.kernel_quantizer), binarize=binarize
            )
        return layer.__class__.from_config(config)

    return tf.keras.models.clone_model(model, clone_function=clone)


def zoo_builder(name: str):
    """Returns a builder of the larq-zoo model `name` with bnn_keras's arguments."""
    factory = ZOO_MODELS[name]

    @functools.wraps(factory)
    def build(
        *,
        input_shape=(224, 224, 3),
        num_classes: int = 1000,
        include_top: bool = True,
        stage: int = 2,
        input_tensor=None,
    ) -> tf.keras.Model:
        shape = common.validate_common(
            input_shape=input_shape, num_classes=num_classes, include_top=include_top,
            stage=stage, width_multiplier=1.0,
            total_stride_small=32, total_stride_large=32,
        )
        model = factory(
            input_shape=shape, input_tensor=input_tensor, weights=None,
            include_top=include_top, num_classes=num_classes,
        )
        if stage == 1:
            model = make_switchable(model, binarize=False)
        return model

    build.__doc__ = (
        f"Builds larq-zoo's `{factory.__name__}` with random weights; `stage=1` makes "
        "its binary kernels switchable and starts them real-valued."
    )
    return build
