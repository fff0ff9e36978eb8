"""The DICOM reader (pydicom), followed by the standard display pipeline, one step per function.

pydicom is imported where it is used: its import costs CPU at the start of every scan and in
every worker, and most folders hold no DICOM at all. DICOM patient identifiers
are never read into anything returned or raised: only the Study, Series and SOP Instance UIDs are kept.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from typing import TYPE_CHECKING

import cv2
import numpy as np

from mriscan.io.image import DecodedImage, Refusal, check_pixel_budget, colour_to_grey

if TYPE_CHECKING:
    from pydicom.dataelem import DataElement
    from pydicom.dataset import Dataset

_NOT_AN_IMAGE = "Check that this is an image; if it is, export it again as PNG, JPEG or DICOM, then rescan."
_UID_KEYWORDS = ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID")
_PIXEL_KEYWORDS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")


def decode_dicom(data: bytes, max_pixels: int, has_marker: bool) -> list[DecodedImage]:
    """Decode a DICOM data set into one grey image per frame."""
    dataset = _read_dicom_dataset(data, has_marker)
    frames = _dicom_int(dataset, "NumberOfFrames", default=1) or 1
    rows, columns = _dicom_int(dataset, "Rows"), _dicom_int(dataset, "Columns")
    check_pixel_budget(columns, rows, frames, max_pixels)
    _check_decoder_available(dataset)
    stored = _stored_frames(dataset, frames)
    uids = _dicom_uids(dataset)
    return [_dicom_frame(frame, dataset, index if frames > 1 else None, uids) for index, frame in enumerate(stored)]


def read_dicom_uids(data: bytes) -> Mapping[str, str]:
    """The Study, Series and SOP Instance UIDs of a Part 10 DICOM file, even one whose image cannot be decoded.

    Best effort: only these three elements are parsed (nothing that identifies the patient), and a file
    without the ``DICM`` marker, or whose header is damaged, gives an empty mapping. An unreadable slice
    can so still be counted in its study.
    """
    import pydicom

    if data[128:132] != b"DICM":
        return {}
    try:
        dataset = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True, specific_tags=list(_UID_KEYWORDS))
        return dict(_dicom_uids(dataset))
    except Exception:  # pydicom raises many types on damaged input
        return {}


def _read_dicom_dataset(data: bytes, has_marker: bool) -> Dataset:
    """Parse a DICOM data set that holds pixel data; say plainly when the content is not one."""
    import pydicom

    try:
        dataset = pydicom.dcmread(io.BytesIO(data), force=True)
        holds_pixels = any(keyword in dataset for keyword in _PIXEL_KEYWORDS)
    except Exception as error:  # pydicom raises many types on damaged input
        if not has_marker:
            raise Refusal("its content is not a recognised image format", _NOT_AN_IMAGE) from error
        raise Refusal(f"the DICOM structure is damaged ({type(error).__name__})") from error
    if not has_marker and not holds_pixels:
        raise Refusal("its content is not a recognised image format", _NOT_AN_IMAGE)
    if not holds_pixels:
        raise Refusal(
            "the DICOM file holds no image (no Pixel Data element (7FE0,0010)); it may be a "
            "report or another non-image object",
            "Move it out of the input folder, or export the image series instead, then rescan.",
        )
    _ensure_transfer_syntax(dataset)
    return dataset


def _ensure_transfer_syntax(dataset: Dataset) -> None:
    """Record the encoding a raw data set (no Part 10 header) was read with (PS3.5 section 10)."""
    from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

    if "TransferSyntaxUID" in dataset.file_meta:
        return
    implicit_vr, little_endian = dataset.original_encoding
    if implicit_vr:
        dataset.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
    else:
        dataset.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian if little_endian else ExplicitVRBigEndian


def _dicom_int(dataset: Dataset, keyword: str, default: int | None = None) -> int:
    """Read one integer image attribute, naming it when it is missing or malformed."""
    value = dataset.get(keyword, default)
    if value is None or value == "":
        if default is not None:
            return default
        raise Refusal(f"the DICOM image attribute {keyword} is missing")
    try:
        return int(value)
    except (TypeError, ValueError) as error:
        raise Refusal(f"the DICOM image attribute {keyword} is not a whole number") from error


def _check_decoder_available(dataset: Dataset) -> None:
    """Refuse a compressed transfer syntax no installed decoder handles, naming what would."""
    from pydicom.pixels import get_decoder

    syntax = dataset.file_meta.TransferSyntaxUID
    try:
        decoder = get_decoder(syntax)
    except NotImplementedError as error:
        raise Refusal(
            f"its transfer syntax {syntax.name} ({syntax}) is not one pydicom can decode",
            "Export the series uncompressed (Explicit VR Little Endian), then rescan.",
        ) from error
    if not decoder.is_available:
        options = "; ".join(decoder.missing_dependencies)
        raise Refusal(
            f"its pixel data is compressed as {syntax.name} ({syntax}) and no installed decoder reads it",
            f"Install a decoder (pydicom lists: {options}; pip packages pylibjpeg with its plugins, "
            "or python-gdcm), or export the series uncompressed (Explicit VR Little Endian).",
        )


def _stored_frames(dataset: Dataset, frames: int) -> np.ndarray:
    """Return the stored values with a leading frame axis: (frames, rows, columns[, samples])."""
    try:
        stored = dataset.pixel_array  # YBR colour is converted to RGB here
    except Exception as error:  # pixel handlers raise many types on damaged data
        raise Refusal(
            f"its pixel data could not be decoded ({_short(error)}); the file may be truncated "
            "or its image attributes (group 0028) inconsistent"
        ) from error
    if dataset.get("PhotometricInterpretation") == "PALETTE COLOR":
        stored = _palette_to_rgb(stored, dataset)
    return stored if frames > 1 else stored[np.newaxis]


def _short(error: Exception) -> str:
    """Describe a pixel-decoding error briefly.

    Safe to show: pixel handlers only read image attributes (group 0028), never patient data.
    """
    return f"{type(error).__name__}: {str(error)[:200]}"


def _palette_to_rgb(stored: np.ndarray, dataset: Dataset) -> np.ndarray:
    """Map palette indices to RGB through the palette colour LUTs (PS3.3 C.7.6.3.1.5)."""
    from pydicom.pixels import apply_color_lut

    return apply_color_lut(stored, dataset)


def _dicom_uids(dataset: Dataset) -> Mapping[str, str]:
    """Keep the Study, Series and SOP Instance UIDs only; nothing that identifies the patient."""
    return {keyword: str(dataset[keyword].value) for keyword in _UID_KEYWORDS if keyword in dataset}


def _dicom_frame(stored: np.ndarray, dataset: Dataset, frame: int | None, uids: Mapping[str, str]) -> DecodedImage:
    """Turn one frame of stored values into a grey image in display orientation."""
    if stored.ndim == 3:  # RGB after YBR or palette conversion
        full_scale = float(2 ** _dicom_int(dataset, "BitsStored", default=8) - 1)
        pixels, had_colour = colour_to_grey(stored, cv2.COLOR_RGB2GRAY, full_scale)
        warnings: tuple[str, ...] = ()
    else:
        values = linear_display(stored, dataset)
        warnings = ()
        if values is None:  # anything but the common case: pydicom's general implementation
            values, warnings = _apply_voi(_apply_modality(stored, dataset), dataset)
        pixels, had_colour = _apply_monochrome1(values, dataset).astype(np.float32, copy=False), False
    return DecodedImage(
        pixels=pixels, frame=frame, kind="dicom", had_colour=had_colour, warnings=warnings, dicom_uids=uids
    )


def linear_display(stored: np.ndarray, dataset: Dataset) -> np.ndarray | None:
    """Rescale Slope/Intercept then a LINEAR window, in float32: the common MR header, done fast.

    The same numbers as pydicom's ``apply_modality_lut`` + ``apply_voi_lut`` (to float32
    rounding), in three passes instead of pydicom's float64 masks, at a fraction of the CPU
    (docs/performance.md, "DICOM decoding"). None for anything else (LUT sequences, other VOI
    functions, a window pydicom refuses, a negative slope, float pixel data), which takes
    pydicom's general path.
    """
    if dataset.get("ModalityLUTSequence") or dataset.get("VOILUTSequence") or stored.dtype.kind not in "iu":
        return None
    if ("RescaleSlope" in dataset) != ("RescaleIntercept" in dataset):
        return None
    try:
        slope = float(dataset.RescaleSlope) if "RescaleSlope" in dataset else 1.0
        intercept = float(dataset.RescaleIntercept) if "RescaleIntercept" in dataset else 0.0
    except (TypeError, ValueError):
        return None
    has_window = "WindowCenter" in dataset or "WindowWidth" in dataset
    window = _linear_window(dataset) if has_window else None
    if (has_window and window is None) or not slope > 0:
        return None
    values = stored.astype(np.float32)
    if window is None:  # no window: modality units
        values *= np.float32(slope)
        values += np.float32(intercept)
        return values
    center, width = window
    low, high = _output_range(stored, dataset)  # the stored range in modality units (slope > 0)
    # PS3.3 C.11.2.1.2.1 as pydicom computes it: ((x - c) / w + 0.5) * range + low, clipped.
    scale = slope * (high - low) / width
    values *= np.float32(scale)
    values += np.float32(((intercept - center) / width + 0.5) * (high - low) + low)
    return np.clip(values, low, high, out=values)


def _linear_window(dataset: Dataset) -> tuple[float, float] | None:
    """The first window's center - 0.5 and width - 1 (LINEAR), or None when pydicom should judge it."""
    function = str(dataset.get("VOILUTFunction", "LINEAR") or "LINEAR").upper()
    if function != "LINEAR" or dataset.get("PhotometricInterpretation") not in ("MONOCHROME1", "MONOCHROME2"):
        return None
    try:
        center, width = (float(_first(dataset["WindowCenter"])), float(_first(dataset["WindowWidth"])))
        int(dataset.BitsStored)
    except (KeyError, AttributeError, TypeError, ValueError, IndexError):
        return None
    if not width > 1:  # pydicom refuses width < 1 (a warning here); width 1 is a step, left to it too
        return None
    return center - 0.5, width - 1


def _first(element: DataElement) -> object:
    return element.value[0] if element.VM > 1 else element.value


def _apply_modality(stored: np.ndarray, dataset: Dataset) -> np.ndarray:
    """Map stored values to modality units: Modality LUT or Rescale Slope/Intercept (PS3.3 C.11.1)."""
    from pydicom.pixels import apply_modality_lut

    return apply_modality_lut(stored, dataset)


def _apply_voi(values: np.ndarray, dataset: Dataset) -> tuple[np.ndarray, tuple[str, ...]]:
    """Apply the VOI LUT, or Window Center/Width, when present (PS3.3 C.11.2).

    Without either, the values keep their modality range. An invalid window is ignored with a
    warning rather than losing the image.
    """
    from pydicom.pixels import apply_voi_lut

    try:
        return apply_voi_lut(values, dataset), ()
    except (ValueError, NotImplementedError, IndexError, TypeError):
        return values, ("invalid VOI LUT or window in the DICOM header: window ignored",)


def _apply_monochrome1(values: np.ndarray, dataset: Dataset) -> np.ndarray:
    """Invert MONOCHROME1 (minimum = white) so that higher is brighter (PS3.3 C.7.6.3.1.2)."""
    if dataset.get("PhotometricInterpretation") != "MONOCHROME1":
        return values
    low, high = _output_range(values, dataset)
    return (low + high) - (values if values.dtype.kind == "f" else values.astype(np.float64))


def _output_range(values: np.ndarray, dataset: Dataset) -> tuple[float, float]:
    """The range values can take after the modality and VOI steps (PS3.3 C.11.1.1, C.11.2.1)."""
    lut_sequence = dataset.get("VOILUTSequence") or dataset.get("ModalityLUTSequence")
    if lut_sequence:
        return 0.0, float(2 ** int(lut_sequence[0].LUTDescriptor[2]) - 1)
    if dataset.get("BitsStored") is None:  # float pixel data: no declared range
        return float(values.min()), float(values.max())
    bits = int(dataset.BitsStored)
    signed = dataset.get("PixelRepresentation") == 1
    low, high = (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if signed else (0, 2**bits - 1)
    slope = float(dataset.get("RescaleSlope", 1) or 1)
    intercept = float(dataset.get("RescaleIntercept", 0) or 0)
    ends = sorted((low * slope + intercept, high * slope + intercept))
    return ends[0], ends[1]
