import cv2
import numpy as np
import pytest
from conftest import brain_like
from hypothesis import given
from hypothesis import strategies as st

from mriscan.data.preprocess import PreprocessConfig, head_mask, linear_percentiles, preprocess, resize_by_blocks


def test_output_shape_range_and_dtype():
    out = preprocess(brain_like(1), PreprocessConfig(image_size=96))
    assert out.shape == (96, 96, 1) and out.dtype == np.float32
    assert 0.0 <= out.min() and out.max() <= 1.0 and out.max() > 0.9


def test_frame_size_and_intensity_scale_do_not_change_the_input():
    """The same head in a bigger black frame, at another intensity scale, gives the same input."""
    head = brain_like(2).astype(np.float32)
    framed = np.zeros((400, 500), np.float32)
    framed[100:280, 170:330] = head * 37.0 + 5.0 * (head > 0)
    a, b = preprocess(head), preprocess(framed)
    assert np.abs(a - b).mean() < 0.03


def test_aspect_ratio_is_kept_by_letterboxing():
    wide = np.zeros((100, 300), np.float32)
    wide[10:90, 10:290] = np.random.default_rng(0).uniform(50, 200, (80, 280))
    out = preprocess(wide, PreprocessConfig(image_size=150, crop_to_head=False))[..., 0]
    rows_with_content = np.flatnonzero(out.max(axis=1) > 0)
    assert 40 <= len(rows_with_content) <= 60


def test_blank_and_constant_images_do_not_crash():
    for image in (np.zeros((50, 50)), np.full((50, 80), 7.0), np.array([[3.0]])):
        out = preprocess(image, PreprocessConfig(image_size=32))
        assert out.shape == (32, 32, 1) and np.isfinite(out).all()


def test_nan_values_are_neutralised():
    image = brain_like(3).astype(np.float32)
    image[0, 0] = np.nan
    assert np.isfinite(preprocess(image)).all()


@given(
    size=st.tuples(st.integers(1, 400), st.integers(1, 400)),
    where=st.tuples(st.floats(0, 1, exclude_max=True), st.floats(0, 1, exclude_max=True)),
    value=st.sampled_from([np.nan, np.inf, -np.inf]),
)
def test_one_non_finite_pixel_anywhere_counts_as_zero(size, where, value):
    image = np.random.default_rng(size[0] * 401 + size[1]).uniform(0, 255, size).astype(np.float32)
    row, column = int(where[0] * size[0]), int(where[1] * size[1])
    zeroed = image.copy()
    zeroed[row, column] = 0.0
    image[row, column] = value
    np.testing.assert_array_equal(preprocess(image), preprocess(zeroed))


def test_rejects_non_2d_input():
    with pytest.raises(ValueError, match="2-D grey image"):
        preprocess(np.zeros((10, 10, 3)))


def test_head_mask_ignores_small_bright_text():
    image = brain_like(4).astype(np.float32) / 255
    image[2:8, 2:30] = 1.0  # an annotation in the corner
    mask = head_mask(image)
    assert not mask[2:8, 2:30].any() and mask[90, 80]


def test_config_round_trips_through_the_card():
    for version in (1, 2):
        config = PreprocessConfig(image_size=128, low_percentile=2.0, version=version)
        assert PreprocessConfig.from_dict(config.to_dict()) == config


def test_a_card_without_a_version_was_trained_with_version_1():
    card_entry = {"name": "crop-percentile-letterbox", "mask_side": 128, "image_size": 150, "crop_to_head": True,
                  "low_percentile": 1.0, "high_percentile": 99.5, "margin": 0.03}
    assert PreprocessConfig.from_dict(card_entry).version == 1
    assert PreprocessConfig().version == 3  # new models


def test_from_version_3_large_jpegs_are_decoded_reduced_to_the_input_size():
    assert PreprocessConfig(image_size=128).decode_least_side == 128
    assert PreprocessConfig(version=2).decode_least_side is None
    assert PreprocessConfig(version=1).decode_least_side is None


def test_an_unknown_version_asks_for_an_upgrade():
    with pytest.raises(ValueError, match="upgrade mriscan"):
        PreprocessConfig.from_dict({"version": 99})


def test_version_1_is_the_arithmetic_older_models_were_trained_with():
    """Float32 throughout, area resizes, rescaling before the last resize: pinned by its numbers."""
    image = brain_like(5)
    out = preprocess(image, PreprocessConfig(version=1))[..., 0]
    assert preprocess(image.astype(np.float32), PreprocessConfig(version=1)).tobytes() == out[..., None].tobytes()
    assert np.abs(out - preprocess(image)[..., 0]).mean() < 0.02  # version 2: the same steps, other rounding
    assert not np.array_equal(out, preprocess(image)[..., 0])


@pytest.mark.parametrize("size", [(180, 160), (512, 448), (1000, 333), (97, 301)])
def test_version_2_gives_nearly_the_same_input_for_8_bit_and_float_pixels(size):
    """8-bit slices are resized as 8-bit (rounded), DICOM values as float: a DICOM and a PNG agree."""
    image = cv2.resize(brain_like(6), size[::-1], interpolation=cv2.INTER_LINEAR)
    as_byte, as_float = preprocess(image), preprocess(image.astype(np.float32))
    assert np.abs(as_byte - as_float).mean() < 0.005


@pytest.mark.parametrize(("shape", "size"), [((300, 200), (100, 150)), ((301, 211), (100, 150)),
                                             ((150, 150), (150, 150)), ((60, 40), (90, 135)), ((1000, 7), (1, 150))])
def test_resize_reaches_the_size_asked(shape, size):
    image = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
    assert resize_by_blocks(image, size, cv2.INTER_AREA).shape == size[::-1]


def test_resize_by_a_whole_factor_is_plain_area_averaging():
    image = np.random.default_rng(1).uniform(0, 255, (300, 240)).astype(np.float32)
    np.testing.assert_allclose(resize_by_blocks(image, (80, 100), cv2.INTER_AREA),
                               image.reshape(100, 3, 80, 3).mean(axis=(1, 3)), rtol=1e-5)


@given(
    values=st.lists(st.integers(0, 65535), min_size=1, max_size=300),
    scale=st.sampled_from([1.0, 1 / 255, 0.37]),
    percents=st.tuples(st.floats(0, 100), st.floats(0, 100)),
)
def test_linear_percentiles_are_numpys(values: list[int], scale: float, percents: tuple[float, float]):
    array = (np.array(values, np.float32) * np.float32(scale)).astype(np.float32)
    assert linear_percentiles(array, percents) == np.percentile(array, percents).tolist()



@given(
    values=st.lists(st.integers(0, 255), min_size=1, max_size=300),
    percents=st.tuples(st.floats(0, 100), st.floats(0, 100)),
)
def test_linear_percentiles_of_8_bit_values_by_histogram_are_numpys(values: list[int], percents: tuple[float, float]):
    array = np.array(values, np.uint8)
    assert linear_percentiles(array, percents) == np.percentile(array.astype(np.float32), percents).tolist()


# What each version computes for one fixture, pinned: a change to either version's arithmetic
# silently changes what every model trained with it sees, so it must show here first.
PINNED_SUMMARY = {
    1: (0.38213, [[0.0, 0.1023, 0.484, 0.4663, 0.1219, 0.0], [0.0047, 0.5993, 0.6691, 0.7103, 0.7467, 0.0059],
                  [0.103, 0.6772, 0.7403, 0.7571, 0.7779, 0.1139], [0.1118, 0.7424, 0.7157, 0.6969, 0.6655, 0.1055],
                  [0.0061, 0.5907, 0.602, 0.7353, 0.6003, 0.0047], [0.0, 0.083, 0.4565, 0.4727, 0.0879, 0.0]]),
    2: (0.39451, [[0.0, 0.1043, 0.4994, 0.4835, 0.1237, 0.0], [0.005, 0.6174, 0.695, 0.733, 0.7566, 0.0066],
                  [0.108, 0.7019, 0.761, 0.7768, 0.7966, 0.1204], [0.1162, 0.763, 0.7385, 0.7203, 0.692, 0.1123],
                  [0.0063, 0.6096, 0.632, 0.7564, 0.6202, 0.0054], [0.0, 0.0864, 0.4734, 0.4893, 0.0921, 0.0]]),
}


@pytest.mark.parametrize("version", [1, 2, 3])
def test_each_version_computes_its_pinned_input(version):
    out = preprocess(brain_like(5), PreprocessConfig(version=version))[..., 0]
    mean, summary = PINNED_SUMMARY[min(version, 2)]  # version 3 differs from 2 only in decoding
    assert float(out.mean()) == pytest.approx(mean, abs=2e-4)
    np.testing.assert_allclose(cv2.resize(out, (6, 6), interpolation=cv2.INTER_AREA), summary, atol=2e-4)
