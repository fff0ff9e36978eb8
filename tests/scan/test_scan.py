import csv
import dataclasses

import pytest
from conftest import brain_like

from mriscan.errors import OutputError
from mriscan.model.bundle import load_bundle
from mriscan.scan.pipeline import ScanOptions, prepare_output, run_scan


@pytest.fixture
def incoming(tmp_path, write_png):
    root = tmp_path / "incoming"
    write_png(root / "a.png", brain_like(1))
    write_png(root / "sub dir" / "B.PNG", brain_like(2, lesion=True))
    (root / "broken.jpg").write_bytes(b"not an image at all")
    (root / "notes.txt").write_text("ignored")
    return root


def _scan(root, out, bundle, **kwargs):
    options = ScanOptions(input_dir=root, out=out, workers=1, **kwargs)
    return run_scan(options, load_bundle(bundle), prepare_output(options))


def _rows(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def test_every_candidate_gets_a_row(incoming, tmp_path, tiny_bundle):
    out = tmp_path / "results.csv"
    summary = _scan(incoming, out, tiny_bundle)
    rows = _rows(out)
    assert [r["path"] for r in rows] == ["a.png", "broken.jpg", "sub dir/B.PNG"]
    assert summary.scanned == 2 and summary.unreadable == 1
    broken = rows[1]
    assert broken["error"] and broken["probability"] == "" and broken["prediction"] == ""
    for row in (rows[0], rows[2]):
        assert 0 <= float(row["probability"]) <= 1 and row["prediction"] in {"tumor", "no_tumor"}
        assert row["error"] == "" and len(row["sha256"]) == 64
        assert row["model_id"] == load_bundle(tiny_bundle).model_id


def test_prediction_follows_threshold_and_near_threshold_flags(incoming, tmp_path, tiny_bundle):
    rows = [r for r in _rows(_scan(incoming, tmp_path / "r.csv", tiny_bundle) and tmp_path / "r.csv")
            if not r["error"]]
    for row in rows:
        p = float(row["probability"])
        assert (row["prediction"] == "tumor") == (p >= 0.5)
        assert ("near_threshold" in row["flag_reason"]) == (0.3 <= p < 0.5)
        assert (row["flagged"] == "true") == bool(row["flag_reason"])


def test_blank_and_tiny_images_are_flagged_low_quality(tmp_path, write_png, tiny_bundle):
    import numpy as np

    root = tmp_path / "in"
    write_png(root / "blank.png", np.zeros((200, 200), np.uint8))
    write_png(root / "tiny.png", brain_like(3, size=(20, 20)))
    rows = _rows(_scan(root, tmp_path / "r.csv", tiny_bundle) and tmp_path / "r.csv")
    assert all("low_quality" in r["flag_reason"] and r["flagged"] == "true" for r in rows)


def test_resume_skips_unchanged_files_and_rescans_changed_ones(incoming, tmp_path, tiny_bundle, write_png):
    out = tmp_path / "r.csv"
    _scan(incoming, out, tiny_bundle)
    first = {r["path"]: r for r in _rows(out)}
    write_png(incoming / "a.png", brain_like(99))  # changed
    write_png(incoming / "new.png", brain_like(5))  # new
    summary = _scan(incoming, out, tiny_bundle, resume=True)
    second = {r["path"]: r for r in _rows(out)}
    assert summary.skipped == 1  # sub dir/B.PNG; the unreadable one is retried
    assert set(second) == {"a.png", "broken.jpg", "new.png", "sub dir/B.PNG"}
    assert second["a.png"]["sha256"] != first["a.png"]["sha256"]
    assert second["sub dir/B.PNG"] == first["sub dir/B.PNG"]


def test_existing_output_is_not_overwritten(incoming, tmp_path, tiny_bundle):
    out = tmp_path / "r.csv"
    out.write_text("precious")
    with pytest.raises(OutputError):
        _scan(incoming, out, tiny_bundle)
    assert out.read_text() == "precious"


@pytest.mark.parametrize("keras", [False, True],
                         ids=["onnx network, predicted in the workers", "keras (no network file), here"])
def test_parallel_workers_give_the_same_rows(incoming, tmp_path, tiny_bundle, keras):
    bundle = load_bundle(tiny_bundle, keras=keras)
    if keras:
        bundle = dataclasses.replace(bundle, network=None)  # as a bundle without model.onnx
    for name, workers in (("one.csv", 1), ("two.csv", 2)):
        options = ScanOptions(input_dir=incoming, out=tmp_path / name, workers=workers, chunk_size=1)
        run_scan(options, bundle, prepare_output(options))
    assert _rows(tmp_path / "one.csv") == _rows(tmp_path / "two.csv")
    assert len(_rows(tmp_path / "two.csv")) > 2
