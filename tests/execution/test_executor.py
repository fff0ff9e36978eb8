"""The executors: map_ordered keeps chunk order and a bounded look-ahead; choose_executor picks one in one place."""

from __future__ import annotations

from concurrent.futures import Future
from dataclasses import dataclass
from functools import partial

import pytest

from mriscan.execution.base import in_order_with_look_ahead
from mriscan.execution.executor import choose_executor
from mriscan.execution.inline import InlineExecutor
from mriscan.execution.local import ProcessExecutor
from mriscan.execution.shipping import opened, opens


@dataclass(frozen=True)
class Offset:
    """A made-up shipment: what a worker adds to every item."""

    amount: int

    @property
    def key(self) -> str:
        return f"offset-{self.amount}"

    def open(self) -> int:
        return self.amount


def add_shipped(chunk: list[int], key: str) -> list[int]:
    return [item + opened(key) for item in chunk]


def test_choose_executor_runs_inline_for_one_worker_or_one_chunk_and_in_processes_otherwise() -> None:
    for workers, chunks, kind in ((1, 5, InlineExecutor), (2, 1, InlineExecutor), (2, 5, ProcessExecutor)):
        with choose_executor(workers, chunks=chunks) as executor:
            assert type(executor) is kind


@pytest.mark.parametrize("workers", [1, 2])
def test_every_executor_returns_results_in_chunk_order_with_the_shipment_opened_once(workers: int) -> None:
    chunks = [[i, i + 1] for i in range(0, 20, 2)]
    shipment = Offset(100)
    with choose_executor(workers, chunks=len(chunks), shipments=[shipment]) as executor:
        results = list(executor.map_ordered(partial(add_shipped, key=shipment.key), chunks))
    assert results == [[i + 100 for i in chunk] for chunk in chunks]
    if workers == 1:
        assert opens(shipment.key) == 1  # opened here, once for all ten chunks
        with pytest.raises(LookupError):  # and forgotten when the run ended
            opened(shipment.key)


def test_in_order_with_look_ahead_keeps_order_bounds_submissions_and_cancels_the_rest() -> None:
    submitted: list[int] = []
    cancelled: list[Future] = []

    def submit(item: int) -> Future:
        submitted.append(item)
        future: Future = Future()
        future.set_result(item * 10)
        return future

    futures = in_order_with_look_ahead(submit, range(10), 3, cancelled.extend)
    assert next(futures).result() == 0 and submitted == [0, 1, 2]  # nothing submitted beyond the look-ahead
    assert next(futures).result() == 10 and submitted == [0, 1, 2, 3]
    futures.close()  # the consumer stops early
    assert [future.result() for future in cancelled] == [20, 30]
