"""Interrupted runs: ``kill -9`` at several moments of a scan, then ``--resume``; ``kill -9`` during fit.

The killed runs are real ``python -m mriscan`` processes, each in its own session, so that one
``killpg`` kills the whole process group (joblib workers included) at once, as an operator's
``kill -9`` or an OOM killer would. They run side by side to keep this file quick; each test then
checks what its kill left behind, and the scan tests resume in-process and compare bytes with an
uninterrupted run.
"""

from __future__ import annotations

import csv
import io
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import pytest
from click.testing import CliRunner
from conftest import brain_like

from mriscan.cli import EXIT_UNREADABLE, cli
from mriscan.model.bundle import CARD_FILE, MODEL_FILE, load_bundle
from mriscan.scan.results import read_rows, row_key

pytestmark = pytest.mark.slow  # real processes killed mid-run, and a fit

SLICES = 600  # ten loader chunks of 64 (and a rest): kills land between and inside chunks, well before the end
PREVIOUS_ROWS = 100  # rows of an earlier complete CSV that a killed --resume run must leave untouched
KILL_TIMEOUT_SECONDS = 120.0


@dataclass
class KilledRun:
    """A subprocess killed when ``moment`` returned true, and what it left on disk right then."""

    returncode: int
    log: str
    out_before: bytes | None = None


def _lines(path: Path) -> int:
    try:
        return path.read_bytes().count(b"\n")
    except FileNotFoundError:
        return -1


def _sibling(path: Path, suffix: str) -> Path:
    return path.with_name(path.name + suffix)


def _launch(args: list[str], log: Path) -> subprocess.Popen:
    with open(log, "wb") as handle:
        return subprocess.Popen([sys.executable, "-m", "mriscan", *args], stdin=subprocess.DEVNULL, stdout=handle,
                                stderr=subprocess.STDOUT, start_new_session=True)


def _group_is_gone(pgid: int, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.02)
    return False


def _kill_at_moments(runs: dict[str, tuple[subprocess.Popen, Callable[[], bool], Path]]) -> dict[str, KilledRun]:
    """Poll every run; ``kill -9`` its process group the moment its condition holds."""
    killed: dict[str, KilledRun] = {}
    pending = dict(runs)
    deadline = time.monotonic() + KILL_TIMEOUT_SECONDS
    while pending and time.monotonic() < deadline:
        for name, (process, moment, log) in list(pending.items()):
            if moment():
                os.killpg(process.pid, signal.SIGKILL)
            elif process.poll() is None:
                continue
            process.wait()
            assert _group_is_gone(process.pid), f"{name}: processes of the killed run are still alive"
            killed[name] = KilledRun(process.returncode, log.read_text(errors="replace"))
            del pending[name]
        time.sleep(0.002)
    for process, _, _ in pending.values():
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    assert not pending, f"runs that never reached their kill moment: {sorted(pending)}"
    return killed


def _assert_absent_or_complete(out: Path) -> None:
    """The guarantee for ``--out`` after a kill: no file, or a CSV whose every row is complete."""
    if not out.exists():
        return
    text = out.read_text(encoding="utf-8")
    assert text.endswith("\n"), f"{out} ends in a torn line"
    header, *rows = list(csv.reader(io.StringIO(text)))
    assert rows and all(len(row) == len(header) for row in rows), f"{out} has incomplete rows"


# --- scan ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def incoming(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("interrupt") / "incoming"
    for i in range(SLICES):
        path = root / f"series{i // 50}" / f"slice {i:03d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(path), brain_like(i, size=(72, 64), lesion=i % 3 == 0))
    (root / "series1" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)  # an error row
    return root


def _scan_in_process(incoming: Path, out: Path, bundle: Path, *extra: str):
    result = CliRunner().invoke(cli, ["scan", str(incoming), "--out", str(out), "--model", str(bundle),
                                      "--workers", "1", *extra])
    assert result.exit_code == EXIT_UNREADABLE, result.output + repr(result.exception)
    return result


@pytest.fixture(scope="module")
def reference(incoming, tiny_bundle, tmp_path_factory) -> bytes:
    """The CSV of an uninterrupted run."""
    out = tmp_path_factory.mktemp("reference") / "results.csv"
    _scan_in_process(incoming, out, tiny_bundle)
    return out.read_bytes()


def _partial_lines_at_least(out: Path, count: int) -> Callable[[], bool]:
    return lambda: _lines(_sibling(out, ".partial")) >= count


SCAN_MOMENTS = {
    # name: (extra options, kill condition given --out, rows of an earlier complete CSV at --out)
    "output_locked_before_model_load": ((), lambda out: _sibling(out, ".lock").exists, 0),
    "partial_started_no_row_yet": ((), lambda out: _partial_lines_at_least(out, 1), 0),
    "first_rows_written": ((), lambda out: _partial_lines_at_least(out, 2), 0),
    "past_half_with_joblib_workers": (("--workers", "2"), lambda out: _partial_lines_at_least(out, 1 + 100), 0),
    "resume_over_an_earlier_complete_csv": (
        ("--resume",), lambda out: _partial_lines_at_least(out, 1 + PREVIOUS_ROWS + 1), PREVIOUS_ROWS),
}


@pytest.fixture(scope="module")
def killed_scans(incoming, tiny_bundle, reference, tmp_path_factory) -> dict[str, tuple[Path, KilledRun]]:
    """Start one scan per moment, side by side, and kill each at its moment."""
    runs, outs, before = {}, {}, {}
    for name, (extra, condition, previous_rows) in SCAN_MOMENTS.items():
        folder = tmp_path_factory.mktemp(name)
        out = outs[name] = folder / "results.csv"
        if previous_rows:
            out.write_bytes(b"".join(reference.splitlines(keepends=True)[: 1 + previous_rows]))
        before[name] = out.read_bytes() if out.exists() else None
        args = ["scan", str(incoming), "--out", str(out), "--model", str(tiny_bundle), "--workers", "1", *extra]
        runs[name] = (_launch(args, folder / "log.txt"), condition(out), folder / "log.txt")
    killed = _kill_at_moments(runs)
    for name, run in killed.items():
        run.out_before = before[name]
    return {name: (outs[name], killed[name]) for name in SCAN_MOMENTS}


@pytest.mark.parametrize("moment", list(SCAN_MOMENTS))
def test_scan_killed_then_resumed_equals_an_uninterrupted_run(moment, killed_scans, incoming, tiny_bundle,
                                                               reference):
    out, run = killed_scans[moment]
    assert run.returncode == -signal.SIGKILL, f"the run ended before it was killed:\n{run.log[-2000:]}"
    if run.out_before is None:
        _assert_absent_or_complete(out)
    else:
        assert out.read_bytes() == run.out_before, "a killed --resume run changed the earlier complete CSV"
    saved = {row_key(row) for row in read_rows(out) + read_rows(_sibling(out, ".partial")) if not row["error"]}

    result = _scan_in_process(incoming, out, tiny_bundle, "--resume")

    assert out.read_bytes() == reference
    assert f"skipped (resume) {len(saved)} " in result.stderr  # the work saved before the kill is kept
    assert not _sibling(out, ".partial").exists() and not _sibling(out, ".lock").exists()


# --- fit ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def labelled(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("fit_data")
    for i in range(30):
        for label, lesion, offset in (("yes", True, 0), ("no", False, 1000)):
            path = root / label / f"{label}{i}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(path), brain_like(offset + i, size=(96, 80), lesion=lesion))
    return root


def _staging_exists(out: Path) -> Callable[[], bool]:
    return lambda: any(out.parent.glob(f".{out.name}.partial-*"))


def _log_says(log: Path, text: str) -> Callable[[], bool]:
    return lambda: text in log.read_text(errors="replace")


@pytest.fixture(scope="module")
def killed_fits(labelled, tiny_bundle, tmp_path_factory) -> dict[str, tuple[Path, KilledRun]]:
    """Two fits side by side: one killed while training, one while saving over a good bundle."""
    common = [str(labelled), "--image-size", "64", "--workers", "1", "--arch", "seed", "--seed", "5"]
    fresh = tmp_path_factory.mktemp("fit_training") / "model"
    replacing = tmp_path_factory.mktemp("fit_saving") / "model"
    shutil.copytree(tiny_bundle, replacing)
    fresh_log, replacing_log = fresh.with_name("log.txt"), replacing.with_name("log.txt")
    runs = {
        "training": (_launch(["fit", *common, "--out", str(fresh), "--epochs", "50"], fresh_log),
                     _log_says(fresh_log, "epoch 1:"), fresh_log),
        "saving_over_a_good_bundle": (
            _launch(["fit", *common, "--out", str(replacing), "--epochs", "1", "--overwrite"], replacing_log),
            _staging_exists(replacing), replacing_log),
    }
    killed = _kill_at_moments(runs)
    return {"training": (fresh, killed["training"]),
            "saving_over_a_good_bundle": (replacing, killed["saving_over_a_good_bundle"])}


def test_fit_killed_while_training_leaves_no_bundle(killed_fits):
    out, run = killed_fits["training"]
    assert run.returncode == -signal.SIGKILL, run.log[-2000:]
    assert not out.exists()
    assert not list(out.parent.glob(f"{out.name}.replaced-*"))


def test_fit_killed_while_saving_over_a_good_bundle_leaves_it_untouched(killed_fits, tiny_bundle):
    out, run = killed_fits["saving_over_a_good_bundle"]
    assert run.returncode == -signal.SIGKILL, run.log[-2000:]
    for name in (MODEL_FILE, CARD_FILE):
        assert (out / name).read_bytes() == (tiny_bundle / name).read_bytes()
    assert load_bundle(out).model_id == load_bundle(tiny_bundle).model_id
    assert not list(out.parent.glob(f"{out.name}.replaced-*"))
