"""The network's CPU per image in int8 (as fit deploys it) against fp32, and what int8 changes.

    python benchmarks/bench_network.py [--data ../shared/data/br35h] [--model models/default] [--repeat 5]

Loads the labelled images of ``--data`` (class folders) with the bundle's preprocessing, as scan
does; exports the bundle's folded network in fp32 and quantizes it as fit does (min-max ranges of
a fixed subset of 256 of those images; fit takes training images). Then, in one process, with one
ONNX Runtime thread and batches of 64 as in a scan's workers, the two networks alternate
``--repeat`` times over all images. Prints:
- CPU ms per image of each (median and best of the repeats), and int8's ratio to fp32;
- the probability differences (after the card's temperature), median and largest;
- decisions at the card's threshold, and near_threshold flags, that int8 changes; and the
  sensitivity and specificity of both. The card's thresholds were chosen on the network it was
  trained with: a fit that deploys int8 chooses them on int8's outputs instead.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data" / "br35h"


def load_images(data: Path, bundle) -> tuple[np.ndarray, np.ndarray]:
    """Model inputs and labels (1 = tumour) of the readable images under ``data``'s class folders."""
    from mriscan.data.dataset import find_labelled_files
    from mriscan.data.loader import load_all

    files = find_labelled_files((data,))
    label_of = {f.path: f.label for f in files}
    records = [r for r in load_all([f.path for f in files], bundle.preprocess_config) if r.ok]
    return np.stack([r.model_input for r in records]), np.array([label_of[r.path] for r in records])


def cpu_per_image(networks: dict, images: np.ndarray, repeat: int) -> dict[str, list[float]]:
    """CPU ms per image of each network over all images, the networks alternating, ``repeat`` times."""
    from mriscan.model.bundle import network_probability

    for network in networks.values():
        network_probability(network, images[:64])  # first-run allocations
    costs: dict[str, list[float]] = {name: [] for name in networks}
    for _ in range(repeat):
        for name, network in networks.items():
            started = time.process_time()
            network_probability(network, images)
            costs[name].append(1000 * (time.process_time() - started) / len(images))
    return costs


def main() -> None:
    from mriscan.evaluation.metrics import classification_metrics
    from mriscan.model.bundle import apply_temperature, load_bundle, network_probability
    from mriscan.model.export import INT8, export_onnx, quantize_onnx
    from mriscan.model.fit import CALIBRATION_IMAGES, fixed_subset
    from mriscan.model.runtime import OnnxNetwork

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--model", type=Path, default=None)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    if not args.data.is_dir():
        print(f"no data at {args.data}; skipping")
        return
    bundle = load_bundle(args.model)
    images, labels = load_images(args.data, bundle)
    fp32 = export_onnx(bundle.inference_model)
    int8 = quantize_onnx(fp32, images[fixed_subset(np.arange(len(images)), CALIBRATION_IMAGES, seed=0)])
    networks = {"fp32": OnnxNetwork(fp32), INT8: OnnxNetwork(int8)}
    costs = cpu_per_image(networks, images, args.repeat)
    baseline = float(np.median(costs["fp32"]))
    print(f"{len(images)} images from {args.data}, model {bundle.model_id[:12]}, one thread, batches of 64")
    for name, cost in costs.items():
        print(f"  {name:46s} {np.median(cost):.3f} ms/image (best {min(cost):.3f}) = "
              f"{np.median(cost) / baseline:.2f} x fp32")
    probability = {name: apply_temperature(network_probability(network, images), bundle.temperature)
                   for name, network in networks.items()}
    difference = np.abs(probability[INT8] - probability["fp32"])
    print(f"probability |int8 - fp32|: median {np.median(difference):.4f}, largest {difference.max():.4f}")
    decided = {name: p >= bundle.threshold for name, p in probability.items()}
    flagged = {name: (p >= bundle.review_threshold) & (p < bundle.threshold) for name, p in probability.items()}
    print(f"at threshold {bundle.threshold:.4f}: {int((decided[INT8] != decided['fp32']).sum())} decisions and "
          f"{int((flagged[INT8] != flagged['fp32']).sum())} near_threshold flags differ of {len(images)}")
    for name, p in probability.items():
        metrics = classification_metrics(labels, p, bundle.threshold)
        print(f"  {name:46s} sensitivity {metrics['sensitivity']:.4f}, specificity {metrics['specificity']:.4f}")


if __name__ == "__main__":
    main()
