"""evaluate, compare and promote count the images that copy a model's training images and leave them out."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import pytest
from click.testing import CliRunner
from conftest import save_seed_bundle, write_class_folders

from mriscan.cli import EXIT_FATAL, EXIT_OK, cli
from mriscan.model.bundle import load_bundle

LEFT_OUT = ("3 of 34 images are exact copies and 2 near copies of this model's training images; left out of the "
            "figures (--include-training-copies to keep them)")
NO_FINGERPRINTS = "keeps no fingerprints of its training images"


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> tuple[Path, Path, Path]:
    """A model (150 px, as the default) that kept the fingerprints of 20 training images, and a site's
    labelled folder of 29 new images, 3 exact copies of training images and 2 near copies (re-encoded, resized)."""
    root = tmp_path_factory.mktemp("copies")
    training = write_class_folders(root / "training", range(10))
    model = save_seed_bundle(root / "model", image_size=150, seen=sorted(training.rglob("*.png")))
    data = write_class_folders(root / "site", range(400, 415))
    (data / "no" / "no400.png").unlink()  # 14 healthy + 15 tumour new images
    for name in ("yes/yes0.png", "yes/yes1.png", "no/no0.png"):
        shutil.copy(training / name, data / name.replace("/", "/copy_"))
    pixels = cv2.imread(str(training / "yes" / "yes2.png"), cv2.IMREAD_GRAYSCALE)
    assert cv2.imwrite(str(data / "yes" / "reencoded.jpg"), pixels, [cv2.IMWRITE_JPEG_QUALITY, 75])
    pixels = cv2.imread(str(training / "no" / "no2.png"), cv2.IMREAD_GRAYSCALE)
    assert cv2.imwrite(str(data / "no" / "resized.png"), cv2.resize(pixels, None, fx=0.7, fy=0.7,
                                                                     interpolation=cv2.INTER_AREA))
    return model, data, training


def _evaluate(model: Path, data: Path, out: Path, *extra: str):
    return CliRunner().invoke(cli, ["evaluate", str(data), "--model", str(model), "--out", str(out),
                                    "--workers", "1", "--bootstrap", "100", *extra])


def test_evaluate_leaves_out_copies_of_the_training_images_and_says_so(site, tmp_path):
    model, data, _ = site
    result = _evaluate(model, data, tmp_path / "report")
    assert result.exit_code == EXIT_OK, result.output + repr(result.exception)
    assert f"mriscan: warning: {LEFT_OUT}" in result.output
    assert "29 images, 0 unreadable, 5 left out as copies of training images ->" in result.output
    report = json.loads((tmp_path / "report" / "metrics.json").read_text())
    assert report["data"]["images"] == report["metrics"]["n"] == 29
    copies = report["data"]["training_copies"]
    assert (copies["images_checked"], copies["left_out"], copies["kept_in_figures"]) == (34, 5, False)
    assert copies["models"] == [{"model": "this model", "model_id": load_bundle(model).model_id,
                                 "fingerprints": True, "exact": 3, "near": 2}]
    assert LEFT_OUT in (tmp_path / "report" / "report.md").read_text()


def test_include_training_copies_keeps_them_in_the_figures(site, tmp_path):
    model, data, _ = site
    result = _evaluate(model, data, tmp_path / "report", "--include-training-copies")
    assert result.exit_code == EXIT_OK, result.output + repr(result.exception)
    assert "3 of 34 images are exact copies and 2 near copies" in result.output
    assert "kept in the figures" in result.output
    report = json.loads((tmp_path / "report" / "metrics.json").read_text())
    assert report["data"]["images"] == 34 and report["data"]["training_copies"]["left_out"] == 0


def test_evaluating_only_training_images_says_there_is_nothing_new_to_measure(site, tmp_path):
    model, _, training = site
    result = _evaluate(model, training, tmp_path / "report")
    assert result.exit_code == EXIT_FATAL
    assert "all 20 readable images are copies" in result.output and "--include-training-copies" in result.output
    assert not (tmp_path / "report").exists()


def test_a_model_without_fingerprints_is_measured_on_all_images_with_one_warning(site, tiny_bundle, tmp_path):
    _, data, _ = site
    result = _evaluate(tiny_bundle, data, tmp_path / "report")
    assert result.exit_code == EXIT_OK, result.output + repr(result.exception)
    assert result.output.count(NO_FINGERPRINTS) == 1 and "figures are computed on all 34 images" in result.output
    report = json.loads((tmp_path / "report" / "metrics.json").read_text())
    assert report["data"]["images"] == 34
    assert report["data"]["training_copies"]["models"][0]["fingerprints"] is False


def test_compare_leaves_out_what_either_model_has_seen_and_counts_it_per_model(site, tiny_bundle, tmp_path):
    model, data, _ = site
    out = tmp_path / "comparison"
    result = CliRunner().invoke(cli, ["compare", str(tiny_bundle), str(model), str(data), "--out", str(out),
                                      "--workers", "1", "--bootstrap", "100"])
    assert result.exit_code == EXIT_OK, result.output + repr(result.exception)
    assert "3 of 34 images are exact copies and 2 near copies of model B's training images" in result.output
    assert NO_FINGERPRINTS in result.output  # model A: copies of its training images cannot be detected
    assert "29 images, 5 left out as copies of training images," in result.output
    report = json.loads((out / "metrics.json").read_text())
    assert report["data"]["images"] == 29 and report["data"]["training_copies"]["left_out"] == 5
    assert [(m["model"], m["exact"], m["near"]) for m in report["data"]["training_copies"]["models"]] == [
        ("model A", None, None), ("model B", 3, 2)]


def test_promote_decides_on_images_neither_model_has_seen_and_records_the_counts(site, tmp_path):
    _, data, training = site
    current = save_seed_bundle(tmp_path / "production", image_size=150, threshold=0.6, zero_weights=True)
    new = save_seed_bundle(tmp_path / "new", image_size=150, threshold=0.5, zero_weights=True,
                           seen=sorted(training.rglob("*.png")))  # finds every tumour, as good otherwise
    result = CliRunner().invoke(cli, ["promote", str(new), "--over", str(current), "--data", str(data),
                                      "--workers", "1", "--bootstrap", "100"])
    assert result.exit_code == EXIT_OK, result.output + repr(result.exception)
    assert "3 of 34 images are exact copies and 2 near copies of model B's training images" in result.output
    promotion = load_bundle(current).card.lineage["promotion"]
    assert promotion["data"]["images"] == 29 and promotion["data"]["training_copies"]["left_out"] == 5


def test_a_refused_promotion_says_how_many_images_copy_the_training_images(site, tmp_path):
    model, data, _ = site  # an untrained network: its AUROC is far below the constant model's
    current = save_seed_bundle(tmp_path / "production", image_size=150, threshold=0.6, zero_weights=True)
    result = CliRunner().invoke(cli, ["promote", str(model), "--over", str(current), "--data", str(data),
                                      "--workers", "1", "--bootstrap", "100"])
    assert result.exit_code == EXIT_FATAL and "not promoted because" in result.output
    assert "3 of 34 images are exact copies and 2 near copies of model B's training images" in result.output


def test_evaluate_on_a_fitted_models_own_training_folder_measures_its_test_split_only(trained_bundle, tmp_path):
    """The issue's case: fit keeps what the model has seen, and evaluate no longer scores it on that."""
    split = load_bundle(trained_bundle).card.data["split_sizes"]
    result = _evaluate(trained_bundle, trained_bundle.parent / "train", tmp_path / "report")
    assert result.exit_code == EXIT_OK, result.output + repr(result.exception)
    report = json.loads((tmp_path / "report" / "metrics.json").read_text())
    assert report["data"]["images"] == split["test"]
    copies = report["data"]["training_copies"]["models"][0]
    assert (copies["exact"], copies["near"]) == (split["train"] + split["validation"], 0)
