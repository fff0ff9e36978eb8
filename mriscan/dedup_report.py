"""``mriscan dedup``: the duplicate groups fit would remove, or the copies one set shares with another.

Without ``--against``: one row per file under DIR (group id, kind of match, the file kept).
With ``--against OTHER``: one row per image of DIR that is an exact or near copy of an image of
OTHER (a leakage check between data sets: public brain MRI sets share thousands of images).
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

from mriscan.atomic import replace_file
from mriscan.dedup import find_cross_duplicates, find_duplicate_groups, thumbnails
from mriscan.discover import find_candidates, relative_posix
from mriscan.errors import OutputError
from mriscan.loader import LoadedImage, load_all
from mriscan.preprocess import PreprocessConfig

REPORT_COLUMNS = ("path", "group_id", "kind", "kept", "sha256", "error")
CROSS_COLUMNS = ("path", "against_path", "kind", "hamming", "correlation")


def write_duplicate_report(
    data_dir: Path, out: Path, config: PreprocessConfig, *, workers: int = -1, overwrite: bool = False
) -> str:
    """Group every image under ``data_dir`` and write the report; return a one-line summary."""
    _check_output(out, overwrite)
    records = load_all(find_candidates(data_dir), config, workers=workers)
    readable = _readable(records)
    rows = [_error_row(r, data_dir) for r in records if not r.ok]
    if readable:
        groups = find_duplicate_groups([r.sha256 for r in readable], thumbnails(r.model_input for r in readable))
        names = [_name(r, data_dir) for r in readable]
        rows += [
            {"path": names[i], "group_id": str(int(groups.group_ids[i])), "kind": groups.kinds[i],
             "kept": names[int(groups.kept[i])], "sha256": r.sha256, "error": ""}
            for i, r in enumerate(readable)
        ]
        removed = int(groups.removed().sum())
    else:
        removed = 0
    _write_atomically(out, sorted(rows, key=lambda row: row["path"]), REPORT_COLUMNS)
    return f"{len(records)} images, {removed} duplicates that fit would remove, {len(records) - len(readable)} " \
           f"unreadable -> {out}"


def _name(record, root: Path) -> str:
    name = relative_posix(record.path, root)
    return name if record.frame is None else f"{name}#frame{record.frame}"


def _error_row(record, root: Path) -> dict[str, str]:
    return {"path": _name(record, root), "group_id": "", "kind": "", "kept": "", "sha256": record.sha256,
            "error": record.error}


def write_cross_report(
    data_dir: Path, against: Path, out: Path, config: PreprocessConfig, *, workers: int = -1,
    overwrite: bool = False,
) -> str:
    """Write the images of ``data_dir`` that copy an image of ``against``; return a summary line."""
    _check_output(out, overwrite)
    mine, theirs = (_readable(load_all(find_candidates(d), config, workers=workers)) for d in (data_dir, against))
    rows = []
    if mine and theirs:
        matches = find_cross_duplicates([r.sha256 for r in mine], thumbnails(r.model_input for r in mine),
                                        [r.sha256 for r in theirs], thumbnails(r.model_input for r in theirs))
        rows = [{"path": _name(mine[m.index_a], data_dir), "against_path": _name(theirs[m.index_b], against),
                 "kind": m.kind, "hamming": str(m.hamming), "correlation": f"{m.correlation:.4f}"} for m in matches]
    _write_atomically(out, sorted(rows, key=lambda row: (row["path"], row["against_path"])), CROSS_COLUMNS)
    copied = len({row["path"] for row in rows})
    return f"{copied} of {len(mine)} images under {data_dir} copy an image under {against} -> {out}"


def _readable(records: list[LoadedImage]) -> list[LoadedImage]:
    return [r for r in records if r.ok]


def _check_output(out: Path, overwrite: bool) -> None:
    if out.exists() and not overwrite:
        raise OutputError(f"{out} already exists; pass --overwrite to replace it")


def _write_atomically(out: Path, rows: list[dict[str, str]], columns: tuple[str, ...]) -> None:
    text = io.StringIO(newline="")
    writer = csv.DictWriter(text, fieldnames=columns)
    writer.writeheader()
    writer.writerows(rows)
    replace_file(out, text.getvalue().encode("utf-8"))
