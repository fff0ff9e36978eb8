"""Worker processes of the local executor never outlive the command, and Ctrl-C is the main process's alone."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import psutil
import pytest
from conftest import REPO

_PROGRAM = """
import sys, time
from mriscan.execution.local import ProcessExecutor

def slow(chunk):
    time.sleep(0.3)
    return chunk

executor = ProcessExecutor(2)
try:
    for number, _ in enumerate(executor.map_ordered(slow, list(range(200)))):
        if number == 0:
            print("running", flush=True)
except KeyboardInterrupt:
    print("interrupted", flush=True)
    sys.exit(130)
"""


def _start() -> tuple[subprocess.Popen, list[psutil.Process]]:
    main = subprocess.Popen([sys.executable, "-c", _PROGRAM], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    assert main.stdout is not None and main.stdout.readline().strip() == "running"
    children = psutil.Process(main.pid).children(recursive=True)
    assert len(children) >= 2
    return main, children


def _running(process: psutil.Process) -> bool:
    """Alive and not a zombie (an exited orphan may wait as a zombie for a container's PID 1 to reap it)."""
    try:
        return process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _gone_within(processes: list[psutil.Process], seconds: float) -> list[psutil.Process]:
    deadline = time.monotonic() + seconds
    while any(_running(p) for p in processes) and time.monotonic() < deadline:
        time.sleep(0.2)
    alive = [p for p in processes if _running(p)]
    for process in alive:  # leave nothing behind, whatever the outcome
        process.kill()
    return alive


@pytest.mark.slow
def test_workers_exit_soon_after_the_main_process_is_killed() -> None:
    main, children = _start()
    os.kill(main.pid, signal.SIGKILL)
    main.wait(timeout=30)
    assert _gone_within(children, 10) == []


@pytest.mark.slow
def test_ctrl_c_reaches_the_main_process_only_and_workers_print_nothing() -> None:
    main, children = _start()
    time.sleep(0.5)
    os.killpg(main.pid, signal.SIGINT)  # what a terminal's Ctrl-C does: the whole foreground group
    stdout, stderr = main.communicate(timeout=60)
    assert main.returncode == 130 and "interrupted" in stdout
    assert "Traceback" not in stderr and "KeyboardInterrupt" not in stderr, stderr
    assert _gone_within(children, 10) == []
