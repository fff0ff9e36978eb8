"""Network architectures, built from scratch (no pretrained weights can be downloaded here).

* ``seed``: the research notebook's network (one conv layer + dense), kept for comparison.
* ``compact``: a small all-convolutional network with a stride-2 stem (a stride-1 first
  convolution on 150x150 makes training slow) and BatchNormalization with momentum 0.9 (with the
  default 0.99, inference-mode statistics are unusable after few steps), ending in global
  average pooling so no dense layer can memorise where in the frame things sit.
* ``lean``: ``compact`` with one convolution per stage instead of two at 64 and 128 filters:
  cheaper, but weaker when trained like the default model.

What was measured for these choices, and the variants tried: docs/research.md.
"""

from __future__ import annotations

from collections.abc import Callable

ARCHITECTURES = ("compact", "lean", "seed")


def build_model(arch: str, image_size: int, seed: int = 2021):
    """Build an uncompiled Keras model mapping (image_size, image_size, 1) in [0, 1] to P(tumor).

    Raises
    ------
    ValueError
        When ``arch`` is not one of :data:`ARCHITECTURES`.
    """
    builders: dict[str, Callable] = {"compact": _compact, "lean": _lean, "seed": _seed_network}
    if arch not in builders:
        raise ValueError(f"Expected arch to be one of {list(ARCHITECTURES)}. Received: arch={arch!r}")
    import keras

    keras.utils.set_random_seed(seed)
    return builders[arch](keras, image_size)


def _seed_network(keras, image_size: int):
    layers = keras.layers
    return keras.Sequential(
        [
            keras.Input(shape=(image_size, image_size, 1)),
            layers.Conv2D(32, (3, 3), activation="relu"),
            layers.MaxPooling2D((2, 2)),
            layers.Flatten(),
            layers.Dense(1, activation="sigmoid"),
        ],
        name="seed",
    )


def _conv_bn_relu(keras, x, filters: int, kernel: int = 3, strides: int = 1):
    layers = keras.layers
    x = layers.Conv2D(
        filters,
        kernel,
        strides=strides,
        padding="same",
        use_bias=False,
        kernel_regularizer=keras.regularizers.L2(1e-4),
    )(x)
    x = layers.BatchNormalization(momentum=0.9)(x)
    return layers.ReLU()(x)


def _compact(keras, image_size: int):
    return _stages(keras, image_size, convolutions_per_stage=2, name="compact")


def _lean(keras, image_size: int):
    return _stages(keras, image_size, convolutions_per_stage=1, name="lean")


def _stages(keras, image_size: int, convolutions_per_stage: int, name: str):
    layers = keras.layers
    inputs = keras.Input(shape=(image_size, image_size, 1), name="image")
    x = _conv_bn_relu(keras, inputs, 16, kernel=5, strides=2)
    x = layers.MaxPooling2D(2)(x)
    x = _conv_bn_relu(keras, x, 32)
    x = layers.MaxPooling2D(2)(x)
    for filters in (64, 128):
        for _ in range(convolutions_per_stage):
            x = _conv_bn_relu(keras, x, filters)
        x = layers.MaxPooling2D(2)(x)
    x = _conv_bn_relu(keras, x, 128)
    x = layers.GlobalAveragePooling2D()(x)
    x = layers.Dropout(0.3)(x)
    outputs = layers.Dense(1, activation="sigmoid", name="probability")(x)
    return keras.Model(inputs, outputs, name=name)
