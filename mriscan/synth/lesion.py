"""Tumour-like lesions drawn into a slice where we choose, with a mask of exactly where they are.

A lesion is a mass with an irregular outline (a perturbed ellipse with a rough edge) and its own
texture, optionally a necrotic core inside an enhancing rim, surrounded by vasogenic oedema, and
pushing the nearby tissue outward (mass effect, a radial warp applied with ``cv2.remap``). Four
kinds cover the common looks: necrotic high-grade glioma (ring enhancement, large oedema), solid
low-grade glioma (no enhancement, little oedema), extra-axial meningioma (at the brain's edge,
homogeneous enhancement) and small metastasis (ring or solid, oedema out of proportion).

Intensities are set from quantiles of the slice's own brain intensities, so the same code works
on rendered template slices and on real healthy slices of unknown scaling: e.g. on T2 the mass
sits at the bright end of the brain's range, on T1 at the dark end, and on T1ce the rim
is brighter than anything else in the brain.

Mask labels: :data:`MASS_LABEL` marks the mass (solid tumour, rim and necrotic core);
:data:`OEDEMA_LABEL` marks oedema outside the mass. The dataset's mask files hold the mass only.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from mriscan.errors import SynthError
from mriscan.synth.contrast import check_contrast
from mriscan.synth.fields import smooth_field

MASS_LABEL = 1
OEDEMA_LABEL = 2
LESION_KINDS: tuple[str, ...] = ("necrotic", "solid", "extra_axial", "metastasis")
_KIND_WEIGHTS = (0.35, 0.25, 0.2, 0.2)
MIN_BRAIN_PIXELS = 400
_MIN_MASS_PIXELS = 12
# Lesion radius as a fraction of the brain's equivalent radius (log-uniform between the bounds).
_RADIUS = {"necrotic": (0.15, 0.55), "solid": (0.12, 0.5), "extra_axial": (0.12, 0.3),
           "metastasis": (0.06, 0.15)}
# Oedema reach as a multiple of the mass radius (1 means no oedema).
_OEDEMA_REACH = {"necrotic": (1.5, 2.6), "solid": (1.0, 1.3), "extra_axial": (1.0, 1.6),
                 "metastasis": (2.0, 3.4)}
# Necrotic core radius as a fraction of the mass radius (0 means a solid mass).
_CORE = {"necrotic": (0.35, 0.7), "solid": (0.0, 0.0), "extra_axial": (0.0, 0.0), "metastasis": (0.0, 0.55)}
# Component intensity: (lowest quantile, highest quantile, lowest gain, highest gain) of brain pixels.
Level = tuple[float, float, float, float]
_LEVELS: dict[str, dict[str, Level]] = {
    "t1": {"solid": (0.10, 0.35, 0.9, 1.0), "rim": (0.30, 0.60, 1.0, 1.0),
           "core": (0.01, 0.05, 0.7, 1.0), "oedema": (0.20, 0.40, 0.9, 1.0)},
    "t1ce": {"solid": (0.97, 1.0, 1.0, 1.25), "rim": (0.99, 1.0, 1.05, 1.35),
             "core": (0.01, 0.05, 0.7, 1.0), "oedema": (0.20, 0.40, 0.9, 1.0)},
    "t2": {"solid": (0.92, 0.99, 1.0, 1.15), "rim": (0.40, 0.70, 1.0, 1.0),
           "core": (0.98, 1.0, 1.05, 1.2), "oedema": (0.90, 0.98, 1.0, 1.1)},
    "flair": {"solid": (0.92, 0.99, 1.05, 1.2), "rim": (0.70, 0.95, 1.0, 1.0),
              "core": (0.20, 0.60, 1.0, 1.0), "oedema": (0.90, 0.99, 1.0, 1.2)},
}
# Meningiomas are near grey matter on T1/T2/FLAIR and enhance strongly and evenly.
# Smallest step from the surrounding tissue, as a fraction of the brain's 5th-95th percentile range,
# so that every positive image visibly holds its lesion.
_MIN_STEP = {"solid": 0.3, "core": 0.3, "oedema": 0.15}
_EXTRA_AXIAL_SOLID: dict[str, Level] = {"t1": (0.30, 0.55, 1.0, 1.0), "t1ce": (0.99, 1.0, 1.1, 1.35),
                                        "t2": (0.55, 0.85, 1.0, 1.0), "flair": (0.60, 0.90, 1.0, 1.0)}


@dataclass(frozen=True)
class InsertedLesion:
    """A slice with a lesion drawn in, and where it is.

    Attributes
    ----------
    image : float32 image with the lesion.
    labels : uint8 map: 0 elsewhere, :data:`MASS_LABEL` on the mass, :data:`OEDEMA_LABEL` on oedema.
    changed : bool map of every pixel the insertion may have altered (mass, oedema, mass effect).
    """

    image: np.ndarray
    labels: np.ndarray
    changed: np.ndarray


@dataclass(frozen=True)
class _Layout:
    """Soft maps of one lesion's parts over its region of interest."""

    mass: np.ndarray
    core: np.ndarray
    oedema: np.ndarray
    radius: float


def _log_uniform(rng: np.random.Generator, low: float, high: float) -> float:
    """Draw from a log-uniform distribution (as many small lesions as large ones per octave)."""
    return float(np.exp(rng.uniform(np.log(low), np.log(high))))


def _choose_centre(depth: np.ndarray, radius: float, kind: str, rng: np.random.Generator) -> tuple[int, int]:
    """Pick the lesion centre: deep enough to keep an intra-axial mass inside the brain, or near
    the brain's edge for an extra-axial one."""
    if kind == "extra_axial":
        candidates = (depth >= 0.3 * radius) & (depth <= 0.8 * radius)
    else:
        candidates = depth >= min(1.1 * radius, 0.7 * float(depth.max()))
    rows, columns = np.nonzero(candidates)
    if rows.size == 0:
        rows, columns = np.nonzero(depth >= 0.7 * float(depth.max()))
    pick = int(rng.integers(rows.size))
    return int(rows[pick]), int(columns[pick])


def _region(centre: tuple[int, int], reach: float, shape: tuple[int, ...]) -> tuple[slice, slice]:
    """Return the slices of the square of half-side ``reach`` around ``centre``, cut to the image."""
    row, column = centre
    half = int(np.ceil(reach)) + 2
    return (slice(max(row - half, 0), min(row + half + 1, shape[0])),
            slice(max(column - half, 0), min(column + half + 1, shape[1])))


def _polar(shape: tuple[int, int], centre: tuple[float, float]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return the row and column offsets from ``centre`` and the distance to it, for every pixel."""
    rows, columns = np.indices(shape, dtype=np.float32)
    d_row, d_column = rows - centre[0], columns - centre[1]
    return d_row, d_column, np.hypot(d_row, d_column)


def _outline(rng: np.random.Generator, shape: tuple[int, int], centre: tuple[float, float],
             radius: float, roughness: float) -> np.ndarray:
    """Normalised radius of an irregular blob: below 1 inside it.

    The blob is an ellipse of random axes and orientation whose radius is modulated by a few
    angular harmonics, with a rough edge from a smooth random field.
    """
    d_row, d_column, _ = _polar(shape, centre)
    angle = rng.uniform(0, np.pi)
    along = d_column * np.cos(angle) + d_row * np.sin(angle)
    across = (-d_column * np.sin(angle) + d_row * np.cos(angle)) / rng.uniform(0.65, 1.0)
    theta = np.arctan2(across, along)
    boundary = np.ones(shape, dtype=np.float32)
    for harmonic in range(2, 6):
        boundary += rng.uniform(0.0, 0.18) / np.sqrt(harmonic) * np.cos(harmonic * theta + rng.uniform(0, 2 * np.pi))
    edge_noise = roughness * smooth_field(rng, shape, max(radius / 3.0, 2.0))
    return np.hypot(along, across) / (radius * np.maximum(boundary, 0.4)) + edge_noise


def _soft(normalised_radius: np.ndarray, radius: float, edge_px: float = 1.2) -> np.ndarray:
    """Turn a normalised radius into a soft membership with an edge about ``edge_px`` wide."""
    return np.clip((1.0 - normalised_radius) * radius / edge_px + 0.5, 0.0, 1.0).astype(np.float32)


def _layout(rng: np.random.Generator, brain: np.ndarray, centre: tuple[float, float], radius: float,
            kind: str, white_matter: np.ndarray | None) -> _Layout:
    """Draw the mass, its necrotic core and the surrounding oedema, all kept inside the brain."""
    shape = brain.shape
    # Low-grade gliomas infiltrate: their edge fades over a few pixels instead of ending sharply.
    edge = rng.uniform(1.2, max(1.5, 0.2 * radius)) if kind == "solid" else 1.2
    mass = _soft(_outline(rng, shape, centre, radius, 0.08), radius, edge_px=edge) * brain
    core_fraction = rng.uniform(*_CORE[kind])
    core = np.zeros(shape, dtype=np.float32)
    if core_fraction > 0.05:
        core_radius = radius * core_fraction
        core = _soft(_outline(rng, shape, centre, core_radius, 0.1), core_radius) * mass
    reach = rng.uniform(*_OEDEMA_REACH[kind])
    oedema = np.zeros(shape, dtype=np.float32)
    if reach > 1.1:
        oedema_radius = radius * reach
        # A wide ramp: oedema fades out gradually rather than ending at a line.
        oedema = _soft(_outline(rng, shape, centre, oedema_radius, 0.15), oedema_radius,
                       edge_px=0.5 * oedema_radius)
        if white_matter is not None:
            # Vasogenic oedema spreads along white matter and spares the cortex.
            oedema *= 0.3 + 0.7 * np.clip(white_matter, 0.0, 1.0)
        oedema = oedema * brain * (1.0 - mass)
    return _Layout(mass=mass, core=core, oedema=oedema, radius=radius)


def _mass_effect(maps: list[np.ndarray], depth: np.ndarray, centre: tuple[float, float], radius: float,
                 strength: float) -> tuple[list[np.ndarray], np.ndarray]:
    """Push tissue away from ``centre`` with a radial warp that fades to exactly zero.

    Each pixel samples from a point ``k`` times closer to the centre, with ``k`` falling off as a
    Gaussian of the distance, cut to zero at three radii and at the brain's edge (so the skull
    never moves). Returns the warped maps and the mask of pixels that moved.
    """
    d_row, d_column, distance = _polar(depth.shape, centre)
    taper = np.clip((3.0 * radius - distance) / (0.5 * radius), 0.0, 1.0)
    inside = np.clip(depth / max(0.3 * radius, 1.0), 0.0, 1.0)
    pull = strength * np.exp(-((distance / (1.3 * radius)) ** 2)) * taper * inside
    rows, columns = np.indices(depth.shape, dtype=np.float32)
    map_column = (columns - pull * d_column).astype(np.float32)
    map_row = (rows - pull * d_row).astype(np.float32)
    warped = [cv2.remap(m, map_column, map_row, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
              for m in maps]
    return warped, pull > 0


def _brain_quantile(values: np.ndarray, rng: np.random.Generator, level: Level) -> float:
    """Draw an intensity between two quantiles of the brain's (sorted) intensities, times a gain."""
    low_q, high_q, low_gain, high_gain = level
    position = rng.uniform(low_q, high_q) * (values.size - 1)
    return float(values[int(round(position))] * rng.uniform(low_gain, high_gain))


def _levels(rng: np.random.Generator, brain_values: np.ndarray, contrast: str, kind: str) -> dict[str, float]:
    """Draw the intensity of each lesion part for this contrast and lesion kind."""
    table = dict(_LEVELS[contrast])
    if kind == "extra_axial":
        table["solid"] = _EXTRA_AXIAL_SOLID[contrast]
    elif kind == "solid" and contrast == "t1ce":
        table["solid"] = _LEVELS["t1"]["solid"]  # low-grade gliomas rarely enhance
    if _CORE[kind][1] > 0:
        table["solid"] = table["rim"]  # a ring lesion's wall is its solid part
    return {part: _brain_quantile(brain_values, rng, level) for part, level in table.items()}


def _conspicuous(levels: dict[str, float], surround: float, spread: float, ring: bool) -> dict[str, float]:
    """Move each part's level at least a minimum step away from the tissue it replaces.

    The direction (brighter or darker) is the one the drawn level already has; a ring lesion's
    wall may stay close to its surroundings, since its core makes it visible.
    """
    adjusted = dict(levels)
    for part, step in _MIN_STEP.items():
        if part == "solid" and ring:
            continue
        direction = 1.0 if levels[part] >= surround else -1.0
        target = surround + direction * step * spread
        adjusted[part] = max(levels[part], target) if direction > 0 else min(levels[part], target)
    return adjusted


def _noise_sigma(image: np.ndarray, brain: np.ndarray) -> float:
    """Estimate the image noise in the brain from the median absolute Laplacian (robust to edges)."""
    laplacian = cv2.Laplacian(image, cv2.CV_32F)[brain]
    # The Laplacian of white noise of std s has std s * sqrt(20); MAD to std factor 1.4826.
    return float(np.median(np.abs(laplacian))) * 1.4826 / np.sqrt(20.0) if laplacian.size else 0.0


def _texture(rng: np.random.Generator, shape: tuple[int, int], radius: float) -> np.ndarray:
    """Multiplicative tumour texture: patches a fraction of the lesion wide, plus fine grain."""
    patches = rng.uniform(0.04, 0.15) * smooth_field(rng, shape, max(radius / 2.5, 3.0))
    grain = rng.uniform(0.01, 0.05) * smooth_field(rng, shape, rng.uniform(1.5, 3.0))
    return 1.0 + patches + grain


def _composite(image: np.ndarray, layout: _Layout, levels: dict[str, float], rng: np.random.Generator,
               noise_sigma: float) -> np.ndarray:
    """Scale the tissue under the oedema (so its pattern shows through), then paint the textured mass."""
    zone = image[layout.oedema > 0.25]
    if zone.size:
        gain = levels["oedema"] / max(float(np.median(zone)), 1e-6) - 1.0
        image = image * (1.0 + layout.oedema * rng.uniform(0.6, 1.0) * gain)
    tissue = (layout.core * levels["core"] * _texture(rng, image.shape, layout.radius)
              + (1.0 - layout.core) * levels["solid"] * _texture(rng, image.shape, layout.radius))
    tissue = tissue + noise_sigma * rng.standard_normal(image.shape).astype(np.float32)
    return (image * (1.0 - layout.mass) + tissue * layout.mass).astype(np.float32)


def _brain_values(image: np.ndarray, brain: np.ndarray) -> np.ndarray:
    """Sorted brain intensities, subsampled to at most about 20,000 values for speed."""
    values = image[brain]
    step = max(1, values.size // 20000)
    return np.sort(values[::step])


def draw_lesion(image: np.ndarray, brain_mask: np.ndarray, rng: np.random.Generator, contrast: str,
                white_matter: np.ndarray | None = None) -> InsertedLesion:
    """Draw one lesion into a slice and report exactly where it is and what changed.

    Parameters
    ----------
    image : 2-D grey slice (any numeric type; intensities are used as they are).
    brain_mask : nonzero inside the brain; the lesion stays inside it.
    rng : source of the lesion's kind, size, place, shape, texture and intensities.
    contrast : one of ``CONTRASTS``; sets how the lesion's parts look.
    white_matter : optional white-matter fraction map, which oedema follows.

    Returns
    -------
    The :class:`InsertedLesion`.

    Raises
    ------
    SynthError
        If the brain mask is too small to hold a lesion.
    """
    check_contrast(contrast)
    brain = np.asarray(brain_mask) > 0.5
    if brain.sum() < MIN_BRAIN_PIXELS:
        raise SynthError(f"the brain mask covers {int(brain.sum())} pixels; a lesion needs at least "
                         f"{MIN_BRAIN_PIXELS}. Use a larger image or one where the brain is visible.")
    image = np.asarray(image, dtype=np.float32)
    depth = _depth(brain)
    # A rough edge can, rarely, leave a very small lesion almost empty: draw again from the same stream.
    for _attempt in range(5):
        inserted = _draw_at(image, brain, depth, _place(brain, depth, rng), rng, contrast, white_matter)
        if np.count_nonzero(inserted.labels == MASS_LABEL) >= _MIN_MASS_PIXELS:
            return inserted
    raise SynthError("could not place a visible lesion in this brain mask; check that the mask covers the brain")


@dataclass(frozen=True)
class LesionPlacement:
    """Where a lesion goes in a slice: its kind, centre (row, column) and mass radius in pixels."""

    kind: str
    centre: tuple[int, int]
    radius: float


def place_lesion(brain_mask: np.ndarray, rng: np.random.Generator) -> LesionPlacement:
    """Choose a lesion's kind, size and centre in a brain, as :func:`draw_lesion` does.

    Examples
    --------
    >>> brain = np.zeros((128, 128), dtype=np.uint8)
    >>> brain[20:108, 20:108] = 1
    >>> placement = place_lesion(brain, np.random.default_rng(0))
    >>> placement.kind in LESION_KINDS, bool(brain[placement.centre]), bool(placement.radius >= 3)
    (True, True, True)
    """
    brain = np.asarray(brain_mask) > 0.5
    return _place(brain, _depth(brain), rng)


def draw_lesion_at(image: np.ndarray, brain_mask: np.ndarray, placement: LesionPlacement, rng: np.random.Generator,
                   contrast: str) -> InsertedLesion:
    """Draw a lesion of the given kind, centre and radius into a slice (the rest drawn from ``rng``).

    The same placement and the same ``rng`` seed on neighbouring slices give one lesion's sections
    (outline, texture and intensities drawn alike); the mass may come out empty where the centre
    is outside this slice's brain.
    """
    check_contrast(contrast)
    brain = np.asarray(brain_mask) > 0.5
    return _draw_at(np.asarray(image, dtype=np.float32), brain, _depth(brain), placement, rng, contrast, None)


def _depth(brain: np.ndarray) -> np.ndarray:
    """Distance of every brain pixel to the brain's edge, in pixels."""
    return cv2.distanceTransform(brain.astype(np.uint8), cv2.DIST_L2, 5)


def _place(brain: np.ndarray, depth: np.ndarray, rng: np.random.Generator) -> LesionPlacement:
    kind = str(rng.choice(LESION_KINDS, p=_KIND_WEIGHTS))
    radius = max(_log_uniform(rng, *_RADIUS[kind]) * np.sqrt(brain.sum() / np.pi), 3.0)
    return LesionPlacement(kind, _choose_centre(depth, radius, kind, rng), radius)


def _draw_at(image: np.ndarray, brain: np.ndarray, depth: np.ndarray, placement: LesionPlacement,
             rng: np.random.Generator, contrast: str, white_matter: np.ndarray | None) -> InsertedLesion:
    """Draw one lesion where ``placement`` says (see :func:`draw_lesion`); the mass may come out nearly empty."""
    kind, centre, radius = placement.kind, placement.centre, placement.radius
    region = _region(centre, 3.5 * radius, image.shape)
    local_centre = (float(centre[0] - region[0].start), float(centre[1] - region[1].start))
    maps = [image[region]] + ([] if white_matter is None else [np.asarray(white_matter, np.float32)[region]])
    warped, moved = _mass_effect(maps, depth[region], local_centre, radius, rng.uniform(0.05, 0.3))
    layout = _layout(rng, brain[region].astype(np.float32), local_centre, radius, kind,
                     warped[1] if white_matter is not None else None)
    levels = _lesion_levels(rng, image, brain, warped[0], layout, contrast, kind)
    painted = _composite(warped[0], layout, levels, rng, _noise_sigma(image, brain))
    return _assemble(image, region, painted, layout, moved)


def _lesion_levels(rng: np.random.Generator, image: np.ndarray, brain: np.ndarray, local: np.ndarray,
                   layout: _Layout, contrast: str, kind: str) -> dict[str, float]:
    """Draw the lesion's intensities from the brain's, then make sure they stand out locally."""
    values = _brain_values(image, brain)
    footprint = local[layout.mass > 0.5]
    surround = float(np.median(footprint)) if footprint.size else float(np.median(values))
    spread = float(values[int(0.95 * (values.size - 1))] - values[int(0.05 * (values.size - 1))])
    levels = _levels(rng, values, contrast, kind)
    return _conspicuous(levels, surround, spread, ring=_CORE[kind][1] > 0)


def _assemble(image: np.ndarray, region: tuple[slice, slice], painted: np.ndarray, layout: _Layout,
              moved: np.ndarray) -> InsertedLesion:
    """Put the painted region back into the full image and build the label and change maps."""
    result = image.copy()
    result[region] = painted
    labels = np.zeros(image.shape, dtype=np.uint8)
    labels[region][layout.oedema > 0.25] = OEDEMA_LABEL
    labels[region][layout.mass > 0.5] = MASS_LABEL
    changed = np.zeros(image.shape, dtype=bool)
    changed[region] = moved | (layout.mass > 0) | (layout.oedema > 0)
    return InsertedLesion(image=result, labels=labels, changed=changed)


def insert_lesion(slice_image: np.ndarray, brain_mask: np.ndarray, rng: np.random.Generator,
                  contrast: str) -> tuple[np.ndarray, np.ndarray]:
    """Insert one tumour-like lesion inside the brain of a slice.

    Parameters
    ----------
    slice_image : 2-D grey slice; uint8 input gives uint8 output, float input float32 output.
    brain_mask : nonzero inside the brain.
    rng : the generator every random choice comes from.
    contrast : one of ``CONTRASTS``, the sequence the slice is (or is taken to be).

    Returns
    -------
    image : the slice with the lesion.
    lesion_mask : uint8 labels, :data:`MASS_LABEL` (1) on the mass and :data:`OEDEMA_LABEL` (2)
        on the oedema around it, 0 elsewhere; every labelled pixel lies inside ``brain_mask``.

    Examples
    --------
    >>> slice_image = np.full((128, 128), 100, dtype=np.uint8)
    >>> brain = np.zeros((128, 128), dtype=np.uint8)
    >>> brain[20:108, 20:108] = 1
    >>> image, mask = insert_lesion(slice_image, brain, np.random.default_rng(0), "t2")
    >>> image.dtype.name, bool((mask == MASS_LABEL).any()), bool(mask[brain == 0].any())
    ('uint8', True, False)
    """
    inserted = draw_lesion(slice_image, brain_mask, rng, contrast)
    image = inserted.image
    if np.issubdtype(np.asarray(slice_image).dtype, np.integer):
        limits = np.iinfo(np.asarray(slice_image).dtype)
        image = np.clip(np.round(image), limits.min, limits.max).astype(np.asarray(slice_image).dtype)
    return image, inserted.labels
