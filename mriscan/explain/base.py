"""What every explainer gives and takes: an :class:`Explanation` of one model input, the :class:`Explainer` interface.

Kept below the explainers (:mod:`mriscan.explain.lime`, :mod:`mriscan.explain.keras_explain`), which
import it and never each other at module level.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from mriscan.data.masks import brain_mask
from mriscan.errors import ExplainError

BRAIN_PEEL = 0.10
"""Skull and scalp peeled off the head to leave the brain, as a fraction of the head's equivalent
radius: for LIME's superpixels, Grad-CAM's map and the pointing game alike (see :func:`brain_region`)."""

@dataclass(frozen=True)
class Explanation:
    """Signed evidence for "tumour" over one model input.

    Attributes
    ----------
    weights : float32 array (S, S). Positive pushes the prediction toward tumour, negative
        away from it. Units are the explainer's own (LIME: probability per superpixel;
        Grad-CAM: tumour logit), so compare signs and ranks, not sizes across methods. Both
        methods give 0 outside the brain (:func:`brain_region`).
    segments : int32 array (S, S) of superpixel labels for LIME: 0 is everything outside the
        brain, never hidden and weighted 0 (see :func:`mri_superpixels`); None for Grad-CAM.
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


def brain_region(image: np.ndarray) -> np.ndarray:
    """Boolean mask of the brain in one model input: the head less a rim of :data:`BRAIN_PEEL`.

    What LIME may perturb and what explanations may point at (Grad-CAM's map is 0 outside).
    Skull, scalp and the black frame around the head say nothing about a tumour, but hiding them
    makes strong artificial edges that move the network, so explanations used to point there.
    The rim is thinner than the 0.15 of the head's radius the synthetic engine keeps lesions
    within, so a lesion against the skull (a meningioma sits there) keeps most of its area; on the
    sample slices the bright scalp stays outside.

    Examples
    --------
    >>> head = np.zeros((64, 64), np.float32); head[8:56, 8:56] = 0.8
    >>> brain = brain_region(head)
    >>> bool(brain[32, 32]), bool(brain[8, 32]), bool(brain[2, 2])
    (True, False, False)
    """
    return brain_mask(grey_input(image), BRAIN_PEEL) > 0
