"""What scan prints: nothing with --quiet, plain timestamped lines and a one-line summary for cron."""

from __future__ import annotations

import re

import pytest
from click.testing import CliRunner
from conftest import brain_like

from mriscan import progress
from mriscan.cli import EXIT_OK, EXIT_UNREADABLE, cli

LOG_LINE = re.compile(r"^\[mriscan \d\d:\d\d:\d\d\] ")
SUMMARY = re.compile(r"^scanned (\d+), tumor (\d+), flagged (\d+), unreadable (\d+), skipped \(resume\) (\d+) "
                     r"in \d+\.\d s \(\d+\.\d files/s\) -> (.+)$")


@pytest.fixture
def incoming(tmp_path, write_png):
    """70 readable slices (two chunks of the loader) and one unreadable file."""
    root = tmp_path / "in"
    for i in range(70):
        write_png(root / f"s{i:02d}.png", brain_like(i, size=(72, 64)))
    (root / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    return root


def _scan(root, out, bundle, *extra):
    return CliRunner().invoke(cli, ["scan", str(root), "--out", str(out), "--model", str(bundle), "--workers", "1",
                                    *extra])


def test_quiet_prints_nothing_on_success(tmp_path, tiny_bundle, write_png):
    write_png(tmp_path / "in" / "a.png", brain_like(1))
    result = _scan(tmp_path / "in", tmp_path / "r.csv", tiny_bundle, "--quiet")
    assert result.exit_code == EXIT_OK, result.output
    assert result.output == "" and result.stderr == ""
    assert (tmp_path / "r.csv").read_text().count("\n") == 2


def test_quiet_still_reports_a_fatal_error(tmp_path, tiny_bundle, write_png):
    write_png(tmp_path / "in" / "a.png", brain_like(1))
    (tmp_path / "r.csv").write_text("precious")
    result = _scan(tmp_path / "in", tmp_path / "r.csv", tiny_bundle, "--quiet")
    assert result.exit_code != EXIT_OK and "--resume" in result.stderr


def test_without_a_terminal_progress_is_plain_log_lines_and_one_summary_line(incoming, tmp_path, tiny_bundle,
                                                                            monkeypatch):
    monkeypatch.setattr(progress, "LOG_INTERVAL_SECONDS", 0.0)  # a line per chunk instead of every 30 s
    out = tmp_path / "r.csv"
    result = _scan(incoming, out, tiny_bundle)
    assert result.exit_code == EXIT_UNREADABLE, result.output
    assert result.stdout == "" and "\x1b" not in result.stderr  # no terminal codes in a cron mail
    *log, summary = result.stderr.splitlines()
    assert log and all(LOG_LINE.match(line) for line in log), log
    assert "scanning: 71 to do" in log[0]
    assert any(re.search(r"\] 64/71 \(\d+\.\d/s\)$", line) for line in log), log
    scanned, tumor, flagged, unreadable, skipped, target = SUMMARY.match(summary).groups()
    assert (int(scanned), int(unreadable), int(skipped), target) == (70, 1, 0, str(out))
    assert int(tumor) <= 70 and int(flagged) <= 71


def test_resumed_scan_reports_skipped_files_and_only_the_rest_to_do(incoming, tmp_path, tiny_bundle, write_png):
    out = tmp_path / "r.csv"
    assert _scan(incoming, out, tiny_bundle, "--quiet").exit_code == EXIT_UNREADABLE
    write_png(incoming / "new.png", brain_like(500))
    result = _scan(incoming, out, tiny_bundle, "--resume")
    *log, summary = result.stderr.splitlines()
    assert "scanning: 2 of 72 to do" in log[0]  # the new file and the unreadable one, retried
    scanned, _, _, unreadable, skipped, _ = SUMMARY.match(summary).groups()
    assert (scanned, unreadable, skipped) == ("1", "1", "70")


@pytest.mark.slow
def test_quiet_real_process_prints_nothing_at_all(tmp_path, tiny_bundle, write_png):
    """Not even TensorFlow's native start-up lines, which a cron job would mail every night."""
    import subprocess
    import sys

    from conftest import brain_like

    write_png(tmp_path / "in" / "a.png", brain_like(1))
    done = subprocess.run([sys.executable, "-m", "mriscan", "scan", str(tmp_path / "in"), "--out",
                           str(tmp_path / "r.csv"), "--model", str(tiny_bundle), "--workers", "1", "--quiet"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and done.stdout == "" and done.stderr == "", done.stderr
    assert (tmp_path / "r.csv").exists()
