"""What every explainer gives and takes: an :class:`Explanation` of one model input, the :class:`Explainer` interface.

Kept below the explainers (:mod:`mriscan.explain.lime`, :mod:`mriscan.explain.keras_explain`), which
import it and never each other at module level.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from mriscan.errors import ExplainError

HEAD_LEVEL = 0.05
"""Model-input pixels darker than this ([0, 1] scale) are letterbox or air, not head: for LIME's
superpixels and the pointing game's chance level alike."""

@dataclass(frozen=True)
class Explanation:
    """Signed evidence for "tumour" over one model input.

    Attributes
    ----------
    weights : float32 array (S, S). Positive pushes the prediction toward tumour, negative
        away from it. Units are the explainer's own (LIME: probability per superpixel;
        Grad-CAM: tumour logit), so compare signs and ranks, not sizes across methods.
    segments : int32 array (S, S) of superpixel labels for LIME (0 is the background, see
        :func:`mri_superpixels`); None for Grad-CAM.
    probability : the network's P(tumour) for the unperturbed input, before any calibration
        the model bundle applies (``ModelBundle.predict`` gives the calibrated one).
    method : ``"lime"`` or ``"gradcam"``.
    details : the settings in a few words, for the picture's title.
    """

    weights: np.ndarray
    segments: np.ndarray | None
    probability: float
    method: str
    details: str


class Explainer(Protocol):
    """What :func:`mriscan.explain.factory.make_explainer` returns."""

    method: str

    def explain(self, image: np.ndarray) -> Explanation:
        """Explain the model's prediction for one (S, S, 1) model input."""
        ...


def grey_input(image: np.ndarray) -> np.ndarray:
    """(S, S, 1) or (S, S) model input -> (S, S) float32."""
    grey = np.asarray(image, dtype=np.float32)
    if grey.ndim == 3 and grey.shape[2] == 1:
        grey = grey[..., 0]
    if grey.ndim != 2:
        raise ExplainError(f"Expected one (S, S, 1) model input; received shape {np.shape(image)}")
    return grey
