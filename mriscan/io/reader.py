"""Decode one file into grey pixels plus facts about it, by content, never by extension.

The format is sniffed from the first bytes (JPEG, PNG, BMP, TIFF, DICOM Part 10, NIfTI-1/2 plain or
gzip-compressed); content with no known signature is offered to pydicom as a raw DICOM data set.
Before any pixel is decoded, the size the header declares is checked against a pixel budget, so a
small file that declares an enormous image (a decompression bomb) is refused without allocating it.

One reader per format: raster formats are decoded with OpenCV (:mod:`mriscan.io.raster`); DICOM with
pydicom, followed by the standard display pipeline (:mod:`mriscan.io.dicom`); NIfTI volumes with
nibabel, cut into slices in the planes asked for (:mod:`mriscan.io.nifti`).

Everything that goes wrong becomes an :class:`~mriscan.errors.UnreadableImageError` (or its
subclass :class:`~mriscan.errors.ImageTooLargeError`) whose message names the file, the problem
and what to do. DICOM patient identifiers are never read into anything returned or raised:
only the Study, Series and SOP Instance UIDs are kept.
"""

from __future__ import annotations

import os
import stat
from dataclasses import replace
from pathlib import Path

from mriscan.errors import ImageTooLargeError, UnreadableImageError
from mriscan.io.decoder_messages import decoder_messages
from mriscan.io.dicom import decode_dicom
from mriscan.io.image import REEXPORT, DecodedImage, Refusal
from mriscan.io.nifti import decode_nifti, nifti_version
from mriscan.io.raster import decode_raster

DEFAULT_MAX_PIXELS = 50_000_000
"""Largest declared width x height (x frames) decoded unless the caller raises it."""
_SIGNATURES = (
    (b"\xff\xd8\xff", "jpeg"),
    (b"\x89PNG\r\n\x1a\n", "png"),
    (b"BM", "bmp"),
    (b"II*\x00", "tiff"),
    (b"MM\x00*", "tiff"),
)
_DICOM_MARKER = b"DICM"
_DICOM_MARKER_OFFSET = 128
_BYTES_PER_PIXEL_BOUND = 8
_FILE_SIZE_SLACK = 64 * 1024 * 1024


def read_image(
    path: Path, max_pixels: int = DEFAULT_MAX_PIXELS, least_side: int | None = None, planes: str = "acquisition"
) -> list[DecodedImage]:
    """Read and decode one file.

    Parameters
    ----------
    path : the file; symbolic links are followed.
    max_pixels : largest declared width x height (x frames) to decode.
    least_side, planes : as for :func:`decode_bytes`.

    Returns
    -------
    One :class:`DecodedImage`, or one per frame for a multi-frame DICOM, or one per slice for a volume.

    Raises
    ------
    ImageTooLargeError
        If the file or the image it declares is larger than ``max_pixels`` allows.
    UnreadableImageError
        For any other problem: missing file, dangling link, permission denied, not a regular
        file, empty, damaged or unsupported content.
    """
    data = read_file_bytes(path, max_pixels)
    return decode_bytes(data, max_pixels=max_pixels, name=str(path), least_side=least_side, planes=planes)


def decode_bytes(
    data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS, name: str = "<bytes>", least_side: int | None = None,
    planes: str = "acquisition",
) -> list[DecodedImage]:
    """Decode the bytes of one image file, whatever their format.

    Parameters
    ----------
    data : the whole content of the file.
    max_pixels : largest declared width x height (x frames, or x slices for a volume) to decode.
    name : how to name the file in error messages.
    least_side : when given, an 8-bit JPEG is decoded at 1/2, 1/4 or 1/8 of its size, the
        smallest that keeps at least this many pixels on each side (libjpeg's scaled inverse DCT:
        decoding and shrinking in one, at about the cost of a full grey decode). Other formats,
        and JPEGs too small to shrink, decode at full size.
    planes : for a NIfTI volume, which planes to cut it in: "acquisition" (the plane with the finest
        in-plane resolution), "axial", "coronal", "sagittal" or "all" (:mod:`mriscan.io.nifti`).

    Returns
    -------
    One :class:`DecodedImage`, or one per frame for a multi-frame DICOM, or one per slice for a volume.

    Raises
    ------
    ImageTooLargeError
        If the header declares more than ``max_pixels`` pixels (nothing is decoded).
    UnreadableImageError
        For anything else that prevents decoding. No other exception escapes.

    Examples
    --------
    >>> import cv2, numpy as np
    >>> ok, png = cv2.imencode(".png", np.full((2, 3), 7, np.uint8))
    >>> [image] = decode_bytes(png.tobytes())
    >>> image.kind, image.pixels.shape, float(image.pixels.max())
    ('png', (2, 3), 7.0)
    >>> ok, jpeg = cv2.imencode(".jpg", np.full((400, 640), 90, np.uint8))
    >>> decode_bytes(jpeg.tobytes(), least_side=150)[0].pixels.shape  # 1/2: 200 px >= 150 on each side
    (200, 320)
    """
    try:
        with decoder_messages() as messages:  # libjpeg's and pydicom's warnings: the image's, not the terminal's
            images = _decode(bytes(data), max_pixels, least_side, planes)
        # A warning the reader already gave (e.g. a recovered truncation) says what libjpeg would repeat.
        if not messages:
            return images
        return [image if image.warnings else replace(image, warnings=tuple(messages)) for image in images]
    except Refusal as refusal:
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
            f"probably damaged. {REEXPORT}"
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
    return f"the system could not read it ({error.strerror or type(error).__name__}). {REEXPORT}"


def _decode(data: bytes, max_pixels: int, least_side: int | None, planes: str) -> list[DecodedImage]:
    """Sniff the format, check the declared size, then decode."""
    if not data:
        raise Refusal("the file is empty (0 bytes)", "The copy probably failed; " + REEXPORT)
    kind = _sniff(data)
    if kind == "nifti":
        return decode_nifti(data, max_pixels, planes)
    if kind is None or kind == "dicom":
        return decode_dicom(data, max_pixels, has_marker=kind == "dicom")
    return [decode_raster(data, kind, max_pixels, least_side)]


def _sniff(data: bytes) -> str | None:
    """Return the format named by the content's signature, or None when none matches.

    The DICOM marker wins: a DICOM preamble may itself hold a TIFF header.
    """
    if data[_DICOM_MARKER_OFFSET : _DICOM_MARKER_OFFSET + 4] == _DICOM_MARKER:
        return "dicom"
    if nifti_version(data) is not None:
        return "nifti"
    return next((kind for signature, kind in _SIGNATURES if data.startswith(signature)), None)
