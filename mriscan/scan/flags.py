"""Flags: which results a radiologist should look at, and why.

``flag_reason`` is a ``;``-separated list of codes (legend in the README); ``flag_detail`` says
the same in words. A result is flagged when it is a false-negative risk (``near_threshold``), when
the model should not be trusted on the input (``low_quality``, ``decoded_with_warnings``,
``unusual_input``), or when there is no result at all (``unreadable``): ``flagged == true`` is the
one filter that finds every row without a trustworthy answer.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from mriscan.data.loader import LoadedImage
from mriscan.data.quality import unusual_reasons

UNREADABLE = "unreadable"
FLAG_CODES = {
    UNREADABLE: "the file could not be read (the row's error says why): a person must look at it",
    "near_threshold": "predicted no_tumor, but with a probability at or above the review threshold",
    "low_quality": "blank or near-constant, tiny, or extreme aspect ratio",
    "decoded_with_warnings": "the decoder recovered the image only partly (e.g. a truncated file)",
    "unusual_input": "unlike the training data (colour content or statistics outside the training ranges)",
}


@dataclass(frozen=True)
class Flag:
    """The flag codes of one result and the same in words."""

    codes: tuple[str, ...]
    details: tuple[str, ...]

    @property
    def flagged(self) -> bool:
        return bool(self.codes)


def flag_result(
    record: LoadedImage,
    probability: float,
    predicted_tumor: bool,
    threshold: float,
    review_threshold: float,
    training_ranges: Mapping[str, Sequence[float]],
) -> Flag:
    """Flag one result (see the module docstring for the rules); ``predicted_tumor`` is the bundle's decision."""
    codes: list[str] = []
    details: list[str] = []
    if not predicted_tumor and probability >= review_threshold:
        codes.append("near_threshold")
        details.append(f"probability {probability:.3f} in the review band [{review_threshold:.3f}, {threshold:.3f})")
    if record.low_quality:
        codes.append("low_quality")
        details.extend(record.low_quality)
    if record.warnings:
        codes.append("decoded_with_warnings")
        details.extend(record.warnings)
    unusual = (["colour content in an MRI slice"] if record.had_colour else []) + unusual_reasons(
        record.statistics, training_ranges
    )
    if unusual:
        codes.append("unusual_input")
        details.extend(unusual)
    return Flag(tuple(codes), tuple(details))
