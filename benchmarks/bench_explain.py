"""Seconds per image of mriscan's explainers against LIME's defaults, measured in the same run.

    python benchmarks/bench_explain.py [--images 4] [--samples 1000] [--repeat 1] [--data DIR]

Rows, on real Br35H slices preprocessed to 150x150, with the seed-sized network (untrained:
the cost does not depend on the weights):

- ``lime defaults``: ``LimeImageExplainer().explain_instance`` as the notebook calls it
  (quickshift, batch_size 10, hide_color None, top_labels 5) with ``model.predict``;
- ``lime defaults, compiled``: the same with mriscan's compiled forward pass, to show how
  much of the gain is LIME's own loop rather than Keras' per-call overhead;
- ``mriscan lime``: :class:`mriscan.explain.lime.LimeExplainer`;
- ``default model, keras`` and ``default model, network file``: the same with the shipped default
  model (``compact``), querying its Keras model or the network file scan predicts with (int8 in
  ONNX Runtime, which ``mriscan explain`` uses);
- ``mriscan gradcam`` and the overlay picture.

The machine may be shared: the load average and CPU seconds are printed beside wall seconds,
and the ratios compare rows measured minutes apart in one process; ``--repeat N`` keeps the
best of N rounds per row, the figure least disturbed by other work.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
DEFAULT_DATA = REPO.parent / "shared" / "data" / "br35h"


def _load_inputs(data: Path, count: int, image_size: int) -> list[np.ndarray]:
    import cv2

    from mriscan.data.preprocess import PreprocessConfig, preprocess

    paths = sorted((data / "yes").glob("*.jpg"))[: (count + 1) // 2] + sorted((data / "no").glob("*.jpg"))[: count // 2]
    config = PreprocessConfig(image_size=image_size)
    return [preprocess(cv2.imread(str(path), cv2.IMREAD_GRAYSCALE).astype(np.float32), config) for path in paths]


def _timed(label: str, explain: Callable[[np.ndarray], object], images: list[np.ndarray], repeat: int) -> float:
    """Print and return the wall s/image of the best of ``repeat`` rounds, after one warm-up call."""
    explain(images[0])
    rounds = []
    for _ in range(repeat):
        wall, cpu = time.perf_counter(), time.process_time()
        for image in images:
            explain(image)
        rounds.append(((time.perf_counter() - wall) / len(images), (time.process_time() - cpu) / len(images)))
    per_image, cpu_per_image = min(rounds)
    print(f"{label:<28} {per_image:7.3f} s/image   ({cpu_per_image:6.3f} CPU s/image)", flush=True)
    return per_image


def _stock_lime(model: object, samples: int, classify: Callable[[np.ndarray], np.ndarray]) -> Callable:
    from lime.lime_image import LimeImageExplainer

    def explain(image: np.ndarray) -> object:
        explainer = LimeImageExplainer(random_state=2021)
        rgb = np.repeat(image, 3, axis=2).astype(np.float64)
        return explainer.explain_instance(rgb, classify, num_samples=samples)

    return explain


def _two_columns(probabilities: Callable[[np.ndarray], np.ndarray]) -> Callable[[np.ndarray], np.ndarray]:
    def classify(images: np.ndarray) -> np.ndarray:
        tumour = np.asarray(probabilities(np.ascontiguousarray(images[..., :1], dtype=np.float32))).reshape(-1)
        return np.stack([1.0 - tumour, tumour], axis=1)

    return classify


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=4)
    parser.add_argument("--samples", type=int, default=1000)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--repeat", type=int, default=1, help="rounds per row; the best is kept (shared machines)")
    args = parser.parse_args()
    if not (args.data / "yes").is_dir():
        print(f"bench_explain: no Br35H data at {args.data} (expects yes/ and no/); skipped")
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.path.insert(0, str(REPO))
    from skimage.segmentation import quickshift

    from mriscan.explain.keras_explain import CompiledProbabilities, GradCamExplainer
    from mriscan.explain.lime import LimeExplainer, mri_superpixels
    from mriscan.explain.overlay import OverlayCaption, render_overlay
    from mriscan.model.architectures import build_model
    from mriscan.model.bundle import load_bundle

    images = _load_inputs(args.data, args.images, 150)
    model = build_model("seed", 150)
    print(f"{len(images)} Br35H images at 150x150, seed network, {args.samples} samples, "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")  # fmt: skip
    quick = [len(np.unique(quickshift(np.repeat(i, 3, 2).astype(float), kernel_size=4, max_dist=200, ratio=0.2)))
             for i in images]  # fmt: skip
    ours = [int(mri_superpixels(image).max()) for image in images]
    print(f"superpixels per image: quickshift (LIME default) {quick}, mriscan SLIC in the head {ours}")

    predict = _two_columns(lambda batch: model.predict(batch, verbose=0))
    compiled = _two_columns(CompiledProbabilities(model, 150))
    baseline = _timed("lime defaults", _stock_lime(model, args.samples, predict), images, args.repeat)
    compiled_baseline = _timed(
        "lime defaults, compiled", _stock_lime(model, args.samples, compiled), images, args.repeat
    )
    lime = LimeExplainer(model, 150, num_samples=args.samples)
    mriscan_lime = _timed("mriscan lime", lime.explain, images, args.repeat)
    gradcam = _timed("mriscan gradcam", GradCamExplainer(model, 150).explain, images, args.repeat)
    default = load_bundle(None)
    default_keras = _timed("default model, keras", LimeExplainer(default.inference_model, 150,
                                                                 num_samples=args.samples).explain, images, args.repeat)
    default_network = _timed("default model, network file", LimeExplainer(
        None, 150, num_samples=args.samples, network=default.network).explain, images, args.repeat)
    explanation = lime.explain(images[0])
    caption = OverlayCaption(explanation.probability, "tumor", 0.5, "0" * 64)
    _timed("overlay picture (PNG)", lambda image: render_overlay(image, explanation, caption), images, args.repeat)
    print(f"speed-up of mriscan lime: {baseline / mriscan_lime:.1f}x over LIME's defaults, "
          f"{compiled_baseline / mriscan_lime:.1f}x over the defaults with a compiled model; "
          f"Grad-CAM is {mriscan_lime / gradcam:.0f}x faster than mriscan lime")  # fmt: skip
    print(f"default model: LIME on the network file takes {default_network / default_keras:.2f}x the time "
          f"of LIME on Keras")
    print(f"load average at the end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
