"""Work on an existing Dask cluster (``--scheduler ADDRESS``, the optional ``dask`` extra): :class:`DaskExecutor`.

This module connects to the scheduler, delivers the executor's shipments (a model) to every worker
once, submits chunks in order with bounded look-ahead and turns what fails on a worker into a
:class:`~mriscan.errors.ClusterError`.

A shipment travels inside a worker plugin named after its key (for a model, the model_id), which
hands it to :func:`mriscan.execution.shipping.receive` on each worker, as a local worker process's
start-up does; a task opens it at first use (for a model: loads the network with the same checks as
a local run) and the worker keeps it for later tasks and later runs with the same model.

At most a few chunks per worker thread are in flight, so memory stays bounded. Workers must have
mriscan installed and read the input files at the same paths as the client (a shared file
system); they need not see the model folder. Nothing but this module imports Dask, and only when
``--scheduler`` is given.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from mriscan.errors import ClusterError, MriscanError

try:
    from distributed import Client, Future, WorkerPlugin
except ImportError as error:  # the optional extra is missing: say how to get it, not ModuleNotFoundError
    raise ClusterError(
        "--scheduler runs the work on a Dask cluster, but Dask is not installed here; "
        "install it with: pip install 'mriscan[dask]' (or run without --scheduler)"
    ) from error

from mriscan.execution.base import Executor, R, T, in_order_with_look_ahead
from mriscan.execution.shipping import Shipment, receive

CONNECT_SECONDS = 10.0
WORKER_WAIT_SECONDS = 30.0
CHUNKS_PER_THREAD = 2  # in flight per worker thread: one running, one queued behind it


class DaskExecutor(Executor):
    """Chunks run as tasks on the workers of ``client``; results come back in chunk order."""

    def __init__(self, client: Client, address: str, shipments: Sequence[Shipment] = ()) -> None:
        self.client = client
        self.address = address
        for shipment in shipments:
            self._deliver(shipment)

    def _deliver(self, shipment: Shipment) -> None:
        """Send ``shipment`` to every worker, once per cluster and key."""
        try:
            self.client.register_plugin(ShipmentPlugin(shipment))
        except Exception as error:  # Dask reports a worker's failed set-up with the worker's own type
            raise ClusterError(f"could not send {shipment.key} to the workers of {self.address}: {error}") from error

    def map_ordered(self, task: Callable[[T], R], chunks: Sequence[T]) -> Iterator[R]:
        """At most ``CHUNKS_PER_THREAD`` chunks per worker thread are submitted and not yet collected,
        so neither the cluster nor this process holds more results than that at once."""
        in_flight = max(2, CHUNKS_PER_THREAD * sum(self.client.nthreads().values()))
        for future in in_order_with_look_ahead(lambda chunk: self.client.submit(task, chunk, pure=False), chunks,
                                               in_flight, self.client.cancel):
            yield _result(future, self.address)


@contextmanager
def connected(address: str) -> Iterator[Client]:
    """A client of the scheduler at ``address`` with at least one worker; closed on leaving."""
    try:
        client = Client(address, timeout=CONNECT_SECONDS, set_as_default=False)
    except (OSError, TimeoutError, ValueError) as error:
        raise ClusterError(
            f"could not reach a Dask scheduler at {address} within {CONNECT_SECONDS:.0f} s ({error}). Start one "
            "with 'dask scheduler' and workers with 'dask worker ADDRESS', or check the address and firewall"
        ) from error
    try:
        try:
            client.wait_for_workers(1, timeout=WORKER_WAIT_SECONDS)
        except (OSError, TimeoutError) as error:
            raise ClusterError(
                f"the Dask scheduler at {address} has no workers (waited {WORKER_WAIT_SECONDS:.0f} s); "
                f"start some with 'dask worker {address}'"
            ) from error
        yield client
    finally:
        client.close()


def _result(future: Future, address: str) -> Any:
    try:
        return future.result()
    except MriscanError:
        raise
    except Exception as error:  # whatever failed on the worker (lost worker, mriscan missing there, ...)
        raise ClusterError(
            f"a task failed on the Dask cluster at {address} ({type(error).__name__}: {str(error)[:300]}). "
            "Check that every worker has mriscan installed and can read the input files at the same paths"
        ) from error


class ShipmentPlugin(WorkerPlugin):
    """Hands a shipment to each worker (:func:`mriscan.execution.shipping.receive`) when it sets up.

    Named after the shipment's key; ``idempotent`` makes a later registration with the same name a
    no-op, so workers keep an opened model between runs.
    """

    idempotent = True

    def __init__(self, shipment: Shipment) -> None:
        self.shipment = shipment
        self.name = shipment.key

    def setup(self, worker: Any) -> None:
        # As in the CLI: TensorFlow's C++ start-up chatter would fill the worker's log at every start.
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        receive([self.shipment])
