"""``mriscan compare``: two models on the same labelled images, side by side, with paired tests.

Both models score the same images (read once when their preprocessing is identical): by default
those that copy neither model's training images (``training_copies.py``). The report folder holds
``report.md``, ``metrics.json``, ``roc_curves.png`` (both curves on one plot) and
``disagreements.csv`` (the images the two models call differently at their own thresholds).
"""

from __future__ import annotations

import csv
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mriscan.data.dataset import CLASS_NAMES
from mriscan.evaluation.evaluate import LabelledData, SharedPredictions, predict_folders_shared, summarise
from mriscan.evaluation.paired_tests import DelongResult, McnemarResult, delong_test, mcnemar_test
from mriscan.evaluation.report import (
    DISCLAIMER,
    bootstrap_facts,
    data_facts,
    describe_bootstrap,
    describe_data,
    describe_model,
    metrics_table,
    model_facts,
    report_header,
    require_readable,
    write_json,
)
from mriscan.evaluation.training_copies import TrainingCopies, set_aside_training_copies
from mriscan.io.atomic import check_output_folder, write_folder_atomically
from mriscan.model.bundle import ModelBundle, load_bundle

DISAGREEMENT_COLUMNS = ("path", "frame", "label", "probability_a", "probability_b", "prediction_a", "prediction_b")


@dataclass(frozen=True)
class Comparison:
    """Models A and B measured on the same images, and the paired tests of their difference (B - A).

    ``auroc`` is None when either class has fewer than two images. ``mcnemar_all`` compares right
    or wrong at each model's own threshold on every image; ``mcnemar_tumours`` compares tumours
    found (predicted tumor) or missed.
    """

    model_a: dict[str, Any]
    model_b: dict[str, Any]
    metrics_a: dict[str, Any]
    metrics_b: dict[str, Any]
    data: dict[str, Any]
    auroc: DelongResult | None
    mcnemar_all: McnemarResult
    mcnemar_tumours: McnemarResult
    predictions: SharedPredictions
    bootstrap: dict[str, Any]
    training_copies: TrainingCopies


def run_comparison(model_a: Path, model_b: Path, data: LabelledData, out_dir: Path, *, overwrite: bool = False,
                   seed: int = 2021, resamples: int = 1000) -> Comparison:
    """Check the report folder, compare the two bundles and write the report."""
    check_output_folder(out_dir, overwrite, kind="report")
    comparison = compare_models(load_bundle(model_a), load_bundle(model_b), data, seed=seed, resamples=resamples)
    write_comparison_report(comparison, out_dir, overwrite=overwrite)
    return comparison


def compare_models(bundle_a: ModelBundle, bundle_b: ModelBundle, data: LabelledData, *, seed: int = 2021,
                   resamples: int = 1000) -> Comparison:
    """Score the same images with both bundles and test the differences (on the images neither has seen,
    unless ``data.include_training_copies``)."""
    shared = predict_folders_shared([bundle_a, bundle_b], data)
    require_readable(shared, data)
    shared, copies = set_aside_training_copies(shared, [bundle_a, bundle_b], ["model A", "model B"],
                                               keep=data.include_training_copies)
    labels, (probability_a, probability_b) = shared.labels, shared.probabilities
    tumour = labels == 1
    predicted_a, predicted_b = probability_a >= bundle_a.threshold, probability_b >= bundle_b.threshold
    both_classes = min(int(tumour.sum()), int((~tumour).sum())) >= 2
    return Comparison(
        model_a=model_facts(bundle_a), model_b=model_facts(bundle_b),
        metrics_a=summarise(labels, probability_a, bundle_a, seed=seed, resamples=resamples),
        metrics_b=summarise(labels, probability_b, bundle_b, seed=seed, resamples=resamples),
        data={**data_facts(shared, copies), "read_once": shared.loading_passes == 1},
        auroc=delong_test(labels, probability_a, probability_b) if both_classes else None,
        mcnemar_all=mcnemar_test(predicted_a == tumour, predicted_b == tumour),
        mcnemar_tumours=mcnemar_test(predicted_a[tumour], predicted_b[tumour]),
        predictions=shared, bootstrap=bootstrap_facts(seed, resamples), training_copies=copies,
    )


def write_comparison_report(comparison: Comparison, out_dir: Path, *, overwrite: bool = False) -> None:
    """Write report.md, metrics.json, roc_curves.png and disagreements.csv into ``out_dir``, atomically."""
    from mriscan.evaluation.plots import plot_roc

    labels, (probability_a, probability_b) = comparison.predictions.labels, comparison.predictions.probabilities

    def write(folder: Path) -> None:
        write_json(folder / "metrics.json", comparison_json(comparison))
        (folder / "report.md").write_text(comparison_markdown(comparison), encoding="utf-8")
        plot_roc({"A": (labels, probability_a), "B": (labels, probability_b)}, folder / "roc_curves.png",
                 {"A": comparison.model_a["threshold"], "B": comparison.model_b["threshold"]})
        _write_disagreements(comparison, folder / "disagreements.csv")

    write_folder_atomically(out_dir, write, overwrite=overwrite, kind="report")


def comparison_json(comparison: Comparison) -> dict[str, Any]:
    """The content of metrics.json."""
    return {
        **report_header(),
        "model_a": {**comparison.model_a, "metrics": comparison.metrics_a},
        "model_b": {**comparison.model_b, "metrics": comparison.metrics_b},
        "data": comparison.data,
        "auroc_difference_b_minus_a": comparison.auroc.as_record() if comparison.auroc else None,
        "mcnemar_at_thresholds": asdict(comparison.mcnemar_all),
        "mcnemar_tumours_found": asdict(comparison.mcnemar_tumours),
        "disagreements": len(disagreement_rows(comparison)),
        "bootstrap": comparison.bootstrap,
    }


def comparison_markdown(comparison: Comparison) -> str:
    """The content of report.md."""
    return "\n".join([
        "# mriscan comparison", "",
        describe_model("A", comparison.model_a), "", describe_model("B", comparison.model_b), "",
        describe_data(comparison.data), "", comparison_table(comparison), "",
        f"{len(disagreement_rows(comparison))} images are called differently: see disagreements.csv.", "",
        "![ROC curves](roc_curves.png)", "", describe_bootstrap(comparison.bootstrap), "", DISCLAIMER, "",
    ])


def comparison_table(comparison: Comparison) -> str:
    """Side-by-side metrics and the paired tests, as markdown (also what the CLI prints)."""
    return "\n".join([
        metrics_table({"A": comparison.metrics_a, "B": comparison.metrics_b}), "",
        "Paired tests (B - A):", "", f"- {describe_delong(comparison.auroc)}",
        f"- Right or wrong at each model's own threshold: {describe_mcnemar(comparison.mcnemar_all)}",
        f"- Tumours found or missed: {describe_mcnemar(comparison.mcnemar_tumours)}",
    ])


def describe_delong(result: DelongResult | None) -> str:
    """DeLong's test in words."""
    if result is None:
        return "AUROC difference: not tested (fewer than two images of a class)"
    low, high = result.difference_ci95
    return (f"AUROC difference {result.difference:+.3f} [95% CI {low:+.3f}, {high:+.3f}], DeLong z = {result.z:.2f}, "
            f"two-sided p = {result.p_two_sided:.3g}; one-sided p (B lower) = {result.p_b_lower:.3g}")


def describe_mcnemar(result: McnemarResult) -> str:
    """McNemar's test in words."""
    return (f"right only for A {result.only_a_correct}, only for B {result.only_b_correct}; McNemar "
            f"({result.method}) two-sided p = {result.p_two_sided:.3g}, one-sided p (B worse) = {result.p_b_worse:.3g}")


def disagreement_rows(comparison: Comparison) -> list[dict[str, str]]:
    """One row per image the two models call differently at their own thresholds."""
    shared = comparison.predictions
    probability_a, probability_b = shared.probabilities
    predicted_a = probability_a >= comparison.model_a["threshold"]
    predicted_b = probability_b >= comparison.model_b["threshold"]
    folders = [f["dir"] for f in comparison.data["folders"]]
    return [
        {"path": _display_path(shared.paths[i], folders),
         "frame": "" if shared.frames[i] is None else str(shared.frames[i]),
         "label": CLASS_NAMES[shared.labels[i]], "probability_a": f"{probability_a[i]:.6f}",
         "probability_b": f"{probability_b[i]:.6f}", "prediction_a": CLASS_NAMES[int(predicted_a[i])],
         "prediction_b": CLASS_NAMES[int(predicted_b[i])]}
        for i in np.flatnonzero(predicted_a != predicted_b)
    ]


def _write_disagreements(comparison: Comparison, path: Path) -> None:
    with open(path, "w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=DISAGREEMENT_COLUMNS)
        writer.writeheader()
        writer.writerows(disagreement_rows(comparison))


def _display_path(path: Path, folders: list[str]) -> str:
    """``path`` as the data folder it came from was given on the command line, plus the rest."""
    absolute = Path(os.path.abspath(path))
    for folder in folders:
        root = Path(os.path.abspath(folder))
        if absolute.is_relative_to(root):
            return (Path(folder) / absolute.relative_to(root)).as_posix()
    return absolute.as_posix()
