"""Writing a dataset folder safely: staged beside the target, renamed into place at the end.

A run that is killed leaves only a hidden ``.NAME.*.partial`` folder, never a half-written dataset
under the requested name. An existing non-empty target is replaced only when asked to.
"""

from __future__ import annotations

import csv
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import cv2
import numpy as np

from mriscan.errors import SynthError

IMAGE_FORMATS: tuple[str, ...] = ("png", "jpg")
MANIFEST_COLUMNS: tuple[str, ...] = ("file", "label", "origin", "plane", "contrast", "slice_index", "pair_id",
                                     "x0", "y0", "x1", "y1", "seed")


def check_target(out_dir: Path, overwrite: bool) -> None:
    """Refuse a target that is a file, or a non-empty folder unless ``overwrite``."""
    if out_dir.exists() and not out_dir.is_dir():
        raise SynthError(f"output {out_dir} exists and is not a folder; choose a folder path")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not overwrite:
        raise SynthError(f"output folder {out_dir} is not empty; choose a new or empty folder, "
                         "or pass overwrite=True (--overwrite) to replace it")


@contextmanager
def staged_folder(out_dir: Path, overwrite: bool) -> Iterator[Path]:
    """Yield a fresh folder beside ``out_dir``; on success it replaces ``out_dir``, on error it goes.

    Parameters
    ----------
    out_dir : the folder the finished dataset should end up in.
    overwrite : replace ``out_dir`` if it is not empty.
    """
    check_target(out_dir, overwrite)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".partial", dir=out_dir.parent))
    try:
        yield staging
        check_target(out_dir, overwrite)
        if out_dir.is_dir():
            shutil.rmtree(out_dir)
        os.chmod(staging, 0o755)
        os.replace(staging, out_dir)
    finally:
        if staging.exists():
            shutil.rmtree(staging)


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
