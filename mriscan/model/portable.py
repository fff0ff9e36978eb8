"""A loaded model bundle as bytes that travel to worker processes, local or on a Dask cluster.

Scan hands a :class:`PortableModel` to its executor as a shipment (:mod:`mriscan.execution.shipping`);
each worker opens it once, with the checks of a local load (sha256 against the card, Keras
``safe_mode``). In the process that made it, opening gives back the bundle it was made from.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from mriscan.errors import ModelBundleError
from mriscan.io.hashing import bytes_sha256
from mriscan.model.bundle import ModelBundle, load_bundle, pinned_files, write_card
from mriscan.model.card import ModelCard


@dataclass(frozen=True)
class PortableModel:
    """The files a bundle's card pins (``model.keras``, and ``model.onnx`` when listed), with its card."""

    files: dict[str, bytes]
    card: ModelCard
    directory: Path  # where the client loaded it from, for messages
    local: ModelBundle | None = field(default=None, compare=False, repr=False)

    @classmethod
    def from_bundle(cls, bundle: ModelBundle) -> PortableModel:
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
        return cls(files, bundle.card, bundle.directory, local=bundle)

    @property
    def key(self) -> str:
        """What a worker's tasks find the model by: the same model_id, the same model."""
        return f"mriscan-model-{self.card.model_id}"

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "local": None}  # only the bytes travel

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)

    def open(self) -> ModelBundle:
        """The bundle: the one it was made from in this process, else loaded from the bytes (ONNX when listed)."""
        if self.local is not None:
            return self.local
        with tempfile.TemporaryDirectory(prefix="mriscan-model-") as folder:
            for name, data in self.files.items():
                (Path(folder) / name).write_bytes(data)  # names from pinned_files: plain file names
            write_card(self.card, Path(folder))
            bundle = load_bundle(Path(folder), keras=False)  # as a local scan: the ONNX network when there is one
        return replace(bundle, directory=self.directory)
