"""The scan CSV, written so that it is never left half-written and an interrupted run can resume.

While a run works, rows are appended (and fsync'ed every few hundred files) to
``<out>.partial``; ``<out>`` itself is only ever replaced atomically by a complete, sorted file at
the end. A ``kill -9`` at any moment therefore leaves ``<out>`` as it was before (absent or the
previous complete file) and a ``.partial`` whose complete lines ``--resume`` picks up. A lock
file ``<out>.lock`` keeps two runs from writing the same output.
"""

from __future__ import annotations

import csv
import fcntl
import hashlib
import io
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import IO

from mriscan.errors import OutputError
from mriscan.io.atomic import replace_file
from mriscan.scan.flags import Flag
from mriscan.scan.run_record import ScanRecord, write_record

COLUMNS = (
    "path", "frame", "plane", "sha256", "probability", "prediction", "flagged", "flag_reason", "flag_detail",
    "threshold", "review_threshold", "model_id", "error",
)
UID_COLUMNS = ("study_instance_uid", "series_instance_uid", "sop_instance_uid")
Row = dict[str, str]
NO_FLAG = Flag((), ())


@dataclass(frozen=True)
class ScanResult:
    """What a scan found for one image (frame, slice), or why it could not read it; a CSV row only in :meth:`row`."""

    path: str  # relative to the scanned folder, with forward slashes
    frame: int | None
    sha256: str
    threshold: float
    review_threshold: float
    model_id: str
    probability: float | None = None  # None: unreadable (``error`` says why)
    prediction: str = ""
    flag: Flag = NO_FLAG
    error: str = ""
    dicom_uids: Mapping[str, str] = field(default_factory=dict)
    plane: str | None = None  # a slice of a volume's: "axial", "coronal" or "sagittal"

    @property
    def readable(self) -> bool:
        return self.probability is not None

    def row(self) -> Row:
        """The CSV row (every column, ``UID_COLUMNS`` included; the writer keeps those it writes)."""
        row = {
            "path": self.path,
            "frame": "" if self.frame is None else str(self.frame),
            "plane": self.plane or "",
            "sha256": self.sha256,
            "threshold": f"{self.threshold:.6g}",
            "review_threshold": f"{self.review_threshold:.6g}",
            "model_id": self.model_id,
            "study_instance_uid": self.dicom_uids.get("StudyInstanceUID", ""),
            "series_instance_uid": self.dicom_uids.get("SeriesInstanceUID", ""),
            "sop_instance_uid": self.dicom_uids.get("SOPInstanceUID", ""),
        }
        if self.probability is None:
            return {**row, "probability": "", "prediction": "", "flagged": "true" if self.flag.flagged else "false",
                    "flag_reason": ";".join(self.flag.codes), "flag_detail": "; ".join(self.flag.details),
                    "error": self.error or "unreadable"}
        return {
            **row,
            "probability": f"{self.probability:.6f}",
            "prediction": self.prediction,
            "flagged": "true" if self.flag.flagged else "false",
            "flag_reason": ";".join(self.flag.codes),
            "flag_detail": "; ".join(self.flag.details),
            "error": "",
        }


def row_key(row: Mapping[str, str]) -> tuple[str, str, int]:
    """Sort and identity key of a row: its path, plane (a volume's) and frame (rows without a frame first)."""
    frame = row.get("frame", "")
    return row["path"], row.get("plane") or "", int(frame) if frame not in ("", None) else -1


def read_rows(path: Path) -> list[Row]:
    """Complete rows of a CSV written by mriscan; a torn last line (no newline) is dropped."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    except (OSError, UnicodeDecodeError) as error:
        raise OutputError(f"cannot read {path} to resume ({error}); move it away or use --overwrite") from error
    if text and not text.endswith("\n"):
        text = text[: text.rfind("\n") + 1]
    rows = list(csv.DictReader(io.StringIO(text)))
    if rows and not {"path", "sha256", "model_id"} <= set(rows[0]):
        raise OutputError(f"{path} is not a mriscan results CSV; choose another --out")
    return [row for row in rows if None not in row and all(v is not None for v in row.values())]


class ResultsWriter:
    """Owns ``<out>``, ``<out>.partial`` and ``<out>.lock`` for one scan run."""

    def __init__(self, out: Path, columns: tuple[str, ...], *, resume: bool, overwrite: bool) -> None:
        self.out = Path(out)
        self.partial = self.out.with_name(self.out.name + ".partial")
        self.columns = columns
        self._check_target(resume, overwrite)
        self._lock: IO[str] | None = self._acquire_lock()
        self.previous: dict[tuple[str, str, int], Row] = {}
        self.maybe_incomplete: str | None = None
        if resume:
            partial_rows = read_rows(self.partial)
            for row in read_rows(self.out) + partial_rows:
                self.previous[row_key(row)] = row
            # Rows are appended file by file, in order: only the last file of the partial file can have lost
            # rows to an interruption, and only if it has several (frames, slices).
            last = partial_rows[-1] if partial_rows else {}
            self.maybe_incomplete = last["path"] if last.get("frame") else None
        self._new: dict[tuple[str, str, int], Row] = {}
        self._handle: IO[str] | None = None
        self._since_sync = 0

    def _check_target(self, resume: bool, overwrite: bool) -> None:
        if self.out.is_dir():
            raise OutputError(f"--out {self.out} is a folder; give a CSV file name")
        if self.out.exists() and not (resume or overwrite):
            raise OutputError(f"{self.out} already exists; pass --resume to continue it or --overwrite to replace it")
        parent = self.out.parent
        if not parent.is_dir():
            raise OutputError(f"the folder of --out, {parent}, does not exist; create it first")
        if not os.access(parent, os.W_OK):
            raise OutputError(f"cannot write into {parent} (permission denied); choose another --out")

    def _acquire_lock(self) -> IO[str]:
        lock_path = self.out.with_name(self.out.name + ".lock")
        for _ in range(3):
            handle = open(lock_path, "a+", encoding="utf-8")
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError as error:
                handle.close()
                raise OutputError(
                    f"another mriscan scan is writing {self.out} right now; wait for it or choose another --out"
                ) from error
            # A finishing run unlinks the lock file; a lock on that unlinked file guards nothing.
            if same_file(handle, lock_path):
                return handle
            handle.close()
        raise OutputError(f"could not lock {lock_path}: it keeps being replaced; is another scan starting?")

    def start(self, rescanning: Iterable[str] = ()) -> None:
        """Rewrite the partial file with the rows kept from before, ready for appending.

        The earlier rows of the files in ``rescanning`` (relative paths) are dropped: a file scanned again
        gets only its new rows, although a replaced volume may have fewer slices or other planes.
        """
        dropped = set(rescanning)
        self.previous = {key: row for key, row in self.previous.items() if row["path"] not in dropped}
        replace_file(self.partial, self._csv_bytes(self.previous.values()), sync=True)
        self._handle = open(self.partial, "a", encoding="utf-8", newline="")

    def append(self, results: Iterable[ScanResult], sync_every: int = 256) -> None:
        """Append results to the partial file as CSV rows; fsync at least every ``sync_every`` rows."""
        assert self._handle is not None, "call start() first"
        writer = csv.DictWriter(self._handle, fieldnames=self.columns, extrasaction="ignore")
        for row in (result.row() for result in results):
            self._new[row_key(row)] = row
            writer.writerow(row)
            self._since_sync += 1
        self._handle.flush()
        if self._since_sync >= sync_every:
            os.fsync(self._handle.fileno())
            self._since_sync = 0

    def finish(self, record: ScanRecord | None = None) -> list[Row]:
        """Atomically replace ``<out>`` with every row, sorted; remove the partial file.

        ``record``, when given, is written first as ``<out>.run.json`` with the new CSV's sha256,
        so a record always names the CSV it describes (a kill in between is noticed by that sum).
        """
        rows = sorted({**self.previous, **self._new}.values(), key=row_key)
        data = self._csv_bytes(rows)
        if record is not None:
            write_record(self.out, replace(record, csv_sha256=hashlib.sha256(data).hexdigest()))
        replace_file(self.out, data, sync=True)
        self.close()
        self.partial.unlink(missing_ok=True)
        return rows

    def close(self) -> None:
        """Release the partial file and the lock (the partial stays for --resume if not finished)."""
        if self._handle is not None:
            self._handle.close()
            self._handle = None
        if self._lock is not None:
            Path(self._lock.name).unlink(missing_ok=True)
            fcntl.flock(self._lock, fcntl.LOCK_UN)
            self._lock.close()
            self._lock = None

    def _csv_bytes(self, rows: Iterable[Row]) -> bytes:
        text = io.StringIO(newline="")
        writer = csv.DictWriter(text, fieldnames=self.columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
        return text.getvalue().encode("utf-8")


def same_file(handle: IO[str], path: Path) -> bool:
    """Whether an open file is still the one at ``path`` (not unlinked or replaced meanwhile)."""
    try:
        return os.fstat(handle.fileno()).st_ino == os.stat(path).st_ino
    except FileNotFoundError:
        return False
