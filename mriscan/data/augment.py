"""Training-time augmentation that imitates other scanners and framings.

Geometry (flip, small rotation, zoom, shift) and acquisition (resolution, intensity curve, smooth
bias field, noise, blur) vary; the anatomy and any lesion stay. Applied to batches inside ``tf.data``, on
model inputs that are already preprocessed, so the preprocessing path itself stays single.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from mriscan.data.masks import brain_mask

STRIP_PEEL_RANGE = (0.06, 0.18)
"""Skull-and-scalp rim peeled off by :func:`strip_to_brain`, as a fraction of the head's equivalent radius."""


def strip_to_brain(images: np.ndarray, seed: int) -> np.ndarray:
    """Each model input with everything outside its estimated brain set to 0: a skull-stripped copy.

    Some sources are skull-stripped and hold one class only; showing the network stripped copies of
    every source, both classes, makes "no skull" carry no label. The brain is the head (largest
    bright region, holes filled) less a rim of random thickness in :data:`STRIP_PEEL_RANGE`.

    Examples
    --------
    >>> head = np.zeros((1, 64, 64, 1), np.float32); head[0, 8:56, 8:56] = 0.8
    >>> stripped = strip_to_brain(head, seed=0)
    >>> bool(stripped[0, 32, 32, 0] > 0), bool(stripped[0, 9, 32, 0] == 0)
    (True, True)
    """
    rng = np.random.default_rng(seed)
    peels = rng.uniform(*STRIP_PEEL_RANGE, size=len(images))
    out = np.empty(images.shape, np.float32)
    for i, (image, peel) in enumerate(zip(images, peels, strict=True)):
        out[i, ..., 0] = image[..., 0] * brain_mask(image[..., 0], float(peel))
    return out


def build_augmenter(seed: int, strip_probability: float = 0.0) -> Any:
    """A callable ``augment(images, stripped=None) -> images`` for float32 batches (n, S, S, 1) in [0, 1].

    ``stripped`` holds :func:`strip_to_brain`'s copies of ``images``; a ``strip_probability`` share of
    them is used instead of the image.
    """
    import keras
    import tensorflow as tf

    geometry = keras.Sequential(
        [
            keras.layers.RandomFlip("horizontal", seed=seed),
            keras.layers.RandomRotation(0.05, fill_mode="constant", seed=seed + 1),
            keras.layers.RandomZoom((-0.15, 0.1), fill_mode="constant", seed=seed + 2),
            keras.layers.RandomTranslation(0.06, 0.06, fill_mode="constant", seed=seed + 3),
        ],
        name="geometry",
    )
    generator = tf.random.Generator.from_seed(seed)

    def augment(images: Any, stripped: Any = None) -> Any:
        if stripped is not None:
            chosen = tf.cast(generator.uniform([tf.shape(images)[0], 1, 1, 1]) < strip_probability, images.dtype)
            images = chosen * stripped + (1 - chosen) * images
        images = geometry(images, training=True)
        images = lower_resolution(tf, generator, images)
        images = _intensity(tf, generator, images)
        return tf.clip_by_value(images, 0.0, 1.0)

    return augment


def lower_resolution(tf: Any, generator: Any, images: Any) -> Any:
    """A third of the images as if acquired at 30-80% of the resolution (down- then up-sampled)."""
    size = tf.shape(images)[1]
    factor = generator.uniform([], 0.3, 0.8)
    low = tf.maximum(tf.cast(tf.cast(size, tf.float32) * factor, tf.int32), 8)
    coarse = tf.image.resize(tf.image.resize(images, [low, low], method="area"), [size, size], method="bilinear")
    chosen = tf.cast(generator.uniform([tf.shape(images)[0], 1, 1, 1]) < 1 / 3, images.dtype)
    return chosen * coarse + (1 - chosen) * images


def _intensity(tf: Any, generator: Any, images: Any) -> Any:
    shape = tf.shape(images)
    batch, size = shape[0], shape[1]
    inside = tf.cast(images > 0.02, images.dtype)
    gamma = tf.exp(generator.normal([batch, 1, 1, 1], stddev=0.25))
    images = tf.pow(images + 1e-6, gamma)
    coarse = generator.normal([batch, 4, 4, 1], stddev=0.15)
    bias = tf.exp(tf.image.resize(coarse, [size, size], method="bicubic"))
    images = images * bias
    noise_level = generator.uniform([batch, 1, 1, 1], 0.0, 0.04)
    images = images + inside * noise_level * generator.normal(shape)
    blurred = tf.nn.avg_pool2d(images, 3, 1, "SAME")
    blur = tf.cast(generator.uniform([batch, 1, 1, 1]) < 0.2, images.dtype)
    return (blur * blurred + (1 - blur) * images) * inside
