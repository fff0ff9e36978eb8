"""``mriscan dedup``: the duplicate groups fit would remove, or the copies one set shares with another.

Without ``--against``: one row per file under DIR (group id, kind of match, the file kept).
With ``--against OTHER``: one row per image of DIR that is an exact or near copy of an image of
OTHER (a leakage check between data sets: public brain MRI sets share thousands of images).
With ``scheduler``, images are decoded and thumbnailed on that Dask cluster; the search stays here.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path

import numpy as np

from mriscan.data.loader import LoadedImage, chunk_files, load_chunk
from mriscan.data.preprocess import PreprocessConfig
from mriscan.dedup.index import THUMBNAIL_SIZE, find_cross_duplicates, find_duplicate_groups, thumbnails
from mriscan.errors import OutputError
from mriscan.execution.base import DEFAULT_CHUNK_SIZE
from mriscan.execution.executor import choose_executor
from mriscan.io.atomic import replace_file
from mriscan.io.discover import find_candidates, relative_posix
from mriscan.io.reader import DEFAULT_MAX_PIXELS

REPORT_COLUMNS = ("path", "group_id", "kind", "kept", "sha256", "error")
CROSS_COLUMNS = ("path", "against_path", "kind", "hamming", "correlation")


@dataclass(frozen=True)
class ThumbnailedSet:
    """The images of one folder as duplicate search needs them, in candidate order.

    ``readable`` records carry no pixels (``model_input`` is dropped): ``thumbnails[i]`` stands for
    ``readable[i]``, which keeps what crosses processes or the network small.
    """

    unreadable: list[LoadedImage]
    readable: list[LoadedImage]
    thumbnails: np.ndarray  # (len(readable), THUMBNAIL_SIZE, THUMBNAIL_SIZE) float32

    @property
    def images(self) -> int:
        return len(self.unreadable) + len(self.readable)

    @staticmethod
    def concatenate(parts: Sequence[ThumbnailedSet]) -> ThumbnailedSet:
        """One set from consecutive parts (e.g. chunks loaded in parallel), in order."""
        return ThumbnailedSet(
            unreadable=[record for part in parts for record in part.unreadable],
            readable=[record for part in parts for record in part.readable],
            thumbnails=np.concatenate([part.thumbnails for part in parts]) if parts else _no_thumbnails(),
        )


def thumbnailed(records: list[LoadedImage]) -> ThumbnailedSet:
    """Split loaded records into unreadable and readable ones, the latter shrunk to thumbnails."""
    readable = [record for record in records if record.ok]
    return ThumbnailedSet(
        unreadable=[record for record in records if not record.ok],
        readable=[replace(record, model_input=None) for record in readable],
        thumbnails=thumbnails(r.model_input for r in readable) if readable else _no_thumbnails(),
    )


def _no_thumbnails() -> np.ndarray:
    return np.zeros((0, THUMBNAIL_SIZE, THUMBNAIL_SIZE), np.float32)


def load_thumbnailed(data_dir: Path, config: PreprocessConfig, *, workers: int = -1, scheduler: str | None = None,
                     chunk_size: int = DEFAULT_CHUNK_SIZE) -> ThumbnailedSet:
    """Every candidate under ``data_dir``, decoded and thumbnailed by ``workers`` or on the ``scheduler`` cluster."""
    chunks = chunk_files(find_candidates(data_dir), chunk_size)
    with choose_executor(workers, scheduler=scheduler, chunks=len(chunks)) as executor:
        parts = list(executor.map_ordered(partial(thumbnail_chunk, config=config), chunks))
    return ThumbnailedSet.concatenate(parts)


def thumbnail_chunk(paths: list[Path], config: PreprocessConfig) -> ThumbnailedSet:
    """A worker's task: decode one chunk of files and shrink the readable ones to dedup thumbnails."""
    return thumbnailed(load_chunk(paths, config, DEFAULT_MAX_PIXELS))


def write_duplicate_report(
    data_dir: Path, out: Path, config: PreprocessConfig, *, workers: int = -1, overwrite: bool = False,
    scheduler: str | None = None,
) -> str:
    """Group every image under ``data_dir`` and write the report; return a one-line summary."""
    _check_output(out, overwrite)
    images = load_thumbnailed(data_dir, config, workers=workers, scheduler=scheduler)
    rows = [_error_row(r, data_dir) for r in images.unreadable]
    removed = 0
    if images.readable:
        groups = find_duplicate_groups([r.image_key for r in images.readable], images.thumbnails)
        names = [_name(r, data_dir) for r in images.readable]
        rows += [
            {"path": names[i], "group_id": str(int(groups.group_ids[i])), "kind": groups.kinds[i],
             "kept": names[int(groups.kept[i])], "sha256": r.sha256, "error": ""}
            for i, r in enumerate(images.readable)
        ]
        removed = int(groups.removed().sum())
    _write_atomically(out, sorted(rows, key=lambda row: row["path"]), REPORT_COLUMNS)
    return f"{images.images} images, {removed} duplicates that fit would remove, {len(images.unreadable)} " \
           f"unreadable -> {out}"


def _name(record, root: Path) -> str:
    """The file, with ``#frame3`` for a frame of a DICOM file or ``#axial12`` for a slice of a volume."""
    name = relative_posix(record.path, root)
    return name if record.frame is None else f"{name}#{record.plane or 'frame'}{record.frame}"


def _error_row(record, root: Path) -> dict[str, str]:
    return {"path": _name(record, root), "group_id": "", "kind": "", "kept": "", "sha256": record.sha256,
            "error": record.error}


def write_cross_report(
    data_dir: Path, against: Path, out: Path, config: PreprocessConfig, *, workers: int = -1,
    overwrite: bool = False, scheduler: str | None = None,
) -> str:
    """Write the images of ``data_dir`` that copy an image of ``against``; return a summary line."""
    _check_output(out, overwrite)
    mine, theirs = (load_thumbnailed(d, config, workers=workers, scheduler=scheduler) for d in (data_dir, against))
    rows = []
    if mine.readable and theirs.readable:
        matches = find_cross_duplicates([r.image_key for r in mine.readable], mine.thumbnails,
                                        [r.image_key for r in theirs.readable], theirs.thumbnails)
        rows = [{"path": _name(mine.readable[m.index_a], data_dir),
                 "against_path": _name(theirs.readable[m.index_b], against),
                 "kind": m.kind, "hamming": str(m.hamming), "correlation": f"{m.correlation:.4f}"} for m in matches]
    _write_atomically(out, sorted(rows, key=lambda row: (row["path"], row["against_path"])), CROSS_COLUMNS)
    copied = len({row["path"] for row in rows})
    return f"{copied} of {len(mine.readable)} images under {data_dir} copy an image under {against} -> {out}"


def _check_output(out: Path, overwrite: bool) -> None:
    if out.exists() and not overwrite:
        raise OutputError(f"{out} already exists; pass --overwrite to replace it")


def _write_atomically(out: Path, rows: list[dict[str, str]], columns: tuple[str, ...]) -> None:
    text = io.StringIO(newline="")
    writer = csv.DictWriter(text, fieldnames=columns)
    writer.writeheader()
    writer.writerows(rows)
    replace_file(out, text.getvalue().encode("utf-8"))
