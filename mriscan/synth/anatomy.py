"""Healthy anatomy: the MNI152 2009 template shipped inside nilearn's wheel, cut into 2-D slices.

The template is an average of 152 adult brains at 1 mm (Fonov et al., NeuroImage 2011), stored
skull-stripped with grey- and white-matter probability maps. Cerebrospinal fluid is what the
brain mask holds beyond grey and white matter. The files are read with nibabel straight from the
installed package: nothing is downloaded and nilearn itself is never imported.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from mriscan.errors import SynthError

PLANES: tuple[str, ...] = ("axial", "coronal", "sagittal")

TEMPLATE_FILES: dict[str, str] = {
    "t1": "mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz",
    "gm": "mni_icbm152_gm_tal_nlin_sym_09a_converted.nii.gz",
    "wm": "mni_icbm152_wm_tal_nlin_sym_09a_converted.nii.gz",
}
MISSING_EXTRA = "synthetic template slices need the optional extra: pip install 'mriscan[synth]'"
# Volume axis cut by each plane (the arrays are indexed x = left-right, y = back-front, z = up-down).
_PLANE_AXIS = {"sagittal": 0, "coronal": 1, "axial": 2}
# The midsagittal plane cuts the interhemispheric fissure, which the average brain blurs into fluid.
_MIDLINE_X = 98
_MIDLINE_GAP = 3
# Mean template T1 value where the white-matter probability exceeds 0.9 (measured on the file).
_T1_WHITE_MATTER = 222.0


@dataclass(frozen=True)
class TemplateVolumes:
    """The template's three uint8 volumes on one 1 mm grid (x, y, z)."""

    t1: np.ndarray
    gm: np.ndarray
    wm: np.ndarray


@dataclass(frozen=True)
class TissueSlice:
    """One 2-D cut of the template in display orientation (row 0 at the top of the head or front).

    Attributes
    ----------
    t1 : template T1 intensity scaled so that white matter is about 1.
    gm, wm, csf : tissue fractions in [0, 1] inside the brain.
    brain : brain mask as float32 0/1.
    plane, index : where the slice was cut (index along the plane's volume axis).
    """

    t1: np.ndarray
    gm: np.ndarray
    wm: np.ndarray
    csf: np.ndarray
    brain: np.ndarray
    plane: str
    index: int


def template_directory() -> Path:
    """Return the folder of nilearn's packaged data without importing nilearn.

    Raises
    ------
    SynthError
        If nilearn is not installed.
    """
    spec = importlib.util.find_spec("nilearn")
    if spec is None or not spec.submodule_search_locations:
        raise SynthError(MISSING_EXTRA)
    return Path(list(spec.submodule_search_locations)[0]) / "datasets" / "data"


def load_template() -> TemplateVolumes:
    """Read the T1 template and its grey/white matter maps with nibabel.

    Raises
    ------
    SynthError
        If nibabel or nilearn is missing, or the template files are not in nilearn's package.
    """
    try:
        import nibabel
    except ImportError as error:
        raise SynthError(MISSING_EXTRA) from error
    folder = template_directory()
    volumes = {}
    for name, file_name in TEMPLATE_FILES.items():
        path = folder / file_name
        if not path.is_file():
            raise SynthError(f"the MNI152 template file {path} is missing from the installed nilearn; "
                             f"reinstall it: pip install --force-reinstall 'mriscan[synth]'")
        volumes[name] = np.ascontiguousarray(np.asarray(nibabel.load(path).dataobj, dtype=np.uint8))
    return TemplateVolumes(**volumes)


def _check_plane(plane: str) -> int:
    """Return the volume axis of ``plane`` or raise a SynthError naming the choices."""
    if plane not in _PLANE_AXIS:
        raise SynthError(f"unknown plane {plane!r}; expected one of {', '.join(PLANES)}")
    return _PLANE_AXIS[plane]


def slice_positions(volumes: TemplateVolumes, plane: str, min_fraction: float = 0.5) -> tuple[int, ...]:
    """List the slice indices of ``plane`` that hold enough brain to be worth showing.

    Parameters
    ----------
    volumes : the template.
    plane : one of :data:`PLANES`.
    min_fraction : minimum brain area of a slice, as a fraction of the plane's largest slice.

    Returns
    -------
    Sorted slice indices along the plane's axis (the blurred midsagittal band is left out).
    """
    axis = _check_plane(plane)
    other_axes = tuple(a for a in range(3) if a != axis)
    area = (volumes.t1 > 0).sum(axis=other_axes)
    keep = np.flatnonzero(area >= min_fraction * area.max())
    if plane == "sagittal":
        keep = keep[np.abs(keep - _MIDLINE_X) > _MIDLINE_GAP]
    return tuple(int(i) for i in keep)


def _display(cut: np.ndarray) -> np.ndarray:
    """Rotate a volume cut so that the front (axial) or the top (coronal, sagittal) is row 0."""
    return np.ascontiguousarray(np.rot90(cut)).astype(np.float32)


def cut_slice(volumes: TemplateVolumes, plane: str, index: int) -> TissueSlice:
    """Cut one slice of the template and derive its tissue fractions.

    Parameters
    ----------
    volumes : the template.
    plane : one of :data:`PLANES`.
    index : position along the plane's axis (see :func:`slice_positions`).

    Returns
    -------
    The slice's :class:`TissueSlice`.
    """
    axis = _check_plane(plane)
    if not 0 <= index < volumes.t1.shape[axis]:
        raise SynthError(f"slice index {index} is outside the template's {plane} range "
                         f"0..{volumes.t1.shape[axis] - 1}")
    cut = {name: _display(np.take(getattr(volumes, name), index, axis=axis)) for name in ("t1", "gm", "wm")}
    brain = (cut["t1"] > 0).astype(np.float32)
    gm = cut["gm"] / 255.0 * brain
    wm = cut["wm"] / 255.0 * brain
    csf = np.clip(brain - gm - wm, 0.0, 1.0)
    return TissueSlice(t1=cut["t1"] / _T1_WHITE_MATTER, gm=gm, wm=wm, csf=csf, brain=brain, plane=plane, index=index)


def open_sulci(tissues: TissueSlice, strength: float) -> TissueSlice:
    """Put back the fluid of the sulci that averaging over 152 brains has blurred away.

    The average T1 still shows sulci as faint dark valleys in the cortex. A morphological black
    top-hat (closing minus image) picks out valleys narrower than 7 mm; that much grey matter is
    turned into cerebrospinal fluid. Larger ``strength`` gives the wider sulci of older brains.

    Parameters
    ----------
    tissues : a slice from :func:`cut_slice`.
    strength : how much of each valley becomes fluid (about 0.5-1.5).

    Returns
    -------
    A new :class:`TissueSlice` with grey matter moved to fluid (T1 darkened to fluid there).
    """
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (7, 7))
    valleys = cv2.morphologyEx(tissues.t1, cv2.MORPH_CLOSE, kernel) - tissues.t1
    outside_white = np.clip(1.0 - tissues.wm / 0.3, 0.0, 1.0)
    sulcus = np.clip((valleys - 0.03) / 0.12 * strength, 0.0, 1.0) * outside_white * tissues.gm
    t1_fluid = 0.2
    return TissueSlice(t1=tissues.t1 + sulcus * (t1_fluid - tissues.t1), gm=tissues.gm - sulcus, wm=tissues.wm,
                       csf=tissues.csf + sulcus, brain=tissues.brain, plane=tissues.plane, index=tissues.index)
