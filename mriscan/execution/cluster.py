"""Work on an existing Dask cluster (``--scheduler ADDRESS``, the optional ``dask`` extra).

The stages that can run there (scan in :mod:`mriscan.scan.pipeline`, dedup in
:mod:`mriscan.dedup.report`) hand over their own task; this module connects to the scheduler, ships
a model bundle to the workers once, submits chunks in order with bounded look-ahead and turns what
fails on a worker into a :class:`~mriscan.errors.ClusterError`.

A model bundle's bytes travel to each worker once, inside a worker plugin named after the model_id;
a worker loads the network from them on its first task, with the same checks as a local run (sha256
against the card, Keras ``safe_mode``), and keeps it for later tasks and later scans with the same model.

At most a few chunks per worker thread are in flight, so memory stays bounded. Workers must have
mriscan installed and read the input files at the same paths as the client (a shared file
system); they need not see the model folder. Nothing but this module imports Dask, and only when
``--scheduler`` is given.
"""

from __future__ import annotations

import os
import tempfile
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

from mriscan.errors import ClusterError, ModelBundleError, MriscanError

try:
    from distributed import Client, Future, WorkerPlugin, get_worker
except ImportError as error:  # the optional extra is missing: say how to get it, not ModuleNotFoundError
    raise ClusterError(
        "--scheduler runs the work on a Dask cluster, but Dask is not installed here; "
        "install it with: pip install 'mriscan[dask]' (or run without --scheduler)"
    ) from error

from mriscan.execution.local import in_order_with_look_ahead
from mriscan.io.hashing import bytes_sha256
from mriscan.model.bundle import ModelBundle, load_bundle, pinned_files, write_card

CONNECT_SECONDS = 10.0
WORKER_WAIT_SECONDS = 30.0
CHUNKS_PER_THREAD = 2  # in flight per worker thread: one running, one queued behind it


# --- client side ----------------------------------------------------------------------------


def register_model(client: Client, address: str, plugin: ModelPlugin) -> str:
    """Send a model plugin to every worker of ``client`` (once per model); return the name tasks find it by."""
    try:
        client.register_plugin(plugin)
    except Exception as error:  # Dask reports a worker's failed set-up with the worker's own type
        raise ClusterError(f"could not send the model to the workers of {address}: {error}") from error
    return plugin.name


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


def in_order(client: Client, address: str, task: Callable[..., Any], chunks: list[list[Path]],
              *args: Any) -> Iterator[Any]:
    """Submit ``task(chunk, *args)`` for each chunk and yield the results in chunk order.

    At most ``CHUNKS_PER_THREAD`` chunks per worker thread are submitted and not yet collected,
    so neither the cluster nor this process holds more results than that at once.
    """
    in_flight = max(2, CHUNKS_PER_THREAD * sum(client.nthreads().values()))
    for future in in_order_with_look_ahead(lambda chunk: client.submit(task, chunk, *args, pure=False), chunks,
                                           in_flight, client.cancel):
        yield _result(future, address)


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


# --- worker side ----------------------------------------------------------------------------


class ModelPlugin(WorkerPlugin):
    """A model bundle's bytes on a worker, loaded into a :class:`ModelBundle` at first use.

    Registered once per cluster and model: the name holds the model_id, and ``idempotent`` makes a
    later registration with the same name a no-op, so workers keep the network between scans.
    ``loads`` counts how often this worker loaded the network (once, unless loading failed).
    """

    idempotent = True

    def __init__(self, files: Mapping[str, bytes], card: Mapping[str, Any], directory: Path) -> None:
        self.files = dict(files)  # model.keras, and model.onnx when the bundle has one
        self.card = dict(card)
        self.directory = directory
        self.name = f"mriscan-model-{card['model_id']}"
        self.loads = 0
        self._bundle: ModelBundle | None = None
        self._lock: threading.Lock | None = None

    @classmethod
    def from_bundle(cls, bundle: ModelBundle) -> ModelPlugin:
        """Read the files of a loaded bundle; refuse them if they changed since it was loaded."""
        files = {}
        for name, sha256 in pinned_files(bundle.card).items():
            path = bundle.directory / name
            try:
                files[name] = path.read_bytes()
            except OSError as error:
                raise ModelBundleError(f"cannot read {path} to send it to the workers ({error})") from error
            if bytes_sha256(files[name]) != sha256:
                raise ModelBundleError(f"{path} changed since it was loaded; run the scan again")
        return cls(files, bundle.card, bundle.directory)

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_bundle": None, "_lock": None}  # only the bytes travel

    def setup(self, worker: Any) -> None:
        # As in the CLI: TensorFlow's C++ start-up chatter would fill the worker's log at every start.
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        self._lock = threading.Lock()

    def bundle(self) -> ModelBundle:
        """The loaded bundle, loaded on the first call (from a task thread, not the worker's event loop)."""
        assert self._lock is not None, "the plugin was not set up on a worker"
        with self._lock:
            if self._bundle is None:
                self._bundle = _load_shipped(self.files, self.card, self.directory)
                self.loads += 1
            return self._bundle


def _load_shipped(files: Mapping[str, bytes], card: Mapping[str, Any], directory: Path) -> ModelBundle:
    """Load shipped bytes through the ordinary safe loader, via a private temporary folder."""
    with tempfile.TemporaryDirectory(prefix="mriscan-model-") as folder:
        for name, data in files.items():
            (Path(folder) / name).write_bytes(data)  # names from model.pinned_files: plain file names
        write_card(card, Path(folder))
        bundle = load_bundle(Path(folder), keras=False)  # as a local scan: the ONNX network when there is one
    return replace(bundle, directory=directory)  # where the client loaded it from, for messages


def shipped_bundle(plugin_name: str) -> ModelBundle:
    """On a worker: the bundle that :func:`register_model` shipped as ``plugin_name``, loaded at first use."""
    return get_worker().plugins[plugin_name].bundle()
