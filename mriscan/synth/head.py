"""The head around the brain: cerebrospinal fluid, skull, scalp and (for coronal/sagittal cuts) neck.

The template is skull-stripped, but real slices show the bright scalp fat, the dark skull tables
with marrow between them, and the neck below the brain. Those layers are drawn here as soft
tissue fractions at the template's 1 mm scale, at distances from a smoothed brain outline, with
thicknesses that vary around the head as they do between and within people.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from mriscan.synth.anatomy import TissueSlice
from mriscan.synth.fields import smooth_field, smoothstep_band

# Margin added around the template cut so the scalp and neck fit (mm = pixels at this stage).
PAD_MM = 28
HEAD_TISSUES: tuple[str, ...] = ("fluid", "bone", "marrow", "muscle", "fat", "skin")


@dataclass(frozen=True)
class HeadSlice:
    """Brain and head tissue fractions on one padded 1 mm canvas.

    Attributes
    ----------
    brain : the template slice, padded by :data:`PAD_MM` (the neck adds more padding below).
    layers : fraction of each of :data:`HEAD_TISSUES` outside the brain.
    head : soft mask of the whole head (brain and layers).
    outline_box : ``(row0, row1, col0, col1)`` of the skull's outer surface, used for framing.
    """

    brain: TissueSlice
    layers: dict[str, np.ndarray]
    head: np.ndarray
    outline_box: tuple[int, int, int, int]


def _pad(tissues: TissueSlice, bottom: int) -> TissueSlice:
    """Pad every map with :data:`PAD_MM` of zeros around and ``bottom`` more rows below.

    The template ends at the medulla; on coronal and sagittal cuts the brainstem is continued
    downward as a spinal cord that narrows over about 3 cm, instead of ending in a straight cut.
    """
    column_keep = _cord_taper(tissues.brain[-1], bottom)

    def pad(array: np.ndarray) -> np.ndarray:
        cord = np.repeat(array[-1:], bottom, axis=0) * column_keep
        return np.pad(np.vstack([array, cord]), ((PAD_MM, PAD_MM), (PAD_MM, PAD_MM)))

    return TissueSlice(t1=pad(tissues.t1), gm=pad(tissues.gm), wm=pad(tissues.wm), csf=pad(tissues.csf),
                       brain=pad(tissues.brain), plane=tissues.plane, index=tissues.index)


def _cord_taper(last_row: np.ndarray, bottom: int) -> np.ndarray:
    """Mask ``(bottom, columns)`` keeping a cord that narrows to 60 % of the brainstem's width."""
    keep = np.zeros((bottom, last_row.size), dtype=np.float32)
    columns = np.flatnonzero(last_row > 0.5)
    if bottom == 0 or columns.size == 0:
        return keep
    centre, half = (columns.min() + columns.max()) / 2.0, (columns.max() - columns.min()) / 2.0
    narrowing = 1.0 - 0.4 * np.clip(np.arange(bottom) / 30.0, 0.0, 1.0)
    distance = np.abs(np.arange(last_row.size) - centre)
    return (distance[None, :] <= half * narrowing[:, None]).astype(np.float32)


def _envelope(brain: np.ndarray) -> np.ndarray:
    """Smooth the brain mask into the inner surface of the skull (fills gaps between lobes)."""
    blurred = cv2.GaussianBlur(brain, (0, 0), 5.0)
    return np.maximum((blurred > 0.25).astype(np.float32), brain)


def _skull_base(envelope: np.ndarray, plane: str) -> np.ndarray:
    """On low axial cuts, the space between separate lobes inside the convex skull (0/1 mask).

    There the real slice shows skull base, orbits and sinuses rather than fluid; the scalp outline
    of an axial slice is convex even where the brain splits into temporal lobes and cerebellum.
    """
    base = np.zeros_like(envelope)
    if plane != "axial":
        return base
    contours, _ = cv2.findContours(envelope.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    hull = cv2.convexHull(np.concatenate(contours))
    cv2.fillPoly(base, [hull], 1.0)
    return np.clip(base - envelope, 0.0, 1.0)


def _neck(envelope: np.ndarray, plane: str, rng: np.random.Generator) -> np.ndarray:
    """Draw the skull base, face and neck below the brain on coronal and sagittal cuts (0/1 mask).

    The outline is a trapezoid that starts almost as wide as the head under the temporal lobes
    (or under the frontal lobe and face, sagittally) and narrows towards the neck.
    """
    neck = np.zeros_like(envelope)
    if plane == "axial":
        return neck
    rows, cols = np.nonzero(envelope)
    left, right = cols.min(), cols.max()
    width = right - left
    if plane == "coronal":
        upper = (left + width * rng.uniform(0.08, 0.15), right - width * rng.uniform(0.08, 0.15))
        lower = (left + width * rng.uniform(0.2, 0.3), right - width * rng.uniform(0.2, 0.3))
    else:
        upper = (left + width * rng.uniform(0.05, 0.15), right - width * rng.uniform(0.0, 0.05))
        lower = (left + width * rng.uniform(0.2, 0.3), left + width * rng.uniform(0.6, 0.75))
    row_width = envelope.sum(axis=1)
    start = int(np.flatnonzero(row_width >= 0.6 * row_width.max()).max() - rng.uniform(5, 15))
    taper = np.clip((np.arange(start, neck.shape[0]) - start) / rng.uniform(50.0, 80.0), 0.0, 1.0)
    column = np.arange(neck.shape[1])
    for offset, fraction in enumerate(taper):
        edge_left = upper[0] + (lower[0] - upper[0]) * fraction
        edge_right = upper[1] + (lower[1] - upper[1]) * fraction
        neck[start + offset] = (column >= edge_left) & (column <= edge_right)
    neck = cv2.GaussianBlur(neck, (0, 0), 4.0)
    return (neck > 0.5).astype(np.float32) * (1.0 - envelope)


def _thickness(rng: np.random.Generator, shape: tuple[int, int], low: float, high: float) -> np.ndarray:
    """Draw a layer thickness map in mm that varies smoothly around the head."""
    base = rng.uniform(low, high)
    return np.clip(base * (1.0 + 0.3 * smooth_field(rng, shape, 30.0)), 0.3 * low, None)


def _layer_bounds(rng: np.random.Generator, shape: tuple[int, int], lateral: np.ndarray) -> list[np.ndarray]:
    """Return the cumulative outer radius of each head layer (fluid, tables, marrow, muscle, fat, skin)."""
    widths = [
        _thickness(rng, shape, 1.0, 3.0),  # subarachnoid fluid
        _thickness(rng, shape, 0.8, 1.6),  # inner table
        _thickness(rng, shape, 1.0, 3.5),  # diploe (marrow)
        _thickness(rng, shape, 0.8, 1.4),  # outer table
        rng.uniform(2.0, 7.0) * lateral,  # temporalis muscle, thick at the sides
        _thickness(rng, shape, 2.0, 6.0),  # scalp fat
        _thickness(rng, shape, 1.0, 2.0),  # skin
    ]
    bounds, total = [], np.zeros(shape, dtype=np.float32)
    for width in widths:
        total = total + width
        bounds.append(total)
    return bounds


def _lateral_weight(envelope: np.ndarray, plane: str) -> np.ndarray:
    """Weight near 1 at the left and right sides of the head, 0 at front, back and top."""
    rows, cols = np.nonzero(envelope)
    centre, half_width = (cols.min() + cols.max()) / 2, (cols.max() - cols.min()) / 2
    column = (np.arange(envelope.shape[1], dtype=np.float32) - centre) / half_width
    weight = np.clip(np.abs(column), 0, 1) ** 4
    if plane == "sagittal":
        weight = np.zeros_like(weight)
    return np.broadcast_to(weight, envelope.shape).astype(np.float32)


def _distance_outside(mask: np.ndarray) -> np.ndarray:
    """Signed distance in pixels from the outline of ``mask``: positive outside, negative inside."""
    inside = mask >= 0.5
    outside = cv2.distanceTransform((~inside).astype(np.uint8), cv2.DIST_L2, 5)
    return outside - cv2.distanceTransform(inside.astype(np.uint8), cv2.DIST_L2, 5)


def _skull_layers(distance: np.ndarray, bounds: list[np.ndarray]) -> dict[str, np.ndarray]:
    """Turn the cumulative layer radii into soft fractions of each head tissue."""
    names = ("fluid", "bone", "marrow", "bone", "muscle", "fat", "skin")
    layers = {name: np.zeros_like(distance) for name in HEAD_TISSUES}
    inner = np.zeros_like(distance)
    for name, outer in zip(names, bounds, strict=True):
        layers[name] += smoothstep_band(distance, inner, outer)
        inner = outer
    return layers


def _add_neck(layers: dict[str, np.ndarray], neck: np.ndarray, envelope: np.ndarray,
              distance: np.ndarray, rng: np.random.Generator) -> None:
    """Fill the neck with muscle under a band of skull base, and drop skull layers beside it."""
    from_brain = _distance_outside(envelope)
    beside_neck = (from_brain > distance + 2.0).astype(np.float32)
    for name in ("fluid", "bone", "marrow"):
        layers["muscle"] += layers[name] * beside_neck
        layers[name] *= 1.0 - beside_neck
    base = smoothstep_band(from_brain, 0.5, rng.uniform(3.0, 7.0)) * neck
    layers["bone"] += 0.5 * base
    layers["marrow"] += 0.5 * base
    # Fat planes between the neck muscles, which run up and down: thin threads along the zero
    # crossings of a smooth field stretched vertically.
    rows, columns = neck.shape
    field = cv2.resize(smooth_field(rng, (rows // 4 + 1, columns), 10.0), (columns, rows))
    streaks = 0.4 * np.exp(-((field / 0.08) ** 2))
    layers["muscle"] += neck * (1.0 - base) * (1.0 - streaks)
    layers["fat"] += neck * (1.0 - base) * streaks


def _fill_skull_base(layers: dict[str, np.ndarray], base: np.ndarray, envelope: np.ndarray,
                     rng: np.random.Generator) -> None:
    """Fill the skull base with a thin fluid lining, then a patchwork of bone, marrow and muscle."""
    if not base.any():
        return
    lining = smoothstep_band(_distance_outside(envelope), 0.0, rng.uniform(1.0, 2.5)) * base
    rest = base - lining
    pattern = smooth_field(rng, base.shape, 5.0)
    bone = np.clip(-pattern - 0.2, 0.0, 1.0)
    fat = np.clip(pattern - 1.0, 0.0, 1.0)
    layers["fluid"] += lining
    layers["bone"] += rest * bone
    layers["fat"] += rest * fat
    layers["marrow"] += rest * (1.0 - bone - fat) * 0.4
    layers["muscle"] += rest * (1.0 - bone - fat) * 0.6


def build_head(tissues: TissueSlice, rng: np.random.Generator) -> HeadSlice:
    """Draw skull, scalp and neck around a template slice.

    Parameters
    ----------
    tissues : a slice from :func:`mriscan.synth.anatomy.cut_slice`.
    rng : source of the layer thicknesses and neck shape.

    Returns
    -------
    The padded :class:`HeadSlice`.
    """
    neck_room = 0 if tissues.plane == "axial" else 70
    padded = _pad(tissues, bottom=neck_room)
    envelope = _envelope(padded.brain)
    neck = _neck(envelope, tissues.plane, rng)
    base = _skull_base(envelope, tissues.plane)
    distance = _distance_outside(np.maximum(np.maximum(envelope, neck), base))
    bounds = _layer_bounds(rng, envelope.shape, _lateral_weight(envelope, tissues.plane))
    layers = _skull_layers(distance, bounds)
    layers["fluid"] += envelope - padded.brain
    if tissues.plane != "axial":
        _add_neck(layers, neck, envelope, distance, rng)
    _fill_skull_base(layers, base, envelope, rng)
    head = np.clip(padded.brain + sum(layers.values()), 0.0, 1.0)
    rows, cols = np.nonzero(envelope[:PAD_MM + tissues.brain.shape[0]])
    margin = int(round(float(np.mean(bounds[-1]))))
    box = (rows.min() - margin, rows.max() + margin, cols.min() - margin, cols.max() + margin)
    return HeadSlice(brain=padded, layers=layers, head=head, outline_box=box)
