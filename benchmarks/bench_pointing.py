"""Does an explanation point at the lesion? mriscan's LIME or Grad-CAM against how it ran before, in the same run.

    python benchmarks/bench_pointing.py [--method lime|gradcam] [--images 12] [--samples 1000] [--healthy DIR ...]
                                        [--model DIR]

The pointing game (:mod:`mriscan.explain.pointing`) on images whose lesion is known: the 24
synthetic tumour slices of ``sample_data/train``, and for each ``--healthy`` folder of real
healthy slices ``--images`` slices with a synthetic lesion drawn in (``mriscan synth
--from-healthy``, seed 2021, all contrasts, written to a temporary folder). Defaults: OASIS
(skull-stripped), Br35H and Sartaj healthy slices from ``shared/data`` next to the repository.
Both explainers of a method explain the same network (the default model unless ``--model``):
LIME its network file, with the same samples and seed, Grad-CAM its Keras model.

- LIME ``before``, the baseline: stock LIME with SLIC superpixels in the head's convex hull (everything
  but letterbox and air, skull and scalp included) and hidden superpixels set to black, which is
  what mriscan ran until issue 19 (its weights were stock LIME's, to 1e-6);
- LIME ``after``: :class:`mriscan.explain.lime.LimeExplainer`, superpixels in the brain only, the
  outside never hidden, hidden superpixels showing the brain's smoothed tissue intensity;
- Grad-CAM ``before``: its map over the whole input, skull and background included
  (``GradCamExplainer.whole_input_map``), which is what mriscan showed until its map kept to the brain;
- Grad-CAM ``after``: :class:`mriscan.explain.keras_explain.GradCamExplainer`, the same map, 0 outside the brain.

Per set and in total it prints hits / n, the hit rate and its ratio after / before, chance (the
lesion's mean share of the brain), and the mean share of the pointed region outside the brain
estimate (:func:`mriscan.explain.base.brain_region`; 0 by construction after).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from mriscan.explain.base import Explainer, Explanation
    from mriscan.explain.keras_explain import GradCamExplainer
    from mriscan.explain.pointing import PointingResult
    from mriscan.model.bundle import ModelBundle

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared" / "data"
DEFAULT_HEALTHY = (SHARED / "oasis" / "no_tumor", SHARED / "br35h" / "no", SHARED / "sartaj" / "no_tumor")
HEAD_LEVEL = 0.05  # the old head region: model-input pixels darker than this were letterbox or air


def head_hull(grey: np.ndarray) -> np.ndarray:
    """The region the baseline cut into superpixels: convex hull of the non-dark area, specks removed."""
    import cv2
    from skimage.morphology import convex_hull_image

    count, labels, stats, _ = cv2.connectedComponentsWithStats((grey > HEAD_LEVEL).astype(np.uint8), connectivity=8)
    large = np.flatnonzero(stats[:, cv2.CC_STAT_AREA] >= max(1, int(0.002 * grey.size)))
    foreground = np.isin(labels, large[large > 0])
    return convex_hull_image(foreground) if foreground.any() else np.ones(grey.shape, bool)


class HeadBlackLime:
    """The baseline explainer: stock LIME over superpixels of the whole head, hidden superpixels black."""

    method = "lime, before"

    def __init__(self, classify: Callable[[np.ndarray], np.ndarray], num_samples: int, seed: int) -> None:
        self.classify, self.num_samples, self.seed = classify, num_samples, seed

    def explain(self, image: np.ndarray) -> Explanation:
        from lime.lime_image import LimeImageExplainer

        from mriscan.explain.base import Explanation
        from mriscan.explain.lime import mri_superpixels

        segments = mri_superpixels(image, region=head_hull(image[..., 0]))
        result = LimeImageExplainer(random_state=self.seed, feature_selection="none").explain_instance(
            np.repeat(image, 3, axis=2), self.classify, labels=(1,), top_labels=None, hide_color=0,
            num_features=int(segments.max()) + 1, num_samples=self.num_samples, batch_size=256,
            segmentation_fn=lambda _: segments)
        per_segment = np.zeros(int(segments.max()) + 1, np.float32)
        for label, weight in result.local_exp[1]:
            per_segment[label] = weight
        return Explanation(per_segment[segments], segments, float("nan"), self.method, "")


class WholeInputGradCam:
    """The Grad-CAM baseline: its map over the whole input, skull, scalp and background included."""

    method = "gradcam, before"

    def __init__(self, explainer: GradCamExplainer) -> None:
        self.explainer = explainer

    def explain(self, image: np.ndarray) -> Explanation:
        from mriscan.explain.base import Explanation

        weights, probability = self.explainer.whole_input_map(image)
        return Explanation(weights, None, probability, self.method, "")


def before_and_after(bundle: ModelBundle, method: str, samples: int, seed: int) -> tuple[Explainer, Explainer]:
    """(baseline, explainer as ``mriscan explain`` builds it) for ``method``, on the same network."""
    from mriscan.explain.factory import bundle_explainer
    from mriscan.explain.lime import LimeExplainer

    after = bundle_explainer(bundle, method, num_samples=samples, seed=seed)
    if method == "gradcam":
        return WholeInputGradCam(after), after
    classify = LimeExplainer(None, bundle.preprocess_config.image_size, network=bundle.network).classify
    return HeadBlackLime(classify, samples, seed), after


def lesion_sets(healthy: list[Path], images: int, scratch: Path) -> list[tuple[str, Path]]:
    """(name, synth folder) of every set played: sample_data/train, then one per usable healthy folder."""
    from mriscan.synth import generate_dataset

    sets = [("sample_data/train (template)", REPO / "sample_data" / "train")]
    for folder in healthy:
        if not folder.is_dir():
            print(f"bench_pointing: no healthy slices at {folder}; skipped")
            continue
        out = scratch / folder.parent.name
        generate_dataset(out, images, 2021, lesion_fraction=1.0, from_healthy=folder, workers=1)
        sets.append((f"{folder.parent.name} healthy + synthetic lesion", out))
    return sets


def _ratio(after: float, before: float) -> str:
    return f"{after / before:5.2f}x" if before else "  n/a"


def print_row(name: str, before: PointingResult, after: PointingResult) -> None:
    print(f"{name:<40} n {after.total:3d}  hits {before.hits:3d} -> {after.hits:3d}  "
          f"hit rate {before.hit_rate:.2f} -> {after.hit_rate:.2f} ({_ratio(after.hit_rate, before.hit_rate)})  "
          f"chance {after.lesion_share:.3f}  outside the brain {before.outside_brain_share:.3f} -> "
          f"{after.outside_brain_share:.3f}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--method", choices=("lime", "gradcam"), default="lime")
    parser.add_argument("--images", type=int, default=12, help="lesioned slices per healthy folder")
    parser.add_argument("--samples", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=2021, help="LIME's seed (the synthetic sets always use 2021)")
    parser.add_argument("--healthy", type=Path, action="append", help="folder of healthy slices (repeatable)")
    parser.add_argument("--model", type=Path, default=None, help="model bundle (default: models/default)")
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("TQDM_DISABLE", "1")  # stock LIME's progress bar, once per image
    sys.path.insert(0, str(REPO))
    from mriscan.explain.pointing import lesion_pairs, play_pointing_game
    from mriscan.model.bundle import load_bundle

    bundle = load_bundle(args.model, keras=args.method == "gradcam")
    config = bundle.preprocess_config
    before_explainer, after_explainer = before_and_after(bundle, args.method, args.samples, args.seed)
    settings = "Grad-CAM" if args.method == "gradcam" else f"{args.samples} LIME samples, seed {args.seed}"
    print(f"model {bundle.model_id[:12]}, {settings}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")
    totals: list[tuple[PointingResult, PointingResult]] = []  # (before, after) per set
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-pointing-") as scratch:
        for name, folder in lesion_sets(args.healthy or list(DEFAULT_HEALTHY), args.images, Path(scratch)):
            pairs = lesion_pairs(folder)
            results = (play_pointing_game(before_explainer, pairs, config),
                       play_pointing_game(after_explainer, pairs, config))
            print_row(name, *results)
            totals.append(results)
    print_row("all sets", *(_pooled([pair[i] for pair in totals]) for i in (0, 1)))
    print(f"{time.perf_counter() - started:.0f} s, load average at the end {os.getloadavg()[0]:.1f}")


def _pooled(results: list[PointingResult]) -> PointingResult:
    """One result over several sets: hits and n summed, shares weighted by n."""
    from mriscan.explain.pointing import PointingResult

    total = max(sum(r.total for r in results), 1)
    lesion_share = sum(r.lesion_share * r.total for r in results) / total
    outside = sum(r.outside_brain_share * r.total for r in results) / total
    return PointingResult(results[0].method, sum(r.hits for r in results), sum(r.total for r in results),
                          lesion_share, outside)


if __name__ == "__main__":
    main()
