"""Which files under a folder are candidate images.

A file is a candidate when its extension is a known image, DICOM or NIfTI extension (``.nii``,
``.nii.gz``; in any case), or when it carries the DICOM Part 10 marker ``DICM`` at byte 128 or the
NIfTI-1/2 magic (in the file or its gzip stream) whatever its name (scanners and PACS exports often
write extension-less files). Candidates are only *candidates*: a damaged,
unreadable or dangling file is still listed so that it gets an error row later instead of being
silently missed. mriscan's own outputs are never candidates: folders carrying the output marker
are not walked, and overlays are skipped (:mod:`mriscan.io.own_outputs`).
"""

from __future__ import annotations

import os
from pathlib import Path

from mriscan.errors import InputFolderError
from mriscan.io.nifti import nifti_version
from mriscan.io.own_outputs import is_mriscan_overlay, is_output_folder

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff"})
DICOM_EXTENSIONS = frozenset({".dcm", ".dicom"})
VOLUME_SUFFIXES = (".nii", ".nii.gz")
_CANDIDATE_EXTENSIONS = IMAGE_EXTENSIONS | DICOM_EXTENSIONS

_DICOM_MARKER = b"DICM"
_DICOM_MARKER_OFFSET = 128
_HEAD_BYTES = 548  # up to the NIfTI-1 magic at byte 344 and a NIfTI-2 header


def find_candidates(root: Path) -> list[Path]:
    """List the candidate image files under ``root``, recursively.

    Symbolic links to folders are not walked into (so a link loop cannot make the walk endless);
    symbolic links to files are listed, even dangling ones with an image extension.

    Parameters
    ----------
    root : folder to search.

    Returns
    -------
    Absolute paths of the candidates, sorted by their path relative to ``root`` (posix form).

    Raises
    ------
    InputFolderError
        If ``root`` does not exist or is not a folder.

    Examples
    --------
    >>> find_candidates(Path("incoming"))  # doctest: +SKIP
    [PosixPath('/data/incoming/a.png'), PosixPath('/data/incoming/sub/IM0001')]
    """
    top = _checked_root(root)
    # Plain strings until the end: a Path object and Path.relative_to per file would cost more.
    found: list[tuple[str, str]] = []
    for folder, subfolders, names in os.walk(top, followlinks=False):
        if is_output_folder(folder):  # explain's overlays and review page: never patient images
            subfolders.clear()
            continue
        prefix = relative_posix(folder, top) + "/" if folder != str(top) else ""
        found.extend((prefix + name, os.path.join(folder, name)) for name in names
                     if _is_candidate(os.path.join(folder, name)))
    return [Path(path) for _relative, path in sorted(found)]


def relative_posix(path: Path, root: Path) -> str:
    """Return ``path`` relative to ``root`` with forward slashes (the CSV ``path`` column).

    Parameters
    ----------
    path : a path inside ``root``.
    root : the scanned folder.

    Returns
    -------
    The relative path in posix form.

    Raises
    ------
    ValueError
        If ``path`` is not inside ``root``.

    Examples
    --------
    >>> relative_posix(Path("/data/in/sub/a.png"), Path("/data/in"))
    'sub/a.png'
    """
    absolute_path, absolute_root = os.path.abspath(path), os.path.abspath(root)
    if absolute_path == absolute_root:
        return "."
    prefix = absolute_root if absolute_root.endswith(os.sep) else absolute_root + os.sep
    if not absolute_path.startswith(prefix):
        raise ValueError(f"{str(path)!r} is not inside {str(root)!r}")
    relative = absolute_path[len(prefix):]
    return relative if os.sep == "/" else relative.replace(os.sep, "/")


def _is_candidate(path: str) -> bool:
    """Tell whether one file is a candidate: a known extension, else the DICOM marker or NIfTI magic."""
    if os.path.splitext(path)[1].lower() in _CANDIDATE_EXTENSIONS or path.lower().endswith(VOLUME_SUFFIXES):
        return not is_mriscan_overlay(path)
    return _has_image_marker(path)


def _checked_root(root: Path) -> Path:
    """Return ``root`` as an absolute path, or raise if it is not an existing folder."""
    top = Path(os.path.abspath(root))
    if not top.exists():
        raise InputFolderError(
            f"Input folder not found: {top}. Check the path, and that the network share or "
            "drive holding it is mounted, then run again."
        )
    if not top.is_dir():
        raise InputFolderError(
            f"Input path is not a folder: {top}. Pass the folder that holds the images, not a single file."
        )
    return top


def _has_image_marker(path: str) -> bool:
    """Tell whether a regular file has ``DICM`` at byte 128 or a NIfTI magic; unreadable files count as no."""
    try:
        # isfile() is False for FIFOs and devices, which a read could block on.
        if not os.path.isfile(path):
            return False
        with open(path, "rb") as handle:
            head = handle.read(_HEAD_BYTES)
    except OSError:
        return False
    dicom = head[_DICOM_MARKER_OFFSET : _DICOM_MARKER_OFFSET + len(_DICOM_MARKER)] == _DICOM_MARKER
    return dicom or nifti_version(head) is not None
