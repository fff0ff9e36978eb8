"""The model card: typed values, the same text when read and written again, fit's card byte for byte."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from conftest import REPO

from mriscan.data.loader import LoadedImage
from mriscan.data.preprocess import PreprocessConfig
from mriscan.data.quality import INPUT_STATISTICS
from mriscan.errors import ModelBundleError
from mriscan.model.calibrate import Thresholds
from mriscan.model.card import ModelCard, NetworkFileEntry
from mriscan.model.export import NetworkFile
from mriscan.model.fit import FitDataset, FitOptions, model_card

GOLDEN_FIT_CARD = Path(__file__).parent / "golden_fit_card.json"
MINIMAL = {"model_id": "a" * 64, "architecture": "seed", "input_size": 64, "preprocessing": {},
           "threshold": 0.5, "review_threshold": 0.3}


def _fit_inputs() -> tuple:
    """Made-up inputs of fit's card (the golden file was written from them by the code before the typed card)."""
    options = FitOptions(data_dirs=(Path("/data/a"), Path("/data/b")), out_dir=Path("out"), epochs=3, seed=7,
                         command="mriscan fit /data/a /data/b --out out", source_balance=0.5, strip_probability=0.25)
    records = [LoadedImage(path=Path(f"/data/a/{i}.png"), sha256=f"{i:064x}",
                           statistics={name: float(i * 0.1 + j) for j, name in enumerate(INPUT_STATISTICS)})
               for i in range(20)]
    data = FitDataset(images=np.zeros((20, 8, 8, 1), np.float32), labels=np.array([0, 1] * 10),
                      group_ids=np.arange(20), sources=np.array(["a", "b"] * 10), records=records,
                      counts={"files_found": 21, "unreadable": 1, "images_read": 20, "duplicates_removed": 0,
                              "by_source": {"a/no_tumor": 10, "b/tumor": 10}},
                      lineage={"data_fingerprints": [{"dir": "/data/a", "files": 20, "sha256": "f" * 64}],
                               "excluded_dirs": [], "excluded_images": 0})
    split = SimpleNamespace(train=np.arange(14), validation=np.arange(14, 18), test=np.arange(18, 20))
    result = SimpleNamespace(model=SimpleNamespace(count_params=lambda: 1234), history={"loss": [0.9, 0.5, 0.4]},
                             best_epoch=2, schedule="Adam, cosine decay from 0.001 to 2e-05 over 3 epochs")
    metrics = {"n": 4, "auroc": 0.875, "sensitivity": 1.0, "specificity": 0.5, "confusion_matrix": [[1, 1], [0, 2]]}
    evaluation = {"temperature": 0.8368, "threshold_sources": ("a", "b"),
                  "thresholds": Thresholds(0.19938800414830662, 0.11099705399377657, 1.0, 0.5, ""),
                  "validation": metrics, "test": {**metrics, "n": 2}, "test_by_source": {"a": metrics}}
    network = NetworkFile(b"onnx", {"name": "model.onnx", "sha256": "e" * 64, "format": "ONNX opset 13",
                                    "precision": "int8", "max_difference_from_keras": 0.03})
    return options, data, split, result, evaluation, network


def test_fit_builds_the_card_byte_for_byte_as_before() -> None:
    options, data, split, result, evaluation, network = _fit_inputs()
    card = model_card(options, data, split, result, evaluation, seconds=12.34, network=network, parent=None)
    saved = replace(card, model_id="a" * 64, created="2026-12-03T13:00:00+00:00",  # what save_bundle adds
                    network_file=NetworkFileEntry.from_json(network.entry))
    assert saved.to_text() == GOLDEN_FIT_CARD.read_text()


@pytest.mark.parametrize("path", [REPO / "models" / "default" / "model.json", GOLDEN_FIT_CARD])
def test_a_card_read_and_written_again_is_the_same_text(path: Path) -> None:
    text = path.read_text()
    assert ModelCard.from_text(text).to_text() == text


def test_keys_of_a_newer_fit_round_trip_in_place() -> None:
    newer = {**MINIMAL, "future_section": {"x": [1, 2]}, "training": {"seed": 1, "source_balance": 0.5},
             "calibration": {"temperature": 2, "method": "m", "future": True}, "created": "c"}
    card = ModelCard.from_json(newer)
    assert card.extra == {"future_section": {"x": [1, 2]}} and card.temperature == 2.0
    assert json.dumps(card.to_json()) == json.dumps(newer)  # same keys, same order, 2 stays 2
    changed = replace(card, lineage={"parent_model_id": None})
    assert list(changed.to_json()) == [*newer, "lineage"]


def test_older_cards_are_upgraded_in_the_typed_values_only() -> None:
    card = ModelCard.from_json(MINIMAL)
    assert card.preprocessing == PreprocessConfig(version=1)  # no version: made with version 1
    assert card.temperature == 1.0 and card.network_file is None and card.statistics_ranges == {}
    assert card.to_json() == MINIMAL


def test_a_broken_card_is_refused_with_what_is_wrong() -> None:
    with pytest.raises(ModelBundleError, match=r"lacks the fields \['threshold'\]"):
        ModelCard.from_json({k: v for k, v in MINIMAL.items() if k != "threshold"})
    with pytest.raises(ModelBundleError, match="not a readable model card"):
        ModelCard.from_json({**MINIMAL, "threshold": "high"})
    with pytest.raises(ModelBundleError, match="not a readable model card"):
        ModelCard.from_json({**MINIMAL, "preprocessing": {"version": 99}})


def test_figures_can_be_added_but_never_what_defines_the_model() -> None:
    card = ModelCard.from_json(MINIMAL).with_figures(proxy_evaluation={"sensitivity": 0.9}, created="now")
    assert list(card.to_json())[-2:] == ["proxy_evaluation", "created"]
    with pytest.raises(ModelBundleError, match="cannot change"):
        card.with_figures(threshold=0.1)
