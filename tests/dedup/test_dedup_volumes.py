"""mriscan dedup on volumes: a volume's slices are images, not copies of each other; a copy of one slice is found."""

from __future__ import annotations

import csv

import cv2
import numpy as np
from click.testing import CliRunner
from conftest import head_volume, nifti_bytes

from mriscan.cli import EXIT_OK, cli
from mriscan.io.reader import decode_bytes


def test_dedup_names_slices_and_finds_a_png_copy_of_one(tmp_path):
    folder = tmp_path / "d"
    folder.mkdir()
    volume = nifti_bytes(head_volume(4), np.diag([0.9, 0.9, 4.0, 1.0]), gz=True)
    (folder / "v.nii.gz").write_bytes(volume)
    assert cv2.imwrite(str(folder / "copy.png"), decode_bytes(volume)[4].pixels)
    out = tmp_path / "dup.csv"
    result = CliRunner().invoke(cli, ["dedup", str(folder), "--out", str(out), "--workers", "1"])
    assert result.exit_code == EXIT_OK, result.output
    with out.open(newline="") as handle:
        rows = {row["path"]: row for row in csv.DictReader(handle)}
    assert {f"v.nii.gz#axial{k}" for k in range(1, 9)} <= set(rows)
    copy_group = rows["copy.png"]["group_id"]
    assert rows["v.nii.gz#axial4"]["group_id"] == copy_group
    assert sum(row["group_id"] == copy_group for row in rows.values()) == 2  # its neighbours are not copies
