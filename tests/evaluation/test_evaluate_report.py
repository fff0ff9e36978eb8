"""``mriscan evaluate``: the report folder, its intervals, and how it refuses to overwrite."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import REPO

from mriscan.cli import EXIT_FATAL, EXIT_OK, cli
from mriscan.evaluation.evaluate import LabelledData, summarise
from mriscan.evaluation.report import evaluate_model, write_evaluation_report
from mriscan.model.bundle import load_bundle
from mriscan.model.calibrate import expected_calibration_error, reliability_bins

SAMPLE_TRAIN = REPO / "sample_data" / "train"
REPORT_FILES = {"report.md", "metrics.json", "roc_curve.png", "confusion_matrix.png", "reliability_diagram.png"}


def _evaluate(model: Path, data: Path, out: Path, *extra: str):
    return CliRunner().invoke(cli, ["evaluate", str(data), "--model", str(model), "--out", str(out),
                                    "--workers", "1", "--bootstrap", "100", *extra])


def test_evaluate_writes_the_report_on_sample_data(tiny_bundle, tmp_path):
    out = tmp_path / "report"
    result = _evaluate(tiny_bundle, SAMPLE_TRAIN, out)
    assert result.exit_code == EXIT_OK, result.output + repr(result.exception)
    assert {p.name for p in out.iterdir()} == REPORT_FILES
    report = json.loads((out / "metrics.json").read_text())
    metrics = report["metrics"]
    assert report["data"]["images"] == 48 and (report["data"]["tumor"], report["data"]["no_tumor"]) == (24, 24)
    assert report["model"]["model_id"] == load_bundle(tiny_bundle).model_id
    assert report["data"]["folders"][0]["files"] == 48 and len(report["data"]["folders"][0]["sha256"]) == 64
    for name in ("auroc", "sensitivity", "specificity", "tumors_predicted_or_flagged", "flagged_share", "ece"):
        low, high = metrics[f"{name}_ci95"]
        assert low <= metrics[name] + 1e-9 and metrics[name] <= high + 1e-9, name
    assert sum(b["count"] for b in report["calibration"]["reliability_bins"]) == 48
    assert report["bootstrap"]["resamples"] == 100
    markdown = (out / "report.md").read_text()
    assert "AUROC" in markdown and "reliability_diagram.png" in markdown and "not a diagnostic device" in markdown
    assert all((out / name).stat().st_size > 1000 for name in REPORT_FILES if name.endswith(".png"))
    assert "AUROC" in result.output


def test_evaluate_refuses_a_non_empty_report_folder_without_overwrite(tiny_bundle, tmp_path):
    out = tmp_path / "report"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    refused = _evaluate(tiny_bundle, SAMPLE_TRAIN, out)
    assert refused.exit_code == EXIT_FATAL and "--overwrite" in refused.output
    assert [p.name for p in out.iterdir()] == ["notes.txt"]
    replaced = _evaluate(tiny_bundle, SAMPLE_TRAIN, out, "--overwrite")
    assert replaced.exit_code == EXIT_OK, replaced.output
    assert {p.name for p in out.iterdir()} == REPORT_FILES
    kept = list(tmp_path.glob("report.replaced-*"))
    assert len(kept) == 1 and (kept[0] / "notes.txt").read_text() == "keep me"


def test_evaluate_reports_a_bad_model_and_bad_layout(tiny_bundle, tmp_path):
    no_model = _evaluate(tmp_path / "nowhere", SAMPLE_TRAIN, tmp_path / "a")
    assert no_model.exit_code == EXIT_FATAL and "model" in no_model.output
    (tmp_path / "d" / "maybe").mkdir(parents=True)
    bad_layout = _evaluate(tiny_bundle, tmp_path / "d", tmp_path / "b")
    assert bad_layout.exit_code == EXIT_FATAL and "maybe" in bad_layout.output
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_a_failed_report_leaves_no_folder_behind(tiny_bundle, tmp_path, monkeypatch):
    evaluation = evaluate_model(load_bundle(tiny_bundle), LabelledData((SAMPLE_TRAIN,), workers=1), resamples=100)

    def broken(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr("mriscan.evaluation.plots.plot_reliability", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        write_evaluation_report(evaluation, tmp_path / "report")
    assert list(tmp_path.iterdir()) == []


def test_summarise_intervals_cover_the_estimates():
    rng = np.random.default_rng(2)
    labels = np.array([1] * 60 + [0] * 60)
    probability = np.clip(labels * 0.4 + rng.uniform(0, 0.6, 120), 0, 1)

    class Thresholds:
        threshold, review_threshold = 0.5, 0.4

    summary = summarise(labels, probability, Thresholds(), resamples=200)
    for name in ("auroc", "sensitivity", "specificity", "accuracy", "tumors_predicted_or_flagged", "flagged_share"):
        low, high = summary[f"{name}_ci95"]
        assert low <= summary[name] <= high and high - low < 0.5, name


def test_reliability_bins_add_up_to_the_ece():
    rng = np.random.default_rng(3)
    probability = rng.uniform(0, 1, 500)
    labels = (rng.uniform(0, 1, 500) < probability**2).astype(int)
    bins = reliability_bins(labels, probability)
    assert sum(b["count"] for b in bins) == 500
    ece = sum(b["count"] / 500 * abs(b["mean_probability"] - b["tumour_rate"]) for b in bins if b["count"])
    assert expected_calibration_error(labels, probability) == pytest.approx(ece, abs=1e-5) and ece > 0.05
