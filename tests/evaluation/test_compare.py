"""``mriscan compare``: both models on the same images, paired tests, ROC overlay, disagreements."""

from __future__ import annotations

import csv
import json

from click.testing import CliRunner
from conftest import save_seed_bundle

from mriscan.cli import EXIT_FATAL, EXIT_OK, cli
from mriscan.evaluation.compare import compare_models
from mriscan.evaluation.evaluate import LabelledData
from mriscan.model.bundle import load_bundle


def test_compare_writes_side_by_side_report(trained_bundle, tiny_bundle, holdout_folder, tmp_path):
    out = tmp_path / "comparison"
    result = CliRunner().invoke(cli, ["compare", str(trained_bundle), str(tiny_bundle), str(holdout_folder),
                                      "--out", str(out), "--workers", "1", "--bootstrap", "100"])
    assert result.exit_code == EXIT_OK, result.output + repr(result.exception)
    assert {p.name for p in out.iterdir()} == {"report.md", "metrics.json", "roc_curves.png", "disagreements.csv"}
    report = json.loads((out / "metrics.json").read_text())
    assert report["data"]["images"] == 50 and report["data"]["read_once"] is True
    a, b = report["model_a"], report["model_b"]
    assert a["model_id"] == load_bundle(trained_bundle).model_id and b["model_id"] == load_bundle(tiny_bundle).model_id
    assert a["metrics"]["auroc"] > 0.9 and "auroc_ci95" in b["metrics"]
    delong = report["auroc_difference_b_minus_a"]
    assert delong["difference"] < 0 and delong["p_b_lower"] < 0.05
    with open(out / "disagreements.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == report["disagreements"] > 0
    assert list(rows[0]) == ["path", "frame", "label", "probability_a", "probability_b", "prediction_a",
                             "prediction_b"]
    assert all(r["prediction_a"] != r["prediction_b"] and r["path"].startswith(str(holdout_folder)) for r in rows)
    assert "DeLong" in result.output and "McNemar" in (out / "report.md").read_text()
    again = CliRunner().invoke(cli, ["compare", str(trained_bundle), str(tiny_bundle), str(holdout_folder),
                                     "--out", str(out)])
    assert again.exit_code == EXIT_FATAL and "--overwrite" in again.output


def test_models_with_different_preprocessing_each_read_the_images(tiny_bundle, holdout_folder, tmp_path):
    other = save_seed_bundle(tmp_path / "model48", image_size=48)
    comparison = compare_models(load_bundle(tiny_bundle), load_bundle(other),
                                LabelledData((holdout_folder,), workers=1), resamples=100)
    assert comparison.data["read_once"] is False and comparison.data["images"] == 50
    assert comparison.predictions.probabilities.shape == (2, 50)
    assert comparison.mcnemar_tumours.only_a_correct + comparison.mcnemar_tumours.only_b_correct <= 25
