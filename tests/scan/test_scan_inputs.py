"""Scan on what hospitals and the world send: DICOM, hostile files, odd names, links."""

from __future__ import annotations

import csv
import os
import struct
import zlib

import cv2
import numpy as np
import pytest
from click.testing import CliRunner
from conftest import PATIENT_VALUES, brain_like, dicom_bytes

from mriscan.cli import EXIT_FATAL, EXIT_OK, EXIT_UNREADABLE, cli
from mriscan.scan.results import COLUMNS, UID_COLUMNS, ResultsWriter


def _scan(tiny_bundle, root, out, *extra):
    result = CliRunner().invoke(cli, ["scan", str(root), "--out", str(out), "--model", str(tiny_bundle),
                                      "--workers", "1", *extra])
    rows = []
    if out.exists():
        with open(out, newline="") as handle:
            rows = list(csv.DictReader(handle))
    return result, {(r["path"], r["frame"]): r for r in rows}


def test_dicom_and_png_of_the_same_pixels_get_the_same_probability(tmp_path, tiny_bundle, write_png):
    pixels = brain_like(11, lesion=True)
    write_png(tmp_path / "in" / "slice.png", pixels)
    (tmp_path / "in" / "slice.dcm").write_bytes(dicom_bytes(pixels, bits_stored=8))
    wide = (pixels.astype(np.uint16) * 16 + 100).astype(np.uint16)  # 12-bit stored, rescaled
    (tmp_path / "in" / "slice12").write_bytes(dicom_bytes(wide, bits_stored=12))  # no extension: DICM marker
    result, rows = _scan(tiny_bundle, tmp_path / "in", tmp_path / "r.csv")
    assert result.exit_code == EXIT_OK, result.output
    png = float(rows[("slice.png", "")]["probability"])
    assert abs(float(rows[("slice.dcm", "")]["probability"]) - png) <= 0.01
    assert abs(float(rows[("slice12", "")]["probability"]) - png) <= 0.01


def test_no_patient_identifiers_in_csv_or_output_and_uids_on_request(tmp_path, tiny_bundle):
    frames = np.stack([brain_like(i) for i in range(3)])
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "multi.dcm").write_bytes(dicom_bytes(frames, bits_stored=8, NumberOfFrames=3))
    (tmp_path / "in" / "nopixels.dcm").write_bytes(dicom_bytes(np.zeros((0, 0), np.uint8), bits_stored=8))
    result, rows = _scan(tiny_bundle, tmp_path / "in", tmp_path / "r.csv", "--dicom-uids")
    assert result.exit_code == EXIT_UNREADABLE
    assert [key for key in rows if key[0] == "multi.dcm"] == [("multi.dcm", "0"), ("multi.dcm", "1"),
                                                              ("multi.dcm", "2")]
    assert rows[("nopixels.dcm", "")]["error"]
    text = (tmp_path / "r.csv").read_text() + result.output
    for value in PATIENT_VALUES:
        assert value not in text
    header = (tmp_path / "r.csv").read_text().splitlines()[0].split(",")
    assert header == list(COLUMNS + UID_COLUMNS)
    assert all(rows[("multi.dcm", str(f))]["study_instance_uid"] for f in range(3))


def _bomb_png(width: int = 40000, height: int = 40000) -> bytes:
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    body = zlib.compress(b"\x00" * (width + 1) * 64, 9)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", body) + chunk(b"IEND", b"")


@pytest.fixture
def hostile(tmp_path, write_png):
    root = tmp_path / "hostile"
    root.mkdir()
    good_jpeg = cv2.imencode(".jpg", brain_like(1))[1].tobytes()
    good_png = cv2.imencode(".png", brain_like(2))[1].tobytes()
    (root / "empty.png").write_bytes(b"")
    (root / "text.jpg").write_text("hello, I am not an image")
    (root / "random.bmp").write_bytes(np.random.default_rng(0).bytes(5000))
    (root / "truncated.jpg").write_bytes(good_jpeg[: len(good_jpeg) * 2 // 3])
    (root / "truncated.png").write_bytes(good_png[: len(good_png) // 2])
    (root / "header_only.png").write_bytes(good_png[:33])
    (root / "bomb.png").write_bytes(_bomb_png())
    (root / "fake.dcm").write_bytes(b"\x00" * 128 + b"DICM" + np.random.default_rng(1).bytes(300))
    write_png(root / "sixteen.png", (brain_like(3).astype(np.uint16) * 257))
    write_png(root / "rgba.png", cv2.cvtColor(brain_like(4), cv2.COLOR_GRAY2BGRA))
    write_png(root / "one_pixel.png", np.array([[128]], np.uint8))
    write_png(root / "with space ü.PNG", brain_like(5))
    write_png(root / "folder.png" / "inside.TIFF", brain_like(6))
    (root / "notes.txt").write_text("not a candidate")
    os.symlink(root / "missing-target.png", root / "dangling.png")
    os.symlink(root, root / "loop")
    return root


EXPECTED_ERRORS = {"empty.png", "text.jpg", "random.bmp", "header_only.png", "bomb.png", "fake.dcm", "dangling.png",
                   "truncated.png"}


def test_hostile_files_each_get_their_documented_outcome(hostile, tmp_path, tiny_bundle):
    result, rows = _scan(tiny_bundle, hostile, tmp_path / "r.csv")
    assert result.exit_code == EXIT_UNREADABLE, result.output
    paths = {path for path, _ in rows}
    assert paths == EXPECTED_ERRORS | {"truncated.jpg", "sixteen.png", "rgba.png", "one_pixel.png",
                                       "with space ü.PNG", "folder.png/inside.TIFF"}
    for path in EXPECTED_ERRORS:
        assert rows[(path, "")]["error"] and rows[(path, "")]["probability"] == "", path
    assert "--max-pixels" in rows[("bomb.png", "")]["error"]
    truncated = rows[("truncated.jpg", "")]
    assert truncated["error"] == "" and "decoded_with_warnings" in truncated["flag_reason"]
    assert "low_quality" in rows[("one_pixel.png", "")]["flag_reason"]
    for path in ("sixteen.png", "rgba.png", "with space ü.PNG", "folder.png/inside.TIFF"):
        assert rows[(path, "")]["error"] == "" and rows[(path, "")]["probability"], path


def test_read_only_input_folder_works(tmp_path, tiny_bundle, write_png):
    write_png(tmp_path / "ro" / "a.png", brain_like(1))
    os.chmod(tmp_path / "ro", 0o555)
    try:
        result, rows = _scan(tiny_bundle, tmp_path / "ro", tmp_path / "r.csv")
    finally:
        os.chmod(tmp_path / "ro", 0o755)
    assert result.exit_code == EXIT_OK and len(rows) == 1


def test_unwritable_output_fails_fast(tmp_path, tiny_bundle, write_png):
    write_png(tmp_path / "in" / "a.png", brain_like(1))
    result, _ = _scan(tiny_bundle, tmp_path / "in", tmp_path / "no such folder" / "r.csv")
    assert result.exit_code == EXIT_FATAL and "does not exist" in result.output


def test_second_scan_on_the_same_output_is_refused(tmp_path, tiny_bundle, write_png):
    write_png(tmp_path / "in" / "a.png", brain_like(1))
    out = tmp_path / "r.csv"
    first = ResultsWriter(out, COLUMNS, resume=False, overwrite=False)  # a run in progress holds the lock
    try:
        result, _ = _scan(tiny_bundle, tmp_path / "in", out)
    finally:
        first.close()
    assert result.exit_code == EXIT_FATAL and "another mriscan scan" in result.output
