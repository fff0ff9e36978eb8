"""Overlay pictures of explanations: the original image, the model input, and the evidence drawn over it.

Regions that push the prediction toward tumour are red, regions that push it away are blue,
both alpha-blended over the grey slice in proportion to their weight, with outlines around the
strongest regions. The title carries the probability against the threshold (to as many digits as
tell them apart), the decision, the flag reasons and the model id, and nothing else: no file name
and no DICOM attribute ever reaches the picture.

PNG bytes are deterministic (no software version or date chunk), so the same explanation always
gives the same file. Each overlay carries a PNG text chunk marking it as mriscan's (see
:func:`is_mriscan_overlay`), which lets a later run replace its own overlays and refuse to
overwrite anybody else's file. Matplotlib is imported when a picture is drawn, not before.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from mriscan.io.own_outputs import OVERLAY_MARKER_KEY

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from mriscan.explain.base import Explanation

TOWARD_COLOUR = (0.84, 0.15, 0.16)
AWAY_COLOUR = (0.12, 0.47, 0.71)
_MAX_ALPHA = 0.7
_DPI = 100


@dataclass(frozen=True)
class OverlayCaption:
    """What the picture's title says about the prediction.

    Attributes
    ----------
    probability : the model's P(tumour).
    decision : ``"tumor"`` or ``"no_tumor"``, as in the scan CSV.
    threshold : the decision threshold.
    model_id : the model bundle's id (the first 12 characters are shown).
    flag_reasons : the scan's flag codes for the image (empty: not flagged; None: not from a scan).
    """

    probability: float
    decision: str
    threshold: float
    model_id: str
    flag_reasons: tuple[str, ...] | None = None


def decision_line(probability: float, threshold: float, decision: str) -> str:
    """The probability against the threshold, rounded alike, to as many digits as tell them apart.

    Examples
    --------
    >>> decision_line(0.19930, 0.19939, "no_tumor")
    'P(tumour) 0.1993 < threshold 0.1994: no_tumor'
    >>> decision_line(0.87312, 0.5, "tumor")
    'P(tumour) 0.873 ≥ threshold 0.500: tumor'
    """
    digits = 3
    while digits < 8 and round(probability, digits) == round(threshold, digits) and probability != threshold:
        digits += 1
    side = "≥" if probability >= threshold else "<"
    return f"P(tumour) {probability:.{digits}f} {side} threshold {threshold:.{digits}f}: {decision}"


def blend_evidence(grey: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Colour the grey image red where weights are positive and blue where negative.

    The opacity of each pixel's colour is its weight's share of the largest absolute weight
    (up to 0.7), so weak evidence stays faint and the anatomy stays visible.

    Parameters
    ----------
    grey : (H, W) image with values in [0, 1].
    weights : (H, W) signed weights.

    Returns
    -------
    float array (H, W, 3) with values in [0, 1].

    Examples
    --------
    >>> rgb = blend_evidence(np.full((1, 2), 0.5), np.array([[1.0, -1.0]]))
    >>> bool(rgb[0, 0, 0] > rgb[0, 0, 2]), bool(rgb[0, 1, 2] > rgb[0, 1, 0])
    (True, True)
    """
    base = np.repeat(np.clip(grey, 0.0, 1.0)[..., np.newaxis], 3, axis=2).astype(np.float64)
    scale = float(np.max(np.abs(weights)))
    if scale <= 0.0:
        return base
    alpha = (_MAX_ALPHA * np.abs(weights) / scale)[..., np.newaxis]
    colour = np.where((weights > 0)[..., np.newaxis], TOWARD_COLOUR, AWAY_COLOUR)
    return base * (1.0 - alpha) + colour * alpha


def strongest_regions(explanation: Explanation, count: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """Masks of the strongest evidence toward and away from tumour.

    For LIME, the ``count`` superpixels with the largest positive (negative) weights (the segment
    outside the brain has weight 0, so it is never one); for a pixel map such as Grad-CAM, the
    pixels above half of its maximum (below half its minimum).

    Returns
    -------
    (toward, away) boolean masks of the explanation's shape.
    """
    weights, segments = explanation.weights, explanation.segments
    if segments is None:
        top, bottom = float(weights.max()), float(weights.min())
        return (weights >= 0.5 * top) & (weights > 0), (weights <= 0.5 * bottom) & (weights < 0)
    labels = np.arange(int(segments.max()) + 1)
    per_segment = np.zeros(labels.size)
    per_segment[segments.ravel()] = weights.ravel()
    order = np.argsort(per_segment, kind="stable")
    toward = [label for label in order[::-1][:count] if per_segment[label] > 0]
    away = [label for label in order[:count] if per_segment[label] < 0]
    return np.isin(segments, toward), np.isin(segments, away)


def render_overlay(image: np.ndarray, explanation: Explanation, caption: OverlayCaption,
                   original: np.ndarray | None = None) -> bytes:
    """Draw the original image, the model input and its explanation; return the PNG bytes.

    Parameters
    ----------
    image : (S, S, 1) or (S, S) model input with values in [0, 1].
    explanation : the explanation of that input.
    caption : the prediction facts for the title.
    original : the decoded image before preprocessing (grey, any size and dtype); None leaves
        its panel out.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    grey = np.asarray(image, dtype=np.float64).reshape(explanation.weights.shape)
    panels = 2 if original is None else 3
    figure = Figure(figsize=(4.0 * panels, 4.8), dpi=_DPI)
    FigureCanvasAgg(figure)
    axes = list(figure.subplots(1, panels))
    figure.subplots_adjust(left=0.02, right=0.98, top=0.80, bottom=0.13, wspace=0.04)
    if original is not None:
        _show_original(axes.pop(0), original)
    left, right = axes
    left.imshow(grey, cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
    left.set_title(f"Model input ({grey.shape[1]} px)", fontsize=10)
    right.imshow(blend_evidence(grey, explanation.weights), interpolation="nearest")
    right.set_title("Evidence", fontsize=10)
    _outline_strongest(right, explanation)
    for panel in figure.axes:
        panel.set_axis_off()
    _add_legend(figure)
    _add_title(figure, caption, explanation.details)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=_DPI, metadata={"Software": None, OVERLAY_MARKER_KEY: explanation.method})
    return buffer.getvalue()


def _show_original(axes: Axes, original: np.ndarray) -> None:
    """The image as decoded, its own grey range stretched to the screen (no crop, no resize)."""
    pixels = np.asarray(original, dtype=np.float64)
    low, high = float(pixels.min()), float(pixels.max())
    axes.imshow(pixels, cmap="gray", vmin=low, vmax=high if high > low else low + 1, interpolation="antialiased")
    axes.set_title(f"Original ({pixels.shape[1]}x{pixels.shape[0]} px)", fontsize=10)


def _outline_strongest(axes: Axes, explanation: Explanation) -> None:
    toward, away = strongest_regions(explanation)
    for mask, colour, style in ((toward, TOWARD_COLOUR, "solid"), (away, AWAY_COLOUR, "dashed")):
        if mask.any() and not mask.all():
            axes.contour(mask.astype(float), levels=[0.5], colors=[colour], linewidths=1.6, linestyles=style)


def _add_legend(figure: Figure) -> None:
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    handles = [
        Patch(color=TOWARD_COLOUR, alpha=_MAX_ALPHA, label="toward tumour"),
        Patch(color=AWAY_COLOUR, alpha=_MAX_ALPHA, label="away from tumour"),
        Line2D([], [], color=TOWARD_COLOUR, linewidth=1.6, label="strongest toward"),
        Line2D([], [], color=AWAY_COLOUR, linewidth=1.6, linestyle="dashed", label="strongest away"),
    ]
    figure.legend(handles=handles, loc="lower center", ncol=4, fontsize=9, frameon=False, bbox_to_anchor=(0.5, 0.035))
    figure.text(0.5, 0.01, "Research and triage aid, not a diagnostic device.", ha="center", fontsize=8, color="0.35")


def _add_title(figure: Figure, caption: OverlayCaption, details: str) -> None:
    figure.suptitle("\n".join(caption_lines(caption, details)), fontsize=11)


def caption_lines(caption: OverlayCaption, details: str) -> list[str]:
    """The lines of an overlay's title: the decision against the threshold, the flags (from a scan), the model.

    Examples
    --------
    >>> caption_lines(OverlayCaption(0.3, "no_tumor", 0.5, "0123456789abcdef", ("near_threshold",)), "LIME")
    ['P(tumour) 0.300 < threshold 0.500: no_tumor', 'flagged: near_threshold', 'model 0123456789ab   LIME']
    """
    lines = [decision_line(caption.probability, caption.threshold, caption.decision),
             f"model {caption.model_id[:12]}   {details}"]
    if caption.flag_reasons is not None:
        lines.insert(1, "flagged: " + ", ".join(caption.flag_reasons) if caption.flag_reasons else "not flagged")
    return lines
