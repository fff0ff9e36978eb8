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


def _head_with_skull() -> np.ndarray:
    """A bright ring (skull and scalp) around a grey disc (brain), on black, as one model input."""
    import cv2

    image = np.zeros((96, 96), np.float32)
    cv2.circle(image, (48, 48), 40, 0.9, -1)
    cv2.circle(image, (48, 48), 33, 0.5, -1)
    return image[np.newaxis, ..., np.newaxis]


def test_strip_to_brain_removes_the_rim_and_keeps_the_centre():
    from mriscan.data.augment import strip_to_brain

    image = _head_with_skull()
    stripped = strip_to_brain(image, seed=0)
    assert stripped[0, 48, 48, 0] == image[0, 48, 48, 0]  # the brain stays as it was
    assert stripped[0, 48, 86, 0] == 0 and image[0, 48, 86, 0] > 0  # the skull ring goes
    assert stripped[0, 2, 2, 0] == 0


def test_strip_to_brain_leaves_a_blank_image_blank():
    from mriscan.data.augment import strip_to_brain

    blank = np.zeros((1, 32, 32, 1), np.float32)
    assert not strip_to_brain(blank, seed=0).any()


def test_the_augmenter_shows_the_stripped_copy_for_the_chosen_share_only():
    from mriscan.data.augment import build_augmenter

    images = np.repeat(_head_with_skull(), 64, axis=0)
    stripped = np.zeros_like(images)  # a copy that is easy to recognise after augmentation
    never = np.asarray(build_augmenter(1, strip_probability=0.0)(images, stripped))
    always = np.asarray(build_augmenter(1, strip_probability=1.0)(images, stripped))
    half = np.asarray(build_augmenter(1, strip_probability=0.5)(images, stripped))
    blank = np.isclose(half, 0).all(axis=(1, 2, 3))
    assert not np.isclose(never, 0).all(axis=(1, 2, 3)).any()
    assert np.isclose(always, 0).all()
    assert 10 < blank.sum() < 54
