"""``mriscan evaluate``: how one model does on a site's own labelled images, as a report folder.

The folder holds ``report.md`` (for people), ``metrics.json`` (for programs), ``roc_curve.png``,
``confusion_matrix.png`` and ``reliability_diagram.png``; it is written atomically. The figures leave
out copies of the model's training images unless asked to keep them (``training_copies.py``). The
tables and facts here are shared with ``mriscan compare`` and ``mriscan promote``.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from mriscan import __version__
from mriscan.errors import DataLayoutError
from mriscan.evaluation.evaluate import LabelledData, SharedPredictions, predict_folders_shared, summarise
from mriscan.evaluation.training_copies import TrainingCopies, set_aside_training_copies
from mriscan.io.atomic import check_output_folder, write_folder_atomically
from mriscan.model.bundle import ModelBundle, load_bundle
from mriscan.model.calibrate import reliability_bins

METRIC_ROWS = (
    ("AUROC", "auroc"),
    ("sensitivity at the threshold", "sensitivity"),
    ("specificity at the threshold", "specificity"),
    ("accuracy at the threshold", "accuracy"),
    ("tumours predicted or flagged (safety net)", "tumors_predicted_or_flagged"),
    ("flagged share (near threshold)", "flagged_share"),
    ("calibration error (ECE, 10 bins)", "ece"),
)
DISCLAIMER = "mriscan is a research and triage aid, not a diagnostic device."


@dataclass(frozen=True)
class Evaluation:
    """One model's metrics on labelled folders, with what is needed to draw and report them."""

    model: dict[str, Any]
    data: dict[str, Any]
    metrics: dict[str, Any]
    reliability: list[dict]
    bootstrap: dict[str, Any]
    labels: np.ndarray
    probability: np.ndarray
    training_copies: TrainingCopies


def run_evaluation(model_dir: Path | None, data: LabelledData, out_dir: Path, *, overwrite: bool = False,
                   seed: int = 2021, resamples: int = 1000) -> Evaluation:
    """Check the report folder, evaluate the bundle at ``model_dir`` (None: the default) and write the report."""
    check_output_folder(out_dir, overwrite, kind="report")
    evaluation = evaluate_model(load_bundle(model_dir), data, seed=seed, resamples=resamples)
    write_evaluation_report(evaluation, out_dir, overwrite=overwrite)
    return evaluation


def evaluate_model(bundle: ModelBundle, data: LabelledData, *, seed: int = 2021,
                   resamples: int = 1000) -> Evaluation:
    """Predict every labelled image and measure the bundle at its own thresholds.

    Copies of the bundle's training images are counted and, unless ``data.include_training_copies``,
    left out of the figures.
    """
    predictions = predict_folders_shared([bundle], data)
    require_readable(predictions, data)
    predictions, copies = set_aside_training_copies(predictions, [bundle], ["this model"],
                                                    keep=data.include_training_copies)
    labels, probability = predictions.labels, predictions.probabilities[0]
    return Evaluation(
        model=model_facts(bundle), data=data_facts(predictions, copies),
        metrics=summarise(labels, probability, bundle, seed=seed, resamples=resamples),
        reliability=reliability_bins(labels, probability), bootstrap=bootstrap_facts(seed, resamples),
        labels=labels, probability=probability, training_copies=copies,
    )


def write_evaluation_report(evaluation: Evaluation, out_dir: Path, *, overwrite: bool = False) -> None:
    """Write report.md, metrics.json and the three pictures into ``out_dir``, atomically."""
    from mriscan.evaluation.plots import plot_confusion_matrix, plot_reliability, plot_roc

    def write(folder: Path) -> None:
        write_json(folder / "metrics.json", evaluation_json(evaluation))
        (folder / "report.md").write_text(evaluation_markdown(evaluation), encoding="utf-8")
        plot_roc({"this model": (evaluation.labels, evaluation.probability)}, folder / "roc_curve.png",
                 {"this model": evaluation.model["threshold"]})
        plot_confusion_matrix(evaluation.metrics["confusion_matrix"],
                              f"threshold {evaluation.model['threshold']:.3g}", folder / "confusion_matrix.png")
        plot_reliability(evaluation.reliability, folder / "reliability_diagram.png")

    write_folder_atomically(out_dir, write, overwrite=overwrite, kind="report")


def evaluation_json(evaluation: Evaluation) -> dict[str, Any]:
    """The content of metrics.json."""
    return {
        **report_header(), "model": evaluation.model, "data": evaluation.data, "metrics": evaluation.metrics,
        "calibration": {"ece": evaluation.metrics["ece"], "reliability_bins": evaluation.reliability},
        "bootstrap": evaluation.bootstrap,
    }


def evaluation_markdown(evaluation: Evaluation) -> str:
    """The content of report.md."""
    matrix = evaluation.metrics["confusion_matrix"]
    return "\n".join([
        "# mriscan evaluation", "",
        describe_model("Model", evaluation.model), describe_data(evaluation.data), "",
        metrics_table({"value [95% CI]": evaluation.metrics}), "",
        "## Confusion matrix at the threshold", "",
        "| truth \\ predicted | no_tumor | tumor |", "|---|---:|---:|",
        f"| no_tumor | {matrix[0][0]} | {matrix[0][1]} |", f"| tumor | {matrix[1][0]} | {matrix[1][1]} |", "",
        "![ROC curve](roc_curve.png) ![confusion matrix](confusion_matrix.png) "
        "![reliability diagram](reliability_diagram.png)", "",
        describe_bootstrap(evaluation.bootstrap), "", DISCLAIMER, "",
    ])


def require_readable(predictions: SharedPredictions, data: LabelledData) -> None:
    """Refuse to report on nothing: at least one image must have been read."""
    if len(predictions.labels) == 0:
        raise DataLayoutError(
            f"no readable images under {', '.join(str(d) for d in data.dirs)} "
            f"({predictions.unreadable} could not be read); check the folders and their class sub-folders"
        )


def model_facts(bundle: ModelBundle) -> dict[str, Any]:
    """What a report says about a model: where it is, which weights, its operating points."""
    card = bundle.card
    return {"dir": str(bundle.directory), "model_id": bundle.model_id, "architecture": card.architecture,
            "input_size": card.input_size, "created": card.created, "threshold": bundle.threshold,
            "review_threshold": bundle.review_threshold}


def data_facts(predictions: SharedPredictions, copies: TrainingCopies) -> dict[str, Any]:
    """What a report says about the data: fingerprints of the folders, the images counted (those the figures
    are measured on) and the copies of the models' training images."""
    tumours = int(predictions.labels.sum())
    return {"folders": predictions.fingerprints, "images": len(predictions.labels), "tumor": tumours,
            "no_tumor": len(predictions.labels) - tumours, "unreadable": predictions.unreadable,
            "by_source": dict(Counter(predictions.sources.tolist())), "training_copies": copies.as_record()}


def bootstrap_facts(seed: int, resamples: int) -> dict[str, Any]:
    """How the intervals were made."""
    return {"method": "percentile bootstrap, resampling within class", "resamples": resamples, "seed": seed,
            "level": 0.95}


def report_header() -> dict[str, str]:
    """When and by what a report was made."""
    return {"mriscan_version": __version__,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds")}


def format_estimate(value: float | None, interval: list[float] | None = None) -> str:
    """A metric with its interval for a table.

    Examples
    --------
    >>> format_estimate(0.91234, [0.85, 0.96]), format_estimate(None)
    ('0.912 [0.850, 0.960]', '-')
    """
    if value is None:
        return "-"
    return f"{value:.3f}" + (f" [{interval[0]:.3f}, {interval[1]:.3f}]" if interval else "")


def metrics_table(columns: Mapping[str, Mapping[str, Any]]) -> str:
    """A markdown table: one row per metric, one column per named metrics dict (value [95% CI])."""
    lines = ["| metric | " + " | ".join(columns) + " |", "|---|" + "---:|" * len(columns)]
    for title, key in METRIC_ROWS:
        cells = [format_estimate(m.get(key), m.get(f"{key}_ci95")) for m in columns.values()]
        lines.append(f"| {title} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def describe_model(role: str, model: Mapping[str, Any]) -> str:
    """One markdown line about a model."""
    return (f"{role}: `{model['dir']}` (model_id `{model['model_id'][:12]}`, {model['architecture']}, "
            f"{model['input_size']} px, created {model['created']}); threshold {model['threshold']:.4g}, "
            f"review threshold {model['review_threshold']:.4g}.")


def describe_data(data: Mapping[str, Any]) -> str:
    """A markdown paragraph about the data: the folders, the images measured, the copies of training images."""
    folders = ", ".join(f"`{f['dir']}` ({f['files']} files, fingerprint `{f['sha256'][:12]}`)"
                        for f in data["folders"])
    copies = data["training_copies"]
    measured = (f"{data['images']} images measured" if copies["left_out"] else f"{data['images']} images read")
    return "\n".join([
        f"Data: {folders}: {measured} ({data['tumor']} tumor, {data['no_tumor']} no_tumor), "
        f"{data['unreadable']} unreadable.", "", *(f"{sentence[0].upper()}{sentence[1:]}." for sentence in
                                                   copies["summary"])])


def describe_bootstrap(bootstrap: Mapping[str, Any]) -> str:
    """One markdown line about the intervals."""
    return (f"Intervals: 95% {bootstrap['method']}, {bootstrap['resamples']} resamples, seed {bootstrap['seed']}. "
            "Sensitivity and specificity are at the model's own threshold.")


def write_json(path: Path, content: Mapping[str, Any]) -> None:
    """Write ``content`` as indented JSON."""
    path.write_text(json.dumps(content, indent=2) + "\n", encoding="utf-8")
