"""The pointing game: does an explanation point at the lesion the synthetic generator drew?

``mriscan synth`` writes each lesion's mask beside its image (``masks/<name>.png``), so on
synthetic tumour slices the truth about *where* is known. A hit is when the explanation's
maximum falls on the lesion (see :func:`pointing_game_hit`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from mriscan.data.preprocess import preprocess, project_mask
from mriscan.explain.base import HEAD_LEVEL
from mriscan.explain.factory import bundle_explainer
from mriscan.io.reader import read_image
from mriscan.model.bundle import ModelBundle


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
        head = model_input[..., 0] > HEAD_LEVEL
        shares.append(float((lesion & head).sum() / max(head.sum(), 1)))
    return PointingResult(method, hits, len(pairs), float(np.mean(shares)) if shares else 0.0)


def pointing_game_hit(weights: np.ndarray, lesion_mask: np.ndarray, tolerance_px: int = 3) -> bool:
    """Does the most tumour-ward region of an explanation fall on the lesion?

    The "pointing game" (Zhang et al., 2016): the explanation points at its maximum. For LIME
    the maximum is a whole superpixel (every pixel with the top weight); it hits when any of it
    lies in the lesion mask dilated by ``tolerance_px``. An explanation with no positive weight
    points nowhere and misses.

    Parameters
    ----------
    weights : (H, W) signed weights, positive toward tumour.
    lesion_mask : (H, W) boolean ground-truth lesion.
    tolerance_px : dilation of the lesion, in pixels, forgiving boundary effects.

    Examples
    --------
    >>> weights = np.zeros((10, 10)); weights[2, 2] = 1.0
    >>> lesion = np.zeros((10, 10), bool); lesion[3:6, 3:6] = True
    >>> pointing_game_hit(weights, lesion, tolerance_px=1), pointing_game_hit(weights, lesion, 0)
    (True, False)
    """
    if weights.shape != lesion_mask.shape:
        raise ValueError(
            f"weights and lesion_mask must have the same shape; received {weights.shape} and {lesion_mask.shape}"
        )
    top = float(np.max(weights))
    if top <= 0.0:
        return False
    pointed = weights >= top - 1e-6 * abs(top)
    kernel = np.ones((2 * tolerance_px + 1, 2 * tolerance_px + 1), np.uint8)
    lesion = cv2.dilate(lesion_mask.astype(np.uint8), kernel) > 0
    return bool(np.any(pointed & lesion))
