"""The scan's run record: a small JSON file beside the CSV saying what was scanned, with what, and when.

``mriscan scan INPUT_DIR --out results.csv`` writes ``results.csv.run.json`` just before it
replaces the CSV. ``mriscan explain results.csv`` reads it to find the scanned folder (the CSV's
paths are relative to it) and the model, so the nightly chain needs no extra option. The record
holds the CSV's sha256, so a record that does not belong to the CSV beside it is noticed. It holds
no patient data: paths, times, counts, the model and its warnings.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from mriscan.errors import OutputError
from mriscan.io.atomic import replace_file

RECORD_SUFFIX = ".run.json"
RECORD_FORMAT = "mriscan-scan-run/1"


@dataclass(frozen=True)
class ScanRecord:
    """One scan run, as ``explain`` and a site's monitoring need it."""

    input_dir: str
    model_dir: str
    model_id: str
    started: str
    finished: str = ""
    mriscan_version: str = ""
    model_warnings: tuple[str, ...] = ()
    counts: dict[str, int] = field(default_factory=dict)
    csv_sha256: str = ""
    format: str = RECORD_FORMAT

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True) + "\n"


def record_path(csv_path: Path) -> Path:
    """Where the run record of the scan CSV ``csv_path`` lives.

    Examples
    --------
    >>> record_path(Path("/nightly/results.csv")).as_posix()
    '/nightly/results.csv.run.json'
    """
    return csv_path.with_name(csv_path.name + RECORD_SUFFIX)


def utc_now() -> str:
    """The current UTC time, to the second, in ISO 8601 (``2026-12-03T02:00:05Z``)."""
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def write_record(csv_path: Path, record: ScanRecord) -> None:
    """Write the record of ``csv_path`` atomically (a rename), never a half-written file."""
    try:
        replace_file(record_path(csv_path), record.to_json().encode("utf-8"), sync=True)
    except OSError as error:
        raise OutputError(f"cannot write the run record {record_path(csv_path)}: {error.strerror}") from error


def read_record(csv_path: Path) -> ScanRecord | None:
    """The run record beside the scan CSV ``csv_path``; None when there is none or it is not one.

    A damaged or foreign file is treated as absent: explain then asks for ``--input-root``.
    """
    try:
        data: Any = json.loads(record_path(csv_path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("format") != RECORD_FORMAT:
        return None
    known = set(ScanRecord.__dataclass_fields__)
    try:
        record = ScanRecord(**{key: value for key, value in data.items() if key in known})
    except TypeError:
        return None
    return ScanRecord(**{**asdict(record), "model_warnings": tuple(record.model_warnings)})


def describes(record: ScanRecord, csv_path: Path) -> bool:
    """Whether ``record`` was written with the CSV now at ``csv_path`` (not an edited or older CSV)."""
    try:
        return hashlib.sha256(csv_path.read_bytes()).hexdigest() == record.csv_sha256
    except OSError:
        return False
