"""The model bundle: ``model.keras`` + ``model.json`` (the model card), saved atomically, loaded safely.

A bundle is refused when a file is missing, when the weights' sha256 differs from the card's
``model_id`` (truncated or swapped weights), or when Keras' ``safe_mode`` rejects its content
(e.g. a Lambda layer carrying code). Bundles written by ``fit`` also hold ``model.onnx``, the network
that predicts (``mriscan/model/export.py``; in int8, its outputs are what the thresholds were chosen
on), checked against the card the same way, and the fingerprints of the images the model was trained
and validated on (``fingerprints.json.gz``, ``mriscan/dedup/fingerprints.py``), so that evaluate can
tell its own training images from new ones.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from mriscan.data.preprocess import PreprocessConfig
from mriscan.dedup.fingerprints import FINGERPRINTS_FILE, NEAR_COPY_RULE, ImageFingerprints
from mriscan.errors import ModelBundleError
from mriscan.io.atomic import check_output_folder, replace_file, write_folder_atomically
from mriscan.io.hashing import bytes_sha256, file_sha256
from mriscan.model.card import FingerprintsEntry, ModelCard, NetworkFileEntry, read_pinned_file

if TYPE_CHECKING:
    from mriscan.model.export import NetworkFile
    from mriscan.model.runtime import OnnxNetwork

MODEL_FILE = "model.keras"
CARD_FILE = "model.json"
MODEL_ENV = "MRISCAN_MODEL"
PREDICT_BATCH = 64
NO_TUMOR, TUMOR = "no_tumor", "tumor"
"""The two predictions (the class names of the model's output 0 and 1)."""
_UNUSED_BY_KERAS = ("sklearn", "matplotlib")
_FINGERPRINTS_ROLE = "the fingerprints of the images the model was trained on"


@dataclass(frozen=True)
class ModelBundle:
    """A loaded model and its card.

    ``model`` is the network as trained (its weights continue training with ``fit --init-from``);
    ``inference_model`` computes the same with BatchNormalization folded into the convolutions,
    more cheaply, and is what explanations run on. ``network`` is the
    bundle's ``model.onnx`` in ONNX Runtime (None for bundles without one): when there is one,
    every prediction goes through it, since the card's thresholds were chosen on its outputs.
    ``model`` is None when the bundle was loaded for prediction only (``load_bundle(..., keras=False)``).
    """

    model: Any
    card: ModelCard
    directory: Path
    network: Any = None

    @cached_property
    def inference_model(self) -> Any:
        from mriscan.model.fold import fold_batch_norm

        if self.model is None:
            raise ModelBundleError("this bundle was loaded for prediction only (without Keras); "
                                   "load it with load_bundle(..., keras=True)")
        return fold_batch_norm(self.model)

    @property
    def model_id(self) -> str:
        return self.card.model_id

    @property
    def threshold(self) -> float:
        return self.card.threshold

    @property
    def review_threshold(self) -> float:
        return self.card.review_threshold

    @property
    def preprocess_config(self) -> PreprocessConfig:
        return self.card.preprocessing

    @property
    def temperature(self) -> float:
        return self.card.temperature

    @cached_property
    def training_fingerprints(self) -> ImageFingerprints | None:
        """The fingerprints of the images this model was trained and validated on; None when its card lists
        none (bundles made before fit kept them)."""
        return read_fingerprints(self.directory, self.card)

    def decide(self, probability: float) -> str:
        """The prediction for a P(tumor): the one place a probability becomes ``tumor`` or ``no_tumor``.

        Examples
        --------
        >>> card = ModelCard.from_json({"model_id": "", "architecture": "seed", "input_size": 64,
        ...                             "preprocessing": {}, "threshold": 0.2, "review_threshold": 0.1})
        >>> bundle = ModelBundle(model=None, card=card, directory=Path("."))
        >>> bundle.decide(0.2), bundle.decide(0.19)
        ('tumor', 'no_tumor')
        """
        return TUMOR if probability >= self.threshold else NO_TUMOR

    def predict(self, batch: np.ndarray) -> np.ndarray:
        """P(tumor) for a batch of model inputs of shape (n, S, S, 1), calibrated by the card."""
        network = self.network if self.network is not None else self.inference_model.predict_on_batch
        return apply_temperature(network_probability(network, batch), self.temperature)


def network_probability(network: Callable[[np.ndarray], Any], images: np.ndarray) -> np.ndarray:
    """The network's P(tumor) for model inputs of shape (n, S, S, 1), before temperature scaling.

    ``network`` maps a float32 batch to outputs (an ``OnnxNetwork``, or a Keras model's
    ``predict_on_batch``). Inputs go through it in fixed-size, zero-padded batches: the
    floating-point result for an image then does not depend on how many others came with it, so a
    resumed or parallel scan writes exactly the probabilities of a single uninterrupted run, and
    fit calibrates on exactly the probabilities scan will compute.
    """
    images = np.asarray(images, np.float32)
    raw = [_fixed_batch(network, images[i : i + PREDICT_BATCH]) for i in range(0, len(images), PREDICT_BATCH)]
    return (np.concatenate(raw) if raw else np.zeros(0)).astype(np.float64)


def _fixed_batch(network: Callable[[np.ndarray], Any], images: np.ndarray) -> np.ndarray:
    padded = images  # a full batch goes as it is: no 5.8 MB copy per 64 images
    if len(images) < PREDICT_BATCH:
        padded = np.zeros((PREDICT_BATCH, *images.shape[1:]), np.float32)
        padded[: len(images)] = images
    return np.asarray(network(padded)).reshape(-1)[: len(images)]


def apply_temperature(probability: np.ndarray, temperature: float) -> np.ndarray:
    """Rescale probabilities by a temperature on the logit scale (temperature 1 changes nothing).

    Examples
    --------
    >>> apply_temperature(np.array([0.5, 0.9]), 1.0).round(3).tolist()
    [0.5, 0.9]
    """
    if temperature == 1.0:
        return probability
    clipped = np.clip(probability, 1e-7, 1 - 1e-7)
    logits = np.log(clipped / (1 - clipped)) / temperature
    return 1.0 / (1.0 + np.exp(-logits))


def default_model_dir() -> Path:
    """Where the shipped default bundle lives: $MRISCAN_MODEL, the installed copy, or the source tree."""
    if os.environ.get(MODEL_ENV):
        return Path(os.environ[MODEL_ENV])
    package = Path(__file__).resolve().parents[1]  # mriscan/, above this model/ package
    installed = package / "default_model"
    if (installed / CARD_FILE).exists():
        return installed
    return package.parent / "models" / "default"


def read_card(model_dir: Path) -> ModelCard:
    """Read and check a bundle's card; raise ModelBundleError saying what is wrong."""
    card_path = model_dir / CARD_FILE
    if not model_dir.is_dir():
        raise ModelBundleError(
            f"model folder {model_dir} does not exist; pass --model with a folder written by "
            f"'mriscan fit', or set {MODEL_ENV}"
        )
    try:
        text = card_path.read_text(encoding="utf-8")
    except FileNotFoundError as error:
        raise ModelBundleError(f"{card_path} is missing: {model_dir} is not a complete model bundle") from error
    except (OSError, UnicodeDecodeError) as error:
        raise ModelBundleError(f"{card_path} is not a readable model card ({error})") from error
    return ModelCard.from_text(text, where=str(card_path))


def load_bundle(model_dir: Path | None = None, *, keras: bool = True) -> ModelBundle:
    """Load a bundle safely: verify the weights against the card, then load with ``safe_mode``.

    A bundle whose card lists a network file (``model.onnx``) predicts with it, in ONNX Runtime,
    after the same checks. With ``keras=False`` (prediction only, as ``scan`` does) such a bundle
    skips Keras, and TensorFlow is never imported; a bundle without one is loaded with Keras.

    Raises
    ------
    ModelBundleError
        When a file is missing, damaged or unsafe, or the network file needs ONNX Runtime and it is
        not installed.
    """
    directory = Path(model_dir) if model_dir is not None else default_model_dir()
    card = read_card(directory)
    weights = directory / MODEL_FILE
    if not weights.is_file():
        raise ModelBundleError(f"{weights} is missing: {directory} is not a complete model bundle")
    if file_sha256(weights) != card.model_id:
        raise ModelBundleError(
            f"{weights} does not match its card: its sha256 differs from model_id {card.model_id[:12]}... "
            "in model.json. The weights were damaged or swapped; restore the bundle or train a new one."
        )
    if card.fingerprints is not None:
        read_pinned_file(directory, card.fingerprints, "fingerprints", _FINGERPRINTS_ROLE)
    network = _load_network(directory, card)
    if network is not None and not keras:
        return ModelBundle(model=None, card=card, directory=directory, network=network)
    model = _safe_load_keras(weights)
    _check_input_size(model.input_shape[1:], card, weights)
    return ModelBundle(model=model, card=card, directory=directory, network=network)


def _load_network(directory: Path, card: ModelCard) -> OnnxNetwork | None:
    """The bundle's network file in ONNX Runtime, checked against the card; None when the card lists none."""
    from mriscan.model.runtime import load_network_file

    entry = card.network_file
    if entry is not None and not _onnx_runtime_installed():
        raise ModelBundleError(
            f"{directory / entry.file_name} is the network this model predicts with "
            f"({entry.precision_name}) and needs ONNX Runtime, which is not installed: pip install "
            "onnxruntime. (Keras is no stand-in: an int8 network's thresholds were chosen on its own outputs.)")
    network = load_network_file(directory, entry)
    if network is not None:
        _check_input_size(network.input_shape[1:], card, directory / entry.file_name)
    return network


def read_fingerprints(directory: Path, card: ModelCard) -> ImageFingerprints | None:
    """The bundle's fingerprints file, checked against the card and read; None when the card lists none."""
    if card.fingerprints is None:
        return None
    data = read_pinned_file(directory, card.fingerprints, "fingerprints", _FINGERPRINTS_ROLE)
    try:
        return ImageFingerprints.from_bytes(data)
    except ValueError as error:
        raise ModelBundleError(f"{directory / card.fingerprints.file_name} cannot be read ({error}); restore the "
                               "bundle or train a new one") from error


def pinned_files(card: ModelCard) -> dict[str, str]:
    """The bundle's files whose sha256 the card records: ``model.keras``, and ``model.onnx`` when listed."""
    return card.pinned_files()


def _onnx_runtime_installed() -> bool:
    """ONNX Runtime is a dependency; an installation without it can still use bundles without a network file."""
    import importlib.util

    return importlib.util.find_spec("onnxruntime") is not None


def _check_input_size(shape: tuple, card: ModelCard, path: Path) -> None:
    expected = (card.input_size, card.input_size, 1)
    if tuple(shape) != expected:
        raise ModelBundleError(f"{path} takes inputs of shape {tuple(shape)}, but its card says {expected}")


def _safe_load_keras(weights: Path) -> Any:
    keras = _import_keras()
    try:
        return keras.saving.load_model(weights, compile=False, safe_mode=True)
    except Exception as error:  # Keras raises many types for bad or unsafe files.
        raise ModelBundleError(
            f"{weights} could not be loaded safely ({type(error).__name__}: {str(error)[:300]}). "
            "mriscan loads models with Keras safe_mode, which refuses code-carrying layers such as Lambda."
        ) from error


def _import_keras() -> Any:
    """Import Keras without the libraries it loads only for features mriscan does not use.

    Keras imports scikit-learn (for its estimator wrappers) and matplotlib (for plotting) when they
    are installed: about a quarter of a scan's start-up. Held back here, they import normally later.
    """
    held_back = [name for name in _UNUSED_BY_KERAS if name not in sys.modules]
    for name in held_back:
        sys.modules[name] = None  # "import name" now fails, which Keras allows for these
    try:
        import keras
    finally:
        for name in held_back:
            if sys.modules.get(name, "") is None:
                del sys.modules[name]
    return keras


def save_bundle(
    model: Any,
    card: ModelCard,
    out_dir: Path,
    *,
    overwrite: bool = False,
    write_extras: Callable[[Path], None] | None = None,
    network: NetworkFile | None = None,
    fingerprints: ImageFingerprints | None = None,
) -> ModelCard:
    """Write a bundle into a temporary folder beside ``out_dir``, then move it into place.

    A killed ``fit`` therefore never leaves a half-written bundle where a good one was. With
    ``overwrite`` an existing bundle is kept as ``<out_dir>.replaced-<UTC time>``, never deleted.
    ``network`` is written as ``model.onnx`` (fit passes the network its thresholds were chosen
    on); by default it is ``model``'s folded network in fp32, which computes what Keras does.
    ``fingerprints`` (of the images the model has seen) are written as ``fingerprints.json.gz``,
    completing ``card.fingerprints`` (which may say where they come from); without them the card lists none.
    Returns the final card: ``card`` with the saved weights' ``model_id``, ``created``, the network file
    and the fingerprints file.
    """
    saved: list[ModelCard] = []

    def write(staging: Path) -> None:
        model.save(staging / MODEL_FILE)
        network_file = network if network is not None else _fp32_network_file(model)
        final = replace(card, model_id=file_sha256(staging / MODEL_FILE),
                        created=card.created or datetime.now(timezone.utc).isoformat(timespec="seconds"))
        if network_file is not None:
            final = replace(final, network_file=NetworkFileEntry.from_json(network_file.entry))
            (staging / final.network_file.file_name).write_bytes(network_file.data)
        final = _with_fingerprints_file(final, fingerprints, staging)
        write_card(final, staging)
        saved.append(final)
        if write_extras is not None:
            write_extras(staging)

    write_folder_atomically(Path(out_dir), write, overwrite=overwrite, kind="bundle")
    return saved[-1]


def _with_fingerprints_file(card: ModelCard, fingerprints: ImageFingerprints | None, folder: Path) -> ModelCard:
    """Write the fingerprints file into ``folder``; return the card that lists it (without fingerprints: lists none)."""
    if fingerprints is None:
        return replace(card, fingerprints=None)
    data = fingerprints.to_bytes()
    (folder / FINGERPRINTS_FILE).write_bytes(data)
    entry = replace(card.fingerprints or FingerprintsEntry(), name=FINGERPRINTS_FILE, sha256=bytes_sha256(data),
                    images=len(fingerprints), near_copy_rule=NEAR_COPY_RULE)
    return replace(card, fingerprints=entry)


def _fp32_network_file(model: Any) -> NetworkFile | None:
    """The folded network in fp32; None for a network the export cannot express (scanned with Keras)."""
    from mriscan.model.export import make_network_file
    from mriscan.model.fold import fold_batch_norm

    try:
        return make_network_file(fold_batch_norm(model))
    except ModelBundleError:
        return None


def add_network_file(model_dir: Path) -> ModelCard:
    """Give an existing bundle its ``model.onnx`` (bundles written before it existed); return the card.

    The Keras model is loaded with the usual checks, exported in fp32 (the card's thresholds were
    chosen on Keras' outputs, which fp32 repeats), compared, and the card is replaced in one rename
    after the file is written, so a scan sees either the old card or the complete pair.
    """
    from mriscan.model.export import make_network_file
    from mriscan.model.runtime import ONNX_FILE

    bundle = load_bundle(model_dir)
    network = make_network_file(bundle.inference_model)
    card = replace(bundle.card, network_file=NetworkFileEntry.from_json(network.entry))
    replace_file(bundle.directory / ONNX_FILE, network.data, sync=True)
    replace_file(bundle.directory / CARD_FILE, card.to_text().encode("utf-8"), sync=True)
    return card


def write_card(card: ModelCard, folder: Path) -> None:
    """Write ``card`` as the bundle's ``model.json`` in ``folder``."""
    (folder / CARD_FILE).write_text(card.to_text(), encoding="utf-8")


def update_card(model_dir: Path, **fields: Any) -> ModelCard:
    """Add or replace card fields that do not change the model (e.g. figures measured later).

    The weights and ``model_id`` are untouched; the card file is replaced in one rename.
    """
    card = read_card(Path(model_dir)).with_figures(**fields)
    replace_file(Path(model_dir) / CARD_FILE, card.to_text().encode("utf-8"), sync=True)
    return card


def check_bundle_target(out_dir: Path, overwrite: bool) -> None:
    """Fail before any work when ``out_dir`` holds something that would be replaced without consent."""
    check_output_folder(Path(out_dir), overwrite, kind="bundle")
