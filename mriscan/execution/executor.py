"""Where work runs, chosen in one place: inline, local worker processes, or a Dask cluster."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from joblib import effective_n_jobs

from mriscan.execution.base import Executor
from mriscan.execution.inline import InlineExecutor
from mriscan.execution.local import ProcessExecutor
from mriscan.execution.shipping import Shipment


@contextmanager
def choose_executor(workers: int = -1, *, scheduler: str | None = None, chunks: int = 2,
                    shipments: Sequence[Shipment] = ()) -> Iterator[Executor]:
    """The executor for a run, closed when the ``with`` block ends.

    On the Dask cluster at ``scheduler`` when one is given (only then is Dask imported); else
    ``workers`` local processes (counted as joblib's ``n_jobs``: -1 = all cores) when more than one
    and there is more than one chunk; else this process. ``shipments`` reach every worker once.
    """
    if scheduler is not None:
        from mriscan.execution.cluster import DaskExecutor, connected

        with connected(scheduler) as client:
            yield DaskExecutor(client, scheduler, shipments)
        return
    processes = effective_n_jobs(workers)
    executor = ProcessExecutor(processes, shipments) if processes > 1 and chunks > 1 else InlineExecutor(shipments)
    try:
        yield executor
    finally:
        executor.close()
