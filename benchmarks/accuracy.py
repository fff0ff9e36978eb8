"""Accuracy figures of model bundles on proxies for unseen data, and the shortcut audit.

    python benchmarks/accuracy.py --train --work /tmp/mriscan-accuracy      # train the variants, then measure
    python benchmarks/accuracy.py --model models/default --model /tmp/x     # measure existing bundles
    python benchmarks/accuracy.py --model models/default --record-in-card   # ... and keep them in its card

For each bundle it prints one table row:
- Br35H grouped test split (from the bundle's card: same seed, same dedup, same split for every
  variant trained on Br35H);
- figshare tumours (another source; sensitivity at the threshold, and predicted-or-flagged), when
  figshare was not in the bundle's training data;
- synthetic slices of a plane held out from training (sagittal, all four contrasts, half with
  lesions): AUROC, sensitivity and specificity at the threshold;
- synthetic healthy specificity per contrast;
- AUROC on the synthetic test slices under acquisition shifts (gamma, noise, resolution, rotation,
  flip, bias field);
- with ``--threshold-rules``: the threshold set by every folder's validation tumours vs by Br35H's only;
- test-time augmentation: AUROC on the synthetic sagittal set and figshare sensitivity, plain vs
  averaged with the left-right mirror image (twice the network's cost per image);
and, once, the shortcut audit: a logistic regression on image statistics alone (size, aspect,
intensity) predicting Br35H's label, before and after mriscan's preprocessing (5-fold AUROC).

The variants (``--train``) are the recipes docs/research.md compares; each is one ``mriscan fit`` call.
Training all of them takes about an hour on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
SEED = 2021


def variants(work: Path) -> dict[str, list[str]]:
    """name -> the data folders and options of ``mriscan fit`` for each compared recipe."""
    br35h = str(DATA / "br35h")
    return {
        "seed net, Br35H": [br35h, "--arch", "seed"],
        "compact, Br35H": [br35h],
        "compact, Br35H + synthetic paired (axial, coronal; sagittal held out)": [
            br35h, str(work / "synth_axial_coronal")],
        "compact, Br35H + synthetic paired (all planes) + lesions in real Br35H slices (the default)": [
            br35h, str(work / "synth_all_planes"), str(work / "synth_real_lesions")],
    }


SYNTHETIC_SETS = {
    # name: options of ``mriscan synth`` (the default model's recipe uses the last two)
    "synth_axial_coronal": ["--n", "3000", "--seed", "11", "--plane", "axial", "--plane", "coronal", "--paired"],
    "synth_sagittal_test": ["--n", "600", "--seed", "12", "--plane", "sagittal"],
    "synth_all_planes": ["--n", "3000", "--seed", "21", "--paired"],
    "synth_real_lesions": ["--n", "1200", "--seed", "22", "--paired", "--contrast", "t2", "--contrast", "flair",
                           "--from-healthy", str(DATA / "br35h" / "no")],
}


def make_synthetic(work: Path) -> None:
    """The synthetic sets the variants train on, and the held-out sagittal test set."""
    for name, options in SYNTHETIC_SETS.items():
        if not (work / name / "manifest.csv").exists():
            subprocess.run([sys.executable, "-m", "mriscan", "synth", str(work / name), *options], check=True)


def train(work: Path, epochs: int) -> list[Path]:
    """Train every variant not trained yet; return their bundle folders."""
    bundles = []
    for index, (name, args) in enumerate(variants(work).items()):
        out = work / f"model_{index}"
        if not (out / "model.json").exists():
            print(f"training: {name}", flush=True)
            subprocess.run([sys.executable, "-m", "mriscan", "fit", *args, "--out", str(out), "--epochs", str(epochs),
                            "--seed", str(SEED)], check=True)
        bundles.append(out)
    return bundles


def measure(bundle_dir: Path, work: Path) -> dict:
    """Every proxy figure of one bundle."""
    from mriscan.evaluation.evaluate import predict_folders
    from mriscan.model.bundle import load_bundle

    bundle = load_bundle(bundle_dir)
    card = bundle.card
    row = {"model": str(bundle_dir), "architecture": card.architecture,
           "data": ", ".join(Path(d).name for d in card.data["data_dirs"]),
           # Br35H's own test images when the card has per-source figures, else the whole test split
           "br35h_test": card.metrics.get("test_by_source", {}).get("br35h", card.metrics["test"])}
    if "figshare" not in row["data"] and (DATA / "figshare").exists():
        fig = predict_folders(bundle, [DATA / "figshare"])
        row["figshare_sensitivity"] = float((fig.probability >= bundle.threshold).mean())
        row["figshare_caught"] = float((fig.probability >= bundle.review_threshold).mean())
    sagittal = work / "synth_sagittal_test"
    if sagittal.exists():
        from mriscan.evaluation.evaluate import summarise

        pred = predict_folders(bundle, [sagittal])
        row["synthetic_sagittal"] = summarise(pred.labels, pred.probability, bundle, resamples=200)
        row["synthetic_healthy_spec_by_contrast"] = _specificity_by_contrast(pred, bundle, sagittal)
    return row


def _specificity_by_contrast(pred, bundle, folder: Path) -> dict[str, float]:
    import csv

    with open(folder / "manifest.csv", newline="") as handle:
        contrast_of = {row["file"]: row["contrast"] for row in csv.DictReader(handle)}
    result = {}
    names = np.array([contrast_of.get(f"{p.parent.name}/{p.name}", contrast_of.get(p.name, "?")) for p in pred.paths])
    for contrast in sorted(set(names)):
        healthy = (names == contrast) & (pred.labels == 0)
        if healthy.any():
            result[str(contrast)] = round(float((pred.probability[healthy] < bundle.threshold).mean()), 3)
    return result


SHIFTS = {
    "none": lambda p, rng: p,
    "gamma 0.5": lambda p, rng: (p / max(p.max(), 1e-6)) ** 0.5 * 255,
    "gamma 2": lambda p, rng: (p / max(p.max(), 1e-6)) ** 2 * 255,
    "noise 5%": lambda p, rng: p + rng.normal(0, 0.05 * max(p.max(), 1e-6), p.shape),
    "resolution x0.3": lambda p, rng: _resample(p, 0.3),
    "rotate 20 deg": lambda p, rng: _rotate(p, 20),
    "flip left-right": lambda p, rng: p[:, ::-1],
    "bias field": lambda p, rng: p * _bias(p.shape),
}


def _resample(pixels: np.ndarray, factor: float) -> np.ndarray:
    import cv2

    height, width = pixels.shape
    small = cv2.resize(pixels, (max(8, int(width * factor)), max(8, int(height * factor))),
                       interpolation=cv2.INTER_AREA)
    return cv2.resize(small, (width, height), interpolation=cv2.INTER_LINEAR)


def _rotate(pixels: np.ndarray, degrees: float) -> np.ndarray:
    import cv2

    height, width = pixels.shape
    matrix = cv2.getRotationMatrix2D((width / 2, height / 2), degrees, 1.0)
    return cv2.warpAffine(pixels, matrix, (width, height))


def _bias(shape: tuple[int, int]) -> np.ndarray:
    rows, cols = np.mgrid[0 : shape[0], 0 : shape[1]]
    return 0.6 + 0.8 * (cols / max(shape[1] - 1, 1)) * (rows / max(shape[0] - 1, 1)) ** 0.5


def shift_robustness(bundle_dir: Path, folder: Path, limit: int = 200) -> dict[str, float]:
    """AUROC on a labelled folder (first ``limit`` images per class) under synthetic acquisition shifts."""
    from sklearn.metrics import roc_auc_score

    from mriscan.data.dataset import find_labelled_files
    from mriscan.data.preprocess import preprocess
    from mriscan.io.reader import read_image
    from mriscan.model.bundle import load_bundle

    bundle = load_bundle(bundle_dir)
    files = find_labelled_files([folder])
    files = [f for f in files if f.label == 1][:limit] + [f for f in files if f.label == 0][:limit]
    least_side = bundle.preprocess_config.decode_least_side  # as scan decodes them
    pixels = [read_image(f.path, least_side=least_side)[0].pixels.astype(np.float32) for f in files]
    labels = np.array([f.label for f in files])
    result = {}
    for name, shift in SHIFTS.items():
        rng = np.random.default_rng(SEED)
        inputs = np.stack([preprocess(np.asarray(shift(p, rng), np.float32), bundle.preprocess_config)
                           for p in pixels])
        result[name] = round(float(roc_auc_score(labels, bundle.predict(inputs))), 3)
    return result


def flip_averaging(bundle_dir: Path, work: Path) -> dict[str, float]:
    """Plain vs left-right-flip-averaged prediction: synthetic sagittal AUROC and figshare sensitivity."""
    from sklearn.metrics import roc_auc_score

    from mriscan.data.dataset import find_labelled_files
    from mriscan.data.loader import load_all
    from mriscan.model.bundle import load_bundle

    bundle = load_bundle(bundle_dir)
    result = {}
    for name, folder in (("synthetic sagittal AUROC", work / "synth_sagittal_test"),
                         ("figshare sensitivity", DATA / "figshare")):
        if not folder.exists():
            continue
        files = find_labelled_files([folder])
        records = [r for r in load_all([f.path for f in files], bundle.preprocess_config) if r.ok]
        label_of = {f.path: f.label for f in files}
        labels = np.array([label_of[r.path] for r in records])
        inputs = np.stack([r.model_input for r in records])
        plain = bundle.predict(inputs)
        averaged = (plain + bundle.predict(inputs[:, :, ::-1])) / 2
        for kind, probability in (("plain", plain), ("flip-averaged", averaged)):
            value = (roc_auc_score(labels, probability) if "AUROC" in name
                     else (probability >= bundle.threshold).mean())
            result[f"{name}, {kind}"] = round(float(value), 3)
    return result


class _Silent:
    """A FitProgress that prints nothing."""

    def __getattr__(self, name: str):
        return lambda *args, **kwargs: None


def threshold_rules(bundle_dir: Path) -> dict[str, dict[str, float]]:
    """The same model under two threshold rules: every folder's validation tumours vs Br35H's only.

    Re-creates the bundle's deduplicated split (its data folders and seed, the current fit code)
    and refuses when the counts differ from its card: a different split could put test images
    in training. Reports per rule: threshold, Br35H test sensitivity/specificity, figshare sensitivity.
    """
    from mriscan.data.dataset import find_labelled_files
    from mriscan.data.split import split_by_group
    from mriscan.model.bundle import load_bundle
    from mriscan.model.calibrate import choose_thresholds
    from mriscan.model.fit import FitOptions, load_and_deduplicate

    bundle = load_bundle(bundle_dir)
    card = bundle.card
    dirs = tuple(Path(d) if Path(d).is_absolute() else REPO / d for d in card.data["data_dirs"])
    options = FitOptions(data_dirs=dirs, out_dir=Path("/nonexistent"), preprocessing=bundle.preprocess_config,
                         seed=card.training["seed"], fractions=tuple(card.training["fractions"]))
    data = load_and_deduplicate(find_labelled_files(dirs), options, _Silent())
    split = split_by_group(data.labels, data.group_ids, fractions=options.fractions, seed=options.seed)
    sizes = {"train": len(split.train), "validation": len(split.validation), "test": len(split.test)}
    if sizes != card.data["split_sizes"] or data.counts["images_used"] != card.data["images_used"]:
        raise SystemExit(f"split differs from {bundle_dir}'s card ({sizes} vs {card.data['split_sizes']}): "
                         "the dedup code changed since it was trained; threshold_rules would leak")
    p_val, p_test = bundle.predict(data.images[split.validation]), bundle.predict(data.images[split.test])
    y_val, y_test = data.labels[split.validation], data.labels[split.test]
    br35h_test = data.sources[split.test] == "br35h"
    figshare = None
    if (DATA / "figshare").exists():
        from mriscan.evaluation.evaluate import predict_folders

        figshare = predict_folders(bundle, [DATA / "figshare"]).probability
    result = {}
    rules = {"all folders' tumours": None, "Br35H tumours only": data.sources[split.validation] == "br35h"}
    for rule, counted in rules.items():
        chosen = choose_thresholds(y_val, p_val, 0.98, counted=counted)
        predicted = p_test[br35h_test] >= chosen.threshold
        labels = y_test[br35h_test]
        result[rule] = {"threshold": round(chosen.threshold, 4),
                        "br35h_test_sensitivity": round(float(predicted[labels == 1].mean()), 3),
                        "br35h_test_specificity": round(float((~predicted[labels == 0]).mean()), 3)}
        if figshare is not None:
            result[rule]["figshare_sensitivity"] = round(float((figshare >= chosen.threshold).mean()), 3)
    return result


def shortcut_audit(limit: int = 3000) -> dict[str, float]:
    """5-fold AUROC of a logistic regression on image statistics alone, raw vs preprocessed."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from mriscan.data.dataset import find_labelled_files
    from mriscan.data.preprocess import PreprocessConfig, preprocess
    from mriscan.io.reader import read_image

    config = PreprocessConfig()
    files = find_labelled_files([DATA / "br35h"])[:limit]
    raw, processed, labels = [], [], []
    for f in files:
        pixels = read_image(f.path)[0].pixels  # stored size: the raw statistics are of the file
        model_input = preprocess(read_image(f.path, least_side=config.decode_least_side)[0].pixels, config)[..., 0]
        height, width = pixels.shape
        raw.append([height, width, width / height, pixels.mean(), pixels.std(), (pixels > 10).mean()])
        content = model_input > 0.02
        rows, cols = np.flatnonzero(content.any(1)), np.flatnonzero(content.any(0))
        extent = (rows[-1] - rows[0] + 1, cols[-1] - cols[0] + 1) if len(rows) else (0, 0)
        processed.append([extent[0], extent[1], extent[1] / max(extent[0], 1), model_input.mean(),
                          model_input.std(), content.mean()])
        labels.append(f.label)
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
    score = {}
    for name, features in (("raw image statistics", raw), ("after preprocessing", processed)):
        auroc = cross_val_score(model, np.array(features), np.array(labels), cv=5, scoring="roc_auc")
        score[name] = round(float(auroc.mean()), 3)
    return score


def print_table(rows: list[dict]) -> None:
    print("| model | data | Br35H test AUROC | sens / spec | figshare sens (caught) | synthetic sagittal AUROC "
          "| sens / spec | synthetic healthy spec by contrast |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        t, s = r["br35h_test"], r.get("synthetic_sagittal", {})
        fig = "trained on it"
        if "figshare_sensitivity" in r:
            fig = f"{r['figshare_sensitivity']:.3f} ({r['figshare_caught']:.3f})"
        print(f"| {r['architecture']} | {r['data']} | {t['auroc']} | {t['sensitivity']} / {t['specificity']} | {fig} "
              f"| {s.get('auroc')} {s.get('auroc_ci95', '')} | {s.get('sensitivity')} / {s.get('specificity')} "
              f"| {r.get('synthetic_healthy_spec_by_contrast', {})} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, action="append", default=[])
    parser.add_argument("--work", type=Path, default=Path("/tmp/mriscan-accuracy"))
    parser.add_argument("--train", action="store_true", help="train the compared variants first")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    parser.add_argument("--threshold-rules", action="store_true",
                        help="also compare threshold rules on the bundle's own split (loads its training data)")
    parser.add_argument("--record-in-card", action="store_true",
                        help="write each bundle's figures into its model card (field proxy_evaluation)")
    args = parser.parse_args()
    if not (DATA / "br35h").exists():
        print(f"no data at {DATA}; skipping")
        return
    args.work.mkdir(parents=True, exist_ok=True)
    make_synthetic(args.work)
    bundles = list(args.model) + (train(args.work, args.epochs) if args.train else [])
    rows = [measure(b, args.work) for b in bundles]
    print_table(rows)
    sagittal = args.work / "synth_sagittal_test"
    if sagittal.exists():
        print(f"\nAUROC under acquisition shifts, {sagittal.name} (200 + 200 images):")
        for bundle, row in zip(bundles, rows, strict=True):
            row["shifts"] = shift_robustness(bundle, sagittal)
            print(f"- {bundle}: {row['shifts']}")
    if args.threshold_rules:
        print("\nthreshold rules (same model, same split):")
        for bundle, row in zip(bundles, rows, strict=True):
            row["threshold_rules"] = threshold_rules(bundle)
            print(f"- {bundle}: {row['threshold_rules']}")
    print("\ntest-time flip averaging (2x the network's cost):")
    for bundle, row in zip(bundles, rows, strict=True):
        row["flip_averaging"] = flip_averaging(bundle, args.work)
        print(f"- {bundle}: {row['flip_averaging']}")
    audit = shortcut_audit()
    print(f"\nshortcut audit (5-fold AUROC of statistics alone on Br35H labels): {audit}")
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "shortcut_audit": audit}, indent=1, default=str))
    if args.record_in_card:
        for bundle, row in zip(bundles, rows, strict=True):
            record_in_card(bundle, row, audit)


def record_in_card(bundle_dir: Path, row: dict, audit: dict) -> None:
    """Keep the proxy figures in the bundle's card; the weights and model_id are untouched."""
    from datetime import date

    from mriscan.model.bundle import update_card

    figures = {key: value for key, value in row.items() if key not in ("model", "architecture", "data", "br35h_test")}
    update_card(bundle_dir, proxy_evaluation={
        "measured_by": "python benchmarks/accuracy.py (synthetic sets: mriscan synth, see models/README.md)",
        "measured_on": date.today().isoformat(),
        **json.loads(json.dumps(figures, default=str)),
        "shortcut_audit": audit,
    })


if __name__ == "__main__":
    main()
