"""Writing a synthetic dataset's files: images, masks and the manifest.

The dataset folder itself is staged and moved into place by :mod:`mriscan.io.atomic`, like bundles
and reports: a killed run never leaves a half-written dataset under the requested name, and a
replaced dataset is kept beside the new one.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from mriscan.errors import SynthError

IMAGE_FORMATS: tuple[str, ...] = ("png", "jpg")
MANIFEST_COLUMNS: tuple[str, ...] = ("file", "label", "origin", "plane", "contrast", "slice_index", "pair_id",
                                     "x0", "y0", "x1", "y1", "seed")


def write_image(path: Path, image: np.ndarray) -> None:
    """Write a uint8 grey image; the format follows the file suffix (PNG lossless, JPEG quality 90)."""
    params = [cv2.IMWRITE_JPEG_QUALITY, 90] if path.suffix.lower() in (".jpg", ".jpeg") else []
    if not cv2.imwrite(str(path), image, params):
        raise SynthError(f"could not write {path}; check free disk space and permissions")


def write_manifest(path: Path, rows: Sequence[dict[str, str]]) -> None:
    """Write the manifest CSV with the columns of :data:`MANIFEST_COLUMNS`, rows in file-name order
    (``synth_000000`` first, whichever class folder it is in)."""
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=MANIFEST_COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(sorted(rows, key=lambda row: (Path(row["file"]).name, row["file"])))
