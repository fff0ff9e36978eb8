"""The inline executor: every chunk in this process, one after another (``--workers 1``, or one chunk)."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

from mriscan.execution.base import Executor, R, T
from mriscan.execution.shipping import Shipment, forget, receive


class InlineExecutor(Executor):
    """Runs ``task(chunk)`` here, lazily: a chunk is computed when its result is asked for."""

    def __init__(self, shipments: Sequence[Shipment] = ()) -> None:
        self._keys = [shipment.key for shipment in shipments]
        receive(shipments)

    def map_ordered(self, task: Callable[[T], R], chunks: Sequence[T]) -> Iterator[R]:
        for chunk in chunks:
            yield task(chunk)

    def close(self) -> None:
        forget(self._keys)
