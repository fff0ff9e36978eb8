"""Tests of mriscan.io.reader: decoding one file by content, DICOM display pipeline, refusals."""

from __future__ import annotations

import dataclasses
import io
import os
import struct
import tracemalloc
import zlib
from pathlib import Path

import cv2
import numpy as np
import pydicom
import pytest
from conftest import PATIENT_VALUES
from conftest import dicom_bytes as _dicom_bytes
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydicom.data import get_testdata_file

from mriscan.errors import ImageTooLargeError, UnreadableImageError
from mriscan.io.image import DecodedImage
from mriscan.io.raster import MISSING_END_WARNING, TRUNCATED_WARNING
from mriscan.io.reader import (
    DEFAULT_MAX_PIXELS,
    decode_bytes,
    read_image,
)

# --- Fixture builders -------------------------------------------------------------------------


def _head(height: int = 48, width: int = 64) -> np.ndarray:
    """A smooth 8-bit test image: a bright disc on a gradient (compresses well, JPEG-friendly)."""
    rows, columns = np.mgrid[0:height, 0:width]
    disc = (rows - height / 2) ** 2 + (columns - width / 2) ** 2 < (min(height, width) / 3) ** 2
    return (columns * 2 + disc * 120).astype(np.uint8)


def _encode(extension: str, pixels: np.ndarray) -> bytes:
    ok, encoded = cv2.imencode(extension, pixels)
    assert ok
    return encoded.tobytes()


def _write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def _png_by_hand(width: int, height: int, colour_type: int, rows: bytes, palette: bytes = b"") -> bytes:
    """A PNG with 8-bit samples; ``rows`` is the filtered scanline data (filter byte per row)."""
    header = struct.pack(">IIBBBBB", width, height, 8, colour_type, 0, 0, 0)
    chunks = _png_chunk(b"IHDR", header)
    if palette:
        chunks += _png_chunk(b"PLTE", palette)
    chunks += _png_chunk(b"IDAT", zlib.compress(rows, 9)) + _png_chunk(b"IEND", b"")
    return b"\x89PNG\r\n\x1a\n" + chunks


def _only(images: list[DecodedImage]) -> DecodedImage:
    assert len(images) == 1
    assert isinstance(images[0], DecodedImage)
    return images[0]


def _normalised(pixels: np.ndarray) -> np.ndarray:
    low, high = float(pixels.min()), float(pixels.max())
    return (pixels - low) / (high - low)


def _assert_no_patient_data(text: str) -> None:
    for value in PATIENT_VALUES:
        assert value not in text


# --- Raster formats ---------------------------------------------------------------------------


@pytest.mark.parametrize(("extension", "kind"), [(".png", "png"), (".bmp", "bmp"), (".tif", "tiff")])
def test_lossless_grey_round_trip(tmp_path: Path, extension: str, kind: str) -> None:
    pixels = _head()
    path = tmp_path / f"slice{extension}"
    assert cv2.imwrite(str(path), pixels)

    image = _only(read_image(path))

    assert image.kind == kind
    assert image.pixels.dtype == pixels.dtype  # kept as decoded: preprocessing works on 8-bit
    np.testing.assert_array_equal(image.pixels, pixels)
    assert (image.frame, image.had_colour, image.warnings, dict(image.dicom_uids)) == (None, False, (), {})


def test_jpeg_grey_round_trip(tmp_path: Path) -> None:
    pixels = _head()
    path = tmp_path / "slice.jpg"
    assert cv2.imwrite(str(path), pixels, [cv2.IMWRITE_JPEG_QUALITY, 95])

    image = _only(read_image(path))

    assert (image.kind, image.had_colour, image.warnings) == ("jpeg", False, ())
    assert np.abs(image.pixels.astype(np.float32) - pixels).mean() < 3


def test_16_bit_png_keeps_its_range(tmp_path: Path) -> None:
    pixels = (np.arange(64 * 32).reshape(32, 64) * 32).astype(np.uint16)
    pixels[0, 0] = 65535

    image = _only(read_image(_write(tmp_path, "deep.png", _encode(".png", pixels))))

    np.testing.assert_array_equal(image.pixels, pixels)
    assert image.pixels.max() == 65535


def test_rgba_grey_drops_alpha(tmp_path: Path) -> None:
    grey = _head()
    alpha = np.where(grey > 100, 255, 0).astype(np.uint8)
    bgra = np.dstack([grey, grey, grey, alpha])

    image = _only(read_image(_write(tmp_path, "alpha.png", _encode(".png", bgra))))

    np.testing.assert_array_equal(image.pixels, grey)
    assert not image.had_colour


def test_palette_png_decodes_to_grey() -> None:
    indices = _head(8, 8)
    grey_palette = bytes(value for index in range(256) for value in (index, index, index))
    rows = b"".join(b"\x00" + row.tobytes() for row in indices)

    image = _only(decode_bytes(_png_by_hand(8, 8, 3, rows, grey_palette)))

    np.testing.assert_array_equal(image.pixels, indices)
    assert not image.had_colour


def test_palette_png_with_colours_has_colour() -> None:
    palette = bytes(value for index in range(256) for value in (index, 0, 255 - index))
    rows = b"".join(b"\x00" + bytes(range(row * 16, row * 16 + 16)) for row in range(16))

    assert _only(decode_bytes(_png_by_hand(16, 16, 3, rows, palette))).had_colour


@pytest.mark.parametrize("extension", [".png", ".jpg"])
def test_grey_stored_as_colour_is_not_colour(extension: str) -> None:
    grey = _head()

    image = _only(decode_bytes(_encode(extension, cv2.cvtColor(grey, cv2.COLOR_GRAY2BGR))))

    assert not image.had_colour
    if extension == ".png":
        np.testing.assert_array_equal(image.pixels, grey)


@pytest.mark.parametrize("extension", [".png", ".jpg"])
def test_real_colour_is_detected(extension: str) -> None:
    bgr = cv2.cvtColor(_head(), cv2.COLOR_GRAY2BGR)
    bgr[:, :32, 2] = 255  # a red left half

    image = _only(decode_bytes(_encode(extension, bgr)))

    assert image.had_colour
    assert image.pixels.ndim == 2


@pytest.mark.parametrize("extension", [".png", ".jpg"])
def test_small_coloured_annotation_is_colour(extension: str) -> None:
    bgr = cv2.cvtColor(_head(256, 256), cv2.COLOR_GRAY2BGR)
    cv2.ellipse(bgr, (128, 128), (20, 20), 0, 0, 120, (0, 255, 255), 1)  # a yellow tumour contour

    assert _only(decode_bytes(_encode(extension, bgr))).had_colour


def _with_exif_orientation(jpeg: bytes, orientation: int) -> bytes:
    """The JPEG with an APP1 Exif segment whose Orientation tag (0x0112) is ``orientation``."""
    tiff = b"II*\x00" + struct.pack("<IH", 8, 1) + struct.pack("<HHIHH", 0x0112, 3, 1, orientation, 0) + b"\x00" * 4
    body = b"Exif\x00\x00" + tiff
    return jpeg[:2] + b"\xff\xe1" + struct.pack(">H", len(body) + 2) + body + jpeg[2:]


def test_grey_stored_as_colour_jpeg_decodes_to_the_colour_decodes_values() -> None:
    bgr = cv2.cvtColor(_head(64, 96), cv2.COLOR_GRAY2BGR)
    encoded = _encode(".jpg", bgr)

    image = _only(decode_bytes(encoded))

    colour = cv2.imdecode(np.frombuffer(encoded, np.uint8), cv2.IMREAD_UNCHANGED)
    assert colour.ndim == 3 and not image.had_colour
    np.testing.assert_array_equal(image.pixels, colour[..., 0])


def test_faint_jpeg_chroma_keeps_the_weighted_grey() -> None:
    bgr = cv2.cvtColor(_head(64, 96), cv2.COLOR_GRAY2BGR)
    bgr[:, :, 0] = cv2.add(bgr[:, :, 0], 6)  # a slight blue cast: colour channels differ, but not by much
    encoded = _encode(".jpg", bgr)

    image = _only(decode_bytes(encoded))

    colour = cv2.imdecode(np.frombuffer(encoded, np.uint8), cv2.IMREAD_UNCHANGED).astype(np.float32)
    assert not image.had_colour
    np.testing.assert_array_equal(image.pixels, cv2.cvtColor(colour, cv2.COLOR_BGR2GRAY))


@pytest.mark.parametrize("channels", [1, 3])
def test_jpeg_exif_orientation_is_not_applied(channels: int) -> None:
    grey = _head(48, 80)
    pixels = grey if channels == 1 else cv2.cvtColor(grey, cv2.COLOR_GRAY2BGR)
    rotated = _with_exif_orientation(_encode(".jpg", pixels), 6)  # "rotate 90 degrees to display"

    image = _only(decode_bytes(rotated))

    assert image.pixels.shape == (48, 80)
    np.testing.assert_array_equal(image.pixels, _only(decode_bytes(_encode(".jpg", pixels))).pixels)


def test_png_named_jpg_is_decoded_by_content(tmp_path: Path) -> None:
    image = _only(read_image(_write(tmp_path, "y885.jpg", _encode(".png", _head()))))

    assert image.kind == "png"
    np.testing.assert_array_equal(image.pixels, _head())


@pytest.mark.parametrize("extension", [".png", ".jpg", ".bmp", ".tif"])
def test_one_pixel_image_decodes(extension: str) -> None:
    image = _only(decode_bytes(_encode(extension, np.full((1, 1), 200, np.uint8))))

    assert image.pixels.shape == (1, 1)
    assert abs(float(image.pixels[0, 0]) - 200) < 3


# --- Damaged and non-image content ------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"", "empty"),
        (b"Patient list\nthis is a text file, not an image\n" * 4, "not a recognised image format"),
        (np.random.default_rng(7).bytes(4096), "not a recognised image format"),
        (b"\x89PNG\r\n\x1a\n", "PNG header"),
        (b"\xff\xd8\xff\xe0\x00\x10JFIF\x00", "JPEG"),
        (b"BM\x00\x00", "BMP header"),
        (b"II*\x00\x08\x00\x00\x00", "TIFF header"),
    ],
    ids=["empty", "text", "random", "png-signature-only", "jpeg-app0-only", "bmp-short", "tiff-short"],
)
def test_non_images_raise_unreadable(tmp_path: Path, content: bytes, expected: str) -> None:
    path = _write(tmp_path, "bad.png", content)

    with pytest.raises(UnreadableImageError, match=expected) as caught:
        read_image(path)

    assert str(path) in str(caught.value)


def test_png_header_without_image_data() -> None:
    header_only = _encode(".png", _head())[:33]  # signature + IHDR, no IDAT

    with pytest.raises(UnreadableImageError, match="PNG data is damaged or incomplete"):
        decode_bytes(header_only, name="scan/ihdr_only.png")


def test_truncated_jpeg_is_recovered_with_a_warning() -> None:
    jpeg = _encode(".jpg", _head(128, 128))

    image = _only(decode_bytes(jpeg[: len(jpeg) // 2]))

    assert image.warnings == (TRUNCATED_WARNING,)
    assert image.pixels.shape == (128, 128)


# --- Reduced JPEG decoding (least_side, preprocessing version 3) -----------------------------


@pytest.mark.parametrize(("shape", "least_side", "expected"), [
    ((700, 1300), 150, (175, 325)),  # 1/4: 175 >= 150, 1/8 would leave 87
    ((600, 600), 150, (150, 150)),  # 1/4 exactly
    ((299, 1000), 150, (299, 1000)),  # 1/2 would leave 149 on the short side
    ((2400, 1600), 150, (300, 200)),  # 1/8 at most
])
def test_a_large_jpeg_decodes_at_the_smallest_scale_keeping_least_side(shape, least_side, expected) -> None:
    jpeg = _encode(".jpg", _head(*shape))

    image = _only(decode_bytes(jpeg, least_side=least_side))

    assert image.pixels.shape == expected
    assert image.pixels.dtype == np.uint8 and not image.had_colour
    full = _only(decode_bytes(jpeg)).pixels
    shrunk = cv2.resize(full, expected[::-1], interpolation=cv2.INTER_AREA)
    assert np.abs(image.pixels.astype(int) - shrunk).mean() < 2  # libjpeg's scaled IDCT: a proper average


def test_reduced_decoding_is_libjpegs_for_grey_and_colour_jpegs() -> None:
    grey = _encode(".jpg", _head(400, 400))  # one component
    colour = _encode(".jpg", cv2.cvtColor(_head(400, 400), cv2.COLOR_GRAY2BGR))  # grey stored as YCbCr

    for data, flag in ((grey, cv2.IMREAD_REDUCED_GRAYSCALE_2), (colour, cv2.IMREAD_REDUCED_COLOR_2)):
        expected = cv2.imdecode(np.frombuffer(data, np.uint8), flag)
        image = _only(decode_bytes(data, least_side=200))
        np.testing.assert_array_equal(image.pixels, expected if expected.ndim == 2 else expected[..., 0])
        assert not image.had_colour


def test_colour_content_is_still_found_in_a_reduced_jpeg() -> None:
    pixels = cv2.cvtColor(_head(800, 800), cv2.COLOR_GRAY2BGR)
    cv2.circle(pixels, (400, 400), 200, (0, 0, 255), 1)  # a one-pixel red contour

    image = _only(decode_bytes(_encode(".jpg", pixels), least_side=100))

    assert image.pixels.shape == (100, 100)
    assert image.had_colour


def test_reduced_decoding_ignores_exif_rotation_as_full_decoding_does() -> None:
    jpeg = _encode(".jpg", _head(400, 600))
    # An APP1 Exif segment saying "rotate 90 degrees" (orientation 6) right after the start of image.
    tiff = b"II*\x00" + struct.pack("<IHHHIHHI", 8, 1, 0x0112, 3, 1, 6, 0, 0)
    app1 = b"\xff\xe1" + struct.pack(">H", 2 + 6 + len(tiff)) + b"Exif\x00\x00" + tiff
    rotated = jpeg[:2] + app1 + jpeg[2:]
    assert cv2.imdecode(np.frombuffer(rotated, np.uint8), cv2.IMREAD_REDUCED_COLOR_2).shape[:2] == (300, 200)

    assert _only(decode_bytes(rotated)).pixels.shape == (400, 600)
    assert _only(decode_bytes(rotated, least_side=150)).pixels.shape == (200, 300)


def test_a_truncated_large_jpeg_is_recovered_reduced_with_a_warning() -> None:
    jpeg = _encode(".jpg", _head(400, 400))

    image = _only(decode_bytes(jpeg[: len(jpeg) // 2], least_side=150))

    assert image.warnings == (TRUNCATED_WARNING,)
    assert image.pixels.shape == (200, 200)


def test_other_formats_are_never_reduced() -> None:
    for extension in (".png", ".bmp", ".tif"):
        assert _only(decode_bytes(_encode(extension, _head(400, 400)), least_side=100)).pixels.shape == (400, 400)


def test_only_8_bit_grey_or_ycbcr_jpegs_are_reduced() -> None:
    from mriscan.io.raster import jpeg_frame, jpeg_reduced_flag

    def frame_header(precision: int, components: int, marker: int = 0xC0) -> object:
        return jpeg_frame(b"\xff\xd8\xff" + bytes([marker]) + struct.pack(
            ">HBHHB", 8 + 3 * components, precision, 800, 800, components))

    assert jpeg_reduced_flag(frame_header(8, 3), 150) == cv2.IMREAD_REDUCED_COLOR_4 | cv2.IMREAD_IGNORE_ORIENTATION
    assert jpeg_reduced_flag(frame_header(8, 1), 150) == (
        cv2.IMREAD_REDUCED_GRAYSCALE_4 | cv2.IMREAD_IGNORE_ORIENTATION)
    assert jpeg_reduced_flag(frame_header(8, 1, marker=0xC2), 150) == (  # progressive
        cv2.IMREAD_REDUCED_GRAYSCALE_4 | cv2.IMREAD_IGNORE_ORIENTATION)
    assert jpeg_reduced_flag(frame_header(12, 1), 150) == cv2.IMREAD_UNCHANGED  # would become 8-bit
    assert jpeg_reduced_flag(frame_header(8, 4), 150) == cv2.IMREAD_UNCHANGED  # CMYK
    assert jpeg_reduced_flag(frame_header(8, 1, marker=0xC3), 150) == cv2.IMREAD_UNCHANGED  # lossless: no DCT


def test_a_progressive_jpeg_is_reduced_too() -> None:
    ok, encoded = cv2.imencode(".jpg", _head(600, 600), [cv2.IMWRITE_JPEG_PROGRESSIVE, 1])

    assert _only(decode_bytes(encoded.tobytes(), least_side=150)).pixels.shape == (150, 150)


def test_a_jpeg_the_reduced_decoder_refuses_is_decoded_at_full_size(monkeypatch: pytest.MonkeyPatch) -> None:
    jpeg = _encode(".jpg", _head(400, 400))
    full_decode = cv2.imdecode
    monkeypatch.setattr(cv2, "imdecode", lambda buffer, flag: full_decode(buffer, flag) if flag == -1 else None)

    assert _only(decode_bytes(jpeg, least_side=150)).pixels.shape == (400, 400)


def test_jpeg_cut_inside_its_header_raises() -> None:
    jpeg = _encode(".jpg", _head())

    with pytest.raises(UnreadableImageError):
        decode_bytes(jpeg[:100])


def test_truncated_png_raises() -> None:
    png = _encode(".png", _head())

    with pytest.raises(UnreadableImageError, match="damaged or incomplete"):
        decode_bytes(png[: len(png) // 2], name="cut.png")


def test_png_chunk_longer_than_the_file_is_refused_before_decoding() -> None:
    png = bytearray(_encode(".png", _head()))
    png[33:37] = struct.pack(">I", 0xD500003D)  # the IDAT length: 3.5 GB, which OpenCV would allocate

    with pytest.raises(UnreadableImageError, match="chunk runs past the end"):
        decode_bytes(bytes(png))


def test_png_missing_only_its_end_chunk_is_recovered() -> None:
    png = _encode(".png", _head())
    assert png.endswith(b"IEND\xaeB`\x82")

    image = _only(decode_bytes(png[:-12]))

    assert image.warnings == (MISSING_END_WARNING,)
    np.testing.assert_array_equal(image.pixels, _head())


# --- Decompression bombs ----------------------------------------------------------------------


def _png_bomb() -> bytes:
    """A few-KB PNG declaring 40000 x 40000 grey pixels (only the first rows are present)."""
    row = b"\x00" + bytes(40000)
    data = _png_by_hand(40000, 40000, 0, row * 4)
    assert len(data) < 4096
    return data


def _jpeg_declaring(width: int, height: int) -> bytes:
    jpeg = bytearray(_encode(".jpg", _head()))
    frame = jpeg.index(b"\xff\xc0")
    jpeg[frame + 5 : frame + 9] = struct.pack(">HH", height, width)
    return bytes(jpeg)


def _bmp_declaring(width: int, height: int) -> bytes:
    bmp = bytearray(_encode(".bmp", _head()))
    bmp[18:26] = struct.pack("<ii", width, -height)
    return bytes(bmp)


def _tiff_declaring(width: int, height: int) -> bytes:
    entries = struct.pack("<HHII", 256, 4, 1, width) + struct.pack("<HHII", 257, 3, 1, height)
    return b"II*\x00" + struct.pack("<I", 8) + struct.pack("<H", 2) + entries + bytes(4)


@pytest.mark.parametrize(
    "bomb",
    [_png_bomb(), _jpeg_declaring(60000, 60000), _bmp_declaring(50000, 40000), _tiff_declaring(70000, 65000)],
    ids=["png", "jpeg", "bmp", "tiff"],
)
def test_bombs_are_refused_before_decoding(bomb: bytes) -> None:
    tracemalloc.start()
    try:
        with pytest.raises(ImageTooLargeError, match="--max-pixels") as caught:
            decode_bytes(bomb, name="bomb")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert peak < 2_000_000
    assert f"{DEFAULT_MAX_PIXELS:,}" in str(caught.value)
    assert isinstance(caught.value, UnreadableImageError)


def test_png_bomb_message_states_the_declared_size() -> None:
    with pytest.raises(ImageTooLargeError, match="40000 x 40000"):
        decode_bytes(_png_bomb())


def test_max_pixels_is_configurable() -> None:
    png = _encode(".png", _head(48, 64))

    with pytest.raises(ImageTooLargeError):
        decode_bytes(png, max_pixels=48 * 64 - 1)
    assert _only(decode_bytes(png, max_pixels=48 * 64)).pixels.shape == (48, 64)


def test_file_larger_than_any_allowed_image_is_refused(tmp_path: Path) -> None:
    path = _write(tmp_path, "huge.png", _encode(".png", _head()) + bytes(70 * 1024 * 1024))

    with pytest.raises(ImageTooLargeError, match="--max-pixels"):
        read_image(path, max_pixels=10)


# --- File-system problems ---------------------------------------------------------------------


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(UnreadableImageError, match="does not exist"):
        read_image(tmp_path / "gone.png")


def test_dangling_symlink(tmp_path: Path) -> None:
    os.symlink(tmp_path / "gone.png", tmp_path / "link.png")

    with pytest.raises(UnreadableImageError, match="symbolic link"):
        read_image(tmp_path / "link.png")


def test_symlinked_file_is_followed(tmp_path: Path) -> None:
    target = _write(tmp_path, "target.bmp", _encode(".bmp", _head()))
    os.symlink(target, tmp_path / "link.png")

    assert _only(read_image(tmp_path / "link.png")).kind == "bmp"


def test_folder_is_not_an_image(tmp_path: Path) -> None:
    (tmp_path / "x.png").mkdir()

    with pytest.raises(UnreadableImageError, match="not a regular file"):
        read_image(tmp_path / "x.png")


def test_permission_denied(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _write(tmp_path, "locked.png", _encode(".png", _head()))

    def refuse(*_args: object, **_kwargs: object) -> None:
        raise PermissionError(13, "Permission denied")

    # Root ignores file modes, so the refusal is simulated where imageio opens files.
    monkeypatch.setattr("mriscan.io.reader.open", refuse, raising=False)

    with pytest.raises(UnreadableImageError, match="permission denied.*read access"):
        read_image(path)


# --- DICOM ------------------------------------------------------------------------------------


def test_dicom_16_bit_unsigned_with_rescale(tmp_path: Path) -> None:
    stored = (np.arange(48 * 64).reshape(48, 64) % 4000).astype(np.uint16)
    data = _dicom_bytes(stored, bits_stored=16, RescaleSlope="2", RescaleIntercept="-100")

    image = _only(read_image(_write(tmp_path, "IM0001", data)))

    assert (image.kind, image.frame, image.had_colour) == ("dicom", None, False)
    np.testing.assert_array_equal(image.pixels, stored.astype(np.float32) * 2 - 100)
    assert set(image.dicom_uids) == {"StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID"}


def test_dicom_signed_16_bit() -> None:
    stored = np.array([[-1000, -1, 0], [1, 500, 32767]], dtype=np.int16)

    image = _only(decode_bytes(_dicom_bytes(stored, bits_stored=16)))

    np.testing.assert_array_equal(image.pixels, stored)


def test_dicom_12_bit_stored() -> None:
    stored = np.array([[0, 1, 2048], [4000, 4094, 4095]], dtype=np.uint16)

    image = _only(decode_bytes(_dicom_bytes(stored, bits_stored=12)))

    np.testing.assert_array_equal(image.pixels, stored)


def test_dicom_monochrome1_is_inverted() -> None:
    stored = np.array([[0, 1000], [3000, 4095]], dtype=np.uint16)

    image = _only(decode_bytes(_dicom_bytes(stored, bits_stored=12, photometric="MONOCHROME1")))

    np.testing.assert_array_equal(image.pixels, 4095 - stored.astype(np.float32))


def test_dicom_window_is_applied() -> None:
    stored = np.array([[0, 50, 100, 150, 200]], dtype=np.uint16)

    image = _only(decode_bytes(_dicom_bytes(stored, bits_stored=16, WindowCenter="100", WindowWidth="101")))

    # PS3.3 C.11.2.1.2.1: linear window onto the 16-bit output range.
    expected = np.array([0, 0.005 * 65535, 0.505 * 65535, 65535, 65535])
    np.testing.assert_allclose(image.pixels[0], expected, rtol=1e-5)


def test_dicom_invalid_window_is_ignored_with_a_warning() -> None:
    stored = np.array([[0, 50, 100]], dtype=np.uint16)

    image = _only(decode_bytes(_dicom_bytes(stored, bits_stored=16, WindowCenter="50", WindowWidth="0")))

    np.testing.assert_array_equal(image.pixels, stored)
    assert "window ignored" in image.warnings[0]


def test_dicom_rgb() -> None:
    grey = _head(16, 16)
    colour = np.dstack([grey, grey // 2, 255 - grey])

    coloured = _only(decode_bytes(_dicom_bytes(colour, bits_stored=8, photometric="RGB")))
    greyish = _only(decode_bytes(_dicom_bytes(np.dstack([grey] * 3), bits_stored=8, photometric="RGB")))

    assert coloured.had_colour and coloured.pixels.shape == (16, 16)
    assert not greyish.had_colour
    np.testing.assert_array_equal(greyish.pixels, grey)


def test_dicom_multi_frame() -> None:
    frames = np.stack([np.full((4, 5), value, np.uint16) for value in (10, 20, 30)])

    images = decode_bytes(_dicom_bytes(frames, bits_stored=16, NumberOfFrames=3))

    assert [image.frame for image in images] == [0, 1, 2]
    assert [float(image.pixels.max()) for image in images] == [10, 20, 30]
    assert len({image.dicom_uids["SOPInstanceUID"] for image in images}) == 1


def test_dicom_without_extension_or_part10_header(tmp_path: Path) -> None:
    dataset = pydicom.dcmread(io.BytesIO(_dicom_bytes(_head(4, 4).astype(np.uint16), bits_stored=16)))
    del dataset.file_meta
    raw = io.BytesIO()
    pydicom.dcmwrite(raw, dataset, implicit_vr=True, little_endian=True)

    image = _only(read_image(_write(tmp_path, "raw_dataset", raw.getvalue())))

    assert image.kind == "dicom"
    np.testing.assert_array_equal(image.pixels, _head(4, 4))


def test_dicom_without_pixel_data_raises() -> None:
    data = _dicom_bytes(np.zeros((0, 4), np.uint16), bits_stored=16)

    with pytest.raises(UnreadableImageError, match="no image") as caught:
        decode_bytes(data, name="report.dcm")

    _assert_no_patient_data(str(caught.value))


def test_fake_dicom_raises() -> None:
    fake = bytes(128) + b"DICM" + np.random.default_rng(3).bytes(500)

    with pytest.raises(UnreadableImageError, match="fake.dcm"):
        decode_bytes(fake, name="fake.dcm")


def test_dicom_bomb_is_refused_before_decoding() -> None:
    dataset = pydicom.dcmread(io.BytesIO(_dicom_bytes(np.zeros((2, 2), np.uint16), bits_stored=16)))
    dataset.Rows = dataset.Columns = 10000
    dataset.NumberOfFrames = 1000
    buffer = io.BytesIO()
    dataset.save_as(buffer)

    with pytest.raises(ImageTooLargeError, match="10000 x 10000 pixels x 1000 frames"):
        decode_bytes(buffer.getvalue())


def test_dicom_and_png_of_the_same_pixels_agree() -> None:
    pixels = _head()

    from_dicom = _only(decode_bytes(_dicom_bytes(pixels, bits_stored=8)))
    from_png = _only(decode_bytes(_encode(".png", pixels)))

    np.testing.assert_allclose(_normalised(from_dicom.pixels), _normalised(from_png.pixels))


def test_no_patient_identifier_in_results_or_errors() -> None:
    stored = _head(8, 8).astype(np.uint16)
    decoded = decode_bytes(_dicom_bytes(stored, bits_stored=16))
    broken = _dicom_bytes(stored, bits_stored=16)[:-40]

    with pytest.raises(UnreadableImageError) as caught:
        decode_bytes(broken)

    _assert_no_patient_data(repr(decoded) + repr(dataclasses.asdict(decoded[0])) + str(caught.value))


def test_decoded_image_is_frozen() -> None:
    image = _only(decode_bytes(_encode(".png", _head(2, 2))))

    with pytest.raises(dataclasses.FrozenInstanceError):
        image.kind = "png"  # type: ignore[misc]


# --- pydicom's bundled test files (skipped when absent; never downloaded) ---------------------


def _bundled(name: str) -> Path:
    path = get_testdata_file(name, download=False)
    if path is None:
        pytest.skip(f"pydicom test file {name} is not bundled")
    return Path(str(path))


def test_bundled_mr_small_decodes() -> None:
    image = _only(read_image(_bundled("MR_small.dcm")))

    assert image.pixels.shape == (64, 64)
    assert set(image.dicom_uids) == {"StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID"}
    assert "CompressedSamples" not in repr(image)


def test_bundled_truncated_dicom_raises() -> None:
    with pytest.raises(UnreadableImageError, match="pixel data could not be decoded"):
        read_image(_bundled("MR_truncated.dcm"))


@pytest.mark.parametrize(
    ("name", "syntax_uid"),
    [("JPEG2000.dcm", "1.2.840.10008.1.2.4.91"), ("MR_small_jpeg_ls_lossless.dcm", "1.2.840.10008.1.2.4.80")],
)
def test_bundled_compressed_dicom_decodes_or_names_its_syntax(name: str, syntax_uid: str) -> None:
    try:
        images = read_image(_bundled(name))
    except UnreadableImageError as error:
        assert syntax_uid in str(error)
        assert "pylibjpeg" in str(error) and "python-gdcm" in str(error)
    else:
        assert _only(images).pixels.ndim == 2


# --- Property: nothing but DecodedImage or UnreadableImageError -------------------------------

_FUZZ = settings(max_examples=200, deadline=2000, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
_SEEDS = {
    "png": _encode(".png", _head(12, 16)),
    "jpeg": _encode(".jpg", _head(16, 16)),
    "dicom": _dicom_bytes(_head(6, 6).astype(np.uint16), bits_stored=16),
}


def _decodes_or_refuses(data: bytes) -> None:
    try:
        images = decode_bytes(data, max_pixels=1_000_000, least_side=4)  # the seeds shrink: the reduced path
    except UnreadableImageError:
        return
    assert images and all(isinstance(image, DecodedImage) for image in images)
    assert all(image.pixels.ndim == 2 and image.pixels.dtype in (np.uint8, np.uint16, np.float32) for image in images)


@pytest.mark.filterwarnings("ignore::UserWarning")  # pydicom warns about garbled values
@_FUZZ
@given(st.binary(max_size=2048))
def test_random_bytes_decode_or_refuse(data: bytes) -> None:
    _decodes_or_refuses(data)


@pytest.mark.filterwarnings("ignore::UserWarning")
@_FUZZ
@given(
    st.sampled_from(sorted(_SEEDS)),
    st.lists(st.tuples(st.integers(min_value=0), st.integers(0, 255)), min_size=1, max_size=8),
    st.one_of(st.none(), st.integers(min_value=0)),
)
def test_mutated_images_decode_or_refuse(seed: str, mutations: list[tuple[int, int]], cut: int | None) -> None:
    data = bytearray(_SEEDS[seed])
    for position, value in mutations:
        data[position % len(data)] = value
    if cut is not None:
        data = data[: cut % len(data)]
    _decodes_or_refuses(bytes(data))


_WINDOWED_HEADERS = [
    ("uint16", 12, {"RescaleSlope": 1, "RescaleIntercept": -1024, "WindowCenter": 40, "WindowWidth": 400}),
    ("uint16", 12, {"RescaleSlope": 2.5, "RescaleIntercept": -100, "WindowCenter": [1000, 50],
                    "WindowWidth": [2000, 80]}),
    ("int16", 16, {"WindowCenter": -200, "WindowWidth": 3000}),
    ("uint8", 8, {}),
    ("uint16", 16, {"RescaleSlope": 0.5, "RescaleIntercept": 3}),
    ("uint16", 12, {"WindowCenter": 2048, "WindowWidth": 1.5, "PhotometricInterpretation": "MONOCHROME1"}),
]


@pytest.mark.parametrize(("dtype", "bits", "header"), _WINDOWED_HEADERS)
def test_fast_linear_window_gives_pydicoms_values(dtype: str, bits: int, header: dict) -> None:
    from pydicom.pixels import apply_modality_lut, apply_voi_lut

    from mriscan.io.dicom import linear_display

    info = np.iinfo(dtype)
    stored = np.random.default_rng(bits).integers(max(info.min, -(2 ** (bits - 1))), min(info.max, 2**bits - 1),
                                                  (40, 30), endpoint=True).astype(dtype)
    dataset = pydicom.dcmread(io.BytesIO(_dicom_bytes(stored, bits_stored=bits, **header)))

    fast = linear_display(dataset.pixel_array, dataset)

    expected = apply_voi_lut(apply_modality_lut(dataset.pixel_array, dataset), dataset)
    assert fast is not None and fast.dtype == np.float32
    np.testing.assert_allclose(fast, expected, rtol=1e-6, atol=1e-6 * (np.ptp(expected.astype(np.float64)) + 1))


@pytest.mark.parametrize("header", [
    {"WindowCenter": 100, "WindowWidth": 200, "VOILUTFunction": "SIGMOID"},
    {"WindowCenter": 100, "WindowWidth": 0.5},  # pydicom refuses it: the decoder warns and keeps the image
    {"RescaleSlope": 2},  # a slope without an intercept
    {"RescaleSlope": -1, "RescaleIntercept": 0},
])
def test_other_headers_take_pydicoms_path(header: dict) -> None:
    from mriscan.io.dicom import linear_display

    stored = np.arange(1200, dtype=np.uint16).reshape(40, 30)
    dataset = pydicom.dcmread(io.BytesIO(_dicom_bytes(stored, bits_stored=12, **header)))
    assert linear_display(dataset.pixel_array, dataset) is None
