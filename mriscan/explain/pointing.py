"""The pointing game: does an explanation point at the lesion the synthetic generator drew?

``mriscan synth`` writes each lesion's mask beside its image (``masks/<name>.png``), so on
synthetic tumour slices the truth about *where* is known. A hit is when the explanation's
maximum falls on the lesion (see :func:`pointing_game_hit`). Beside the hits, how much of what an
explanation points at lies outside the brain (skull, scalp, air), where no tumour is.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from mriscan.data.preprocess import PreprocessConfig, preprocess, project_mask
from mriscan.explain.base import Explainer, brain_region
from mriscan.explain.factory import bundle_explainer
from mriscan.io.reader import read_image
from mriscan.model.bundle import ModelBundle


@dataclass(frozen=True)
class PointingResult:
    """Hits of one explanation method over a set of lesioned images.

    Attributes
    ----------
    method : the explainer's method.
    hits, total : images whose explanation points at the lesion, and images played.
    lesion_share : mean fraction of the brain the lesion covers: the hit rate of an explanation
        that points at a random spot in the brain (chance).
    outside_brain_share : mean fraction of the pointed region (:func:`pointed_region`) outside
        :func:`~mriscan.explain.base.brain_region`, over the images where it points somewhere.
    """

    method: str
    hits: int
    total: int
    lesion_share: float
    outside_brain_share: float = 0.0

    @property
    def hit_rate(self) -> float:
        return self.hits / self.total if self.total else 0.0


def lesion_pairs(folder: Path) -> list[tuple[Path, Path]]:
    """(image, mask) pairs of a synth folder: ``yes/<stem>.*`` with ``masks/<stem>.png``."""
    masks = {p.stem: p for p in (folder / "masks").glob("*.png")}
    return [(image, masks[image.stem]) for image in sorted((folder / "yes").iterdir()) if image.stem in masks]


def pointing_game(bundle: ModelBundle, pairs: Sequence[tuple[Path, Path]], method: str, *,
                  num_samples: int = 1000, seed: int = 2021) -> PointingResult:
    """Play the pointing game with ``method``, built for ``bundle`` as ``mriscan explain`` builds it."""
    explainer = bundle_explainer(bundle, method, num_samples=num_samples, seed=seed)
    return play_pointing_game(explainer, pairs, bundle.preprocess_config)


def play_pointing_game(explainer: Explainer, pairs: Sequence[tuple[Path, Path]],
                       config: PreprocessConfig) -> PointingResult:
    """Play the pointing game with any explainer on every (image, mask) pair, inputs made with ``config``."""
    hits, shares, outside = 0, [], []
    for image_path, mask_path in pairs:
        pixels = read_image(image_path, least_side=config.decode_least_side)[0].pixels
        lesion = project_mask(cv2.imread(str(mask_path), cv2.IMREAD_GRAYSCALE) > 127, pixels, config)
        model_input = preprocess(pixels, config)
        weights = explainer.explain(model_input).weights
        hits += pointing_game_hit(weights, lesion)
        brain, pointed = brain_region(model_input), pointed_region(weights)
        shares.append(float((lesion & brain).sum() / max(brain.sum(), 1)))
        if pointed.any():
            outside.append(float((pointed & ~brain).sum() / pointed.sum()))
    return PointingResult(explainer.method, hits, len(pairs), float(np.mean(shares)) if shares else 0.0,
                          float(np.mean(outside)) if outside else 0.0)


def pointed_region(weights: np.ndarray) -> np.ndarray:
    """Where an explanation points: the pixels at its maximum, none when no weight is positive.

    For LIME that is a whole superpixel (every pixel with the top weight).

    Examples
    --------
    >>> pointed_region(np.array([[0.2, 1.0, 1.0], [-1.0, 0.0, 0.5]])).astype(int).tolist()
    [[0, 1, 1], [0, 0, 0]]
    >>> bool(pointed_region(-np.ones((2, 2))).any())
    False
    """
    top = float(np.max(weights))
    if top <= 0.0:
        return np.zeros(np.shape(weights), bool)
    return weights >= top - 1e-6 * abs(top)


def pointing_game_hit(weights: np.ndarray, lesion_mask: np.ndarray, tolerance_px: int = 3) -> bool:
    """Does the most tumour-ward region of an explanation fall on the lesion?

    The "pointing game" (Zhang et al., 2016): the explanation points at its maximum
    (:func:`pointed_region`; for LIME a whole superpixel); it hits when any of it lies in the
    lesion mask dilated by ``tolerance_px``. An explanation with no positive weight points nowhere
    and misses.

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
    pointed = pointed_region(weights)
    kernel = np.ones((2 * tolerance_px + 1, 2 * tolerance_px + 1), np.uint8)
    lesion = cv2.dilate(lesion_mask.astype(np.uint8), kernel) > 0
    return bool(np.any(pointed & lesion))
