"""Study rules on held-out studies: how slice probabilities should become one answer per study.

``scan --studies`` answers per volume (and per DICOM study) from its slices' probabilities. This
measures candidate rules (the maximum, the mean of the top k, the k-th highest, the share of slices
called tumour) for sensitivity and specificity per study, with models that never saw the studies'
sources (the held-out models of benchmarks/heldout.py), and the shipped default for reference.

Studies (``stage``):

* openms: the 15 healthy clinical volumes, and each of them with ``LESIONS_PER_VOLUME`` synthetic
  lesions, one per copy (:func:`mriscan.synth.stack.draw_lesion_through`: an ellipsoid drawn slice
  by slice in the acquisition plane, in the volume's sequence). Scanned as NIfTI by
  ``mriscan scan`` in the acquisition plane, by the sartaj+openms model.
* oasis: the subjects of OASIS's ``test_`` files (``test_<class>_<slice> (<subject>).jpg``; the
  slice numbers run 26-32: neighbouring slices of one subject correlate at 0.99, slices of
  different subjects at the same level at 0.90) with at least ``MIN_OASIS_SLICES`` slices, as they
  are and with one lesion drawn through their slices (taken as 1 mm apart: the atlas grid), by the
  figshare+oasis model. The ``train_`` files cannot be grouped into subjects.

Steps (each resumes: finished pieces are kept under --work):

    python benchmarks/study_rule.py stage  --work WORK [--data ../shared/data]
    python benchmarks/study_rule.py scan   --work WORK --heldout HELDOUT/runs/planes-s2021
    python benchmarks/study_rule.py report --work WORK --heldout HELDOUT/runs/planes-s2021

The slice thresholds are fit's current rule, applied to each model's validation predictions
(metrics.json): the decision threshold keeps 98% of the real validation tumours, the review
threshold 99.5% of all of them (:func:`mriscan.model.calibrate.choose_thresholds`).
"""

from __future__ import annotations

import argparse
import csv
import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from heldout import REPO, SYNTHETIC_SUFFIXES, auroc, mriscan

from mriscan.io.nifti import PLANES, acquisition_plane
from mriscan.model.calibrate import Thresholds, choose_thresholds, threshold_for_recall
from mriscan.scan.results import Row
from mriscan.scan.studies import StudyRule, scored_rows, study_of
from mriscan.synth.stack import draw_lesion_through

LESIONS_PER_VOLUME = 4
MIN_OASIS_SLICES = 6
OASIS_SLICE_MM = 1.0
SEED = 2021
TARGET_SENSITIVITY = 0.98
CONTRAST_OF_SEQUENCE = {"FLAIR": "flair", "T1W": "t1", "T2W": "t2"}
OASIS_NAME = re.compile(r"test_(?P<group>[A-Za-z]+)_(?P<slice>\d+)(?: \((?P<subject>\d+)\))?\.jpg")
LESION_COLUMNS = ("study", "kind", "centre_slice", "radius_mm", "depth_mm", "lesion_slices")


@dataclass(frozen=True)
class Model:
    """A model and a study set: a held-out model (``pair``) never saw the set's sources."""

    name: str
    pair: str | None  # heldout.py's pair whose model this is; None: the shipped default (for reference)
    study_set: str

    def folder(self, runs: Path) -> Path:
        return runs / self.pair / "model" if self.pair else REPO / "models" / "default"

    @property
    def label(self) -> str:
        return self.name if self.pair else f"{self.name} (not held out)"


MODELS = (
    Model("sartaj+openms", "sartaj+openms", "openms"),
    Model("figshare+oasis", "figshare+oasis", "oasis"),
    Model("shipped default", None, "openms"),
    Model("shipped default", None, "oasis"),
)


# ---------------------------------------------------------------- staging


def stage(data: Path, work: Path) -> None:
    """Healthy studies (links) and their lesioned copies, with a lesions.csv per study set."""
    stage_openms(data / "openms", work / "studies" / "openms")
    stage_oasis(data / "oasis" / "no_tumor", work / "studies" / "oasis")
    print(f"staged under {work / 'studies'}")


def stage_openms(source: Path, out: Path) -> None:
    """Each volume linked as healthy, and ``LESIONS_PER_VOLUME`` copies with one lesion each."""
    import nibabel as nib

    if (out / "lesions.csv").exists():
        return
    lesions = []
    for number, path in enumerate(sorted(source.glob("*/*.nii.gz"))):
        name = f"{path.parent.name}_{path.name}"
        link = out / "healthy" / name
        for folder in ("healthy", "tumour"):
            (out / folder).mkdir(parents=True, exist_ok=True)
        if not link.exists():
            link.symlink_to(path.resolve())
        volume = nib.as_closest_canonical(nib.load(path))
        sizes = tuple(float(s) for s in volume.header.get_zooms()[:3])
        axis = 2 - PLANES.index(acquisition_plane(sizes))  # axial: 2, coronal: 1, sagittal: 0
        stack = np.moveaxis(np.asarray(volume.dataobj, dtype=np.float32), axis, 0)
        contrast = CONTRAST_OF_SEQUENCE[path.name.split("_")[-1].split(".")[0]]
        in_plane = min(s for k, s in enumerate(sizes) if k != axis)
        for copy in range(LESIONS_PER_VOLUME):
            lesion = draw_lesion_through(stack, np.random.default_rng([SEED, number, copy]), contrast, in_plane,
                                         sizes[axis] * np.arange(len(stack)))
            voxels = np.clip(np.round(np.moveaxis(lesion.stack, 0, axis)), 0, np.iinfo(np.uint16).max)
            study = f"tumour/{name.replace('.nii.gz', f'_lesion{copy}.nii.gz')}"
            nib.save(nib.Nifti1Image(voxels.astype(np.uint16), volume.affine), out / study)
            lesions.append(_lesion_row(study, lesion))
    _write_lesions(out / "lesions.csv", lesions)


def oasis_subjects(folder: Path) -> dict[str, list[Path]]:
    """OASIS ``test_`` files by subject (class and subject number), each sorted by slice number."""
    subjects: dict[str, list[tuple[int, Path]]] = {}
    for path in folder.iterdir():
        match = OASIS_NAME.fullmatch(path.name)
        if match:
            key = f"{match['group']}_{match['subject'] or 0}"
            subjects.setdefault(key, []).append((int(match["slice"]), path))
    return {key: [path for _, path in sorted(found)] for key, found in sorted(subjects.items())
            if len(found) >= MIN_OASIS_SLICES}


def stage_oasis(source: Path, out: Path) -> None:
    """Each subject's slices linked as a healthy study, and a copy with one lesion drawn through them."""
    if (out / "lesions.csv").exists():
        return
    lesions = []
    for number, (subject, paths) in enumerate(oasis_subjects(source).items()):
        (out / "healthy" / subject).mkdir(parents=True, exist_ok=True)
        (out / "tumour" / subject).mkdir(parents=True, exist_ok=True)
        for path in paths:
            link = out / "healthy" / subject / path.name
            if not link.exists():
                link.symlink_to(path.resolve())
        stack = np.stack([cv2.imread(str(path), cv2.IMREAD_GRAYSCALE) for path in paths]).astype(np.float32)
        positions = [OASIS_SLICE_MM * int(OASIS_NAME.fullmatch(p.name)["slice"]) for p in paths]
        lesion = draw_lesion_through(stack, np.random.default_rng([SEED, number]), "t1", 1.0, positions)
        for path, image in zip(paths, np.clip(np.round(lesion.stack), 0, 255).astype(np.uint8), strict=True):
            cv2.imwrite(str(out / "tumour" / subject / f"{path.stem}.png"), image)
        lesions.append(_lesion_row(f"tumour/{subject}", lesion))
    _write_lesions(out / "lesions.csv", lesions)


def _lesion_row(study: str, lesion) -> dict[str, str]:
    return {"study": study, "kind": lesion.kind, "centre_slice": str(lesion.centre_slice),
            "radius_mm": f"{lesion.radius_mm:.1f}", "depth_mm": f"{lesion.depth_mm:.1f}",
            "lesion_slices": " ".join(map(str, lesion.lesion_slices))}


def _write_lesions(path: Path, rows: list[dict[str, str]]) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=LESION_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)


# ---------------------------------------------------------------- scanning


def scan_path(work: Path, model: Model) -> Path:
    return work / "scans" / f"{model.name.replace(' ', '-')}_{model.study_set}.csv"


def scan(work: Path, runs: Path) -> None:
    """``mriscan scan`` each study set with each model (the acquisition plane, as a site would)."""
    (work / "scans").mkdir(parents=True, exist_ok=True)
    for model in MODELS:
        out = scan_path(work, model)
        if not out.exists():
            mriscan("scan", str(work / "studies" / model.study_set), "--out", str(out),
                    "--model", str(model.folder(runs)), "--quiet", log=work / "scans" / "log.txt")


# ---------------------------------------------------------------- rules and report


def model_thresholds(folder: Path) -> Thresholds:
    """Fit's current thresholds from the model's validation predictions (real tumours decide, all review)."""
    validation = json.loads((folder / "metrics.json").read_text())["validation_predictions"]
    real = ~np.array([source.endswith(SYNTHETIC_SUFFIXES) for source in validation["source"]])
    return choose_thresholds(np.array(validation["label"]), np.array(validation["probability"]),
                             TARGET_SENSITIVITY, counted=real)


def study_slices(scan_csv: Path) -> dict[str, list[Row]]:
    """Slice rows by study: a volume (its path) or an OASIS subject (its folder)."""
    with scan_csv.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    studies: dict[str, list[Row]] = {}
    for row in rows:
        found = study_of(row)
        studies.setdefault(found[1] if found else str(Path(row["path"]).parent), []).append(row)
    return studies


def _kth_highest(k: int) -> Callable[[np.ndarray, float], float]:
    return lambda ranked, _: float(ranked[min(k, len(ranked)) - 1])


def _top_mean(k: int) -> Callable[[np.ndarray, float], float]:
    return lambda ranked, threshold: StudyRule(threshold, threshold, top_k=k).score(ranked.tolist())


RULES: dict[str, Callable[[np.ndarray, float], float]] = {
    "max": _top_mean(1),
    **{f"mean of top {k}": _top_mean(k) for k in (3, 5, 10)},
    **{f"{k}{'nd' if k == 2 else 'rd'} highest": _kth_highest(k) for k in (2, 3)},
    "share called tumour": lambda ranked, threshold: float((ranked >= threshold).mean()),
}
"""Each rule scores a study from its scored slice probabilities, highest first, and the slice threshold."""
SCORED_AS_PROBABILITY = tuple(name for name in RULES if name != "share called tumour")


def study_scores(studies: dict[str, list[Row]], threshold: float) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Labels (1: a lesion was drawn) and every rule's score, one per study."""
    labels = np.array([study.startswith("tumour/") for study in studies], dtype=int)
    ranked = [np.sort([float(row["probability"]) for row in scored_rows(rows)])[::-1] for rows in studies.values()]
    return labels, {name: np.array([rule(r, threshold) for r in ranked]) for name, rule in RULES.items()}


def rule_row(name: str, labels: np.ndarray, score: np.ndarray, thresholds: Thresholds) -> list[str]:
    """One rule's figures: at the slice threshold, at the review threshold (predicted or flagged), at the
    threshold that keeps 98% of these tumour studies (chosen on them: what the ranking allows), and its AUROC."""
    tumour, healthy = labels == 1, labels == 0
    found = []
    for cut in (thresholds.threshold, thresholds.review_threshold):
        if name in SCORED_AS_PROBABILITY:
            found += [_share(score[tumour] >= cut), _share(score[healthy] < cut)]
        else:
            found += ["—", "—"]
    cut = threshold_for_recall(labels, score, TARGET_SENSITIVITY)
    found += [f"{cut:.3f}", _share(score[healthy] < cut), f"{auroc(score[tumour], score[healthy]):.3f}"]
    return [name, *found]


def _share(values: np.ndarray) -> str:
    return f"{values.mean():.2f} ({int(values.sum())}/{len(values)})"


def lesion_slice_keys(study_set: Path) -> set[tuple[str, int]]:
    """(study, position in the study's sorted slices) of every slice a lesion was drawn into."""
    with (study_set / "lesions.csv").open(newline="") as handle:
        return {(row["study"], int(k)) for row in csv.DictReader(handle) for k in row["lesion_slices"].split()}


def slice_line(studies: dict[str, list[Row]], lesion_slices: set[tuple[str, int]], threshold: float) -> str:
    """What the slice threshold does to the slices: healthy ones called tumour, lesioned ones found."""
    healthy, lesioned = [], []
    for study, rows in studies.items():
        usable = {id(row) for row in scored_rows(rows)}
        for position, row in enumerate(rows):
            called = float(row["probability"] or 0) >= threshold
            if id(row) in usable and (study, position) in lesion_slices:
                lesioned.append(called)
            elif id(row) in usable and study.startswith("healthy/"):
                healthy.append(called)
    return (f"slices: healthy called tumour {_share(np.array(healthy))}, "
            f"lesioned called tumour {_share(np.array(lesioned))}")


def report(work: Path, runs: Path) -> None:
    """Print the study-rule table, one block per model and study set, and what the slice threshold does."""
    print("| model | studies (tumour / healthy) | rule | sensitivity | specificity | predicted or flagged "
          "| neither (healthy) | threshold for 0.98 sensitivity | specificity there | study AUROC |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    notes = []
    for model in MODELS:
        thresholds = model_thresholds(model.folder(runs))
        studies = study_slices(scan_path(work, model))
        labels, scores = study_scores(studies, thresholds.threshold)
        name = model.label
        counts = f"{model.study_set} {int(labels.sum())} / {int((labels == 0).sum())}"
        for rule, score in scores.items():
            print(f"| {name} | {counts} | " + " | ".join(rule_row(rule, labels, score, thresholds)) + " |")
        lesioned = lesion_slice_keys(work / "studies" / model.study_set)
        notes.append(f"{name}, {model.study_set}: thresholds {thresholds.threshold:.3f} (review "
                     f"{thresholds.review_threshold:.3f}); {slice_line(studies, lesioned, thresholds.threshold)}")
    print("\n" + "\n".join(notes))


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("step", choices=("stage", "scan", "report"))
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--work", type=Path, required=True, help="Folder for the staged studies and the scans.")
    parser.add_argument("--heldout", type=Path, help="heldout.py's runs/planes-s<seed> folder (the held-out models).")
    args = parser.parse_args(argv)
    if args.step == "stage":
        stage(args.data, args.work)
    elif args.heldout is None:
        parser.error(f"{args.step} needs --heldout")
    elif args.step == "scan":
        scan(args.work, args.heldout)
    else:
        report(args.work, args.heldout)


if __name__ == "__main__":
    main()
