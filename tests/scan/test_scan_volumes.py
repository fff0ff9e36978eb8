"""Scan on volumes and studies: NIfTI slices as rows, --planes, one study row per volume and per DICOM study, resume."""

from __future__ import annotations

import csv

import cv2
import numpy as np
import pytest
from click.testing import CliRunner
from conftest import PATIENT_VALUES, brain_like, dicom_bytes, head_volume, nifti_bytes

from mriscan.cli import EXIT_FATAL, EXIT_OK, EXIT_UNREADABLE, cli
from mriscan.scan.studies import STUDY_COLUMNS

STUDY_UID, SERIES_UIDS = "1.2.826.0.1.3680043.8.498.1", ("1.2.826.0.1.3680043.8.498.2", "1.2.826.0.1.3680043.8.498.3")


def _read(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def _scan(bundle, root, out, *extra):
    result = CliRunner().invoke(cli, ["scan", str(root), "--out", str(out), "--model", str(bundle), "--workers", "1",
                                      *extra])
    return result, (_read(out) if out.exists() else [])


@pytest.fixture
def studies_folder(tmp_path):
    """A NIfTI volume (8 head slices between 2 of air), a DICOM study of two series (3 files) and a PNG."""
    root = tmp_path / "in"
    (root / "dicom").mkdir(parents=True)
    (root / "t1.nii.gz").write_bytes(nifti_bytes(head_volume(1), np.diag([0.9, 0.9, 4.0, 1.0]), gz=True))
    for index in range(3):
        series = SERIES_UIDS[index // 2]
        (root / "dicom" / f"IM{index}").write_bytes(dicom_bytes(
            brain_like(50 + index), bits_stored=8, StudyInstanceUID=STUDY_UID, SeriesInstanceUID=series))
    cv2.imwrite(str(root / "plain.png"), brain_like(7))  # an ordinary 2-D image: in no study
    return root


def test_a_volume_and_a_dicom_series_give_one_study_row_each(tmp_path, tiny_bundle, studies_folder):
    out, studies = tmp_path / "slices.csv", tmp_path / "studies.csv"
    result, rows = _scan(tiny_bundle, studies_folder, out, "--studies", str(studies))
    assert result.exit_code == EXIT_OK, result.output
    volume_rows = [row for row in rows if row["path"] == "t1.nii.gz"]
    assert [(row["plane"], row["frame"]) for row in volume_rows] == [("axial", str(k)) for k in range(10)]
    assert all(row["plane"] == "" and row["frame"] == "" for row in rows if row["path"] != "t1.nii.gz")
    # The slices of air above and below the head are reported, as low quality, not hidden.
    outside = [row["frame"] for row in volume_rows if "outside the head" in row["flag_detail"]]
    assert outside == ["0", "9"] and all("low_quality" in volume_rows[k]["flag_reason"] for k in (0, 9))
    by_study = {row["study"]: row for row in _read(studies)}
    assert list(_read(studies)[0]) == list(STUDY_COLUMNS)
    assert set(by_study) == {"t1.nii.gz", STUDY_UID}
    volume, dicom = by_study["t1.nii.gz"], by_study[STUDY_UID]
    assert (volume["kind"], volume["files"], volume["slices"], volume["usable_slices"]) == ("nifti", "1", "10", "8")
    top = max((row for row in volume_rows if row["frame"] not in ("0", "9")), key=lambda r: float(r["probability"]))
    assert (volume["max_probability"], volume["max_plane"], volume["max_frame"]) == (
        top["probability"], "axial", top["frame"])
    assert (dicom["kind"], dicom["files"], dicom["slices"]) == ("dicom", "3", "3")
    assert dicom["series"] == ";".join(SERIES_UIDS)
    assert volume["prediction"] in ("tumor", "no_tumor") and dicom["prediction"] in ("tumor", "no_tumor")
    text = out.read_text() + studies.read_text() + result.output
    assert not any(value in text for value in PATIENT_VALUES)


def test_planes_all_gives_every_plane_and_resume_rescans_a_volume_in_other_planes(tmp_path, tiny_bundle,
                                                                                   studies_folder):
    out = tmp_path / "slices.csv"
    result, rows = _scan(tiny_bundle, studies_folder, out)
    assert result.exit_code == EXIT_OK
    assert {row["plane"] for row in rows} == {"", "axial"}
    result, rows = _scan(tiny_bundle, studies_folder, out, "--resume", "--planes", "all")
    assert result.exit_code == EXIT_OK
    assert {row["plane"] for row in rows if row["path"] == "t1.nii.gz"} == {"axial", "coronal", "sagittal"}
    assert "skipped (resume) 4" in result.output  # the three DICOM files and the PNG, not the volume


def test_a_truncated_volume_gives_an_error_row_and_a_flagged_study_while_the_run_continues(tmp_path, tiny_bundle,
                                                                                          studies_folder):
    whole = (studies_folder / "t1.nii.gz").read_bytes()
    (studies_folder / "broken.nii.gz").write_bytes(whole[: len(whole) // 2])
    studies = tmp_path / "studies.csv"
    result, rows = _scan(tiny_bundle, studies_folder, tmp_path / "slices.csv", "--studies", str(studies))
    assert result.exit_code == EXIT_UNREADABLE
    [broken] = [row for row in rows if row["path"] == "broken.nii.gz"]
    assert "truncated" in broken["error"] and broken["probability"] == ""
    assert sum(row["path"] == "t1.nii.gz" and row["probability"] != "" for row in rows) == 10
    by_study = {row["study"]: row for row in _read(studies)}
    assert by_study["broken.nii.gz"]["flagged"] == "true"
    assert by_study["broken.nii.gz"]["flag_reason"] == "unreadable_slices"
    assert "truncated" in by_study["broken.nii.gz"]["error"]
    assert by_study["t1.nii.gz"]["unreadable_slices"] == "0"


def test_an_unreadable_dicom_file_flags_its_study(tmp_path, tiny_bundle, studies_folder):
    whole = (studies_folder / "dicom" / "IM2").read_bytes()
    (studies_folder / "dicom" / "IM2").write_bytes(whole[: len(whole) - 20000])  # the pixel data cut short
    studies = tmp_path / "studies.csv"
    result, _ = _scan(tiny_bundle, studies_folder, tmp_path / "slices.csv", "--studies", str(studies))
    assert result.exit_code == EXIT_UNREADABLE
    dicom = {row["study"]: row for row in _read(studies)}[STUDY_UID]
    assert (dicom["slices"], dicom["unreadable_slices"], dicom["flagged"]) == ("3", "1", "true")
    assert "unreadable_slices" in dicom["flag_reason"]


def test_the_study_csv_resumes_with_the_slice_csv(tmp_path, tiny_bundle, studies_folder):
    out, studies = tmp_path / "slices.csv", tmp_path / "studies.csv"
    result, _ = _scan(tiny_bundle, studies_folder, out, "--studies", str(studies))
    assert result.exit_code == EXIT_OK
    complete = _read(studies)
    # An interrupted run: the study CSV was never written and only some slice rows were saved.
    slice_rows = out.read_text().splitlines()
    (tmp_path / "slices.csv.partial").write_text("\n".join(slice_rows[:8]) + "\n")
    out.unlink()
    studies.unlink()
    result, _ = _scan(tiny_bundle, studies_folder, out, "--studies", str(studies), "--resume")
    assert result.exit_code == EXIT_OK, result.output
    assert "skipped (resume) 4" in result.output  # the DICOM files and the PNG; the volume lost 7 of its rows
    assert _read(studies) == complete
    # Without --resume or --overwrite an existing study CSV is not replaced.
    result, _ = _scan(tiny_bundle, studies_folder, tmp_path / "other.csv", "--studies", str(studies))
    assert result.exit_code == EXIT_FATAL and "already exists" in result.output


@pytest.fixture
def volumes_folder(tmp_path):
    """Three NIfTI volumes of 10, 7 and 12 slices (head and air) and a PNG, scanned in that order."""
    root = tmp_path / "volumes"
    root.mkdir()
    for name, seed, slices in (("a.nii.gz", 2, 8), ("b.nii", 3, 5), ("c.nii.gz", 4, 10)):
        data = nifti_bytes(head_volume(seed, slices=slices), np.diag([0.9, 0.9, 4.0, 1.0]), gz=name.endswith("gz"))
        (root / name).write_bytes(data)
    cv2.imwrite(str(root / "plain.png"), brain_like(9))
    return root


def _lines_killed_inside(lines: list[str], name: str) -> list[str]:
    """The lines a run killed after writing half of volume ``name``'s rows left (rows in scan order)."""
    rows = [k for k, line in enumerate(lines) if line.startswith(f"{name},")]
    return lines[: rows[len(rows) // 2]]


# How a kill inside volume b.nii (rows 10-16 of 29) can leave the partial CSV, from the reference lines.
KILLS = {
    "inside_the_first_volume": lambda lines: _lines_killed_inside(lines, "a.nii.gz"),
    "inside_a_middle_volume": lambda lines: _lines_killed_inside(lines, "b.nii"),
    "inside_the_last_volume": lambda lines: _lines_killed_inside(lines, "c.nii.gz"),
    "inside_a_row": lambda lines: [*_lines_killed_inside(lines, "b.nii"), lines[14][:40]],
    "again_while_resuming": lambda lines: [*_lines_killed_inside(lines, "b.nii"), *lines[11:14]],
}


@pytest.mark.parametrize("kill", list(KILLS))
def test_a_scan_killed_inside_a_volume_resumes_to_the_csvs_of_an_uninterrupted_run(tmp_path, tiny_bundle,
                                                                                    volumes_folder, kill):
    reference, reference_studies = tmp_path / "reference.csv", tmp_path / "reference_studies.csv"
    result, expected = _scan(tiny_bundle, volumes_folder, reference, "--studies", str(reference_studies))
    assert result.exit_code == EXIT_OK, result.output
    assert len(expected) == 10 + 7 + 12 + 1
    out, studies = tmp_path / "slices.csv", tmp_path / "studies.csv"
    lines = reference.read_text().split("\n")
    (tmp_path / "slices.csv.partial").write_text("\n".join(KILLS[kill](lines)) + "\n" * (kill != "inside_a_row"))

    result, rows = _scan(tiny_bundle, volumes_folder, out, "--studies", str(studies), "--resume")

    assert result.exit_code == EXIT_OK, result.output
    keys = [(row["path"], row["plane"], row["frame"]) for row in rows]
    assert len(keys) == len(set(keys)) == len(expected)  # no duplicate, no missing slice
    assert out.read_bytes() == reference.read_bytes()
    assert studies.read_bytes() == reference_studies.read_bytes()
    assert not (tmp_path / "slices.csv.partial").exists()


@pytest.mark.parametrize("change", ["volume_replaced_by_a_shorter_one", "planes_all_then_acquisition"])
def test_a_resumed_run_keeps_no_row_of_a_file_it_scanned_again(tmp_path, tiny_bundle, volumes_folder, change):
    out, studies = tmp_path / "slices.csv", tmp_path / "studies.csv"
    first = ("--planes", "all") if change == "planes_all_then_acquisition" else ()
    assert _scan(tiny_bundle, volumes_folder, out, "--studies", str(studies), *first)[0].exit_code == EXIT_OK
    if change == "volume_replaced_by_a_shorter_one":
        (volumes_folder / "c.nii.gz").write_bytes(
            nifti_bytes(head_volume(5, slices=4), np.diag([0.9, 0.9, 4.0, 1.0]), gz=True))

    result, rows = _scan(tiny_bundle, volumes_folder, out, "--studies", str(studies), "--resume")

    assert result.exit_code == EXIT_OK, result.output
    reference, reference_studies = tmp_path / "reference.csv", tmp_path / "reference_studies.csv"
    assert _scan(tiny_bundle, volumes_folder, reference, "--studies", str(reference_studies))[0].exit_code == EXIT_OK
    assert out.read_bytes() == reference.read_bytes()
    assert studies.read_bytes() == reference_studies.read_bytes()
