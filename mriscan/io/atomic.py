"""Outputs written all at once: a staging folder (or file) beside the target, then a rename.

A killed command therefore never leaves a half-written bundle or report where a good one was.
An existing, non-empty folder is replaced only with consent, and is then kept beside the new one
(``<name>.replaced-<UTC time>`` unless the caller names it), never deleted.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from mriscan.errors import OutputError


def check_output_folder(out_dir: Path, overwrite: bool, *, kind: str = "folder") -> None:
    """Fail before any work when ``out_dir`` holds something that would be replaced without consent.

    ``kind`` names what the folder holds in the message (``"bundle"``, ``"report"``).
    """
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise OutputError(f"{out_dir} exists and is not a folder; choose another --out")
    if out_dir.exists() and any(out_dir.iterdir()) and not overwrite:
        raise OutputError(
            f"{out_dir} already exists and is not empty; choose another --out or pass --overwrite "
            f"(the old {kind} is then kept beside it as <name>.replaced-<time>)"
        )
    parent = out_dir.parent if out_dir.parent != Path("") else Path(".")
    if parent.exists() and not os.access(parent, os.W_OK):
        raise OutputError(f"cannot write into {parent}: permission denied; choose another --out")


def write_folder_atomically(
    out_dir: Path,
    write: Callable[[Path], None],
    *,
    overwrite: bool = False,
    kind: str = "folder",
    keep_old_as: str | None = None,
) -> Path | None:
    """Let ``write(staging)`` fill a temporary folder beside ``out_dir``, then move it into place.

    Parameters
    ----------
    out_dir : the folder to create or replace.
    write : fills the staging folder it is given.
    overwrite : replace a non-empty ``out_dir`` (else :class:`OutputError` before any work).
    kind : what the folder holds, for messages.
    keep_old_as : the name (beside ``out_dir``) to keep a replaced folder under; default
        ``<name>.replaced-<UTC time>``.

    Returns
    -------
    Where the replaced folder was kept, or None when nothing was replaced.
    """
    with staged_output_folder(out_dir, overwrite=overwrite, kind=kind, keep_old_as=keep_old_as) as staged:
        write(staged.path)
    return staged.kept


@dataclass
class StagedFolder:
    """The staging folder to fill, and (after the ``with`` block) where a replaced folder was kept."""

    path: Path
    kept: Path | None = None


@contextmanager
def staged_output_folder(out_dir: Path, *, overwrite: bool = False, kind: str = "folder",
                         keep_old_as: str | None = None) -> Iterator[StagedFolder]:
    """The context-manager form of :func:`write_folder_atomically`: fill ``staged.path`` in the block.

    On success the staging folder replaces ``out_dir`` (an old non-empty one is kept beside it);
    on any error, or if the process is killed, ``out_dir`` is untouched.
    """
    out_dir = Path(out_dir)
    check_output_folder(out_dir, overwrite, kind=kind)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    remove_abandoned_staging(out_dir)
    staged = StagedFolder(Path(tempfile.mkdtemp(prefix=_staging_prefix(out_dir) + f"{os.getpid()}-",
                                                dir=out_dir.parent)))
    try:
        staged.path.chmod(0o777 & ~_current_umask())  # mkdtemp makes it private; outputs are shared
        yield staged
        check_output_folder(out_dir, overwrite, kind=kind)  # something may have appeared meanwhile
        staged.kept = _move_into_place(staged.path, out_dir, keep_old_as)
    except BaseException:
        shutil.rmtree(staged.path, ignore_errors=True)
        raise


def _staging_prefix(out_dir: Path) -> str:
    # The host and process id in the name tell a later run whether the writer is still alive.
    return f".{out_dir.name}.partial-{socket.gethostname()}-"


def remove_abandoned_staging(out_dir: Path) -> list[Path]:
    """Delete staging folders for ``out_dir`` left by killed processes of this host; return them.

    A folder whose process still runs, or that was made on another host (a shared disk), is kept.
    """
    prefix = _staging_prefix(Path(out_dir))
    removed = []
    for candidate in Path(out_dir).parent.glob(f"{glob.escape(prefix)}*"):
        pid = candidate.name[len(prefix):].split("-", 1)[0]
        if candidate.is_dir() and pid.isdigit() and not _process_alive(int(pid)):
            shutil.rmtree(candidate, ignore_errors=True)
            removed.append(candidate)
    return removed


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by someone else
        return True
    return True


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _move_into_place(staging: Path, out_dir: Path, keep_old_as: str | None) -> Path | None:
    kept = None
    if out_dir.exists():
        if any(out_dir.iterdir()):
            stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
            kept = out_dir.with_name(keep_old_as or f"{out_dir.name}.replaced-{stamp}")
            if kept.exists():
                raise OutputError(f"cannot keep the old {out_dir} as {kept}: that name is taken; move it away")
            out_dir.rename(kept)
        else:
            out_dir.rmdir()
    staging.rename(out_dir)
    return kept


def replace_file(path: Path, data: bytes, *, sync: bool = False) -> None:
    """Write ``data`` to ``path`` through a hidden temporary file beside it, then rename over ``path``.

    Readers see the old file or the complete new one, never a half-written file. With ``sync`` the
    data reaches the disk before the rename (for files a crash must not lose). OSError propagates.
    """
    temporary = path.with_name(f".{path.name}.partial")
    try:
        with open(temporary, "wb") as handle:
            handle.write(data)
            if sync:
                handle.flush()
                os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
