"""Golden test: the shipped default model's probabilities on the sample images stay pinned.

After retraining the default model, regenerate the pins with
``MRISCAN_UPDATE_GOLDEN=1 python -m pytest tests/model/test_default_model.py``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO

from mriscan.model.bundle import default_model_dir, load_bundle
from mriscan.scan.pipeline import ScanOptions, prepare_output, run_scan

GOLDEN = Path(__file__).parent / "golden_default_model.json"
TOLERANCE = 1e-3


@pytest.fixture(scope="module")
def default_rows(tmp_path_factory):
    bundle = load_bundle(None)
    out = tmp_path_factory.mktemp("golden") / "results.csv"
    options = ScanOptions(input_dir=REPO / "sample_data" / "incoming", out=out, workers=1)
    summary = run_scan(options, bundle, prepare_output(options))
    return bundle, {row["path"]: row for row in summary.rows}


def test_default_bundle_is_the_shipped_one():
    assert default_model_dir().resolve() in {(REPO / "models" / "default").resolve(),
                                             (REPO / "mriscan" / "default_model").resolve()}
    card = json.loads((default_model_dir() / "model.json").read_text())
    assert card["input_size"] == 150 and 0 < card["review_threshold"] <= card["threshold"] < 1


def test_probabilities_match_the_pins(default_rows):
    bundle, rows = default_rows
    if os.environ.get("MRISCAN_UPDATE_GOLDEN"):
        pins = {path: float(row["probability"]) for path, row in sorted(rows.items())}
        GOLDEN.write_text(json.dumps({"model_id": bundle.model_id, "probabilities": pins}, indent=1) + "\n")
    golden = json.loads(GOLDEN.read_text())
    assert golden["model_id"] == bundle.model_id, "default model changed: regenerate the pins (see docstring)"
    assert set(golden["probabilities"]) == set(rows)
    for path, pinned in golden["probabilities"].items():
        assert abs(float(rows[path]["probability"]) - pinned) <= TOLERANCE, path


def test_sample_scan_reads_everything(default_rows):
    _, rows = default_rows
    assert rows and all(row["error"] == "" for row in rows.values())
    assert {row["prediction"] for row in rows.values()} <= {"tumor", "no_tumor"}
    assert np.isfinite([float(row["probability"]) for row in rows.values()]).all()
