"""``mriscan dedup``: the duplicate groups fit would remove, as a CSV (one row per file)."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np

from mriscan.dedup import find_duplicate_groups, thumbnail
from mriscan.discover import find_candidates, relative_posix
from mriscan.errors import OutputError
from mriscan.loader import load_all
from mriscan.preprocess import PreprocessConfig

REPORT_COLUMNS = ("path", "group_id", "kind", "kept", "sha256", "error")


def write_duplicate_report(
    data_dir: Path, out: Path, config: PreprocessConfig, *, workers: int = -1, overwrite: bool = False
) -> str:
    """Group every image under ``data_dir`` and write the report; return a one-line summary."""
    if out.exists() and not overwrite:
        raise OutputError(f"{out} already exists; pass --overwrite to replace it")
    records = load_all(find_candidates(data_dir), config, workers=workers)
    readable = [r for r in records if r.ok]
    rows = [_error_row(r, data_dir) for r in records if not r.ok]
    if readable:
        groups = find_duplicate_groups([r.sha256 for r in readable],
                                       np.stack([thumbnail(r.model_input) for r in readable]))
        names = [_name(r, data_dir) for r in readable]
        rows += [
            {"path": names[i], "group_id": str(int(groups.group_ids[i])), "kind": groups.kinds[i],
             "kept": names[int(groups.kept[i])], "sha256": r.sha256, "error": ""}
            for i, r in enumerate(readable)
        ]
        removed = int(groups.removed().sum())
    else:
        removed = 0
    _write_atomically(out, sorted(rows, key=lambda row: row["path"]))
    return f"{len(records)} images, {removed} duplicates that fit would remove, {len(records) - len(readable)} " \
           f"unreadable -> {out}"


def _name(record, root: Path) -> str:
    name = relative_posix(record.path, root)
    return name if record.frame is None else f"{name}#frame{record.frame}"


def _error_row(record, root: Path) -> dict[str, str]:
    return {"path": _name(record, root), "group_id": "", "kind": "", "kept": "", "sha256": record.sha256,
            "error": record.error}


def _write_atomically(out: Path, rows: list[dict[str, str]]) -> None:
    temporary = out.with_name(out.name + ".tmp")
    with open(temporary, "w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=REPORT_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    os.replace(temporary, out)
