"""Fingerprints of data folders, so a model card can say exactly which images a model saw.

A folder's fingerprint is the sha256 of its sorted ``"<class> <file sha256>"`` lines, one per file
(``-`` as the class of unlabelled folders). It changes when a file is added, removed, edited or
moved to another class, and not when files are renamed or the folder is moved.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

UNLABELLED = "-"


def data_fingerprint(entries: Iterable[tuple[str, str]]) -> str:
    """The sha256 (hex) of the sorted ``"<class> <sha256>"`` lines of ``(class, sha256)`` entries.

    Examples
    --------
    >>> a = data_fingerprint([("tumor", "aa"), ("no_tumor", "bb")])
    >>> a == data_fingerprint([("no_tumor", "bb"), ("tumor", "aa")])
    True
    >>> a == data_fingerprint([("tumor", "aa"), ("tumor", "bb")])
    False
    """
    lines = sorted(f"{label} {sha256}" for label, sha256 in entries)
    return hashlib.sha256("\n".join(lines).encode("utf-8")).hexdigest()


def folder_fingerprints(folders: Sequence[Path], files: Iterable[tuple[Path, str, str]]) -> list[dict]:
    """One ``{"dir", "files", "sha256"}`` record per folder, over the ``(path, class, sha256)`` files in it.

    A file listed twice (frames of one DICOM) counts once.

    Examples
    --------
    >>> records = folder_fingerprints([Path("/d")], [(Path("/d/yes/a.png"), "tumor", "aa"),
    ...                                              (Path("/elsewhere/b.png"), "tumor", "bb")])
    >>> records[0]["files"], records[0]["sha256"] == data_fingerprint([("tumor", "aa")])
    (1, True)
    """
    unique = {Path(os.path.abspath(path)): (label, sha256) for path, label, sha256 in files}
    records = []
    for folder in folders:
        root = Path(os.path.abspath(folder))
        inside = [entry for path, entry in unique.items() if path.is_relative_to(root)]
        records.append({"dir": str(folder), "files": len(inside), "sha256": data_fingerprint(inside)})
    return records
