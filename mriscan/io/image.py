"""A decoded image and what every format reader shares: refusals, the pixel budget, grey conversion.

The readers (:mod:`mriscan.io.raster`, :mod:`mriscan.io.dicom`) raise :class:`Refusal` for a problem
in the content; :func:`mriscan.io.reader.decode_bytes` adds the file name and turns it into an
:class:`~mriscan.errors.UnreadableImageError`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import cv2
import numpy as np

REEXPORT = "Copy or export the file again from its source (scanner, PACS or archive), then rescan."
FORMAT_NAMES = {"jpeg": "JPEG", "png": "PNG", "bmp": "BMP", "tiff": "TIFF", "dicom": "DICOM"}
# JPEG chroma noise around burnt-in text spreads the channels by up to about 20/255 (on Br35H), while
# coloured annotations (tumour contours, crosshairs, markers) spread them by more, often on under
# 0.1% of the pixels.
_COLOUR_TOLERANCE = 0.08
"""Channels closer than this fraction of full scale count as equal."""
_COLOUR_FRACTION = 0.0002
"""An image has colour when more than this fraction of its pixels have unequal channels."""


@dataclass(frozen=True, eq=False)
class DecodedImage:
    """One decoded grey image (one frame of a multi-frame DICOM, one slice of a volume) and facts about it.

    Equality is identity (``eq=False``): comparing pixel arrays element-wise is the caller's call.

    Attributes
    ----------
    pixels : 2-D grey values in their natural range: uint8 or uint16 as decoded for grey
        rasters (and grey stored as colour), float32 otherwise (converted colour, other
        raster types, DICOM values after the modality and VOI LUTs). Not copied to float32:
        preprocessing works on the decoded type, and the copy would cost CPU on every file.
    frame : frame index within a multi-frame DICOM, slice index within a volume's plane, else None.
    kind : the format found in the content: "jpeg", "png", "bmp", "tiff", "dicom" or "nifti".
    had_colour : True when the colour channels genuinely differ (not grey stored as RGB).
    warnings : problems the decoder recovered from, e.g. truncated data.
    dicom_uids : StudyInstanceUID, SeriesInstanceUID and SOPInstanceUID when present; empty
        for non-DICOM files. Never any patient identifier.
    plane : for a slice of a volume, "axial", "coronal" or "sagittal"; else None.
    outside_head : for a slice of a volume that barely cuts the head, why (a ``low_quality`` reason);
        else empty.
    """

    pixels: np.ndarray
    frame: int | None
    kind: str
    had_colour: bool
    warnings: tuple[str, ...] = ()
    dicom_uids: Mapping[str, str] = field(default_factory=dict)
    plane: str | None = None
    outside_head: str = ""


class Refusal(Exception):
    """A problem found in the content; :func:`mriscan.io.reader.decode_bytes` adds the file name to it.

    Messages built here never contain DICOM element values other than image attributes.
    """

    def __init__(self, problem: str, action: str = REEXPORT, *, too_large: bool = False) -> None:
        super().__init__(problem)
        self.problem = problem
        self.action = action
        self.too_large = too_large


def check_pixel_budget(width: int, height: int, frames: int, max_pixels: int) -> None:
    """Refuse an image whose declared size exceeds the pixel budget."""
    declared = width * height * frames
    if declared > max_pixels:
        frames_text = f" x {frames} frames" if frames > 1 else ""
        raise Refusal(
            f"it declares {width} x {height} pixels{frames_text} ({declared:,} pixels), above the "
            f"limit of {max_pixels:,} that guards against decompression bombs",
            "If the image is genuine, raise the limit with --max-pixels.",
            too_large=True,
        )

def grey_type(grey: np.ndarray) -> np.ndarray:
    """8- and 16-bit unsigned grey as it is; any other type as float32."""
    return grey if grey.dtype in (np.uint8, np.uint16) else grey.astype(np.float32)

def colour_to_grey(colour: np.ndarray, conversion: int, full_scale: float) -> tuple[np.ndarray, bool]:
    """Convert three channels to grey; say whether they genuinely differ.

    Grey stored as three equal channels keeps its exact values (and type, see ``grey_type``);
    other colour becomes float32 grey.
    """
    first, second, third = cv2.split(np.ascontiguousarray(colour))
    if _same(first, second) and _same(first, third):  # most slices: grey stored as colour
        return grey_type(first), False
    spread = _channel_spread(first, second, third)
    had_colour = float(np.count_nonzero(spread > _COLOUR_TOLERANCE * full_scale)) / spread.size > _COLOUR_FRACTION
    grey = cv2.cvtColor(np.ascontiguousarray(colour, dtype=np.float32), conversion)
    return grey, had_colour


def _same(first: np.ndarray, second: np.ndarray) -> bool:
    """True when two channels hold the same values everywhere (one vectorised pass, no temporary)."""
    return cv2.norm(first, second, cv2.NORM_INF) == 0


def _channel_spread(first: np.ndarray, second: np.ndarray, third: np.ndarray) -> np.ndarray:
    """Per pixel, the largest difference between two channels (max minus min over the three).

    OpenCV's saturating absdiff on the native type: most slices arrive as 8-bit RGB, and this
    runs once per scanned file.
    """
    return cv2.max(cv2.max(cv2.absdiff(first, second), cv2.absdiff(first, third)), cv2.absdiff(second, third))
