"""End-to-end CLI tests: fit a tiny model in seconds, scan, dedup; exit codes and file contents."""

from __future__ import annotations

import csv
import json

import pytest
from click.testing import CliRunner
from conftest import brain_like, run_cli_in_fresh_process, write_class_folders

from mriscan import __version__
from mriscan.cli import EXIT_BELOW_FLOOR, EXIT_FATAL, EXIT_OK, EXIT_UNREADABLE, cli
from mriscan.scan.results import COLUMNS


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    """A model fitted through the CLI on a tiny synthetic class-folder set (1 epoch, 64 px)."""
    root = tmp_path_factory.mktemp("fit")
    write_class_folders(root / "data", range(30))
    out = root / "model"
    result = CliRunner().invoke(cli, ["fit", str(root / "data"), "--out", str(out), "--epochs", "2",
                                      "--image-size", "64", "--workers", "1", "--seed", "3",
                                      "--source-balance", "0.5", "--strip-augment", "0.5"])
    # 60 images leave 9 for validation: below the quality floor, so fit says so with its own exit code.
    assert result.exit_code == EXIT_BELOW_FLOOR, result.output + repr(result.exception)
    return out, result


def _rows(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


@pytest.mark.slow
def test_help_and_version_do_not_import_tensorflow():
    assert run_cli_in_fresh_process(["--help"]) == (0, False, False)
    result = CliRunner().invoke(cli, ["--version"])
    assert result.exit_code == 0 and __version__ in result.output


def test_fit_writes_a_complete_bundle(fitted):
    out, result = fitted
    assert {"model.keras", "model.json", "metrics.json", "training_curves.png", "confusion_matrix.png",
            "roc_curve.png"} <= {p.name for p in out.iterdir()}
    card = json.loads((out / "model.json").read_text())
    assert (card["training"]["source_balance"], card["training"]["strip_probability"]) == (0.5, 0.5)
    predictions = json.loads((out / "metrics.json").read_text())["validation_predictions"]
    assert len(predictions["probability"]) == card["data"]["split_sizes"]["validation"] == len(predictions["label"])
    for field in ("model_id", "created", "mriscan_version", "architecture", "input_size", "preprocessing",
                  "class_names", "threshold", "review_threshold", "data", "metrics"):
        assert field in card
    assert card["input_size"] == 64 and card["review_threshold"] <= card["threshold"]
    assert card["threshold_sources"] == ["data"] and "on the tumours of data" in card["threshold_rule"]
    assert card["training"]["learning_rate"].startswith("Adam, cosine decay from 0.001")
    assert card["data"]["files_found"] == 60
    for split in ("validation", "test"):
        assert {"accuracy", "sensitivity", "specificity", "auroc", "confusion_matrix"} <= set(card["metrics"][split])
    assert "test" in result.output and "validation" in result.output


def test_fit_reports_a_model_below_the_quality_floor(fitted):
    out, result = fitted
    card = json.loads((out / "model.json").read_text())
    assert any("validation images" in warning for warning in card["quality_warnings"])
    assert "below the quality floor" in result.output and "Do not use it for triage" in result.output


def test_fit_refuses_to_replace_a_bundle(fitted, tmp_path):
    out, _ = fitted
    result = CliRunner().invoke(cli, ["fit", str(out.parent / "data"), "--out", str(out), "--epochs", "1"])
    assert result.exit_code == EXIT_FATAL and "--overwrite" in result.output


def test_fit_refuses_an_unknown_threshold_folder_before_training(fitted, tmp_path):
    out, _ = fitted
    result = CliRunner().invoke(cli, ["fit", str(out.parent / "data"), "--out", str(tmp_path / "m"),
                                      "--threshold-from", "br35h"])
    assert result.exit_code == EXIT_FATAL and "not one of the data folders" in result.output
    assert not (tmp_path / "m").exists()


def test_fit_reports_unknown_class_folders(tmp_path):
    (tmp_path / "d" / "maybe").mkdir(parents=True)
    result = CliRunner().invoke(cli, ["fit", str(tmp_path / "d"), "--out", str(tmp_path / "m")])
    assert result.exit_code == EXIT_FATAL and "maybe" in result.output


def test_scan_exit_codes_and_rows(fitted, tmp_path, write_png):
    model, _ = fitted
    incoming = tmp_path / "in"
    write_png(incoming / "a.png", brain_like(7, lesion=True))
    write_png(incoming / "b.jpg", brain_like(8))
    out = tmp_path / "results.csv"
    runner = CliRunner()
    result = runner.invoke(cli, ["scan", str(incoming), "--out", str(out), "--model", str(model), "--workers", "1"])
    assert result.exit_code == EXIT_OK, result.output
    rows = _rows(out)
    assert list(rows[0]) == list(COLUMNS) and [r["path"] for r in rows] == ["a.png", "b.jpg"]
    (incoming / "c.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    again = runner.invoke(cli, ["scan", str(incoming), "--out", str(out), "--model", str(model), "--resume"])
    assert again.exit_code == EXIT_UNREADABLE
    assert [r["path"] for r in _rows(out)] == ["a.png", "b.jpg", "c.png"]
    refused = runner.invoke(cli, ["scan", str(incoming), "--out", str(out), "--model", str(model)])
    assert refused.exit_code == EXIT_FATAL and "--resume" in refused.output


def test_scan_with_a_bad_model_is_fatal_and_writes_nothing(tmp_path, write_png):
    write_png(tmp_path / "in" / "a.png", brain_like(1))
    out = tmp_path / "r.csv"
    result = CliRunner().invoke(cli, ["scan", str(tmp_path / "in"), "--out", str(out), "--model", str(tmp_path)])
    assert result.exit_code == EXIT_FATAL and "model" in result.output
    assert not out.exists() and not (tmp_path / "r.csv.lock").exists()


def test_scan_usage_error(tmp_path):
    result = CliRunner().invoke(cli, ["scan", str(tmp_path), "--out", "x.csv", "--resume", "--overwrite"])
    assert result.exit_code == 2


def test_dedup_lists_copies(tmp_path, write_png):
    image = brain_like(4)
    write_png(tmp_path / "d" / "a.png", image)
    write_png(tmp_path / "d" / "copy.png", image)
    write_png(tmp_path / "d" / "other.png", brain_like(5))
    out = tmp_path / "dups.csv"
    result = CliRunner().invoke(cli, ["dedup", str(tmp_path / "d"), "--out", str(out), "--workers", "1"])
    assert result.exit_code == EXIT_OK, result.output
    rows = {r["path"]: r for r in _rows(out)}
    assert rows["a.png"]["group_id"] == rows["copy.png"]["group_id"] != rows["other.png"]["group_id"]
    assert rows["copy.png"]["kind"] == "exact" and rows["copy.png"]["kept"] == "a.png"


def test_synth_writes_class_folders_that_fit_reads(tmp_path):
    pytest.importorskip("nilearn")
    out = tmp_path / "synth"
    result = CliRunner().invoke(cli, ["synth", str(out), "--n", "6", "--seed", "5", "--workers", "1",
                                      "--size-range", "96", "128"])
    assert result.exit_code == EXIT_OK, result.output
    from mriscan.data.dataset import find_labelled_files

    files = find_labelled_files([out])
    assert len(files) == 6 and {f.label for f in files} == {0, 1}
    assert (out / "manifest.csv").exists() and any((out / "masks").iterdir())
    again = CliRunner().invoke(cli, ["synth", str(out), "--n", "6"])
    assert again.exit_code == EXIT_FATAL


def test_explain_from_a_scan_csv_writes_overlays_and_index(fitted, tmp_path, write_png):
    model, _ = fitted
    incoming = tmp_path / "in"
    write_png(incoming / "a.png", brain_like(7, lesion=True))
    write_png(incoming / "sub" / "b.png", brain_like(8))
    out = tmp_path / "results.csv"
    runner = CliRunner()
    assert runner.invoke(cli, ["scan", str(incoming), "--out", str(out), "--model", str(model),
                               "--workers", "1"]).exit_code == EXIT_OK
    result = runner.invoke(cli, ["explain", str(out), "--model", str(model), "--all", "--input-root", str(incoming),
                                 "--out-dir", str(tmp_path / "review"), "--method", "gradcam"])
    assert result.exit_code == EXIT_OK, result.output
    assert (tmp_path / "review" / "a.png.gradcam.png").exists()
    assert (tmp_path / "review" / "sub" / "b.png.gradcam.png").exists()
    index = (tmp_path / "review" / "index.html").read_text()
    assert "a.png.gradcam.png" in index and "sub/b.png.gradcam.png" in index


def test_explain_one_image_with_lime_into_a_review_folder_beside_its_folder(fitted, tmp_path, write_png):
    model, _ = fitted
    image = write_png(tmp_path / "one" / "x.png", brain_like(9, lesion=True))
    result = CliRunner().invoke(cli, ["explain", str(image), "--model", str(model), "--samples", "100"])
    assert result.exit_code == EXIT_OK, result.output
    assert (tmp_path / "one-review" / "x.png.lime.png").stat().st_size > 1000
    assert [p.name for p in (tmp_path / "one").iterdir()] == ["x.png"]


def test_dedup_against_another_folder_lists_the_leaked_copies(tmp_path, write_png):
    import cv2

    shared = brain_like(21)
    write_png(tmp_path / "train" / "a.png", shared)
    write_png(tmp_path / "train" / "b.png", brain_like(22))
    recoded = cv2.imdecode(cv2.imencode(".jpg", shared, [cv2.IMWRITE_JPEG_QUALITY, 85])[1], cv2.IMREAD_GRAYSCALE)
    write_png(tmp_path / "test" / "copy_of_a.png", recoded)
    write_png(tmp_path / "test" / "c.png", brain_like(23))
    out = tmp_path / "leaks.csv"
    result = CliRunner().invoke(cli, ["dedup", str(tmp_path / "train"), "--against", str(tmp_path / "test"),
                                      "--out", str(out), "--workers", "1"])
    assert result.exit_code == EXIT_OK, result.output
    rows = _rows(out)
    assert [(r["path"], r["against_path"], r["kind"]) for r in rows] == [("a.png", "copy_of_a.png", "near")]
    assert float(rows[0]["correlation"]) > 0.96 and "1 of 2 images" in result.output
