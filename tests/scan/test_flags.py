"""flag_result on its own: each flag code enters exactly when its rule holds (mriscan/scan/flags.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from mriscan.data.loader import LoadedImage
from mriscan.scan.flags import FLAG_CODES, flag_result

THRESHOLD, REVIEW = 0.5, 0.3
RANGES = {"input_mean": [0.2, 0.4]}


def _record(**fields) -> LoadedImage:
    return LoadedImage(path=Path("a.png"), sha256="s", statistics={"input_mean": 0.3}, **fields)


def _flag(probability: float, record: LoadedImage | None = None):
    return flag_result(record or _record(), probability, probability >= THRESHOLD, THRESHOLD, REVIEW, RANGES)


@pytest.mark.parametrize(("probability", "near"), [(0.29, False), (0.3, True), (0.42, True), (0.4999, True),
                                                   (0.5, False), (0.9, False)])
def test_near_threshold_is_the_review_band_below_the_threshold(probability: float, near: bool) -> None:
    flag = _flag(probability)
    assert ("near_threshold" in flag.codes) == near and flag.flagged == near
    if near:
        assert flag.details == (f"probability {probability:.3f} in the review band [0.300, 0.500)",)


def test_a_clean_result_outside_the_band_is_not_flagged() -> None:
    flag = _flag(0.1)
    assert flag.codes == () and flag.details == () and not flag.flagged


def test_quality_decoder_warnings_and_unusual_input_each_have_their_code() -> None:
    record = _record(low_quality=("tiny image",), warnings=("truncated file",), had_colour=True)
    flag = _flag(0.9, record)
    assert flag.codes == ("low_quality", "decoded_with_warnings", "unusual_input")
    assert flag.details == ("tiny image", "truncated file", "colour content in an MRI slice")
    assert set(flag.codes) <= set(FLAG_CODES)


def test_statistics_outside_the_training_ranges_are_unusual_input() -> None:
    record = LoadedImage(path=Path("a.png"), sha256="s", statistics={"input_mean": 0.95})
    flag = _flag(0.1, record)
    assert flag.codes == ("unusual_input",) and "input_mean 0.950 outside training range" in flag.details[0]
    assert _flag(0.1, _record()).codes == ()  # inside the ranges: nothing
