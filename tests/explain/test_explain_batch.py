"""Tests of mriscan.explain.batch: targets (image, folder, scan CSV), overlay naming, the review page."""

from __future__ import annotations

import csv
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote

import numpy as np
import pytest
from conftest import brain_like, dicom_bytes, head_volume, nifti_bytes, run_cli_in_fresh_process

from mriscan.errors import ExplainError, OutputError
from mriscan.explain.batch import ExplainSummary, default_output_dir, overlay_path, run_explain, select_rows
from mriscan.io.hashing import file_sha256
from mriscan.io.own_outputs import OUTPUT_FOLDER_MARKER as MARKER
from mriscan.model.bundle import ModelBundle, load_bundle
from mriscan.scan.pipeline import ScanOptions, prepare_output, run_scan
from mriscan.scan.run_record import ScanRecord, record_path, write_record

SAMPLES = 60
CSV_COLUMNS = (
    "path",
    "frame",
    "sha256",
    "probability",
    "prediction",
    "flagged",
    "flag_reason",
    "threshold",
    "model_id",
    "error",
)


@pytest.fixture(scope="module")
def bundle(tiny_bundle: Path) -> ModelBundle:
    return load_bundle(tiny_bundle)


@pytest.fixture
def incoming(tmp_path: Path, write_png) -> Path:
    root = tmp_path / "incoming"
    write_png(root / "a.png", brain_like(1))
    write_png(root / "sub dir" / "b.png", brain_like(2, lesion=True))
    (root / "broken.jpg").write_bytes(b"not an image at all")
    return root


def _explain(target: Path, bundle: ModelBundle, **options: object) -> ExplainSummary:
    return run_explain(target, bundle, num_samples=SAMPLES, **options)


def _files(root: Path) -> dict[str, bytes]:
    return {path.relative_to(root).as_posix(): path.read_bytes() for path in sorted(root.rglob("*")) if path.is_file()}


def _links(index: Path) -> list[str]:
    class Links(HTMLParser):
        found: list[str] = []

        def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
            self.found += [value or "" for name, value in attrs if name in ("href", "src")]

    parser = Links()
    parser.found = []
    parser.feed(index.read_text(encoding="utf-8"))
    return parser.found


def _write_dicom(path: Path, frames: np.ndarray) -> Path:
    """A multi-frame 8-bit MR DICOM carrying a patient name (which must never be shown)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(dicom_bytes(frames.astype(np.uint8), bits_stored=8, NumberOfFrames=len(frames)))
    return path


def _write_csv(path: Path, rows: list[dict[str, str]], model_id: str,
               columns: tuple[str, ...] = CSV_COLUMNS) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        for row in rows:
            writer.writerow({"frame": "", "sha256": "", "threshold": "0.5", "model_id": model_id, "error": "", **row})
    return path


def _row(path: str, probability: float, flagged: bool, reasons: str = "", error: str = "") -> dict[str, str]:
    decision = "tumor" if probability >= 0.5 else "no_tumor"
    return {"path": path, "probability": str(probability), "prediction": decision, "flagged": str(flagged).lower(),
            "flag_reason": reasons, "error": error}  # fmt: skip


# --- folders and single images ----------------------------------------------------------------


def test_folder_overlays_go_into_a_review_folder_beside_it_with_an_index(incoming: Path, bundle: ModelBundle) -> None:
    before = _files(incoming)
    summary = _explain(incoming, bundle)
    review = incoming.with_name("incoming-review")
    assert _files(incoming) == before  # nothing is written into the folder a scan reads
    assert [case.display_path for case in summary.cases] == ["a.png", "sub dir/b.png"]
    assert [case.overlay for case in summary.cases] == [review / "a.png.lime.png", review / "sub dir/b.png.lime.png"]
    assert [failure.display_path for failure in summary.failures] == ["broken.jpg"]
    assert summary.index_path == review / "index.html"
    for link in _links(summary.index_path):
        assert (review / unquote(link)).is_file()
    for case in summary.cases:
        assert 0.0 <= case.probability <= 1.0 and case.decision in ("tumor", "no_tumor")
        assert case.decision == ("tumor" if case.probability >= bundle.threshold else "no_tumor")


def test_a_second_run_rewrites_the_same_bytes(incoming: Path, bundle: ModelBundle) -> None:
    first = _explain(incoming, bundle)
    before = _files(first.index_path.parent)
    second = _explain(incoming, bundle)
    assert [case.display_path for case in second.cases] == [case.display_path for case in first.cases]
    assert _files(second.index_path.parent) == before


def test_default_output_folder_is_never_inside_the_scanned_tree(tmp_path: Path) -> None:
    incoming = tmp_path / "incoming"
    (incoming / "one").mkdir(parents=True)
    (incoming / "one" / "x.jpg").write_bytes(b"")
    (incoming / "results.csv").write_text("path\n")
    assert default_output_dir(incoming) == tmp_path / "incoming-review"
    assert default_output_dir(incoming / "one" / "x.jpg") == incoming / "one-review"
    assert default_output_dir(tmp_path / "results.csv", incoming) == tmp_path / "results-review"
    with pytest.raises(ExplainError, match="inside the scanned folder"):
        default_output_dir(incoming / "results.csv", incoming)


def test_out_dir_mirrors_the_input_tree_and_leaves_the_input_alone(
    incoming: Path, tmp_path: Path, bundle: ModelBundle
) -> None:
    before = _files(incoming)
    out = tmp_path / "review"
    summary = _explain(incoming, bundle, out_dir=out, method="gradcam")
    assert _files(incoming) == before
    assert sorted(_files(out)) == [MARKER, "a.png.gradcam.png", "index.html", "sub dir/b.png.gradcam.png"]
    assert summary.index_path == out / "index.html" and summary.method == "gradcam"


def test_a_single_image_target(incoming: Path, tmp_path: Path, bundle: ModelBundle) -> None:
    summary = _explain(incoming / "sub dir" / "b.png", bundle, out_dir=tmp_path / "out")
    assert [case.overlay for case in summary.cases] == [tmp_path / "out" / "b.png.lime.png"]
    assert summary.index_path == tmp_path / "out" / "index.html"


def test_lime_explains_with_the_network_file_alone(incoming: Path, tmp_path: Path, tiny_bundle: Path) -> None:
    """LIME queries the network that scan predicts with, so a bundle loaded without Keras explains too."""
    for_scan = load_bundle(tiny_bundle, keras=False)
    assert for_scan.model is None and for_scan.network is not None
    summary = _explain(incoming / "a.png", for_scan, out_dir=tmp_path / "out")
    assert [case.overlay.name for case in summary.cases] == ["a.png.lime.png"] and not summary.failures


@pytest.mark.slow
def test_explain_with_lime_never_imports_tensorflow(incoming: Path, tmp_path: Path, tiny_bundle: Path) -> None:
    args = ["explain", incoming / "a.png", "--out-dir", tmp_path / "out", "--model", tiny_bundle, "--samples", "20",
            "--workers", "1"]
    assert run_cli_in_fresh_process(args) == (0, False, False)
    assert (tmp_path / "out" / "a.png.lime.png").is_file()


def test_each_dicom_frame_gets_its_own_overlay(tmp_path: Path, bundle: ModelBundle) -> None:
    frames = np.stack([brain_like(3), brain_like(4, lesion=True)])
    _write_dicom(tmp_path / "in" / "series" / "scan.dcm", frames)
    summary = _explain(tmp_path / "in", bundle, out_dir=tmp_path / "out")
    assert [case.display_path for case in summary.cases] == ["series/scan.dcm (frame 0)", "series/scan.dcm (frame 1)"]
    assert sorted(_files(tmp_path / "out")) == [
        MARKER,
        "index.html",
        "series/scan.dcm.f0.lime.png",
        "series/scan.dcm.f1.lime.png",
    ]
    assert "Doe" not in summary.index_path.read_text(encoding="utf-8")


def test_overlay_path_naming() -> None:
    root = Path("/data/in")
    assert overlay_path(root / "y.png", None, "lime", root=root, out_dir=Path("/o")) == Path("/o/y.png.lime.png")
    assert overlay_path(root / "x" / "y.dcm", 2, "gradcam", root=root, out_dir=Path("/o")) == Path(
        "/o/x/y.dcm.f2.gradcam.png"
    )


def test_two_workers_write_the_same_bytes_as_one(incoming: Path, tmp_path: Path, bundle: ModelBundle) -> None:
    _explain(incoming, bundle, out_dir=tmp_path / "one", workers=1)
    _explain(incoming, bundle, out_dir=tmp_path / "two", workers=2)
    assert _files(tmp_path / "one") == _files(tmp_path / "two")


# --- never overwrite somebody else's file --------------------------------------------------------


def test_a_user_file_at_the_overlay_path_is_kept(incoming: Path, tmp_path: Path, bundle: ModelBundle) -> None:
    theirs = tmp_path / "out" / "a.png.lime.png"
    theirs.parent.mkdir()
    theirs.write_bytes(b"the user's own notes")
    summary = _explain(incoming, bundle, out_dir=tmp_path / "out")
    assert theirs.read_bytes() == b"the user's own notes"
    assert any("not an overlay written by mriscan" in failure.reason for failure in summary.failures)
    assert [case.display_path for case in summary.cases] == ["sub dir/b.png"]


def test_a_foreign_index_stops_the_run_before_any_work(incoming: Path, bundle: ModelBundle) -> None:
    (incoming / "index.html").write_text("<html>somebody's page</html>")
    before = _files(incoming)
    with pytest.raises(OutputError, match="--out-dir"):
        _explain(incoming, bundle, out_dir=incoming)
    assert _files(incoming) == before


# --- scan CSV targets ---------------------------------------------------------------------------


@pytest.fixture
def scan_csv(incoming: Path, tmp_path: Path, write_png, bundle: ModelBundle) -> Path:
    """A scan CSV of ``incoming`` kept in another folder, with its run record (as `mriscan scan` leaves it)."""
    write_png(incoming / "c.png", brain_like(5))
    rows = [
        _row("a.png", 0.45, True, "near_threshold;low_quality"),
        _row("sub dir/b.png", 0.9, True, "low_quality"),
        _row("c.png", 0.49, False),
        _row("broken.jpg", 0.0, True, "unreadable", error="could not decode"),
    ]
    csv_path = _write_csv(tmp_path / "reports" / "scan.csv", rows, bundle.model_id)
    write_record(csv_path, ScanRecord(input_dir=str(incoming), model_dir=str(bundle.directory),
                                      model_id=bundle.model_id, started="2026-12-03T02:00:00Z"))
    return csv_path


def test_csv_explains_flagged_rows_most_uncertain_first(scan_csv: Path, bundle: ModelBundle) -> None:
    summary = _explain(scan_csv, bundle)
    assert [case.display_path for case in summary.cases] == ["a.png", "sub dir/b.png"]
    assert summary.cases[0].flag_reasons == ("near_threshold", "low_quality")
    assert summary.error_rows_skipped == 1 and not summary.failures
    assert summary.index_path == scan_csv.parent / "scan-review" / "index.html"


def test_csv_all_rows_and_limit(scan_csv: Path, tmp_path: Path, bundle: ModelBundle) -> None:
    every = _explain(scan_csv, bundle, all_rows=True, out_dir=tmp_path / "all")
    assert [case.display_path for case in every.cases] == ["c.png", "a.png", "sub dir/b.png"]
    top = _explain(scan_csv, bundle, limit=1, out_dir=tmp_path / "top")
    assert [case.display_path for case in top.cases] == ["a.png"]
    assert sorted(_files(tmp_path / "top")) == [MARKER, "a.png.lime.png", "index.html"]


def test_csv_paths_are_relative_to_the_recorded_input_folder(scan_csv: Path, tmp_path: Path,
                                                             bundle: ModelBundle) -> None:
    record_path(scan_csv).unlink()
    with pytest.raises(ExplainError, match="--input-root"):
        _explain(scan_csv, bundle, out_dir=tmp_path / "lost")
    found = _explain(scan_csv, bundle, input_root=tmp_path / "incoming", out_dir=tmp_path / "found")
    assert [case.display_path for case in found.cases] == ["a.png", "sub dir/b.png"]
    assert (tmp_path / "found" / "sub dir" / "b.png.lime.png").is_file()


def test_csv_rows_of_files_changed_since_the_scan_are_refused(scan_csv: Path, tmp_path: Path,
                                                              bundle: ModelBundle, write_png) -> None:
    rows = list(csv.DictReader(scan_csv.open(newline="", encoding="utf-8")))
    scanned = {"a.png": file_sha256(tmp_path / "incoming" / "a.png"), "sub dir/b.png": "0" * 64}
    _write_csv(scan_csv, [{**row, "sha256": scanned.get(row["path"], "")} for row in rows], bundle.model_id)
    summary = _explain(scan_csv, bundle, out_dir=tmp_path / "out")
    assert [case.display_path for case in summary.cases] == ["a.png"]
    assert [(failure.display_path, "changed since the scan" in failure.reason) for failure in summary.failures] == [
        ("sub dir/b.png", True)]


def test_csv_rows_that_climb_out_of_the_input_root_are_refused(tmp_path: Path, bundle: ModelBundle) -> None:
    scan_csv = _write_csv(tmp_path / "in" / "scan.csv", [_row("../secret.png", 0.5, True)], bundle.model_id)
    summary = _explain(scan_csv, bundle, input_root=tmp_path / "in", out_dir=tmp_path / "out")
    assert not summary.cases and summary.failures[0].display_path == "../secret.png"


def test_csv_of_another_model_is_refused(scan_csv: Path, tmp_path: Path, bundle: ModelBundle) -> None:
    other = _write_csv(tmp_path / "other.csv", [_row("a.png", 0.4, True)], "f" * 64)
    with pytest.raises(ExplainError, match="loaded model"):
        _explain(other, bundle)


def test_a_csv_that_is_not_a_scan_csv_is_refused(tmp_path: Path, bundle: ModelBundle) -> None:
    notes = tmp_path / "notes.csv"
    notes.write_text("name,age\nx,1\n")
    with pytest.raises(ExplainError, match="missing columns: path, probability"):
        _explain(notes, bundle)


def test_select_rows_takes_tumours_and_flagged_rows_most_uncertain_first() -> None:
    rows = [_row(name, probability, flagged) | {"threshold": "0.5"} for name, probability, flagged in
            [("far", 0.99, True), ("tumour", 0.6, False), ("mid", 0.3, True), ("healthy", 0.48, False),
             ("bad", 0.5, True)]]  # fmt: skip
    rows[4]["error"] = "unreadable"
    for_review, skipped = select_rows(rows, all_rows=False, limit=None)
    assert [row["path"] for row in for_review] == ["tumour", "mid", "far"] and skipped == 1
    every, _ = select_rows(rows, all_rows=True, limit=2)
    assert [row["path"] for row in every] == ["healthy", "tumour"]


def test_a_real_scan_csv_can_be_explained(
    incoming: Path, tmp_path: Path, tiny_bundle: Path, bundle: ModelBundle
) -> None:
    options = ScanOptions(input_dir=incoming, out=tmp_path / "results.csv", workers=1)
    run_scan(options, bundle, prepare_output(options))
    summary = _explain(tmp_path / "results.csv", bundle, all_rows=True)  # the run record names the scanned folder
    assert sorted(case.display_path for case in summary.cases) == ["a.png", "sub dir/b.png"]
    assert summary.error_rows_skipped == 1 and not summary.failures
    with (tmp_path / "results.csv").open(newline="") as handle:
        scanned = {row["path"]: row["probability"] for row in csv.DictReader(handle) if not row["error"]}
    for case in summary.cases:
        assert case.probability == pytest.approx(float(scanned[case.display_path]), abs=1e-5)


# --- settings -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "message"),
    [({"method": "shap"}, "method='shap'"), ({"limit": 0}, "limit=0"), ({"workers": 0}, "workers=0"),
     ({"num_samples": 5}, "num_samples=5")],
)  # fmt: skip
def test_bad_settings_are_refused(incoming: Path, bundle: ModelBundle, options: dict, message: str) -> None:
    with pytest.raises(ExplainError, match=message):
        run_explain(incoming, bundle, **options)


def test_a_missing_target_is_refused(tmp_path: Path, bundle: ModelBundle) -> None:
    with pytest.raises(ExplainError, match="does not exist"):
        _explain(tmp_path / "nowhere", bundle)


@pytest.mark.parametrize("version", [2, 3])
def test_explain_decodes_a_large_jpeg_as_scan_does(tmp_path: Path, version: int) -> None:
    import cv2
    from conftest import brain_like

    from mriscan.data.preprocess import PreprocessConfig, preprocess
    from mriscan.explain.batch import ExplainJob, explain_job
    from mriscan.io.reader import decode_bytes

    path = tmp_path / "large.jpg"
    cv2.imwrite(str(path), cv2.resize(brain_like(3), (640, 480)).astype(np.uint8))
    config = PreprocessConfig(version=version)

    class _NoExplanation:
        def explain(self, image: np.ndarray) -> None:
            return None

    [explained] = explain_job(ExplainJob(source=path, display_path="large.jpg"), _NoExplanation(), config)

    decoded = decode_bytes(path.read_bytes(), least_side=config.decode_least_side)[0].pixels
    assert decoded.shape == ((240, 320) if version == 3 else (480, 640))
    np.testing.assert_array_equal(explained.image, preprocess(decoded, config))


# --- volumes ----------------------------------------------------------------------------------


def test_a_scan_csv_of_volume_slices_explains_each_row_in_its_own_plane(tmp_path: Path, bundle: ModelBundle) -> None:
    root = tmp_path / "in"
    root.mkdir()
    (root / "t1.nii.gz").write_bytes(nifti_bytes(head_volume(3), np.diag([0.9, 0.9, 4.0, 1.0]), gz=True))
    rows = [{**_row("t1.nii.gz", 0.4, True, "near_threshold"), "frame": "4", "plane": "axial"},
            {**_row("t1.nii.gz", 0.45, True, "near_threshold"), "frame": "60", "plane": "coronal"}]
    csv_path = _write_csv(tmp_path / "scan.csv", rows, bundle.model_id, columns=(*CSV_COLUMNS, "plane"))
    summary = _explain(csv_path, bundle, input_root=root)
    assert not summary.failures
    assert sorted(case.overlay.name for case in summary.cases) == ["t1.nii.gz.axial.f4.lime.png",
                                                                   "t1.nii.gz.coronal.f60.lime.png"]
    assert sorted(case.display_path for case in summary.cases) == ["t1.nii.gz (axial 4)", "t1.nii.gz (coronal 60)"]


def test_a_volume_as_target_is_explained_slice_by_slice_in_its_acquisition_plane(tmp_path: Path,
                                                                                  bundle: ModelBundle) -> None:
    path = tmp_path / "one.nii"  # one slice of head between two of air
    path.write_bytes(nifti_bytes(head_volume(3, slices=1), np.diag([0.9, 0.9, 4.0, 1.0])))
    summary = _explain(path, bundle)
    assert [case.overlay.name for case in summary.cases] == [f"one.nii.axial.f{k}.lime.png" for k in range(3)]
