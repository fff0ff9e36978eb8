"""What a task needs on every worker besides its chunk (a model), sent once per worker and opened at first use.

A :class:`Shipment` is handed to the executor (:func:`~mriscan.execution.executor.choose_executor`),
which delivers it to each worker the one way all executors share: :func:`receive` in the worker
(a local process's start-up, a Dask worker plugin's set-up, or this process for the inline
executor). A task then asks for it by key with :func:`opened`, which opens it once per process
(e.g. loads the network) and keeps it for later tasks, and on a Dask worker for later runs.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterable
from typing import Any, Protocol


class Shipment(Protocol):
    """Something picklable sent once to every worker; ``open()`` makes it usable there."""

    @property
    def key(self) -> str:
        """What tasks find it by; the same key means the same content (e.g. the model_id)."""

    def open(self) -> Any:
        """The usable object (called once per worker process, at first use)."""


class _Received:
    """The shipments this process received, and what opening them gave (one per worker process)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()  # Dask runs tasks in threads
        self.shipments: dict[str, Shipment] = {}
        self.opened: dict[str, Any] = {}
        self.opens: Counter[str] = Counter()


_RECEIVED = _Received()


def receive(shipments: Iterable[Shipment]) -> None:
    """Keep ``shipments`` in this process; one already received under the same key is kept (and stays open)."""
    with _RECEIVED.lock:
        for shipment in shipments:
            _RECEIVED.shipments.setdefault(shipment.key, shipment)


def opened(key: str) -> Any:
    """In a task: the shipment received as ``key``, opened on the first call in this process."""
    with _RECEIVED.lock:
        if key not in _RECEIVED.opened:
            if key not in _RECEIVED.shipments:
                raise LookupError(f"{key} was not shipped to this worker; pass it to choose_executor(shipments=...)")
            _RECEIVED.opened[key] = _RECEIVED.shipments[key].open()
            _RECEIVED.opens[key] += 1
        return _RECEIVED.opened[key]


def opens(key: str) -> int:
    """How often this process opened the shipment ``key`` (once, unless opening failed)."""
    return _RECEIVED.opens[key]


def forget(keys: Iterable[str]) -> None:
    """Drop shipments from this process (the inline executor does, so nothing outlives its run)."""
    with _RECEIVED.lock:
        for key in keys:
            _RECEIVED.shipments.pop(key, None)
            _RECEIVED.opened.pop(key, None)
