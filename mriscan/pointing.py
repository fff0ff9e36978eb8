"""The pointing game: does an explanation point at the lesion the synthetic generator drew?

``mriscan synth`` writes each lesion's mask beside its image (``masks/<name>.png``), so on
synthetic tumour slices the truth about *where* is known. A hit is when the explanation's
maximum falls on the lesion (see :func:`mriscan.explain.pointing_game_hit`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from mriscan.explain import bundle_explainer, pointing_game_hit
from mriscan.imageio import read_image
from mriscan.model import ModelBundle
from mriscan.preprocess import preprocess, project_mask


@dataclass(frozen=True)
class PointingResult:
    """Hits of one explanation method over a set of lesioned images."""

    method: str
    hits: int
    total: int
    lesion_share: float

    @property
    def hit_rate(self) -> float:
        return self.hits / self.total if self.total else 0.0


def lesion_pairs(folder: Path) -> list[tuple[Path, Path]]:
    """(image, mask) pairs of a synth folder: ``yes/<stem>.*`` with ``masks/<stem>.png``."""
    masks = {p.stem: p for p in (folder / "masks").glob("*.png")}
    return [(image, masks[image.stem]) for image in sorted((folder / "yes").iterdir()) if image.stem in masks]


def pointing_game(bundle: ModelBundle, pairs: Sequence[tuple[Path, Path]], method: str, *,
                  num_samples: int = 1000, seed: int = 2021) -> PointingResult:
    """Play the pointing game with ``method`` on every (image, mask) pair.

    ``lesion_share`` is the mean fraction of the head that the (dilated) lesion covers: the hit
    rate of an explanation that points at a random spot in the head.
    """
    config = bundle.preprocess_config
    explainer = bundle_explainer(bundle, method, num_samples=num_samples, seed=seed)
    hits, shares = 0, []
    for image_path, mask_path in pairs:
        pixels = read_image(image_path, least_side=config.decode_least_side)[0].pixels
        lesion = project_mask(cv2.imread(str(mask_path), cv2.IMREAD_GRAYSCALE) > 127, pixels, config)
        model_input = preprocess(pixels, config)
        hits += pointing_game_hit(explainer.explain(model_input).weights, lesion)
        head = model_input[..., 0] > 0.02
        shares.append(float((lesion & head).sum() / max(head.sum(), 1)))
    return PointingResult(method, hits, len(pairs), float(np.mean(shares)) if shares else 0.0)
