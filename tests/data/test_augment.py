import numpy as np

from mriscan.data.augment import build_augmenter, lower_resolution


def _batch() -> np.ndarray:
    rng = np.random.default_rng(0)
    images = np.zeros((12, 64, 64, 1), np.float32)
    images[:, 8:56, 8:56, 0] = rng.uniform(0.2, 1.0, (12, 48, 48))  # a "head" full of fine detail
    return images


def test_augmented_batches_keep_shape_and_range_and_repeat_with_the_seed():
    images = _batch()
    first = np.asarray(build_augmenter(7)(images))
    again = np.asarray(build_augmenter(7)(images))
    other = np.asarray(build_augmenter(8)(images))
    assert first.shape == images.shape and first.min() >= 0.0 and first.max() <= 1.0
    np.testing.assert_allclose(first, again)
    assert not np.allclose(first, other)


def test_resolution_augmentation_removes_fine_detail_from_some_images_only():
    import tensorflow as tf

    images = _batch()
    out = np.asarray(lower_resolution(tf, tf.random.Generator.from_seed(3), tf.constant(images)))

    def detail(batch: np.ndarray) -> np.ndarray:  # mean absolute difference between neighbouring pixels
        return np.abs(np.diff(batch[:, 10:54, 10:54, 0], axis=2)).mean(axis=(1, 2))

    lowered = detail(out) < 0.7 * detail(images)
    untouched = np.isclose(out, images).all(axis=(1, 2, 3))
    assert lowered.any() and untouched.any()
    assert (lowered | untouched).all()
