"""Folding BatchNormalization into the convolution before it, for inference.

At inference BatchNormalization is a fixed per-channel scale and shift, so a convolution followed
only by it computes the same as one convolution with scaled kernels and a bias. Folding saves a
pass over every feature map, with outputs equal to float rounding.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def fold_batch_norm(model: Any) -> Any:
    """An inference copy of a Keras functional ``model`` with each Conv2D -> BatchNormalization folded.

    Pairs where the convolution's output feeds anything besides its BatchNormalization are left
    alone, as are models without such pairs (returned unchanged).
    """
    import keras

    pairs = conv_bn_pairs(model)
    if not pairs:
        return model
    folded_convs = {conv.name: bn for bn, conv in pairs.items()}
    folded_bns = {bn.name for bn in pairs}

    def clone(layer: Any) -> Any:
        config = layer.get_config()
        if layer.name in folded_convs:
            return layer.__class__.from_config({**config, "use_bias": True})
        if layer.name in folded_bns:
            return keras.layers.Identity(name=layer.name)
        return layer.__class__.from_config(config)

    def call(layer: Any, *args: Any, **kwargs: Any) -> Any:
        # BatchNormalization's recorded call carries arguments (training, mask) Identity does not take.
        return layer(args[0]) if layer.name in folded_bns else layer(*args, **kwargs)

    copy = keras.models.clone_model(model, clone_function=clone, call_function=call)
    for layer in model.layers:
        target = copy.get_layer(layer.name)
        if layer.name in folded_convs:
            target.set_weights(_folded_weights(layer, folded_convs[layer.name]))
        elif layer.name not in folded_bns and layer.weights:
            target.set_weights(layer.get_weights())
    return copy


def conv_bn_pairs(model: Any) -> dict[Any, Any]:
    """BatchNormalization layer -> the Conv2D whose output only it reads."""
    import keras

    if not isinstance(model, keras.Model) or isinstance(model, keras.Sequential):
        return {}
    pairs = {}
    for layer in model.layers:
        if not isinstance(layer, keras.layers.BatchNormalization) or len(layer._inbound_nodes) != 1:
            continue
        source = layer.input._keras_history.operation
        if isinstance(source, keras.layers.Conv2D) and len(source._outbound_nodes) == 1 \
                and layer.axis in (-1, [-1], [3], 3):
            pairs[layer] = source
    return pairs


def _folded_weights(conv: Any, bn: Any) -> list[np.ndarray]:
    """Kernel and bias of the convolution that computes ``bn(conv(x))`` in inference mode.

    BN(y) = gamma * (y - mean) / sqrt(variance + epsilon) + beta, and y = kernel * x + bias, so the
    kernel is scaled per output channel and the bias becomes (bias - mean) * scale + beta.
    """
    weights = conv.get_weights()
    kernel = weights[0]
    bias = weights[1] if len(weights) > 1 else np.zeros(kernel.shape[-1], kernel.dtype)
    gamma, beta, mean, variance = _bn_parameters(bn, kernel.shape[-1])
    scale = gamma / np.sqrt(variance + bn.epsilon)
    return [kernel * scale, (bias - mean) * scale + beta]


def _bn_parameters(bn: Any, channels: int) -> tuple[np.ndarray, ...]:
    values = {weight.path.rsplit("/", 1)[-1]: np.asarray(weight) for weight in bn.weights}
    ones, zeros = np.ones(channels, np.float32), np.zeros(channels, np.float32)
    return (values.get("gamma", ones), values.get("beta", zeros), values["moving_mean"],
            values["moving_variance"])
