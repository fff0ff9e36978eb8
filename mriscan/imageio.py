"""Decode one file into grey pixels plus facts about it, by content, never by extension.

The format is sniffed from the first bytes (JPEG, PNG, BMP, TIFF, DICOM Part 10); content with
no known signature is offered to pydicom as a raw DICOM data set. Before any pixel is decoded,
the size the header declares is checked against a pixel budget, so a small file that declares
an enormous image (a decompression bomb) is refused without allocating it.

Raster formats are decoded with OpenCV; DICOM with pydicom, followed by the standard display
pipeline (modality LUT, VOI LUT, photometric interpretation) in small functions, one
transformation each.

Everything that goes wrong becomes an :class:`~mriscan.errors.UnreadableImageError` (or its
subclass :class:`~mriscan.errors.ImageTooLargeError`) whose message names the file, the problem
and what to do. DICOM patient identifiers are never read into anything returned or raised:
only the Study, Series and SOP Instance UIDs are kept.
"""

from __future__ import annotations

import io
import os
import stat
import struct
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import cv2
import numpy as np

from mriscan.errors import ImageTooLargeError, UnreadableImageError

if TYPE_CHECKING:
    from pydicom.dataelem import DataElement
    from pydicom.dataset import Dataset

DEFAULT_MAX_PIXELS = 50_000_000
"""Largest declared width x height (x frames) decoded unless the caller raises it."""

TRUNCATED_WARNING = "truncated data: decoder recovered part of the image"
MISSING_END_WARNING = "truncated data: end marker missing, image data complete"

_REEXPORT = "Copy or export the file again from its source (scanner, PACS or archive), then rescan."
_NOT_AN_IMAGE = "Check that this is an image; if it is, export it again as PNG, JPEG or DICOM, then rescan."
_FORMAT_NAMES = {"jpeg": "JPEG", "png": "PNG", "bmp": "BMP", "tiff": "TIFF", "dicom": "DICOM"}
_SIGNATURES = (
    (b"\xff\xd8\xff", "jpeg"),
    (b"\x89PNG\r\n\x1a\n", "png"),
    (b"BM", "bmp"),
    (b"II*\x00", "tiff"),
    (b"MM\x00*", "tiff"),
)
_DICOM_MARKER = b"DICM"
_DICOM_MARKER_OFFSET = 128
_PNG_IEND = b"\x00\x00\x00\x00IEND\xaeB`\x82"
_JPEG_EOI = b"\xff\xd9"
_JPEG_SOS = 0xDA
_JPEG_STANDALONE_MARKERS = frozenset({0x01, 0xD8, *range(0xD0, 0xD8)})
_JPEG_FRAME_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
_JPEG_SCALABLE_FRAMES = frozenset({0xC0, 0xC1, 0xC2})  # Huffman DCT: baseline, extended, progressive
_REDUCED_FLAGS = {
    (2, 1): cv2.IMREAD_REDUCED_GRAYSCALE_2, (2, 3): cv2.IMREAD_REDUCED_COLOR_2,
    (4, 1): cv2.IMREAD_REDUCED_GRAYSCALE_4, (4, 3): cv2.IMREAD_REDUCED_COLOR_4,
    (8, 1): cv2.IMREAD_REDUCED_GRAYSCALE_8, (8, 3): cv2.IMREAD_REDUCED_COLOR_8,
}
"""OpenCV's flag for a JPEG decoded at 1/scale, by (scale, components)."""
_TIFF_WIDTH_TAG, _TIFF_LENGTH_TAG, _TIFF_SHORT = 256, 257, 3
_BYTES_PER_PIXEL_BOUND = 8
_FILE_SIZE_SLACK = 64 * 1024 * 1024
# Measured on Br35H: JPEG chroma noise around burnt-in text spreads the channels by at most
# ~20/255, while coloured annotations (tumour contours, crosshairs, markers) spread them by more,
# often on under 0.1% of the pixels.
_COLOUR_TOLERANCE = 0.08
"""Channels closer than this fraction of full scale count as equal."""
_COLOUR_FRACTION = 0.0002
"""An image has colour when more than this fraction of its pixels have unequal channels."""
_UID_KEYWORDS = ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID")
_PIXEL_KEYWORDS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")


@dataclass(frozen=True, eq=False)
class DecodedImage:
    """One decoded grey image (one frame of a multi-frame DICOM) and facts about it.

    Equality is identity (``eq=False``): comparing pixel arrays element-wise is the caller's call.

    Attributes
    ----------
    pixels : 2-D grey values in their natural range: uint8 or uint16 as decoded for grey
        rasters (and grey stored as colour), float32 otherwise (converted colour, other
        raster types, DICOM values after the modality and VOI LUTs). Not copied to float32:
        preprocessing works on the decoded type, and the copy cost ~0.1 ms per file.
    frame : frame index within a multi-frame DICOM, else None.
    kind : the format found in the content: "jpeg", "png", "bmp", "tiff" or "dicom".
    had_colour : True when the colour channels genuinely differ (not grey stored as RGB).
    warnings : problems the decoder recovered from, e.g. truncated data.
    dicom_uids : StudyInstanceUID, SeriesInstanceUID and SOPInstanceUID when present; empty
        for non-DICOM files. Never any patient identifier.
    """

    pixels: np.ndarray
    frame: int | None
    kind: str
    had_colour: bool
    warnings: tuple[str, ...] = ()
    dicom_uids: Mapping[str, str] = field(default_factory=dict)


class _Refusal(Exception):
    """A problem found in the content; :func:`decode_bytes` adds the file name to it.

    Messages built here never contain DICOM element values other than image attributes.
    """

    def __init__(self, problem: str, action: str = _REEXPORT, *, too_large: bool = False) -> None:
        super().__init__(problem)
        self.problem = problem
        self.action = action
        self.too_large = too_large


def read_image(
    path: Path, max_pixels: int = DEFAULT_MAX_PIXELS, least_side: int | None = None
) -> list[DecodedImage]:
    """Read and decode one file.

    Parameters
    ----------
    path : the file; symbolic links are followed.
    max_pixels : largest declared width x height (x frames) to decode.
    least_side : as for :func:`decode_bytes`.

    Returns
    -------
    One :class:`DecodedImage`, or one per frame for a multi-frame DICOM.

    Raises
    ------
    ImageTooLargeError
        If the file or the image it declares is larger than ``max_pixels`` allows.
    UnreadableImageError
        For any other problem: missing file, dangling link, permission denied, not a regular
        file, empty, damaged or unsupported content.
    """
    data = read_file_bytes(path, max_pixels)
    return decode_bytes(data, max_pixels=max_pixels, name=str(path), least_side=least_side)


def decode_bytes(
    data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS, name: str = "<bytes>", least_side: int | None = None
) -> list[DecodedImage]:
    """Decode the bytes of one image file, whatever their format.

    Parameters
    ----------
    data : the whole content of the file.
    max_pixels : largest declared width x height (x frames) to decode.
    name : how to name the file in error messages.
    least_side : when given, an 8-bit JPEG is decoded at 1/2, 1/4 or 1/8 of its size, the
        smallest that keeps at least this many pixels on each side (libjpeg's scaled inverse DCT:
        decoding and shrinking in one, at about the cost of a full grey decode). Other formats,
        and JPEGs too small to shrink, decode at full size.

    Returns
    -------
    One :class:`DecodedImage`, or one per frame for a multi-frame DICOM.

    Raises
    ------
    ImageTooLargeError
        If the header declares more than ``max_pixels`` pixels (nothing is decoded).
    UnreadableImageError
        For anything else that prevents decoding. No other exception escapes.

    Examples
    --------
    >>> ok, png = cv2.imencode(".png", np.full((2, 3), 7, np.uint8))
    >>> [image] = decode_bytes(png.tobytes())
    >>> image.kind, image.pixels.shape, float(image.pixels.max())
    ('png', (2, 3), 7.0)
    >>> ok, jpeg = cv2.imencode(".jpg", np.full((400, 640), 90, np.uint8))
    >>> decode_bytes(jpeg.tobytes(), least_side=150)[0].pixels.shape  # 1/2: 200 px >= 150 on each side
    (200, 320)
    """
    try:
        return _decode(bytes(data), max_pixels, least_side)
    except _Refusal as refusal:
        error_type = ImageTooLargeError if refusal.too_large else UnreadableImageError
        raise error_type(f"Cannot read {name}: {refusal.problem}. {refusal.action}") from refusal
    except MemoryError as error:
        raise UnreadableImageError(
            f"Cannot read {name}: not enough memory to decode it. Lower --max-pixels or run "
            "with fewer workers, then rescan."
        ) from error
    except Exception as error:  # the contract: only UnreadableImageError leaves this module
        # The type only: a DICOM library message could quote element values.
        raise UnreadableImageError(
            f"Cannot read {name}: the decoder failed ({type(error).__name__}); the file is "
            f"probably damaged. {_REEXPORT}"
        ) from error


def read_file_bytes(path: Path, max_pixels: int = DEFAULT_MAX_PIXELS) -> bytes:
    """Return the bytes of a regular file, refusing files too big for any allowed image.

    Raises
    ------
    ImageTooLargeError
        If the file is larger than any image within ``max_pixels`` can be.
    UnreadableImageError
        If it is missing, a dangling link, not a regular file, or cannot be read.
    """
    limit = max_pixels * _BYTES_PER_PIXEL_BOUND + _FILE_SIZE_SLACK
    try:
        if not stat.S_ISREG(path.stat().st_mode):
            raise UnreadableImageError(
                f"Cannot read {path}: it is not a regular file (a folder, pipe or device). "
                "Move it out of the input folder, then rescan."
            )
        with open(path, "rb") as handle:
            # Read what the file holds (checked against the limit below), not a limit-sized buffer.
            size = os.fstat(handle.fileno()).st_size
            data = handle.read(min(size, limit) + 1)
    except OSError as error:
        raise UnreadableImageError(f"Cannot read {path}: {_describe_os_error(error, path)}") from error
    if len(data) > limit:
        raise ImageTooLargeError(
            f"Cannot read {path}: the file is larger than {limit:,} bytes, more than any image "
            f"within the limit of {max_pixels:,} pixels needs. If it is a genuine image, raise "
            "the limit with --max-pixels."
        )
    return data


def _describe_os_error(error: OSError, path: Path) -> str:
    """Say what an operating-system error means for the file and what to do about it."""
    if isinstance(error, FileNotFoundError) and path.is_symlink():
        return "it is a symbolic link whose target does not exist. Restore the target or remove the link."
    if isinstance(error, FileNotFoundError):
        return "the file does not exist (moved or deleted during the scan?). Check the folder and rescan."
    if isinstance(error, PermissionError):
        return "permission denied. Give the account running mriscan read access to it, then rescan."
    return f"the system could not read it ({error.strerror or type(error).__name__}). {_REEXPORT}"


def _decode(data: bytes, max_pixels: int, least_side: int | None) -> list[DecodedImage]:
    """Sniff the format, check the declared size, then decode."""
    if not data:
        raise _Refusal("the file is empty (0 bytes)", "The copy probably failed; " + _REEXPORT)
    kind = _sniff(data)
    if kind is None or kind == "dicom":
        return _decode_dicom(data, max_pixels, has_marker=kind == "dicom")
    header = _declared_header(kind, data)
    _check_pixel_budget(header[0], header[1], 1, max_pixels)
    reduce = isinstance(header, _JpegFrame) and least_side
    flag = _jpeg_reduced_flag(header, least_side) if reduce else cv2.IMREAD_UNCHANGED
    return [_decode_raster(data, kind, flag)]


def _sniff(data: bytes) -> str | None:
    """Return the format named by the content's signature, or None when none matches.

    The DICOM marker wins: a DICOM preamble may itself hold a TIFF header.
    """
    if data[_DICOM_MARKER_OFFSET : _DICOM_MARKER_OFFSET + 4] == _DICOM_MARKER:
        return "dicom"
    return next((kind for signature, kind in _SIGNATURES if data.startswith(signature)), None)


def _check_pixel_budget(width: int, height: int, frames: int, max_pixels: int) -> None:
    """Refuse an image whose declared size exceeds the pixel budget."""
    declared = width * height * frames
    if declared > max_pixels:
        frames_text = f" x {frames} frames" if frames > 1 else ""
        raise _Refusal(
            f"it declares {width} x {height} pixels{frames_text} ({declared:,} pixels), above the "
            f"limit of {max_pixels:,} that guards against decompression bombs",
            "If the image is genuine, raise the limit with --max-pixels.",
            too_large=True,
        )


# --- Declared sizes, read from the headers without decoding -----------------------------------


def _declared_header(kind: str, data: bytes) -> tuple[int, ...]:
    """Return what a raster header declares: (width, height, ...), a :class:`_JpegFrame` for a JPEG."""
    parsers = {"png": _png_size, "jpeg": _jpeg_frame, "bmp": _bmp_size, "tiff": _tiff_size}
    try:
        return parsers[kind](data)
    except struct.error as error:
        raise _Refusal(f"the {_FORMAT_NAMES[kind]} header is incomplete") from error


def _png_size(data: bytes) -> tuple[int, int]:
    """Width and height from the PNG IHDR chunk (the first chunk, at byte 8)."""
    if data[12:16] != b"IHDR":
        raise _Refusal("the PNG header is incomplete or damaged (no IHDR chunk)")
    width, height = struct.unpack(">II", data[16:24])
    return width, height


class _JpegFrame(NamedTuple):
    """What the first JPEG frame header (SOFn) declares."""

    width: int
    height: int
    marker: int
    precision: int
    components: int


def _jpeg_frame(data: bytes) -> _JpegFrame:
    """The first JPEG frame header, read once per file: for the pixel budget and the decoding scale."""
    for marker, position in _jpeg_markers(data):
        if marker in _JPEG_FRAME_MARKERS:
            precision, height, width, components = struct.unpack(">BHHB", data[position + 4 : position + 10])
            return _JpegFrame(width, height, marker, precision, components)
    raise _Refusal("the JPEG file has no frame header (SOF); it is incomplete or damaged")


def _jpeg_reduced_flag(frame: _JpegFrame, least_side: int) -> int:
    """The OpenCV flag that decodes this JPEG at the smallest scale keeping ``least_side`` pixels a side.

    Only Huffman-coded DCT JPEGs (baseline, extended, progressive) in 8-bit grey or YCbCr shrink:
    a lossless one has no DCT to scale, and a 12-bit or CMYK one would change type or channels.
    The reduced flags are the colour or grey ones of ``IMREAD_UNCHANGED``'s output, without the
    EXIF rotation that ``IMREAD_UNCHANGED`` does not apply either.
    """
    scale = next((s for s in (8, 4, 2) if min(frame.width, frame.height) // s >= least_side), 1)
    if (scale == 1 or frame.marker not in _JPEG_SCALABLE_FRAMES or frame.precision != 8
            or frame.components not in (1, 3)):
        return cv2.IMREAD_UNCHANGED
    return _REDUCED_FLAGS[scale, frame.components] | cv2.IMREAD_IGNORE_ORIENTATION


def _jpeg_markers(data: bytes) -> Iterator[tuple[int, int]]:
    """Yield (marker, position) of each JPEG marker segment up to the first start of scan."""
    position = 2
    while position + 4 <= len(data) and data[position] == 0xFF:
        marker = data[position + 1]
        if marker == 0xFF:  # fill byte before a marker
            position += 1
            continue
        yield marker, position
        if marker == _JPEG_SOS:
            return
        segment_length = 0 if marker in _JPEG_STANDALONE_MARKERS else data[position + 2] << 8 | data[position + 3]
        position += 2 + segment_length


def _bmp_size(data: bytes) -> tuple[int, int]:
    """Width and height from the BMP info header (core 12-byte or Windows 40+ byte form)."""
    (header_size,) = struct.unpack("<I", data[14:18])
    if header_size == 12:
        width, height = struct.unpack("<HH", data[18:22])
    else:
        width, height = struct.unpack("<ii", data[18:26])
    return abs(width), abs(height)  # a negative height means rows stored top-down


def _tiff_size(data: bytes) -> tuple[int, int]:
    """ImageWidth and ImageLength from the first image file directory of a classic TIFF."""
    order = "<" if data.startswith(b"II") else ">"
    (directory,) = struct.unpack(order + "I", data[4:8])
    (entry_count,) = struct.unpack(order + "H", data[directory : directory + 2])
    found: dict[int, int] = {}
    for entry in range(directory + 2, directory + 2 + 12 * entry_count, 12):
        tag, value_type = struct.unpack(order + "HH", data[entry : entry + 4])
        if tag in (_TIFF_WIDTH_TAG, _TIFF_LENGTH_TAG):
            value_format = order + ("H" if value_type == _TIFF_SHORT else "I")
            found[tag] = struct.unpack(value_format, data[entry + 8 : entry + 8 + struct.calcsize(value_format)])[0]
    if len(found) < 2:
        raise _Refusal("the TIFF header does not declare the image width and length")
    return found[_TIFF_WIDTH_TAG], found[_TIFF_LENGTH_TAG]


# --- Raster decoding (OpenCV) -----------------------------------------------------------------


def _decode_raster(data: bytes, kind: str, flag: int) -> DecodedImage:
    """Decode a JPEG, PNG, BMP or TIFF into grey with OpenCV's ``flag``, recovering a missing end marker."""
    if kind == "png":
        _check_png_chunks(data)
    end_marker = _missing_end_marker(kind, data)
    encoded = np.frombuffer(data + end_marker, np.uint8)
    decoded = cv2.imdecode(encoded, flag)
    if decoded is None and flag != cv2.IMREAD_UNCHANGED:  # a reduced decode never refuses what a full one reads
        decoded = cv2.imdecode(encoded, cv2.IMREAD_UNCHANGED)
    if decoded is None or decoded.size == 0:
        raise _Refusal(f"the {_FORMAT_NAMES[kind]} data is damaged or incomplete and could not be decoded")
    warnings: tuple[str, ...] = ()
    if end_marker:
        warnings = (TRUNCATED_WARNING if kind == "jpeg" else MISSING_END_WARNING,)
    pixels, had_colour = _raster_to_grey(decoded)
    return DecodedImage(pixels=pixels, frame=None, kind=kind, had_colour=had_colour, warnings=warnings)


def _check_png_chunks(data: bytes) -> None:
    """Refuse a PNG whose chunk lengths run past the end of the file.

    OpenCV allocates a buffer of the declared chunk length before reading it, so a 60-byte file
    declaring a 3 GB chunk would otherwise cost 3 GB of memory.
    """
    position = 8
    while position + 8 <= len(data):
        (length,) = struct.unpack(">I", data[position : position + 4])
        if position + 12 + length > len(data):
            raise _Refusal("the PNG data is damaged or incomplete (a chunk runs past the end of the file)")
        if data[position + 4 : position + 8] == b"IEND":
            return
        position += 12 + length


def _missing_end_marker(kind: str, data: bytes) -> bytes:
    """Return the end marker a truncated JPEG or PNG lacks, or b"" when it is present.

    OpenCV refuses a JPEG without its end-of-image marker; given one, libjpeg decodes what is
    there and fills the rest, which recovers the usual truncated download.
    """
    if kind == "jpeg":
        if data.endswith(_JPEG_EOI):  # the usual complete file: no search through the data
            return b""
        scan_start = next((pos for marker, pos in _jpeg_markers(data) if marker == _JPEG_SOS), None)
        if scan_start is None:  # cut inside the header: nothing to recover
            return b""
        return b"" if data.find(_JPEG_EOI, scan_start) >= 0 else _JPEG_EOI
    if kind == "png" and data.rfind(b"IEND") < 0:
        return _PNG_IEND
    return b""


def _raster_to_grey(decoded: np.ndarray) -> tuple[np.ndarray, bool]:
    """Turn OpenCV's output (grey, grey+alpha, BGR or BGRA) into grey (``DecodedImage.pixels``) and a colour flag."""
    if decoded.ndim == 2:
        return _grey_type(decoded), False
    channels = decoded.shape[2]
    if channels < 3:  # grey, or grey + alpha
        return _grey_type(np.ascontiguousarray(decoded[..., 0])), False
    return _colour_to_grey(decoded[..., :3], cv2.COLOR_BGR2GRAY, _full_scale(decoded))


def _grey_type(grey: np.ndarray) -> np.ndarray:
    """8- and 16-bit unsigned grey as it is; any other type as float32."""
    return grey if grey.dtype in (np.uint8, np.uint16) else grey.astype(np.float32)


def _full_scale(values: np.ndarray) -> float:
    """The largest value the array's type can hold (or holds, for floating point)."""
    if np.issubdtype(values.dtype, np.integer):
        return float(np.iinfo(values.dtype).max)
    return max(float(np.abs(values).max()), np.finfo(np.float32).tiny)


def _colour_to_grey(colour: np.ndarray, conversion: int, full_scale: float) -> tuple[np.ndarray, bool]:
    """Convert three channels to grey; say whether they genuinely differ.

    Grey stored as three equal channels keeps its exact values (and type, see ``_grey_type``);
    other colour becomes float32 grey.
    """
    first, second, third = cv2.split(np.ascontiguousarray(colour))
    if _same(first, second) and _same(first, third):  # most slices: grey stored as colour
        return _grey_type(first), False
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


# --- DICOM (pydicom), one display-pipeline step per function -----------------------------------
# pydicom is imported where it is used: it costs ~0.2 s of CPU to import, paid at the start of
# every scan and in every worker, and most folders hold no DICOM at all.


def _decode_dicom(data: bytes, max_pixels: int, has_marker: bool) -> list[DecodedImage]:
    """Decode a DICOM data set into one grey image per frame."""
    dataset = _read_dicom_dataset(data, has_marker)
    frames = _dicom_int(dataset, "NumberOfFrames", default=1) or 1
    rows, columns = _dicom_int(dataset, "Rows"), _dicom_int(dataset, "Columns")
    _check_pixel_budget(columns, rows, frames, max_pixels)
    _check_decoder_available(dataset)
    stored = _stored_frames(dataset, frames)
    uids = _dicom_uids(dataset)
    return [_dicom_frame(frame, dataset, index if frames > 1 else None, uids) for index, frame in enumerate(stored)]


def _read_dicom_dataset(data: bytes, has_marker: bool) -> Dataset:
    """Parse a DICOM data set that holds pixel data; say plainly when the content is not one."""
    import pydicom

    try:
        dataset = pydicom.dcmread(io.BytesIO(data), force=True)
        holds_pixels = any(keyword in dataset for keyword in _PIXEL_KEYWORDS)
    except Exception as error:  # pydicom raises many types on damaged input
        if not has_marker:
            raise _Refusal("its content is not a recognised image format", _NOT_AN_IMAGE) from error
        raise _Refusal(f"the DICOM structure is damaged ({type(error).__name__})") from error
    if not has_marker and not holds_pixels:
        raise _Refusal("its content is not a recognised image format", _NOT_AN_IMAGE)
    if not holds_pixels:
        raise _Refusal(
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
        raise _Refusal(f"the DICOM image attribute {keyword} is missing")
    try:
        return int(value)
    except (TypeError, ValueError) as error:
        raise _Refusal(f"the DICOM image attribute {keyword} is not a whole number") from error


def _check_decoder_available(dataset: Dataset) -> None:
    """Refuse a compressed transfer syntax no installed decoder handles, naming what would."""
    from pydicom.pixels import get_decoder

    syntax = dataset.file_meta.TransferSyntaxUID
    try:
        decoder = get_decoder(syntax)
    except NotImplementedError as error:
        raise _Refusal(
            f"its transfer syntax {syntax.name} ({syntax}) is not one pydicom can decode",
            "Export the series uncompressed (Explicit VR Little Endian), then rescan.",
        ) from error
    if not decoder.is_available:
        options = "; ".join(decoder.missing_dependencies)
        raise _Refusal(
            f"its pixel data is compressed as {syntax.name} ({syntax}) and no installed decoder reads it",
            f"Install a decoder (pydicom lists: {options}; pip packages pylibjpeg with its plugins, "
            "or python-gdcm), or export the series uncompressed (Explicit VR Little Endian).",
        )


def _stored_frames(dataset: Dataset, frames: int) -> np.ndarray:
    """Return the stored values with a leading frame axis: (frames, rows, columns[, samples])."""
    try:
        stored = dataset.pixel_array  # YBR colour is converted to RGB here
    except Exception as error:  # pixel handlers raise many types on damaged data
        raise _Refusal(
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
        pixels, had_colour = _colour_to_grey(stored, cv2.COLOR_RGB2GRAY, full_scale)
        warnings: tuple[str, ...] = ()
    else:
        values = _linear_display(stored, dataset)
        warnings = ()
        if values is None:  # anything but the common case: pydicom's general implementation
            values, warnings = _apply_voi(_apply_modality(stored, dataset), dataset)
        pixels, had_colour = _apply_monochrome1(values, dataset).astype(np.float32, copy=False), False
    return DecodedImage(
        pixels=pixels, frame=frame, kind="dicom", had_colour=had_colour, warnings=warnings, dicom_uids=uids
    )


def _linear_display(stored: np.ndarray, dataset: Dataset) -> np.ndarray | None:
    """Rescale Slope/Intercept then a LINEAR window, in float32: the common MR header, done fast.

    The same numbers as pydicom's ``apply_modality_lut`` + ``apply_voi_lut`` (to float32
    rounding), in three passes instead of pydicom's float64 masks (~10x less CPU on a 512x512
    slice). None for anything else (LUT sequences, other VOI functions, a window pydicom refuses,
    a negative slope, float pixel data), which takes pydicom's general path.
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
