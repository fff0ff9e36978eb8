"""One answer per study: grouping slice rows, the rule (maximum by default, or top-k mean), the flags, the CSV."""

from __future__ import annotations

import csv

import pytest

from mriscan.errors import OutputError
from mriscan.scan.studies import STUDY_COLUMNS, StudyRule, check_study_output, summarise_studies, write_studies

RULE = StudyRule(threshold=0.5, review_threshold=0.3, top_k=3)


def slice_row(path: str, frame: str, probability: float | None, *, plane: str = "axial", flags: str = "",
              study: str = "", series: str = "", error: str = "") -> dict[str, str]:
    readable = probability is not None
    return {
        "path": path, "frame": frame, "plane": plane, "sha256": "0" * 64,
        "probability": f"{probability:.6f}" if readable else "",
        "prediction": ("tumor" if probability >= 0.5 else "no_tumor") if readable else "",
        "flagged": "true" if flags else "false", "flag_reason": flags, "flag_detail": "", "error": error,
        "study_instance_uid": study, "series_instance_uid": series, "sop_instance_uid": "",
    }


def volume(path: str, probabilities: list[float], **kwargs) -> list[dict[str, str]]:
    return [slice_row(path, str(i), p, **kwargs) for i, p in enumerate(probabilities)]


def test_the_score_is_the_mean_of_the_top_k_usable_slices_and_says_where_the_maximum_is():
    rows = volume("a.nii.gz", [0.1, 0.6, 0.2, 0.9, 0.7, 0.05])
    rows.append(slice_row("a.nii.gz", "6", 0.99, flags="low_quality"))  # outside the head: not scored
    [study] = summarise_studies(rows, RULE, "m")
    assert study["study"] == "a.nii.gz" and study["kind"] == "nifti"
    assert float(study["score"]) == pytest.approx((0.9 + 0.7 + 0.6) / 3)
    assert (study["max_probability"], study["max_path"], study["max_plane"], study["max_frame"]) == (
        "0.900000", "a.nii.gz", "axial", "3")
    assert study["prediction"] == "tumor" and study["flagged"] == "false"
    assert (study["slices"], study["usable_slices"], study["flagged_slices"], study["tumor_slices"]) == (
        "7", "6", "1", "3")


def test_by_default_one_slice_at_the_threshold_makes_the_study_tumour():
    rule = StudyRule(threshold=0.5, review_threshold=0.3)
    [study] = summarise_studies(volume("b.nii", [0.02] * 30 + [0.5]), rule, "m")
    assert (study["prediction"], study["score"], study["max_frame"]) == ("tumor", "0.500000", "30")
    assert study["rule"] == "highest usable slice probability" and study["flagged"] == "false"
    [study] = summarise_studies(volume("b.nii", [0.02] * 30 + [0.49]), rule, "m")
    assert study["prediction"] == "no_tumor" and study["flag_reason"] == "near_threshold"


def test_with_a_top_k_above_1_one_stray_slice_does_not_make_a_study_tumour_but_is_flagged_for_review():
    [study] = summarise_studies(volume("b.nii", [0.02] * 30 + [0.8]), RULE, "m")
    assert study["prediction"] == "no_tumor"
    assert study["flag_reason"] == "tumor_slice"
    assert "b.nii axial slice 30 (p=0.800)" in study["flag_detail"]


def test_a_score_in_the_review_band_is_flagged_near_threshold():
    [study] = summarise_studies(volume("c.nii", [0.4, 0.35, 0.32, 0.1]), RULE, "m")
    assert study["prediction"] == "no_tumor"
    assert study["flag_reason"] == "near_threshold"


def test_a_study_with_an_unreadable_slice_is_flagged_and_an_unreadable_volume_still_gets_a_row():
    rows = [slice_row("s1/im1.dcm", "", 0.1, plane="", study="1.2.3", series="1.2.3.4"),
            slice_row("s1/im2.dcm", "", None, plane="", study="1.2.3", series="1.2.3.4", error="Cannot read")]
    rows.append(slice_row("broken.nii.gz", "", None, plane="", error="Cannot read broken.nii.gz: truncated"))
    dicom, nifti = sorted(summarise_studies(rows, RULE, "m"), key=lambda r: r["kind"])
    assert dicom["kind"] == "dicom" and dicom["study"] == "1.2.3" and dicom["files"] == "2"
    assert dicom["flagged"] == "true" and dicom["flag_reason"] == "unreadable_slices"
    assert dicom["unreadable_slices"] == "1" and dicom["prediction"] == "no_tumor"
    assert nifti["study"] == "broken.nii.gz" and nifti["prediction"] == "" and nifti["flagged"] == "true"
    assert "truncated" in nifti["error"]


def test_dicom_files_are_grouped_by_study_over_their_series_and_plain_images_have_no_study():
    rows = [slice_row(f"x/{i}.dcm", "", 0.1, plane="", study="9.9", series=f"9.9.{i % 2}") for i in range(4)]
    rows.append(slice_row("plain.png", "", 0.9, plane=""))
    [study] = summarise_studies(rows, RULE, "m")
    assert (study["study"], study["series"], study["files"], study["slices"]) == ("9.9", "9.9.0;9.9.1", "4", "4")


def test_the_study_csv_is_written_whole_and_an_existing_one_needs_resume_or_overwrite(tmp_path):
    out = tmp_path / "studies.csv"
    write_studies(out, summarise_studies(volume("a.nii", [0.2, 0.9]), RULE, "m"))
    with out.open(newline="") as handle:
        reader = csv.DictReader(handle)
        assert tuple(reader.fieldnames) == STUDY_COLUMNS
        assert [row["study"] for row in reader] == ["a.nii"]
    assert not list(tmp_path.glob(".*partial"))
    with pytest.raises(OutputError, match="already exists"):
        check_study_output(out, resume=False, overwrite=False)
    check_study_output(out, resume=True, overwrite=False)
