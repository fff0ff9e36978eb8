"""Labelled training data: class folders -> (file, label, source) records.

A data folder holds one sub-folder per class. Folder names map to labels case-insensitively;
``masks/`` (written by ``mriscan synth``) is not a class and is skipped.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from mriscan.errors import DataLayoutError
from mriscan.io.discover import find_candidates

TUMOR = 1
NO_TUMOR = 0
CLASS_NAMES = ("no_tumor", "tumor")
_TUMOR_KINDS = ("glioma", "meningioma", "pituitary")
POSITIVE_NAMES = frozenset({"yes", "tumor", "tumour", *_TUMOR_KINDS, *(f"{k}_tumor" for k in _TUMOR_KINDS)})
NEGATIVE_NAMES = frozenset({"no", "no_tumor", "notumor", "no_tumour", "normal"})
SKIPPED_FOLDERS = frozenset({"masks"})
SYNTHETIC_MANIFEST = "manifest.csv"
"""The file ``mriscan synth`` writes beside its class folders, naming each image's origin."""


@dataclass(frozen=True)
class LabelledFile:
    """One training file with its label and where it came from."""

    path: Path
    label: int
    source: str
    class_folder: str


def folder_label(name: str, positive: Iterable[str] = (), negative: Iterable[str] = ()) -> int | None:
    """The label a class folder's name means, or None when the name is unknown.

    Examples
    --------
    >>> folder_label("Yes"), folder_label("notumor"), folder_label("glioma_tumor"), folder_label("x")
    (1, 0, 1, None)
    """
    key = name.lower()
    if key in POSITIVE_NAMES or key in {p.lower() for p in positive}:
        return TUMOR
    if key in NEGATIVE_NAMES or key in {n.lower() for n in negative}:
        return NO_TUMOR
    return None


def is_synthetic_folder(data_dir: Path) -> bool:
    """True for a data folder written by ``mriscan synth`` (it holds synth's manifest).

    Examples
    --------
    >>> import tempfile
    >>> folder = Path(tempfile.mkdtemp())
    >>> is_synthetic_folder(folder)
    False
    >>> _ = (folder / SYNTHETIC_MANIFEST).write_text("file,label,origin,plane")
    >>> is_synthetic_folder(folder)
    True
    """
    try:
        with (Path(data_dir) / SYNTHETIC_MANIFEST).open(encoding="utf-8") as handle:
            header = handle.readline().strip().split(",")
    except (OSError, UnicodeDecodeError):
        return False
    return header[:3] == ["file", "label", "origin"]


def find_labelled_files(
    data_dirs: Sequence[Path], positive: Iterable[str] = (), negative: Iterable[str] = ()
) -> list[LabelledFile]:
    """All candidate images under the class folders of each data folder, labelled by folder name."""
    positive, negative = tuple(positive), tuple(negative)
    files: list[LabelledFile] = []
    for data_dir in data_dirs:
        for class_dir, label in _class_folders(Path(data_dir), positive, negative):
            files.extend(
                LabelledFile(path=p, label=label, source=Path(data_dir).name, class_folder=class_dir.name)
                for p in find_candidates(class_dir)
            )
    if not files:
        raise DataLayoutError(f"no images found under {', '.join(str(d) for d in data_dirs)}")
    return files


def _class_folders(
    data_dir: Path, positive: tuple[str, ...], negative: tuple[str, ...]
) -> list[tuple[Path, int]]:
    if not data_dir.is_dir():
        raise DataLayoutError(f"data folder {data_dir} does not exist or is not a folder")
    folders = sorted(p for p in data_dir.iterdir() if p.is_dir() and p.name.lower() not in SKIPPED_FOLDERS)
    known = [(p, folder_label(p.name, positive, negative)) for p in folders]
    unknown = [p.name for p, label in known if label is None]
    if unknown or not folders:
        found = ", ".join(p.name for p in folders) or "no sub-folders"
        raise DataLayoutError(
            f"{data_dir}: expected one sub-folder per class named like "
            f"{sorted(POSITIVE_NAMES)} (tumor) or {sorted(NEGATIVE_NAMES)} (no tumor); "
            f"found: {found}. Unknown: {', '.join(unknown) or 'none'}. "
            "Rename the folders or name them with --positive NAME / --negative NAME."
        )
    return [(p, label) for p, label in known if label is not None]
