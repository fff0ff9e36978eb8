"""One example, end to end: a healthy slice and, on request, its twin with a lesion.

Every random choice comes from the example's own seed, split into independent streams for
anatomy, framing, lesion and scanner. The healthy and the lesioned image share all streams
but the lesion's, so a pair differs only where the lesion was drawn, and an image is the same
whichever worker makes it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mriscan.synth.anatomy import TemplateVolumes, cut_slice, open_sulci
from mriscan.synth.contrast import render_contrast
from mriscan.synth.head import build_head
from mriscan.synth.healthy import estimate_brain_mask
from mriscan.synth.lesion import MASS_LABEL, draw_lesion
from mriscan.synth.scanner import apply_acquisition, apply_framing, draw_acquisition, random_framing


@dataclass(frozen=True)
class RenderedSlice:
    """A healthy uint8 slice and, if asked for, its lesioned twin and the lesion's mass mask.

    Attributes
    ----------
    healthy : the slice without a lesion.
    lesioned : the same slice with a lesion, or None.
    mask : uint8 mask of the lesion's mass (255 inside, 0 elsewhere), or None.
    """

    healthy: np.ndarray
    lesioned: np.ndarray | None = None
    mask: np.ndarray | None = None


def _streams(seed: int, count: int) -> list[np.random.Generator]:
    """Split one example's seed into ``count`` independent generators."""
    return [np.random.default_rng(child) for child in np.random.SeedSequence(seed).spawn(count)]


def render_template_slice(volumes: TemplateVolumes, plane: str, index: int, contrast: str, seed: int,
                          size_range: tuple[int, int], with_lesion: bool) -> RenderedSlice:
    """Render one template slice as a scan, optionally with a lesion twin.

    Parameters
    ----------
    volumes : the MNI152 template.
    plane, index : which slice (see :func:`mriscan.synth.anatomy.slice_positions`).
    contrast : one of ``CONTRASTS``.
    seed : the example's seed.
    size_range : smallest and largest output side in pixels.
    with_lesion : also draw the lesioned twin and its mask.

    Returns
    -------
    The :class:`RenderedSlice`.
    """
    anatomy_rng, framing_rng, lesion_rng, scanner_rng = _streams(seed, 4)
    head = build_head(open_sulci(cut_slice(volumes, plane, index), anatomy_rng.uniform(0.5, 1.5)), anatomy_rng)
    framing = random_framing(head.outline_box, framing_rng, size_range)
    healthy = apply_framing(render_contrast(head, contrast, anatomy_rng), framing)
    acquisition = draw_acquisition(healthy, apply_framing(head.head, framing, smooth=False), scanner_rng)
    if not with_lesion:
        return RenderedSlice(healthy=apply_acquisition(healthy, acquisition))
    brain = apply_framing(head.brain.brain, framing, smooth=False)
    white_matter = apply_framing(head.brain.wm, framing, smooth=False)
    inserted = draw_lesion(healthy, brain, lesion_rng, contrast, white_matter=white_matter)
    return RenderedSlice(healthy=apply_acquisition(healthy, acquisition),
                         lesioned=apply_acquisition(inserted.image, acquisition),
                         mask=np.where(inserted.labels == MASS_LABEL, 255, 0).astype(np.uint8))


def render_on_healthy(source: np.ndarray, contrast: str, seed: int) -> RenderedSlice:
    """Draw a lesion into a real healthy uint8 slice (left otherwise untouched).

    Parameters
    ----------
    source : the decoded grey slice.
    contrast : the contrast the lesion is drawn in (the slice's own sequence, if known).
    seed : the example's seed.

    Returns
    -------
    The :class:`RenderedSlice` (``healthy`` is ``source`` itself).
    """
    (lesion_rng,) = _streams(seed, 1)
    inserted = draw_lesion(source, estimate_brain_mask(source), lesion_rng, contrast)
    lesioned = np.clip(np.round(inserted.image), 0, 255).astype(np.uint8)
    return RenderedSlice(healthy=source, lesioned=lesioned,
                         mask=np.where(inserted.labels == MASS_LABEL, 255, 0).astype(np.uint8))
