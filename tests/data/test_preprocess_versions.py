"""Each preprocessing version computes what it computed before its arithmetic became a strategy object.

The pins (sha256 of model input and projected mask) were written by the code with ``if version == 1``
branches, on the made-up slices below; a version whose output moves by one bit fails here.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from mriscan.data.preprocess import ARITHMETIC, PreprocessConfig, preprocess, project_mask

GOLDEN = Path(__file__).parent / "golden_preprocess_versions.json"


def made_up_images() -> dict[str, np.ndarray]:
    """A few made-up slices of the kinds decoders give: 8-bit, 16-bit, float with NaN, float64, tiny, blank."""
    rng = np.random.default_rng(20)
    yy, xx = np.mgrid[:300, :260]
    head = (((yy - 150) / 120.0) ** 2 + ((xx - 130) / 100.0) ** 2 < 1).astype(np.float64)
    lesion = ((yy - 120) ** 2 + (xx - 160) ** 2 < 400).astype(np.float64)
    base = head * (120 + 60 * np.sin(xx / 9.0)) + 80 * lesion + rng.normal(0, 6, head.shape)
    as_float = base.astype(np.float32)
    as_float[5, 7] = np.nan
    return {
        "uint8": np.clip(base, 0, 255).astype(np.uint8),
        "uint16": (np.clip(base, 0, None) * 37).astype(np.uint16),
        "float32_nan": as_float,
        "float64": base * 0.01,
        "small_int16": (base[::6, ::5] * 3).astype(np.int16),
        "blank": np.zeros((90, 140), np.uint8),
    }


@pytest.mark.parametrize("version", [1, 2, 3])
@pytest.mark.parametrize("size", [64, 150])
def test_every_version_computes_what_it_did_before(version: int, size: int) -> None:
    golden = json.loads(GOLDEN.read_text())
    config = PreprocessConfig(image_size=size, version=version)
    for name, image in made_up_images().items():
        result = preprocess(image, config)
        mask = project_mask(image > np.nanmedian(image), image, config)
        digest = hashlib.sha256(result.tobytes() + mask.tobytes()).hexdigest()[:16]
        assert digest == golden[f"v{version}/{size}/{name}"], (version, size, name)


def test_each_version_names_its_arithmetic_in_the_card() -> None:
    assert sorted(ARITHMETIC) == [1, 2, 3]
    names = [PreprocessConfig(version=v).to_dict()["name"] for v in (1, 2, 3)]
    assert names == ["crop-percentile-letterbox", "crop-percentile-letterbox-v2", "crop-percentile-letterbox-v3"]
    assert [PreprocessConfig(image_size=150, version=v).decode_least_side for v in (1, 2, 3)] == [None, None, 150]
