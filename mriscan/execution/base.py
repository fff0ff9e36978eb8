"""The executor interface: ``map_ordered(task, chunks)``, results in chunk order, with bounded look-ahead.

Every stage that spreads work (scan, dedup, fit's and evaluate's loading) hands an executor a task
and the chunks to run it on; which executor (inline, local processes, Dask) is chosen once, by
:func:`mriscan.execution.executor.choose_executor`. What a task needs on every worker besides its
chunk (a model) travels as a :class:`~mriscan.execution.shipping.Shipment`, the same way for all of them.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, TypeVar

DEFAULT_CHUNK_SIZE = 64
T = TypeVar("T")
R = TypeVar("R")


class Executor(ABC):
    """Runs a task on chunks somewhere (this process, worker processes, a cluster) and yields results in order.

    Only a few chunks per worker are submitted ahead of the one being consumed, so memory stays
    bounded however many chunks there are; work not collected when the consumer stops (an error,
    an interrupt) is cancelled.
    """

    @abstractmethod
    def map_ordered(self, task: Callable[[T], R], chunks: Sequence[T]) -> Iterator[R]:
        """``task(chunk)`` for each chunk, yielded in chunk order."""

    def close(self) -> None:  # noqa: B027 (an executor without resources needs nothing here)
        """Let the workers go (called when the executor's ``with`` block ends)."""


def chunked(items: Sequence[T], chunk_size: int) -> list[list[T]]:
    """``items`` cut into consecutive chunks of ``chunk_size`` (the last one shorter).

    Examples
    --------
    >>> chunked(["a", "b", "c"], 2)
    [['a', 'b'], ['c']]
    """
    return [list(items[i : i + chunk_size]) for i in range(0, len(items), chunk_size)]


def in_order_with_look_ahead(
    submit: Callable[[T], Any], items: Iterable[T], in_flight: int, cancel: Callable[[list[Any]], None]
) -> Iterator[Any]:
    """Yield the future of ``submit(item)`` for each item, in order, keeping ``in_flight`` submitted ahead.

    A new item is submitted only when the oldest future is handed over, so results cannot pile up
    when the consumer is the slower side. Futures not handed over when the consumer stops go to
    ``cancel``. Works with any futures that have ``result()``: concurrent.futures' and Dask's alike.
    """
    pending: deque[Any] = deque()
    try:
        for item in items:
            pending.append(submit(item))
            if len(pending) >= in_flight:
                yield pending.popleft()
        while pending:
            yield pending.popleft()
    finally:
        if pending:
            cancel(list(pending))
