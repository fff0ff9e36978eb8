"""MRI contrasts rendered from tissue fractions: T1, contrast-enhanced T1, T2 and FLAIR.

Each pixel's signal is the sum of its tissue fractions times a per-tissue intensity, so partial
volume at tissue borders comes out as it does in a scan. Relative intensities follow the usual
appearance at 1.5-3 T (e.g. Bitar et al., RadioGraphics 2006): on T1 white matter is brighter than
grey matter and fluid is dark; on T2 fluid is brightest and white matter darkest; FLAIR is T2-like
with the fluid signal nulled. T1 brain signal comes from the template's own T1, which carries the
deep grey nuclei and real partial volume. Contrast-enhanced T1 adds gadolinium uptake where the
blood-brain barrier is absent: dura, venous sinuses, cortical veins and choroid plexus.
"""

from __future__ import annotations

import cv2
import numpy as np

from mriscan.errors import SynthError
from mriscan.synth.fields import smooth_field
from mriscan.synth.head import HeadSlice

CONTRASTS: tuple[str, ...] = ("t1", "t1ce", "t2", "flair")

_T1_TISSUES = {"wm": 0.85, "gm": 0.55, "csf": 0.12, "fluid": 0.12, "bone": 0.04, "marrow": 0.75,
               "muscle": 0.35, "fat": 1.0, "skin": 0.55}
TISSUE_INTENSITY: dict[str, dict[str, float]] = {
    "t1": _T1_TISSUES,
    "t1ce": _T1_TISSUES,
    "t2": {"wm": 0.30, "gm": 0.45, "csf": 1.0, "fluid": 1.0, "bone": 0.03, "marrow": 0.45,
           "muscle": 0.20, "fat": 0.75, "skin": 0.45},
    "flair": {"wm": 0.45, "gm": 0.62, "csf": 0.06, "fluid": 0.08, "bone": 0.03, "marrow": 0.50,
              "muscle": 0.25, "fat": 0.80, "skin": 0.50},
}


def check_contrast(contrast: str) -> str:
    """Return ``contrast`` if it is one of :data:`CONTRASTS`, else raise a SynthError naming them."""
    if contrast not in TISSUE_INTENSITY:
        raise SynthError(f"unknown contrast {contrast!r}; expected one of {', '.join(CONTRASTS)}")
    return contrast


def tissue_intensities(contrast: str, rng: np.random.Generator) -> dict[str, float]:
    """Draw one scan's tissue intensities: the table values, each scaled by up to +-15 %.

    Examples
    --------
    >>> values = tissue_intensities("t2", np.random.default_rng(0))
    >>> values["csf"] > values["gm"] > values["wm"]
    True
    """
    table = TISSUE_INTENSITY[check_contrast(contrast)]
    return {tissue: value * float(rng.uniform(0.87, 1.13)) for tissue, value in table.items()}


def _brain_signal(head: HeadSlice, contrast: str, values: dict[str, float]) -> np.ndarray:
    """Signal of the brain tissue (template T1 for T1 contrasts, tissue mix for the others)."""
    brain = head.brain
    if contrast in ("t1", "t1ce"):
        return brain.t1 * values["wm"]
    return brain.gm * values["gm"] + brain.wm * values["wm"] + brain.csf * values["csf"]


def _sparse_spots(rng: np.random.Generator, shape: tuple[int, int], scale: float, level: float) -> np.ndarray:
    """Soft random spots and threads: where a smooth field rises above ``level`` standard deviations."""
    return np.clip((smooth_field(rng, shape, scale) - level) * 2.0, 0.0, 1.0)


def _enhancement(head: HeadSlice, rng: np.random.Generator) -> np.ndarray:
    """Gadolinium uptake of a healthy head: dura and sinuses, cortical veins, choroid plexus (0..1)."""
    layers, brain, shape = head.layers, head.brain, head.head.shape
    dura = np.clip(cv2.GaussianBlur(layers["bone"], (0, 0), 1.0) * layers["fluid"] * 4.0, 0.0, 1.0)
    dura *= np.clip(0.6 + 0.4 * smooth_field(rng, shape, 12.0), 0.0, 1.0)
    if brain.plane != "sagittal":
        columns = np.arange(shape[1], dtype=np.float32)
        centre = np.average(columns, weights=head.head.sum(axis=0) + 1e-6)
        sinus = np.exp(-(((columns - centre) / 5.0) ** 2))
        dura = np.clip(dura * (1.0 + 3.0 * sinus), 0.0, 1.0)
    depth = cv2.distanceTransform((brain.brain > 0.5).astype(np.uint8), cv2.DIST_L2, 5)
    surface_fluid = np.clip(brain.csf * (depth < 6.0) + layers["fluid"], 0.0, 1.0)
    veins = _sparse_spots(rng, shape, 3.0, 2.2) * surface_fluid
    plexus = _sparse_spots(rng, shape, 4.0, 0.9) * (brain.csf > 0.6) * (depth > 12.0)
    return np.clip(dura + veins + plexus, 0.0, 1.0)


def _periventricular_rim(head: HeadSlice, rng: np.random.Generator) -> np.ndarray:
    """Faint FLAIR brightening of white matter lining the ventricles, common in healthy adults."""
    brain = head.brain
    depth = cv2.distanceTransform((brain.brain > 0.5).astype(np.uint8), cv2.DIST_L2, 5)
    ventricles = ((brain.csf > 0.6) & (depth > 10.0)).astype(np.float32)
    rim = cv2.GaussianBlur(ventricles, (0, 0), rng.uniform(1.5, 3.0)) * brain.wm
    return np.clip(rim * 2.0, 0.0, 1.0) * float(rng.uniform(0.0, 0.15))


def render_contrast(head: HeadSlice, contrast: str, rng: np.random.Generator) -> np.ndarray:
    """Render a head slice in one contrast at the template's 1 mm scale.

    Parameters
    ----------
    head : brain and head tissue fractions from :func:`mriscan.synth.head.build_head`.
    contrast : one of :data:`CONTRASTS`.
    rng : source of the per-scan intensity jitter and enhancement pattern.

    Returns
    -------
    float32 image, roughly in [0, 1.2] (not yet scaled like a scanner would).
    """
    values = tissue_intensities(contrast, rng)
    image = _brain_signal(head, contrast, values)
    for tissue, fraction in head.layers.items():
        image = image + fraction * values[tissue]
    if contrast == "t1ce":
        uptake = _enhancement(head, rng)
        image = image + uptake * (values["fat"] * rng.uniform(0.9, 1.15) - image)
    elif contrast == "flair":
        image = image + _periventricular_rim(head, rng)
    return image.astype(np.float32)
