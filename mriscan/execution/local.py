"""Local worker processes (joblib's loky executor): chunks mapped in order, with bounded look-ahead.

Only a few chunks per worker are submitted ahead of the one being consumed, so memory stays
bounded however many items there are. Each worker starts with one OpenCV thread and receives the
executor's shipments (:mod:`mriscan.execution.shipping`) once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future

from joblib.externals.loky import ProcessPoolExecutor

from mriscan.execution.base import Executor, R, T, in_order_with_look_ahead
from mriscan.execution.shipping import Shipment, receive

LOOK_AHEAD_PER_WORKER = 2
"""Chunks per worker process submitted ahead of the one being consumed (loading while predicting)."""


def single_threaded_opencv() -> None:
    """One OpenCV thread per process, as the worker processes already fill the cores.

    OpenCV's own threads only add hand-over work there.
    """
    import cv2

    cv2.setNumThreads(1)


def start_worker(shipments: tuple[Shipment, ...]) -> None:
    """A worker process's start-up: one OpenCV thread, and the shipments its tasks will ask for."""
    single_threaded_opencv()
    receive(shipments)


class ProcessExecutor(Executor):
    """``workers`` processes of this executor's own (loky's, as joblib uses; no state shared with joblib's)."""

    def __init__(self, workers: int, shipments: Sequence[Shipment] = ()) -> None:
        self.workers = workers
        self._pool = ProcessPoolExecutor(max_workers=workers, initializer=start_worker, initargs=(tuple(shipments),))

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


def _cancel_all(futures: list[Future]) -> None:
    for future in futures:
        future.cancel()
