"""The raster reader: JPEG, PNG, BMP and TIFF decoded with OpenCV.

The size a header declares is read without decoding and checked against the pixel budget first;
an 8-bit JPEG may be decoded already shrunk (libjpeg's scaled inverse DCT).
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from typing import NamedTuple

import cv2
import numpy as np

from mriscan.io.image import FORMAT_NAMES, DecodedImage, Refusal, check_pixel_budget, colour_to_grey, grey_type

TRUNCATED_WARNING = "truncated data: decoder recovered part of the image"
MISSING_END_WARNING = "truncated data: end marker missing, image data complete"

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


def decode_raster(data: bytes, kind: str, max_pixels: int, least_side: int | None) -> DecodedImage:
    """Decode a raster image of format ``kind`` (as sniffed) after checking its declared size.

    ``least_side``: as for :func:`mriscan.io.reader.decode_bytes` (JPEG only).
    """
    header = _declared_header(kind, data)
    check_pixel_budget(header[0], header[1], 1, max_pixels)
    reduce = isinstance(header, JpegFrame) and least_side
    flag = jpeg_reduced_flag(header, least_side) if reduce else cv2.IMREAD_UNCHANGED
    return _decode_with_flag(data, kind, flag)


# --- Declared sizes, read from the headers without decoding -----------------------------------


def _declared_header(kind: str, data: bytes) -> tuple[int, ...]:
    """Return what a raster header declares: (width, height, ...), a :class:`JpegFrame` for a JPEG."""
    parsers = {"png": _png_size, "jpeg": jpeg_frame, "bmp": _bmp_size, "tiff": _tiff_size}
    try:
        return parsers[kind](data)
    except struct.error as error:
        raise Refusal(f"the {FORMAT_NAMES[kind]} header is incomplete") from error


def _png_size(data: bytes) -> tuple[int, int]:
    """Width and height from the PNG IHDR chunk (the first chunk, at byte 8)."""
    if data[12:16] != b"IHDR":
        raise Refusal("the PNG header is incomplete or damaged (no IHDR chunk)")
    width, height = struct.unpack(">II", data[16:24])
    return width, height


class JpegFrame(NamedTuple):
    """What the first JPEG frame header (SOFn) declares."""

    width: int
    height: int
    marker: int
    precision: int
    components: int


def jpeg_frame(data: bytes) -> JpegFrame:
    """The first JPEG frame header, read once per file: for the pixel budget and the decoding scale."""
    for marker, position in _jpeg_markers(data):
        if marker in _JPEG_FRAME_MARKERS:
            precision, height, width, components = struct.unpack(">BHHB", data[position + 4 : position + 10])
            return JpegFrame(width, height, marker, precision, components)
    raise Refusal("the JPEG file has no frame header (SOF); it is incomplete or damaged")


def jpeg_reduced_flag(frame: JpegFrame, least_side: int) -> int:
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
        raise Refusal("the TIFF header does not declare the image width and length")
    return found[_TIFF_WIDTH_TAG], found[_TIFF_LENGTH_TAG]


# --- Raster decoding (OpenCV) -----------------------------------------------------------------


def _decode_with_flag(data: bytes, kind: str, flag: int) -> DecodedImage:
    """Decode a JPEG, PNG, BMP or TIFF into grey with OpenCV's ``flag``, recovering a missing end marker."""
    if kind == "png":
        _check_png_chunks(data)
    end_marker = _missing_end_marker(kind, data)
    encoded = np.frombuffer(data + end_marker, np.uint8)
    decoded = cv2.imdecode(encoded, flag)
    if decoded is None and flag != cv2.IMREAD_UNCHANGED:  # a reduced decode never refuses what a full one reads
        decoded = cv2.imdecode(encoded, cv2.IMREAD_UNCHANGED)
    if decoded is None or decoded.size == 0:
        raise Refusal(f"the {FORMAT_NAMES[kind]} data is damaged or incomplete and could not be decoded")
    warnings: tuple[str, ...] = ()
    if end_marker:
        warnings = (TRUNCATED_WARNING if kind == "jpeg" else MISSING_END_WARNING,)
    pixels, had_colour = raster_to_grey(decoded)
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
            raise Refusal("the PNG data is damaged or incomplete (a chunk runs past the end of the file)")
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


def raster_to_grey(decoded: np.ndarray) -> tuple[np.ndarray, bool]:
    """Turn OpenCV's output (grey, grey+alpha, BGR or BGRA) into grey (``DecodedImage.pixels``) and a colour flag."""
    if decoded.ndim == 2:
        return grey_type(decoded), False
    channels = decoded.shape[2]
    if channels < 3:  # grey, or grey + alpha
        return grey_type(np.ascontiguousarray(decoded[..., 0])), False
    return colour_to_grey(decoded[..., :3], cv2.COLOR_BGR2GRAY, _full_scale(decoded))


def _full_scale(values: np.ndarray) -> float:
    """The largest value the array's type can hold (or holds, for floating point)."""
    if np.issubdtype(values.dtype, np.integer):
        return float(np.iinfo(values.dtype).max)
    return max(float(np.abs(values).max()), np.finfo(np.float32).tiny)
