"""The model card (``model.json``) as typed values: read, checked and upgraded here, and nowhere else.

A card says how a model turns pixels into an answer (architecture, input size, preprocessing,
thresholds, calibration, the network file that predicts) and how it was made (data, training,
metrics, lineage). :class:`ModelCard` gives the first part typed fields; the reports (``data``,
``training``, ``metrics``, ``lineage``) stay the JSON objects fit writes. Keys this mriscan does not
know (a newer fit's) are kept in ``extra``, and a card read and written again is the same text:
values are written back as they were read unless they changed, in the order they were read.

Older cards are upgraded when read, in the typed values only (the text stays): a card without a
preprocessing ``version`` was made with version 1, one without ``calibration`` has temperature 1,
one without ``network_file`` predicts with Keras, one without ``fingerprints`` cannot tell its training
images from others.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from mriscan.data.preprocess import PreprocessConfig
from mriscan.errors import ModelBundleError
from mriscan.io.hashing import bytes_sha256

REQUIRED_FIELDS = ("model_id", "architecture", "input_size", "preprocessing", "threshold", "review_threshold")
MODEL_DEFINING_FIELDS = (*REQUIRED_FIELDS, "input_channels", "class_names", "calibration",
                         "input_statistics_ranges", "network_file", "fingerprints")
"""What scan reads from a card to turn pixels into rows, and the files it pins: never changed after fit."""
ONNX_FILE = "model.onnx"

Record = TypeVar("Record", bound="JsonRecord")


@dataclass(frozen=True, kw_only=True)
class JsonRecord:
    """A JSON object with typed fields; other keys in ``extra``; the text it was read from kept for writing.

    A field that is None is absent (unless the JSON said null); ``to_json`` writes the keys in the
    order they were read, each value as it was read when the typed value did not change.
    """

    extra: Mapping[str, Any] = field(default_factory=dict)
    source: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)

    DECODE: ClassVar[Mapping[str, Callable[[Any], Any]]] = {}

    @classmethod
    def declared(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls) if f.name not in ("extra", "source"))

    @classmethod
    def from_json(cls: type[Record], data: Mapping[str, Any]) -> Record:
        """The record of a JSON object (``data`` is not modified)."""
        declared = cls.declared()
        values = {name: cls._decode(name, data[name]) for name in declared if name in data}
        return cls(**values, extra={k: v for k, v in data.items() if k not in declared}, source=dict(data))

    @classmethod
    def _decode(cls, name: str, value: Any) -> Any:
        decode = cls.DECODE.get(name)
        return value if decode is None or value is None else decode(value)

    def to_json(self) -> dict[str, Any]:
        """The JSON object: as read, with what changed written anew, and new keys at the end."""
        fresh = {name: _encode(getattr(self, name)) for name in self.declared()
                 if getattr(self, name) is not None or name in self.source}
        fresh.update(self.extra)
        written = {key: original if self._unchanged(key, original) else fresh[key]
                   for key, original in self.source.items() if key in fresh}
        return {**written, **{key: value for key, value in fresh.items() if key not in written}}

    def _unchanged(self, key: str, original: Any) -> bool:
        if key in self.extra:
            return self.extra[key] == original
        return self._decode(key, original) == getattr(self, key)


def _encode(value: Any) -> Any:
    if isinstance(value, JsonRecord):
        return value.to_json()
    if isinstance(value, PreprocessConfig):
        return value.to_dict()
    if isinstance(value, tuple):
        return list(value)
    return value


def _plain_name(name: str) -> str:
    """The last part of a file name from a card (a card never names a file outside its bundle)."""
    return Path(str(name)).name


def _strings(value: Any) -> tuple[str, ...]:
    return tuple(str(item) for item in value)


@dataclass(frozen=True, kw_only=True)
class Calibration(JsonRecord):
    """How the network's outputs were calibrated: a temperature on the logit scale."""

    method: str | None = None
    temperature: float = 1.0
    network: str | None = None  # which network's outputs the temperature was fitted on

    DECODE: ClassVar[Mapping[str, Callable[[Any], Any]]] = {"temperature": float}


@dataclass(frozen=True, kw_only=True)
class NetworkFileEntry(JsonRecord):
    """The network file that predicts (``model.onnx``), pinned by its sha256."""

    name: str = ONNX_FILE
    sha256: str = ""
    precision: str | None = None

    @property
    def file_name(self) -> str:
        """The plain file name: never a path outside the bundle.

        Examples
        --------
        >>> NetworkFileEntry(name="../elsewhere/model.onnx").file_name
        'model.onnx'
        """
        return _plain_name(self.name)

    @property
    def precision_name(self) -> str:
        return self.precision or "fp32"


@dataclass(frozen=True, kw_only=True)
class FingerprintsEntry(JsonRecord):
    """The fingerprints of the images the model was trained and validated on (``mriscan/dedup/fingerprints.py``).

    ``images`` counts them; ``splits`` says which of fit's splits they come from; ``parent`` (for a
    model trained ``--init-from`` another) holds that model's id and how many of its own it passed on
    (None: it kept none, so copies of its training images go unnoticed).
    """

    name: str = ""
    sha256: str = ""
    images: int = 0
    splits: tuple[str, ...] = ()
    near_copy_rule: str | None = None
    parent: Mapping[str, Any] | None = None

    DECODE: ClassVar[Mapping[str, Callable[[Any], Any]]] = {"images": int, "splits": _strings}

    @property
    def file_name(self) -> str:
        """The plain file name: never a path outside the bundle."""
        return _plain_name(self.name)


@dataclass(frozen=True, kw_only=True)
class ModelCard(JsonRecord):
    """A bundle's card. Fields in the order fit writes them; None means the card does not say."""

    model_id: str
    mriscan_version: str | None = None
    architecture: str
    parameters: int | None = None
    input_size: int
    input_channels: int | None = None
    preprocessing: PreprocessConfig
    class_names: tuple[str, ...] | None = None
    threshold: float
    review_threshold: float
    threshold_rule: str | None = None
    review_threshold_rule: str | None = None
    threshold_sources: tuple[str, ...] | None = None
    threshold_warning: str | None = None
    calibration: Calibration | None = None
    data: Mapping[str, Any] | None = None
    training: Mapping[str, Any] | None = None
    metrics: Mapping[str, Any] | None = None
    input_statistics_ranges: Mapping[str, Any] | None = None
    lineage: Mapping[str, Any] | None = None
    created: str | None = None
    network_file: NetworkFileEntry | None = None
    fingerprints: FingerprintsEntry | None = None

    DECODE: ClassVar[Mapping[str, Callable[[Any], Any]]] = {
        "model_id": str, "architecture": str, "input_size": int, "input_channels": int, "parameters": int,
        "preprocessing": PreprocessConfig.from_dict, "class_names": _strings, "threshold": float,
        "review_threshold": float, "threshold_sources": _strings, "calibration": Calibration.from_json,
        "network_file": NetworkFileEntry.from_json, "fingerprints": FingerprintsEntry.from_json,
    }

    @classmethod
    def from_json(cls, data: Mapping[str, Any], where: str = "the model card") -> ModelCard:
        """Check and read a card; ModelBundleError says what is wrong with it (``where`` names it)."""
        if not isinstance(data, Mapping):
            raise ModelBundleError(f"{where} is not a readable model card (not a JSON object)")
        missing = [name for name in REQUIRED_FIELDS if name not in data]
        if missing:
            raise ModelBundleError(f"{where} lacks the fields {missing}; re-create the bundle with 'mriscan fit'")
        try:
            return super().from_json(data)
        except (TypeError, ValueError, AttributeError) as error:
            raise ModelBundleError(f"{where} is not a readable model card ({error})") from error

    @classmethod
    def from_text(cls, text: str, where: str = "the model card") -> ModelCard:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as error:
            raise ModelBundleError(f"{where} is not a readable model card ({error})") from error
        return cls.from_json(data, where)

    def to_text(self) -> str:
        """``model.json``'s text."""
        return json.dumps(self.to_json(), indent=2, sort_keys=False) + "\n"

    @property
    def temperature(self) -> float:
        """The calibration temperature (1 for cards without calibration)."""
        return self.calibration.temperature if self.calibration is not None else 1.0

    @property
    def statistics_ranges(self) -> Mapping[str, Any]:
        """The training images' input-statistics ranges ({} when the card has none: no out-of-range flags)."""
        return self.input_statistics_ranges or {}

    def trained_on_fingerprints(self) -> set[str]:
        """The sha256 fingerprints of the non-empty data folders the model was trained on (from its lineage)."""
        lineage = self.lineage or {}
        return {f["sha256"] for f in lineage.get("data_fingerprints", []) if f["files"]}

    def pinned_files(self) -> dict[str, str]:
        """The bundle's files whose sha256 the card records: ``model.keras``, and the network and fingerprints
        files when listed."""
        files = {"model.keras": self.model_id}
        for entry in (self.network_file, self.fingerprints):
            if entry:
                files[entry.file_name] = entry.sha256
        return files

    def with_figures(self, **figures: Any) -> ModelCard:
        """The card with report figures added or replaced (e.g. measured later); never a model-defining field."""
        protected = sorted(set(figures) & set(MODEL_DEFINING_FIELDS))
        if protected:
            raise ModelBundleError(f"update_card cannot change {protected}: they describe how the model was made; "
                                   "train a new bundle instead")
        declared = {k: v for k, v in figures.items() if k in self.declared()}
        extra = {k: v for k, v in figures.items() if k not in declared}
        # written as given, new keys in the order given (the card's text so far, then the figures)
        return replace(self, **declared, extra={**self.extra, **extra}, source={**self.to_json(), **figures})


def read_pinned_file(directory: Path, entry: NetworkFileEntry | FingerprintsEntry, field_name: str, role: str) -> bytes:
    """The bytes of a file the card lists under ``field_name``, after checking them against its sha256.

    Raises
    ------
    ModelBundleError
        When the file is missing or unreadable, or its sha256 differs from the card's (``role`` says
        what the card lists it as).
    """
    path = Path(directory) / entry.file_name
    try:
        data = path.read_bytes()
    except OSError as error:
        raise ModelBundleError(f"{path} is missing or unreadable ({error.strerror}): the card lists it as {role}; "
                               "restore the bundle or train a new one") from error
    if bytes_sha256(data) != entry.sha256:
        raise ModelBundleError(f"{path} does not match its card: its sha256 differs from {field_name}.sha256 in "
                               "model.json. The file was damaged or swapped; restore the bundle or train a new one.")
    return data
