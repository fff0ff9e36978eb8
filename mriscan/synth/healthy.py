"""Real healthy slices as a canvas for lesions: find them, read them, estimate their brain.

The sequence of such a slice is unknown, so the caller says which contrast its lesions should be
drawn in. The brain is estimated without any model: the head is the largest bright region after
smoothing (Otsu threshold, holes filled), and the brain is what remains after peeling off a rim
about as thick as skull and scalp.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from mriscan.data.masks import fill_holes, largest_component
from mriscan.errors import InputFolderError, SynthError
from mriscan.io.discover import find_candidates, relative_posix
from mriscan.synth.lesion import MIN_BRAIN_PIXELS

# Skull plus scalp thickness as a fraction of the head's equivalent radius (about 12 of 85 mm),
# generous so that lesions drawn near the estimated brain's edge stay off the skull.
_SCALP_FRACTION = 0.15


def read_grey(path: Path) -> np.ndarray | None:
    """Decode an image file into 8-bit grey pixels, or None if OpenCV cannot decode it."""
    return cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)


def _usable(path: Path) -> bool:
    """Tell whether OpenCV decodes the file and a brain large enough for a lesion is found in it."""
    image = read_grey(path)
    return image is not None and int(estimate_brain_mask(image).sum()) >= MIN_BRAIN_PIXELS


def list_healthy_sources(folder: Path) -> list[tuple[str, Path]]:
    """List the usable images under ``folder`` as ``(name relative to folder, path)``, sorted.

    Files OpenCV cannot decode (DICOM, damaged files) and images without a visible head are left out.

    Raises
    ------
    SynthError
        If the folder does not exist or holds no usable image.
    """
    try:
        candidates = find_candidates(Path(folder))
    except InputFolderError as error:
        raise SynthError(f"--from-healthy folder: {error}") from error
    sources = [(relative_posix(path, Path(folder)), path) for path in candidates if _usable(path)]
    if not sources:
        raise SynthError(f"no decodable PNG/JPEG/BMP/TIFF brain slice found under {folder}; "
                         "point --from-healthy at a folder of healthy brain slices")
    return sources


def estimate_brain_mask(image: np.ndarray) -> np.ndarray:
    """Estimate the brain of a grey slice: largest bright region, holes filled, scalp peeled off.

    Parameters
    ----------
    image : 2-D uint8 grey slice.

    Returns
    -------
    uint8 mask, 1 inside the estimated brain (all zeros if no head is found).

    Examples
    --------
    >>> head = np.zeros((100, 100), dtype=np.uint8)
    >>> head = cv2.circle(head, (50, 50), 40, 200, -1)
    >>> mask = estimate_brain_mask(head)
    >>> bool(mask[50, 50]), bool(mask[50, 88]), bool(mask[5, 5])
    (True, False, False)
    """
    smoothed = cv2.GaussianBlur(image, (0, 0), max(image.shape) / 200.0)
    threshold, _ = cv2.threshold(smoothed, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    head = fill_holes(largest_component((smoothed > 0.5 * threshold).astype(np.uint8)))
    peel = _SCALP_FRACTION * np.sqrt(head.sum() / np.pi)
    # Eroding by a disc of radius ``peel`` is thresholding the distance to the outside.
    depth = cv2.distanceTransform(head, cv2.DIST_L2, 5)
    return largest_component((depth > peel).astype(np.uint8))
