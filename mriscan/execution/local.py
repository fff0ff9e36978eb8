"""Local worker processes (joblib's loky executor): chunks mapped in order, with bounded look-ahead.

Only a few chunks per worker are submitted ahead of the one being consumed, so memory stays
bounded however many items there are. Each worker starts with one OpenCV thread and receives the
executor's shipments (:mod:`mriscan.execution.shipping`) once.

Workers never outlive the command: they are started with Ctrl-C ignored (the main process alone
handles it, says how to resume, and no worker prints a traceback), and each one exits within
about a second of its parent's death (a ``kill -9`` of the command included).
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future

from joblib.externals.loky import ProcessPoolExecutor

from mriscan.execution.base import Executor, R, T, in_order_with_look_ahead
from mriscan.execution.shipping import Shipment, receive

LOOK_AHEAD_PER_WORKER = 2
"""Chunks per worker process submitted ahead of the one being consumed (loading while predicting)."""
PARENT_CHECK_SECONDS = 0.5
"""How often a worker checks that the process that started it is still alive."""


def single_threaded_opencv() -> None:
    """One OpenCV thread per process, as the worker processes already fill the cores.

    OpenCV's own threads only add hand-over work there.
    """
    import cv2

    cv2.setNumThreads(1)


def start_worker(shipments: tuple[Shipment, ...]) -> None:
    """A worker process's start-up: one OpenCV thread, the shipments its tasks will ask for, and a
    watch on its parent."""
    exit_with_parent(os.getppid())
    single_threaded_opencv()
    receive(shipments)


def exit_with_parent(parent: int, interval: float = PARENT_CHECK_SECONDS) -> threading.Thread:
    """Watch, from a daemon thread, that ``parent`` is still this process's parent; exit at once when not.

    A killed parent re-parents its workers (to init or a subreaper): without this, loky's workers
    and their resource tracker would wait for work forever.
    """

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(interval)
        os._exit(1)

    watcher = threading.Thread(target=watch, name="mriscan-parent-watch", daemon=True)
    watcher.start()
    return watcher


class ProcessExecutor(Executor):
    """``workers`` processes of this executor's own (loky's, as joblib uses; no state shared with joblib's)."""

    def __init__(self, workers: int, shipments: Sequence[Shipment] = ()) -> None:
        self.workers = workers
        self._pool = ProcessPoolExecutor(max_workers=workers, initializer=start_worker, initargs=(tuple(shipments),))
        with _interrupts_ignored_by_children():
            self._pool.submit(int)  # starts every worker now (loky starts them all at the first task)

    def map_ordered(self, task: Callable[[T], R], chunks: Sequence[T]) -> Iterator[R]:
        """At most ``LOOK_AHEAD_PER_WORKER`` results per worker are ahead of the one being consumed."""
        futures = in_order_with_look_ahead(lambda chunk: self._pool.submit(task, chunk), chunks,
                                           LOOK_AHEAD_PER_WORKER * self.workers, _cancel_all)
        try:
            for future in futures:
                yield future.result()
        finally:  # also when the consumer stopped early: cancel the work not started
            futures.close()

    def close(self) -> None:
        self._pool.shutdown(wait=False)


class _interrupts_ignored_by_children:  # noqa: N801 (used as a statement: ``with _interrupts_ignored_by_children()``)
    """Ignore SIGINT while child processes start, so they inherit "ignored" (Python then never turns
    it into KeyboardInterrupt there); restore the handler after. Only the main thread can do this."""

    def __enter__(self) -> None:
        self._previous = None
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, signal.SIG_IGN)

    def __exit__(self, *exc: object) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)


def _cancel_all(futures: list[Future]) -> None:
    for future in futures:
        future.cancel()
