"""fit's last steps: the temperature, thresholds and metrics come from the network the bundle predicts with."""

import json
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
from conftest import SilentFitProgress

from mriscan.data.dataset import find_labelled_files
from mriscan.data.loader import LoadedImage
from mriscan.data.preprocess import PreprocessConfig
from mriscan.data.split import Split, split_by_group
from mriscan.dedup.fingerprints import EXACT, ImageFingerprints
from mriscan.evaluation.metrics import classification_metrics
from mriscan.io.hashing import bytes_sha256
from mriscan.model.bundle import CARD_FILE, apply_temperature, network_probability
from mriscan.model.calibrate import choose_thresholds, fit_temperature
from mriscan.model.export import INT8
from mriscan.model.fit import FitDataset, FitOptions, calibrate_and_evaluate, load_and_deduplicate, seen_images
from mriscan.model.runtime import ONNX_FILE, OnnxNetwork


def test_calibration_uses_the_outputs_of_the_network_it_is_given():
    rng = np.random.default_rng(0)
    labels = np.array([0, 1] * 20)
    images = rng.uniform(0, 1, (40, 4, 4, 1)).astype(np.float32)
    images[labels == 1] += 0.5  # tumours brighter: the fake network below separates them, imperfectly
    data = FitDataset(images=images, labels=labels, group_ids=np.arange(40), sources=np.array(["a"] * 40), records=[])
    split = Split(train=np.arange(0, 10), validation=np.arange(10, 30), test=np.arange(30, 40))

    def fake_network(batch: np.ndarray) -> np.ndarray:
        return np.clip(batch.mean(axis=(1, 2, 3)) - 0.25, 0.01, 0.99).astype(np.float64)

    evaluation = calibrate_and_evaluate(fake_network, data, split, 0.9, ("a",))

    raw_validation = fake_network(images[split.validation])
    temperature = fit_temperature(labels[split.validation], raw_validation)
    expected = choose_thresholds(labels[split.validation], apply_temperature(raw_validation, temperature), 0.9,
                                 counted=np.ones(20, bool))
    assert evaluation["temperature"] == temperature and evaluation["thresholds"] == expected
    test_probability = apply_temperature(fake_network(images[split.test]), temperature)
    assert evaluation["test"] == {**evaluation["test"], **classification_metrics(labels[split.test], test_probability,
                                                                                 expected.threshold)}


def test_fit_keeps_the_fingerprints_of_the_training_and_validation_images_and_of_its_parents():
    rng = np.random.default_rng(5)
    images = np.stack([cv2.GaussianBlur(rng.random((64, 64), dtype=np.float32), (0, 0), 4) for _ in range(10)])
    records = [LoadedImage(path=Path(f"{i}.png"), sha256=f"{i:064x}") for i in range(10)]
    data = FitDataset(images=images[..., np.newaxis], labels=np.array([0, 1] * 5), group_ids=np.arange(10),
                      sources=np.array(["a"] * 10), records=records)
    split = Split(train=np.arange(6), validation=np.arange(6, 8), test=np.arange(8, 10))
    fingerprints, entry = seen_images(data, split, parent=None)
    assert fingerprints.keys == tuple(r.sha256 for r in records[:8])  # the test split stays unseen
    assert entry.splits == ("train", "validation") and entry.parent is None
    assert fingerprints.copies([r.image_key for r in records], images) == (EXACT,) * 8 + ("", "")
    kept_by_parent = ImageFingerprints.of_images([records[9].image_key], images[9:])
    fingerprints, entry = seen_images(data, split, SimpleNamespace(model_id="p" * 64,
                                                                   training_fingerprints=kept_by_parent))
    assert len(fingerprints) == 9 and entry.parent == {"model_id": "p" * 64, "images": 1}
    assert fingerprints.copies([records[9].image_key], images[9:]) == (EXACT,)  # its weights learnt from it too
    _, entry = seen_images(data, split, SimpleNamespace(model_id="p" * 64, training_fingerprints=None))
    assert entry.parent == {"model_id": "p" * 64, "images": None}  # the parent kept none: the card says so


def test_fit_chooses_the_thresholds_on_the_int8_network_it_saves(trained_bundle):
    """Re-running the saved model.onnx on the validation split gives back the card's temperature and thresholds."""
    card = json.loads((trained_bundle / CARD_FILE).read_text())
    data_file = (trained_bundle / ONNX_FILE).read_bytes()
    assert card["network_file"]["precision"] == INT8 and card["network_file"]["sha256"] == bytes_sha256(data_file)
    assert card["calibration"]["network"] == f"model.onnx ({INT8})"

    dirs = tuple(Path(d) for d in card["data"]["data_dirs"])
    options = FitOptions(data_dirs=dirs, out_dir=Path("unused"), workers=1, seed=card["training"]["seed"],
                         preprocessing=PreprocessConfig.from_dict(card["preprocessing"]),
                         fractions=tuple(card["training"]["fractions"]))
    data = load_and_deduplicate(find_labelled_files(dirs), options, SilentFitProgress())
    split = split_by_group(data.labels, data.group_ids, fractions=options.fractions, seed=options.seed)
    labels = data.labels[split.validation]
    raw = network_probability(OnnxNetwork(data_file), data.images[split.validation])

    temperature = fit_temperature(labels, raw)
    thresholds = choose_thresholds(labels, apply_temperature(raw, temperature), 0.98)
    assert temperature == card["calibration"]["temperature"]
    assert (thresholds.threshold, thresholds.review_threshold) == (card["threshold"], card["review_threshold"])


def test_thresholds_are_set_by_the_real_folders_unless_asked_otherwise(tmp_path):
    from mriscan.data.dataset import SYNTHETIC_MANIFEST
    from mriscan.errors import DataLayoutError
    from mriscan.model.fit import threshold_folders

    real, synthetic = tmp_path / "br35h", tmp_path / "lesions"
    real.mkdir()
    synthetic.mkdir()
    (synthetic / SYNTHETIC_MANIFEST).write_text("file,label,origin,plane\n", encoding="utf-8")
    assert threshold_folders((real, synthetic)) == ("br35h",)
    assert threshold_folders((synthetic,)) == ("lesions",)  # only synthetic folders: all of them
    assert threshold_folders((real, synthetic), ("lesions",)) == ("lesions",)
    with pytest.raises(DataLayoutError, match="--threshold-from other"):
        threshold_folders((real, synthetic), ("other",))
