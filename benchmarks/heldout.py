"""Held-out-source benchmark: train with one tumour source and one healthy source held out entirely,
then measure on that pair. Every recipe decision is made on this table (docs/generalisation.md).

A model that scores 0.99 on a split of its own sources can still have learned the source (skull
stripped, sequence, framing) instead of the lesion. Here each pair of sources is held out of
training, validation, threshold choice and deduplication (``fit --exclude``), and the model is then
run by ``mriscan scan`` exactly as a site would run it.

Steps (each resumes: finished pieces are kept under --work):

    python benchmarks/heldout.py stage  --data ../shared/data --work WORK
    python benchmarks/heldout.py train  --work WORK --recipe baseline [--pairs sartaj+openms,...]
    python benchmarks/heldout.py report --work WORK [--recipes baseline,balanced]
    python benchmarks/heldout.py audit  --work WORK
    python benchmarks/heldout.py record --work WORK --run large-s2021 --model models/default
    python benchmarks/heldout.py average --work WORK --recipes large-s2021,large-s2022 [--flip]
    python benchmarks/heldout.py breakdown --work WORK --recipes large-s2021

``stage`` links the real sources into WORK/data (class folders fit reads), cuts the openms NIfTI
volumes into axial PNG slices (intensity scaled per volume), and draws synthetic lesions into the
healthy slices of each healthy source (WORK/data/<source>_lesions), so that no source holds one
class only. The recipes are fit options; see RECIPES.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mriscan.data.dataset import is_synthetic_folder
from mriscan.model.calibrate import threshold_for_recall

REPO = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Pair:
    """A held-out tumour source and healthy source (data folder names under WORK/data)."""

    name: str
    held_out: tuple[str, ...]


PAIRS = (
    Pair("sartaj+openms", ("sartaj", "openms3")),
    Pair("figshare+oasis", ("figshare", "oasis")),
    Pair("br35h", ("br35h",)),
)
REAL_SOURCES = ("br35h", "figshare", "oasis", "sartaj", "openms3")
HEALTHY_FOLDERS = {"br35h": "no", "oasis": "no_tumor", "sartaj": "no_tumor", "openms3": "no_tumor"}
TEMPLATE_SLICES = 3000
"""Synthetic template slices (all planes and contrasts, each with and without its lesion)."""
LESION_TWINS = 800
"""Synthetic lesion slices drawn into each healthy source's real slices."""

RECIPES: dict[str, dict] = {
    # No training: the bundle in models/default, scanned on each pair (it saw Br35H in training).
    "shipped": {"model": REPO / "models" / "default"},
    # The recipe of the shipped default before this benchmark, on the real sources.
    "baseline": {"args": [], "lesions": False},
    # Sources weighted towards equal within each class; half the training images shown skull-stripped.
    "balanced": {"args": ["--source-balance", "0.5", "--strip-augment", "0.5"], "lesions": False},
    # ... plus synthetic lesions drawn into each healthy training source's slices.
    "lesions": {"args": ["--source-balance", "0.5", "--strip-augment", "0.5"], "lesions": True},
    # ... plus template slices of every plane, with and without lesions (only axial slices are healthy otherwise).
    "planes": {"args": ["--source-balance", "0.5", "--strip-augment", "0.5"], "lesions": True, "template": True},
    # planes, with lesion twins drawn by the engine since large lesions were added (radius up to 0.55 of
    # the brain's; WORK/data/<source>_lesions_large, staged with ``stage --lesion-set lesions_large``).
    "large": {"args": ["--source-balance", "0.5", "--strip-augment", "0.5"], "lesions": True, "template": True,
              "lesion_set": "lesions_large"},
}
EPOCHS = 12


def mriscan(*args: str, log: Path) -> None:
    """Run this checkout's mriscan CLI, appending its output to ``log``; raise on failure."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    with log.open("a") as out:
        out.write(f"\n$ mriscan {' '.join(args)}\n")
        out.flush()
        code = subprocess.call([sys.executable, "-m", "mriscan", *args], stdout=out, stderr=subprocess.STDOUT,
                               env=env, cwd=REPO)
    if code not in (0, 3):  # 3: some files unreadable, the run finished
        raise SystemExit(f"mriscan {args[0]} failed with exit code {code}; see {log}")


# ---------------------------------------------------------------- staging


def stage(data: Path, work: Path, lesion_set: str = "lesions") -> None:
    """Link the real sources, cut openms into slices, draw lesion twins of the healthy sources."""
    root = work / "data"
    root.mkdir(parents=True, exist_ok=True)
    for name in ("br35h", "figshare", "oasis", "sartaj"):
        link = root / name
        if not link.exists():
            link.symlink_to((data / name).resolve(), target_is_directory=True)
    slices = root / "openms3" / "no_tumor"
    if not slices.exists():
        cut_volumes(data / "openms", slices)
    if not (root / "template").exists():
        mriscan("synth", str(root / "template"), "--n", str(TEMPLATE_SLICES), "--paired", "--seed", "2021",
                log=work / "stage.log")
    for source, healthy in HEALTHY_FOLDERS.items():  # lesion twins: no source holds one class only
        target = root / f"{source}_{lesion_set}"
        if not target.exists():
            mriscan("synth", str(target), "--n", str(LESION_TWINS), "--lesion-fraction", "1.0",
                     "--from-healthy", str(root / source / healthy), "--seed", "2021", log=work / "stage.log")
    print(f"staged under {root}")


def cut_volumes(folder: Path, out: Path) -> None:
    """Slices inside the head of each NIfTI volume, in all three planes (square pixels), scaled per volume.

    Axial: every slice; coronal and sagittal (resampled across the thick axial slices): every fourth.
    """
    import cv2
    import nibabel as nib

    tmp = out.with_name(out.name + ".partial")
    tmp.mkdir(parents=True, exist_ok=True)
    for path in sorted(folder.rglob("*.nii.gz")):
        volume = nib.as_closest_canonical(nib.load(path))
        values = np.asarray(volume.dataobj, dtype=np.float32)
        low, high = np.percentile(values[values > 0], (0.5, 99.5))
        scaled = np.clip((values - low) / max(high - low, 1e-6) * 255, 0, 255).astype(np.uint8)
        spacing = volume.header.get_zooms()[:3]
        stem = f"{path.parent.name}_{path.name.split('.')[0]}"
        for axis, plane, step in ((2, "axial", 1), (1, "coronal", 4), (0, "sagittal", 4)):
            cuts = np.moveaxis(scaled, axis, 0)  # (slice, first in-plane axis, second in-plane axis)
            rows, columns = [a for a in range(3) if a != axis]
            areas = (cuts > 20).reshape(len(cuts), -1).sum(axis=1)
            for index in np.flatnonzero(areas >= 0.35 * areas.max())[::step]:
                cut = cuts[index]
                side = min(spacing[rows], spacing[columns])
                size = (round(cut.shape[1] * spacing[columns] / side), round(cut.shape[0] * spacing[rows] / side))
                cut = cv2.resize(cut, size, interpolation=cv2.INTER_LINEAR)
                cv2.imwrite(str(tmp / f"{stem}_{plane}{index:03d}.png"), np.rot90(cut))
    tmp.rename(out)


# ---------------------------------------------------------------- training and scoring


def run_name(recipe: str, seed: int, epochs: int) -> str:
    """A run's folder name: RECIPE-sSEED, with -eEPOCHS when the epochs are not :data:`EPOCHS`.

    >>> run_name("large", 2021, 20), parse_run("large-s2021-e20")
    ('large-s2021-e20', ('large', 2021, 20))
    """
    return f"{recipe}-s{seed}" + (f"-e{epochs}" if epochs != EPOCHS else "")


def parse_run(run: str) -> tuple[str, int, int]:
    """The recipe, seed and epochs of a run named by :func:`run_name`."""
    recipe, rest = run.rsplit("-s", 1)
    seed, _, epochs = rest.partition("-e")
    return recipe, int(seed), int(epochs) if epochs else EPOCHS


def train(work: Path, recipe: str, pairs: list[Pair], epochs: int, seed: int) -> None:
    """Fit the recipe once per held-out pair, then scan the held-out sources with that model.

    The run is WORK/runs/RECIPE-sSEED, with -eEPOCHS when the epochs are not :data:`EPOCHS`.
    """
    spec = RECIPES[recipe]
    root = work / "data"
    for pair in pairs:
        run = run_name(recipe, seed, epochs)
        folder = work / "runs" / run / pair.name
        folder.mkdir(parents=True, exist_ok=True)
        model = spec.get("model", folder / "model")
        log = folder / "log.txt"
        if not (model / "model.json").exists():
            training = [str(root / s) for s in REAL_SOURCES if s not in pair.held_out]
            if spec["lesions"]:
                lesion_set = spec.get("lesion_set", "lesions")
                training += [str(root / f"{s}_{lesion_set}") for s in HEALTHY_FOLDERS if s not in pair.held_out]
            if spec.get("template"):
                training.append(str(root / "template"))
            excluded = [a for s in pair.held_out for a in ("--exclude", str(root / s))]
            started = time.monotonic()
            mriscan("fit", *training, "--out", str(model), "--epochs", str(epochs), "--seed", str(seed),
                    *excluded, *spec["args"], log=log)
            print(f"{recipe} {pair.name}: fitted in {time.monotonic() - started:.0f} s", flush=True)
        for source in pair.held_out:
            scores = folder / f"scan_{source}.csv"
            if not scores.exists():
                mriscan("scan", str(root / source), "--out", str(scores), "--model", str(model), "--quiet",
                        log=log)


@dataclass(frozen=True)
class HeldOutScores:
    """A pair's held-out images as scanned: label, probability, decision, and decision-or-flag."""

    labels: np.ndarray
    probability: np.ndarray
    decided: np.ndarray
    reviewed: np.ndarray
    threshold: float

    def pick(self, rows: np.ndarray) -> HeldOutScores:
        """The same figures for the rows ``rows`` (a bootstrap draw)."""
        return HeldOutScores(self.labels[rows], self.probability[rows], self.decided[rows], self.reviewed[rows],
                             self.threshold)


def is_tumour_folder(name: str) -> bool:
    """Whether a class folder of the staged sources (``yes``/``tumor`` against ``no``/``no_tumor``) holds tumours."""
    return name.lower() in ("yes", "tumor")


def scanned_rows(folder: Path, pair: Pair) -> list[tuple[str, dict[str, str]]]:
    """(source, CSV row) of every held-out image of a pair the scan gave a probability."""
    rows = []
    for source in pair.held_out:
        with (folder / f"scan_{source}.csv").open(newline="") as handle:
            rows += [(source, row) for row in csv.DictReader(handle) if row["probability"]]
    return rows


def labelled_scores(folder: Path, pair: Pair) -> HeldOutScores:
    """A pair's held-out images as the model scanned them, with the model's threshold."""
    rows = [row for _, row in scanned_rows(folder, pair)]
    labels = [int(is_tumour_folder(Path(row["path"]).parts[0])) for row in rows]
    probability = [float(row["probability"]) for row in rows]
    decided = [row["prediction"] == "tumor" for row in rows]
    reviewed = [row["prediction"] == "tumor" or row["flagged"] == "true" for row in rows]
    model = RECIPES.get(parse_run(folder.parent.name)[0], {}).get("model", folder / "model")
    card = json.loads((model / "model.json").read_text())
    return HeldOutScores(np.array(labels), np.array(probability), np.array(decided), np.array(reviewed),
                         float(card["threshold"]))


def cut_at_98(labels: np.ndarray, probability: np.ndarray) -> float:
    """The probability that keeps 98% of the tumours: the cut behind "specificity at 0.98 sensitivity"."""
    return float(np.quantile(probability[labels == 1], 0.02, method="lower"))


def ranking_figures(labels: np.ndarray, probability: np.ndarray) -> dict[str, float]:
    """AUROC and specificity at 0.98 sensitivity: what the ranking allows, whatever the threshold."""
    tumour, healthy = labels == 1, labels == 0
    return {"auroc": auroc(probability[tumour], probability[healthy]),
            "spec_at_98": float((probability[healthy] < cut_at_98(labels, probability)).mean())}


def pair_metrics(scores: HeldOutScores) -> dict[str, float]:
    """AUROC; sensitivity and specificity at the model's threshold; tumours predicted or flagged for
    review, and the share of healthy images so (the review workload); specificity at 0.98 sensitivity."""
    tumour, healthy = scores.labels == 1, scores.labels == 0
    ranking = ranking_figures(scores.labels, scores.probability)
    return {
        "auroc": ranking["auroc"],
        "sensitivity": float(scores.decided[tumour].mean()),
        "specificity": float((~scores.decided[healthy]).mean()),
        "tumours_reviewed": float(scores.reviewed[tumour].mean()),
        "healthy_reviewed": float(scores.reviewed[healthy].mean()),
        "spec_at_98": ranking["spec_at_98"],
    }


def auroc(tumour: np.ndarray, healthy: np.ndarray) -> float:
    """P(a tumour scores above a healthy image), ties counting half (the Mann-Whitney AUROC).

    Examples
    --------
    >>> auroc(np.array([0.9, 0.5]), np.array([0.5, 0.1]))
    0.875
    """
    ordered = np.sort(healthy)
    below = np.searchsorted(ordered, tumour, side="left")
    ties = np.searchsorted(ordered, tumour, side="right") - below
    return float((below + 0.5 * ties).sum() / (len(tumour) * len(healthy)))


def bootstrap(scores: HeldOutScores, resamples: int = 500, seed: int = 0) -> dict[str, tuple[float, float]]:
    """95% intervals of :func:`pair_metrics`, resampling each class separately."""
    rng = np.random.default_rng(seed)
    positive, negative = np.flatnonzero(scores.labels == 1), np.flatnonzero(scores.labels == 0)
    draws: dict[str, list[float]] = {}
    for _ in range(resamples):
        pick = np.concatenate([rng.choice(positive, len(positive)), rng.choice(negative, len(negative))])
        for key, value in pair_metrics(scores.pick(pick)).items():
            draws.setdefault(key, []).append(value)
    return {key: (float(np.percentile(v, 2.5)), float(np.percentile(v, 97.5))) for key, v in draws.items()}


def pair_table(work: Path, run: str) -> list[dict]:
    """One entry per pair a run has scanned: its name, counts, threshold, figures and AUROC interval."""
    rows = []
    for pair in PAIRS:
        folder = work / "runs" / run / pair.name
        if not all((folder / f"scan_{s}.csv").exists() for s in pair.held_out):
            continue
        scores = labelled_scores(folder, pair)
        rows.append({"pair": pair.name, "tumour": int(scores.labels.sum()), "healthy": int((scores.labels == 0).sum()),
                     "threshold": scores.threshold, **pair_metrics(scores),
                     "auroc_ci": list(bootstrap(scores)["auroc"])})
    return rows


FIGURES = ("auroc", "sensitivity", "specificity", "tumours_reviewed", "healthy_reviewed", "spec_at_98")


def summary(rows: list[dict]) -> dict[str, dict[str, float]]:
    """The mean and the worst (lowest; highest for the review workload) of each figure over the pairs."""
    worst = {k: (max if k == "healthy_reviewed" else min)(r[k] for r in rows) for k in FIGURES}
    return {"mean": {k: float(np.mean([r[k] for r in rows])) for k in FIGURES}, "worst": worst}


def report(work: Path, recipes: list[str]) -> None:
    """Print the held-out table: one row per recipe and pair, then the mean and the worst pair."""
    print("| recipe | held-out pair | tumour / healthy | AUROC [95% CI] | sensitivity | specificity "
          "| tumours predicted or flagged | healthy predicted or flagged | spec. at 0.98 sens. | threshold |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for run in recipes:
        rows = pair_table(work, run)
        for row in rows:
            low, high = row["auroc_ci"]
            print(f"| {run} | {row['pair']} | {row['tumour']} / {row['healthy']} "
                  f"| {row['auroc']:.3f} [{low:.3f}, {high:.3f}] | {_figures(row)} | {row['threshold']:.3f} |")
        if rows:
            for name, value in summary(rows).items():
                print(f"| {run} | **{name}** ({len(rows)} pairs) | | {value['auroc']:.3f} | {_figures(value)} | |")


def _figures(value: dict) -> str:
    return " | ".join(f"{value[k]:.3f}" for k in FIGURES[1:])


def record(work: Path, run: str, model: Path) -> None:
    """Keep a run's held-out table in a bundle's card (field ``heldout_evaluation``): the figures of
    the recipe the bundle was fitted with, measured on pairs left out of that recipe's training."""
    from datetime import date

    from mriscan.model.bundle import update_card

    rows = pair_table(work, run)
    if not rows:
        raise SystemExit(f"no scanned pairs under {work / 'runs' / run}; run `train` first")
    recipe, seed, epochs = parse_run(run)
    update_card(model, heldout_evaluation={
        "measured_by": f"python benchmarks/heldout.py train --recipe {recipe} --seed {seed} --epochs {epochs} "
                       "(docs/generalisation.md)",
        "measured_on": date.today().isoformat(), "recipe_run": run,
        "pairs": [{k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items()} for row in rows],
        **{name: {k: round(v, 4) for k, v in value.items()} for name, value in summary(rows).items()},
    })
    print(f"recorded the held-out table of {run} in {model / 'model.json'}")


def held_out_inputs(work: Path, pair: Pair, model: Path) -> tuple[np.ndarray, np.ndarray]:
    """A pair's held-out images as model inputs (loaded as scan loads them), and their labels."""
    from mriscan.data.loader import load_all
    from mriscan.model.bundle import load_bundle

    label_of = {}
    for source in pair.held_out:
        for path in sorted((work / "data" / source).rglob("*")):
            if path.is_file():
                label_of[path] = int(is_tumour_folder(path.parent.name))
    config = load_bundle(model, keras=False).preprocess_config
    loaded = [r for r in load_all(list(label_of), config, workers=1) if r.ok]
    return np.stack([r.model_input for r in loaded]), np.array([label_of[r.path] for r in loaded])


def view_logits(model: Path, inputs: np.ndarray, flip: bool) -> list[np.ndarray]:
    """The logit of P(tumour) for the inputs as they are and, with ``flip``, mirrored left-right."""
    from mriscan.model.bundle import load_bundle

    bundle = load_bundle(model, keras=False)
    views = [inputs, inputs[:, :, ::-1].copy()] if flip else [inputs]
    probabilities = [np.clip(bundle.predict(view), 1e-7, 1 - 1e-7) for view in views]
    return [np.log(p / (1 - p)) for p in probabilities]


def averaged_probability(logits: list[np.ndarray]) -> np.ndarray:
    """P(tumour) from logits averaged over models or views: what an ensemble, or test-time
    flipping, would give at the cost of one network pass each."""
    return 1 / (1 + np.exp(-np.mean(logits, axis=0)))


def average(work: Path, runs: list[str], flip: bool) -> None:
    """AUROC and specificity at 0.98 sensitivity on each held-out pair, for each run alone and for the
    average of the runs' models (an ensemble), on the pairs every run has a model for."""
    print("| models | held-out pair | AUROC | spec. at 0.98 sens. |")
    print("|---|---|---|---|")
    for pair in PAIRS:
        models = [work / "runs" / run / pair.name / "model" for run in runs]
        if not all((m / "model.json").exists() for m in models):
            continue
        inputs, labels = held_out_inputs(work, pair, models[0])
        logits = {run: view_logits(model, inputs, flip) for run, model in zip(runs, models, strict=True)}
        combos = [([run], run) for run in runs] + ([(runs, " + ".join(runs))] if len(runs) > 1 else [])
        for chosen, name in combos:
            for flipped in sorted({False, flip}):
                views = [view for run in chosen for view in (logits[run] if flipped else logits[run][:1])]
                figures = ranking_figures(labels, averaged_probability(views))
                print(f"| {name}{' (with flips)' if flipped else ''} | {pair.name} | {figures['auroc']:.3f} "
                      f"| {figures['spec_at_98']:.3f} |", flush=True)


def slice_kind(path: str) -> str:
    """Sequence and plane of a slice :func:`cut_volumes` wrote (``..._T1W_sagittal012.png``), else ""."""
    sequence = next((s for s in ("FLAIR", "T1W", "T2W") if s in path), "")
    plane = next((p for p in ("axial", "coronal", "sagittal") if p in path), "")
    return f"{sequence} {plane}".strip()


def breakdown(work: Path, runs: list[str]) -> None:
    """Where the false alarms are: the share of each held-out source's healthy images (by sequence
    and plane for the cut volumes) scoring at or above the pair's 0.98-sensitivity cut."""
    print("| run | held-out pair | healthy images | above the 0.98-sensitivity cut |")
    print("|---|---|---|---|")
    for run in runs:
        for pair in PAIRS:
            folder = work / "runs" / run / pair.name
            if not all((folder / f"scan_{s}.csv").exists() for s in pair.held_out):
                continue
            rows = scanned_rows(folder, pair)
            tumour = np.array([is_tumour_folder(Path(row["path"]).parts[0]) for _, row in rows])
            probability = np.array([float(row["probability"]) for _, row in rows])
            cut = cut_at_98(tumour.astype(int), probability)
            above: dict[str, list[bool]] = {}
            for (source, row), is_tumour, value in zip(rows, tumour, probability, strict=True):
                if not is_tumour:
                    above.setdefault(f"{source} {slice_kind(row['path'])}".strip(), []).append(value >= cut)
            for group, flags in sorted(above.items()):
                print(f"| {run} | {pair.name} | {group} ({len(flags)}) | {np.mean(flags):.2f} |")


THRESHOLD_RULES = ("all tumours", "real tumours", "each real source")


def rule_threshold(rule: str, validation: dict, data: Path, target: float = 0.98) -> float:
    """The threshold a rule picks from a run's validation predictions (metrics.json).

    "all tumours": the largest threshold keeping ``target`` recall over every validation tumour,
    synthetic lesions included; "real tumours": over the tumours of real sources only; "each real
    source": the lowest of the real sources' own thresholds, so that every source keeps ``target``.
    A source is synthetic when its folder under ``data`` was written by ``mriscan synth``.
    """
    sources = np.array(validation["source"])
    labels, probability = np.array(validation["label"]), np.array(validation["probability"])
    synthetic = {s for s in set(sources) if is_synthetic_folder(data / s)}
    real = ~np.array([s in synthetic for s in sources])

    def keeping(selected: np.ndarray) -> float:
        return threshold_for_recall(labels[selected], probability[selected], target)

    if rule == "all tumours":
        return keeping(np.ones(len(labels), bool))
    if rule == "real tumours":
        return keeping(real)
    found = [keeping(sources == s) for s in sorted(set(sources[real & (labels == 1)]))]
    return min(found)


def thresholds(work: Path, runs: list[str]) -> None:
    """Sensitivity and specificity on each held-out pair under each threshold rule (runs whose
    metrics.json keeps the validation predictions)."""
    print("| run | held-out pair | rule | threshold | sensitivity | specificity |")
    print("|---|---|---|---|---|---|")
    for run in runs:
        for pair in PAIRS:
            folder = work / "runs" / run / pair.name
            metrics = folder / "model" / "metrics.json"
            if not metrics.exists() or not all((folder / f"scan_{s}.csv").exists() for s in pair.held_out):
                continue
            validation = json.loads(metrics.read_text()).get("validation_predictions")
            if validation is None:
                continue
            scores = labelled_scores(folder, pair)
            labels, probability = scores.labels, scores.probability
            for rule in THRESHOLD_RULES:
                cut = rule_threshold(rule, validation, work / "data")
                decided = probability >= cut
                print(f"| {run} | {pair.name} | {rule} | {cut:.3f} | {decided[labels == 1].mean():.3f} "
                      f"| {(~decided[labels == 0]).mean():.3f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    steps = ("stage", "train", "report", "thresholds", "audit", "record", "average", "breakdown")
    parser.add_argument("step", choices=steps)
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--work", type=Path, required=True, help="Folder for staged data, models and scans.")
    parser.add_argument("--recipe", choices=sorted(RECIPES), default="baseline")
    parser.add_argument("--recipes", default="", help="Comma-separated runs to report (default: all found).")
    parser.add_argument("--pairs", default="", help="Comma-separated pair names (default: all).")
    parser.add_argument("--epochs", type=int, default=EPOCHS)
    parser.add_argument("--seed", type=int, default=2021)
    parser.add_argument("--model", type=Path, help="record: the bundle whose card keeps the table.")
    parser.add_argument("--run", help="record: the run (recipe-sSEED) whose table is kept.")
    parser.add_argument("--flip", action="store_true", help="average: also average each image with its mirror.")
    parser.add_argument("--lesion-set", default="lesions",
                        help="stage: name of the lesion-twin folders (WORK/data/<source>_<NAME>).")
    args = parser.parse_args()
    if args.step == "stage":
        stage(args.data, args.work, args.lesion_set)
    elif args.step == "train":
        chosen = [p for p in PAIRS if not args.pairs or p.name in args.pairs.split(",")]
        train(args.work, args.recipe, chosen, args.epochs, args.seed)
    elif args.step in ("report", "thresholds", "breakdown"):
        runs = args.recipes.split(",") if args.recipes else sorted(p.name for p in (args.work / "runs").iterdir())
        {"report": report, "thresholds": thresholds, "breakdown": breakdown}[args.step](args.work, runs)
    elif args.step == "average":
        average(args.work, args.recipes.split(","), args.flip)
    elif args.step == "record":
        if args.model is None or args.run is None:
            parser.error("record needs --model BUNDLE and --run RECIPE-sSEED")
        record(args.work, args.run, args.model)
    else:
        from source_audit import audit

        audit(args.work / "data", REAL_SOURCES)


if __name__ == "__main__":
    main()
