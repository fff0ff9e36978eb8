"""Staged output folders: moved into place whole, old ones kept, abandoned staging cleaned up."""

import os
import socket
import subprocess
import sys

import pytest

from mriscan.errors import OutputError
from mriscan.io.atomic import remove_abandoned_staging, write_folder_atomically


def _dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_replacing_keeps_the_old_folder_beside_the_new_one(tmp_path):
    out = tmp_path / "report"
    write_folder_atomically(out, lambda staging: (staging / "a.txt").write_text("old"))
    with pytest.raises(OutputError, match="--overwrite"):
        write_folder_atomically(out, lambda staging: (staging / "a.txt").write_text("new"))
    kept = write_folder_atomically(out, lambda staging: (staging / "a.txt").write_text("new"), overwrite=True)
    assert (out / "a.txt").read_text() == "new" and (kept / "a.txt").read_text() == "old"


def test_a_failed_write_leaves_nothing(tmp_path):
    def fail(staging):
        (staging / "half.txt").write_text("half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        write_folder_atomically(tmp_path / "report", fail)
    assert list(tmp_path.iterdir()) == []


def test_staging_left_by_a_killed_process_is_removed_by_the_next_run(tmp_path):
    host = socket.gethostname()
    abandoned = tmp_path / f".model.partial-{host}-{_dead_pid()}-abc123"
    running = tmp_path / f".model.partial-{host}-{os.getpid()}-def456"
    other_host = tmp_path / f".model.partial-elsewhere-{_dead_pid()}-ghi789"
    other_output = tmp_path / f".other.partial-{host}-{_dead_pid()}-jkl012"
    for folder in (abandoned, running, other_host, other_output):
        folder.mkdir()
    write_folder_atomically(tmp_path / "model", lambda staging: (staging / "m.txt").write_text("m"))
    assert not abandoned.exists()
    assert running.exists() and other_host.exists() and other_output.exists()
    assert remove_abandoned_staging(tmp_path / "model") == []
