"""``mriscan fit``: find -> load (parallel) -> drop copies of --exclude images -> deduplicate the whole
set -> split by group -> train (from scratch, or from --init-from's weights) -> export the network
scan will use (int8) -> calibrate on validation with that network's outputs -> evaluate on test ->
save the bundle with that network, its card (and lineage), the fingerprints of the images it has seen
and pictures.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from mriscan import __version__
from mriscan.data.dataset import CLASS_NAMES, LabelledFile, find_labelled_files, is_synthetic_folder
from mriscan.data.loader import LoadedImage, load_all
from mriscan.data.preprocess import PreprocessConfig
from mriscan.data.quality import training_ranges
from mriscan.data.split import join_groups, split_by_group
from mriscan.dedup.fingerprints import ImageFingerprints
from mriscan.dedup.index import find_cross_duplicates, find_duplicate_groups, thumbnails
from mriscan.errors import DataLayoutError, ModelBundleError, TrainingError
from mriscan.evaluation.metrics import classification_metrics, safety_net_metrics
from mriscan.io.discover import find_candidates
from mriscan.model.bundle import (
    ModelBundle,
    apply_temperature,
    check_bundle_target,
    load_bundle,
    network_probability,
    read_card,
    save_bundle,
)
from mriscan.model.calibrate import choose_thresholds, expected_calibration_error, fit_temperature
from mriscan.model.card import Calibration, FingerprintsEntry, ModelCard
from mriscan.model.lineage import UNLABELLED, folder_fingerprints
from mriscan.model.quality_floor import quality_warnings

if TYPE_CHECKING:
    from mriscan.model.export import NetworkFile

DEFAULT_ARCH = "compact"
DEFAULT_IMAGE_SIZE = 150
MIN_READABLE_IMAGES = 20
CALIBRATION_IMAGES = 256
"""How many training images (a fixed subset) set the int8 network's activation ranges."""
CHECK_IMAGES = 256
"""How many validation images (a fixed subset) measure the int8 network's difference from Keras."""
SEEN_SPLITS = ("train", "validation")
"""The splits a model has seen: trained on the one, its best epoch, temperature and thresholds chosen on
the other. The test split stays unseen, so its images may be evaluated like any new ones."""


class FitProgress(Protocol):
    """What fit reports while it works (the CLI shows it with rich)."""

    def stage(self, message: str) -> None: ...
    def loading(self, total_files: int) -> None: ...
    def loaded(self, files: int) -> None: ...
    def training(self, epochs: int) -> None: ...
    def epoch(self, epoch: int, logs: dict[str, float]) -> None: ...


@dataclass(frozen=True)
class FitOptions:
    """Everything ``mriscan fit`` was asked to do."""

    data_dirs: tuple[Path, ...]
    out_dir: Path
    preprocessing: PreprocessConfig = PreprocessConfig()
    arch: str = DEFAULT_ARCH
    epochs: int = 20
    batch_size: int = 32
    seed: int = 2021
    target_recall: float = 0.98
    fractions: tuple[float, float, float] = (0.80, 0.15, 0.05)
    workers: int = -1
    positive: tuple[str, ...] = ()
    negative: tuple[str, ...] = ()
    overwrite: bool = False
    augment: bool = True
    command: str = ""
    init_from: Path | None = None
    exclude_dirs: tuple[Path, ...] = ()
    threshold_sources: tuple[str, ...] = ()
    source_balance: float = 0.0
    strip_probability: float = 0.0
    planes: str = "acquisition"  # the planes volumes are cut in (mriscan.io.nifti.PLANE_CHOICES)


@dataclass
class FitDataset:
    """The loaded, deduplicated images with labels and bookkeeping for the card."""

    images: np.ndarray
    labels: np.ndarray
    group_ids: np.ndarray
    sources: np.ndarray
    records: list[LoadedImage]
    counts: dict[str, Any] = field(default_factory=dict)
    lineage: dict[str, Any] = field(default_factory=dict)


def resolve_model_settings(init_from: Path | None, arch: str | None,
                           image_size: int | None) -> tuple[str, PreprocessConfig]:
    """The architecture and preprocessing of a fit: as asked, else the ``init_from`` model's, else the defaults."""
    if init_from is None:
        return arch or DEFAULT_ARCH, PreprocessConfig(image_size=image_size or DEFAULT_IMAGE_SIZE)
    card = read_card(Path(init_from))
    parent = card.preprocessing
    return arch or card.architecture, replace(parent, image_size=image_size or parent.image_size)


def run_fit(options: FitOptions, progress: FitProgress) -> ModelCard:
    """Run the whole fit and return the saved model card."""
    started = time.monotonic()
    check_bundle_target(options.out_dir, options.overwrite)
    # A typo in --threshold-from fails here, before training.
    threshold_sources = threshold_folders(options.data_dirs, options.threshold_sources)
    parent = _load_parent(options)
    progress.stage("finding images")
    files = find_labelled_files(options.data_dirs, options.positive, options.negative)
    data = load_and_deduplicate(files, options, progress)
    split = split_by_group(data.labels, data.group_ids, fractions=options.fractions, seed=options.seed)
    result = _train(options, data, split, parent, progress)
    model = _inference_copy(result.model, options)
    progress.stage("exporting the network for scan (int8)")
    network, raw_probability = _network_for_scan(model, data, split, options.seed, progress)
    progress.stage("calibrating and evaluating")
    evaluation = calibrate_and_evaluate(raw_probability, data, split, options.target_recall, threshold_sources)
    card = model_card(options, data, split, result, evaluation, seconds=time.monotonic() - started,
                      network=network, parent=parent)
    card = card.with_figures(quality_warnings=quality_warnings(card))
    progress.stage("fingerprinting the images the model has seen (training and validation splits)")
    fingerprints, entry = seen_images(data, split, parent)
    card = replace(card, fingerprints=entry)
    progress.stage(f"saving {options.out_dir}")

    def write_extras(folder: Path) -> None:
        _write_metrics_and_plots(folder, card, result.history, evaluation)

    return save_bundle(model, card, options.out_dir, overwrite=options.overwrite, write_extras=write_extras,
                       network=network, fingerprints=fingerprints)


def seen_images(data: FitDataset, split: Any,
                parent: ModelBundle | None) -> tuple[ImageFingerprints, FingerprintsEntry]:
    """The fingerprints of the images the model has seen, and what the card says of them.

    Those of the training and validation splits, and those the ``--init-from`` model kept of its own
    (its weights learnt from them too). ``save_bundle`` completes the entry with the file.
    """
    seen = np.concatenate([split.train, split.validation])
    fingerprints = ImageFingerprints.of_images([data.records[i].image_key for i in seen],
                                               thumbnails(data.images[i] for i in seen))
    if parent is None:
        return fingerprints, FingerprintsEntry(splits=SEEN_SPLITS)
    inherited = parent.training_fingerprints
    if inherited is not None:
        fingerprints = fingerprints.joined(inherited)
    return fingerprints, FingerprintsEntry(splits=SEEN_SPLITS, parent={
        "model_id": parent.model_id, "images": None if inherited is None else len(inherited)})


def _train(options: FitOptions, data: FitDataset, split: Any, parent: ModelBundle | None, progress: FitProgress) -> Any:
    """Train on the training split, choosing the best epoch on validation (``mriscan/model/train.py``)."""
    from mriscan.model.train import TrainConfig, train_model

    progress.training(options.epochs)
    config = TrainConfig(arch=options.arch, epochs=options.epochs, batch_size=options.batch_size,
                         seed=options.seed, augment=options.augment, source_balance=options.source_balance,
                         strip_probability=options.strip_probability)
    return train_model(data.images[split.train], data.labels[split.train], data.images[split.validation],
                       data.labels[split.validation], config, on_epoch=progress.epoch,
                       initial_weights=None if parent is None else parent.model.get_weights(),
                       sources=data.sources[split.train])


def _inference_copy(model: Any, options: FitOptions) -> Any:
    """The trained weights in a fresh, uncompiled network: the bundle carries no optimizer state."""
    from mriscan.model.architectures import build_model

    clean = build_model(options.arch, options.preprocessing.image_size, seed=options.seed)
    clean.set_weights(model.get_weights())
    return clean


def _network_for_scan(model: Any, data: FitDataset, split: Any, seed: int,
                      progress: FitProgress) -> tuple[NetworkFile | None, Callable[[np.ndarray], np.ndarray]]:
    """The network file the bundle will hold, and the raw P(tumor) it computes (what calibration sees).

    int8, its ranges set by a fixed subset of the training images; fp32 when int8 is refused;
    none (Keras predicts) for a network the export cannot express. Either way the thresholds are
    chosen on the outputs of the network that scan will run.
    """
    from mriscan.model.export import network_for_scan
    from mriscan.model.fold import fold_batch_norm
    from mriscan.model.runtime import OnnxNetwork

    folded = fold_batch_norm(model)
    network = network_for_scan(folded, data.images[fixed_subset(split.train, CALIBRATION_IMAGES, seed)],
                               data.images[fixed_subset(split.validation, CHECK_IMAGES, seed)])
    if network is None:
        progress.stage("this network has no ONNX translation: the bundle will predict with Keras")
        return None, lambda images: network_probability(folded.predict_on_batch, images)
    if "int8_refused" in network.entry:
        progress.stage(f"int8 network refused, keeping it in fp32: {network.entry['int8_refused']}")
    session = OnnxNetwork(network.data)
    return network, lambda images: network_probability(session, images)


def fixed_subset(indices: np.ndarray, limit: int, seed: int) -> np.ndarray:
    """At most ``limit`` of ``indices``, the same ones for the same seed, in their order.

    Examples
    --------
    >>> fixed_subset(np.arange(10, 20), 3, seed=1).tolist()
    [13, 14, 17]
    """
    if len(indices) <= limit:
        return indices
    return indices[np.sort(np.random.default_rng(seed).choice(len(indices), limit, replace=False))]


def _load_parent(options: FitOptions) -> ModelBundle | None:
    """The --init-from bundle, after checking that this fit builds the same network on the same input."""
    if options.init_from is None:
        return None
    card = read_card(Path(options.init_from))
    # A setting an older card does not record is taken as the one scan would use for it (the card's upgrade).
    theirs = {"architecture": card.architecture, "input_size": card.input_size, **asdict(card.preprocessing)}
    ours = {"architecture": options.arch, "input_size": options.preprocessing.image_size,
            **asdict(options.preprocessing)}
    differences = [f"{key} is {theirs[key]!r} in that model but {ours[key]!r} in this fit"
                   for key in theirs if theirs[key] != ours[key]]
    if differences:
        raise ModelBundleError(
            f"--init-from {options.init_from} cannot be continued with these settings: {'; '.join(differences)}. "
            "Leave out --arch and --image-size to take the model's own, or train from scratch without --init-from."
        )
    return load_bundle(Path(options.init_from))


def load_and_deduplicate(files: list[LabelledFile], options: FitOptions, progress: FitProgress) -> FitDataset:
    """Load ``files``, drop exact and near copies (and copies of ``options.exclude_dirs``), group the rest.

    What fit trains, calibrates and splits on; benchmarks call it to see the data fit would see.
    """
    progress.loading(len(files))
    label_of = {f.path: f.label for f in files}
    source_of = {f.path: f.source for f in files}
    class_folder_of = {f.path: f.class_folder for f in files}
    records = load_all([f.path for f in files], options.preprocessing, workers=options.workers,
                       on_chunk=progress.loaded, planes=options.planes)
    images_read = sum(r.ok for r in records)
    # A slice of a volume that barely cuts the head shows no brain to learn from.
    outside_head = sum(r.ok and r.outside_head for r in records)
    usable = [r for r in records if r.ok and not r.outside_head]
    readable, exclusion = _remove_excluded_copies(usable, options, progress)
    if len(readable) < MIN_READABLE_IMAGES:
        raise TrainingError(f"only {len(readable)} readable images left ({images_read} read, "
                            f"{exclusion['excluded_images']} removed as copies of --exclude images); fit needs at "
                            f"least {MIN_READABLE_IMAGES} (10 per class)")
    progress.stage("finding duplicates across the whole set")
    groups = find_duplicate_groups([r.image_key for r in readable], thumbnails(r.model_input for r in readable))
    labels = np.array([label_of[r.path] for r in readable])
    # Near copies with different labels differ in what matters (a lesion, e.g. synth's paired
    # twins): one image of each label is kept, and their shared group keeps them in one split.
    conflicted = _label_conflicts(groups.group_ids, labels)
    # Neighbouring slices of one volume can pass for near copies: they are distinct images of one patient
    # (kept, and split together below); copies across patients are removed as for 2-D images.
    patients = [_patient_of(r, class_folder_of[r.path]) for r in readable]
    keep = _first_of_each_label(groups.group_ids, labels) | _within_one_patient(groups.group_ids, patients)
    removed = ~keep
    kinds = Counter(k for k, r in zip(groups.kinds, removed, strict=True) if r)
    kept_records = [r for r, k in zip(readable, keep, strict=True) if k]
    counts = {
        "files_found": len(files),
        "unreadable": len(records) - images_read,
        "images_read": images_read,
        "slices_outside_the_head": outside_head,
        "excluded_copies_removed": exclusion["excluded_images"],
        "duplicates_removed": int(removed.sum()),
        "duplicates_by_kind": dict(kinds),
        "mixed_label_groups_kept": int(len(np.unique(groups.group_ids[conflicted]))),
        "images_used": int(keep.sum()),
        "by_source": dict(Counter(f"{source_of[r.path]}/{CLASS_NAMES[label_of[r.path]]}" for r in kept_records)),
    }
    return FitDataset(
        images=np.stack([r.model_input for r in kept_records]).astype(np.float32),
        labels=labels[keep],
        # The slices of one volume, and a patient's volumes, go to one split (mriscan.data.split).
        group_ids=join_groups(groups.group_ids, patients)[keep],
        sources=np.array([source_of[r.path] for r in kept_records]),
        records=kept_records,
        counts=counts,
        lineage={"data_fingerprints": folder_fingerprints(
            options.data_dirs, [(r.path, CLASS_NAMES[label_of[r.path]], r.sha256) for r in records]), **exclusion},
    )


def _patient_of(record: LoadedImage, class_folder: str) -> str:
    """Whose image this is, as far as the files tell: what must not be split.

    The volumes in one sub-folder of a class folder are one patient's (``no/patient01/t1.nii.gz`` and
    ``no/patient01/flair.nii.gz``); a volume directly in its class folder is its own patient; any other
    file (every frame of a DICOM file) is its own.
    """
    folder = record.path.parent
    return str(folder) if record.plane is not None and folder.name != class_folder else str(record.path)


def _remove_excluded_copies(readable: list[LoadedImage], options: FitOptions,
                            progress: FitProgress) -> tuple[list[LoadedImage], dict[str, Any]]:
    """Drop training images that copy an image of a folder that must stay unseen (--exclude)."""
    if not options.exclude_dirs:
        return readable, {"excluded_dirs": [], "excluded_images": 0}
    progress.stage("finding copies of --exclude images among the training images")
    paths = [path for folder in options.exclude_dirs for path in find_candidates(folder)]
    if not paths:
        raise DataLayoutError(f"--exclude {', '.join(map(str, options.exclude_dirs))}: no images found there; "
                              "check the path (it should be the folder that must stay unseen, e.g. a validation set)")
    records = load_all(paths, options.preprocessing, workers=options.workers, planes=options.planes)
    unseen = [r for r in records if r.ok]
    copies = []
    if unseen and readable:
        copies = find_cross_duplicates([r.image_key for r in readable], thumbnails(r.model_input for r in readable),
                                       [r.image_key for r in unseen], thumbnails(r.model_input for r in unseen))
    leaked = {copy.index_a for copy in copies}
    progress.stage(f"removed {len(leaked)} training images that copy images of the --exclude folders")
    fingerprints = folder_fingerprints(options.exclude_dirs, [(r.path, UNLABELLED, r.sha256) for r in records])
    return [r for i, r in enumerate(readable) if i not in leaked], {"excluded_dirs": fingerprints,
                                                                    "excluded_images": len(leaked)}


def _lineage(options: FitOptions, data: FitDataset, parent: ModelBundle | None) -> dict[str, Any]:
    """Where the weights started from and which data they saw (sha256 fingerprints, see mriscan.model.lineage)."""
    return {
        "parent_model_id": parent.model_id if parent else None,
        "parent_created": parent.card.created if parent else None,
        "init_from": str(options.init_from) if options.init_from else None,
        **data.lineage,
    }


def _label_conflicts(group_ids: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Images whose duplicate group holds both labels."""
    return ~_one_value_per_group(group_ids, labels)


def _within_one_patient(group_ids: np.ndarray, patients: Sequence[str]) -> np.ndarray:
    """Images whose duplicate group holds images of their own patient only.

    Examples
    --------
    >>> _within_one_patient(np.array([0, 0, 1, 1, 2]), ["v", "v", "v", "w", "a"]).tolist()
    [True, True, False, False, True]
    """
    return _one_value_per_group(group_ids, np.unique(np.asarray(patients, dtype=str), return_inverse=True)[1])


def _one_value_per_group(group_ids: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Images whose duplicate group holds one of ``values`` (non-negative integers) only."""
    low = np.full(group_ids.max() + 1, values.max() + 1)
    high = np.full(group_ids.max() + 1, -1)
    np.minimum.at(low, group_ids, values)
    np.maximum.at(high, group_ids, values)
    return (low == high)[group_ids]


def _first_of_each_label(group_ids: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Keep the first image of each (duplicate group, label): one copy per answer.

    Examples
    --------
    >>> _first_of_each_label(np.array([0, 0, 0, 1, 1]), np.array([1, 1, 0, 0, 0])).tolist()
    [True, False, True, True, False]
    """
    _, first = np.unique(group_ids * 2 + labels, return_index=True)
    keep = np.zeros(len(group_ids), dtype=bool)
    keep[first] = True
    return keep


def threshold_folders(data_dirs: tuple[Path, ...], asked: tuple[str, ...] = ()) -> tuple[str, ...]:
    """The data folders whose validation tumours set the thresholds: as asked, else every real one.

    Real folders (not written by ``mriscan synth``) by default, all of them pooled: synthetic lesions
    include small, faint ones, and letting them set the threshold made the model call almost every
    healthy slice of a held-out source tumour, while pooling several real sources' tumours kept
    sensitivity on held-out sources (docs/generalisation.md, "Threshold rule"). A fit on synthetic
    folders only uses them all.
    """
    names = tuple(Path(d).name for d in data_dirs)
    unknown = sorted(set(asked) - set(names))
    if unknown:
        raise DataLayoutError(f"--threshold-from {', '.join(unknown)}: not one of the data folders of this fit "
                              f"({', '.join(names)}); give a data folder's name")
    real = tuple(Path(d).name for d in data_dirs if not is_synthetic_folder(Path(d)))
    return tuple(asked) or real or names


def calibrate_and_evaluate(raw_probability: Callable[[np.ndarray], np.ndarray], data: FitDataset, split: Any,
                           target_recall: float, threshold_sources: tuple[str, ...]) -> dict[str, Any]:
    """Temperature and thresholds chosen on validation, and the metrics, from ``raw_probability``'s outputs:
    those of the network the bundle will predict with."""
    y_val, y_test = data.labels[split.validation], data.labels[split.test]
    raw_val, raw_test = raw_probability(data.images[split.validation]), raw_probability(data.images[split.test])
    temperature = fit_temperature(y_val, raw_val)
    p_val, p_test = apply_temperature(raw_val, temperature), apply_temperature(raw_test, temperature)
    counted = np.isin(data.sources[split.validation], threshold_sources)
    if not (counted & (y_val == 1)).any():
        raise TrainingError(f"the validation split holds no tumour from {', '.join(threshold_sources)}, so no "
                            "threshold can be chosen on them; add tumour images there or name other folders "
                            "with --threshold-from")
    thresholds = choose_thresholds(y_val, p_val, target_recall, counted=counted)
    return {
        "temperature": temperature,
        "thresholds": thresholds,
        "threshold_sources": threshold_sources,
        "validation": _split_metrics(y_val, p_val, raw_val, thresholds),
        "test": _split_metrics(y_test, p_test, raw_test, thresholds),
        "test_by_source": _metrics_by_source(data.sources[split.test], y_test, p_test, raw_test, thresholds),
        "curves": {"validation": (y_val, p_val), "test": (y_test, p_test)},
        "validation_predictions": {"source": data.sources[split.validation].tolist(), "label": y_val.tolist(),
                                   "probability": [round(float(p), 6) for p in p_val]},
    }


def _metrics_by_source(sources: np.ndarray, labels: np.ndarray, probability: np.ndarray, raw: np.ndarray,
                       thresholds: Any) -> dict[str, dict]:
    """Test metrics of each data folder on its own: a mixed test split can hide a weak source."""
    if len(set(sources)) < 2:
        return {}
    return {str(source): _split_metrics(labels[sources == source], probability[sources == source],
                                        raw[sources == source], thresholds) for source in sorted(set(sources))}


def _split_metrics(labels: np.ndarray, probability: np.ndarray, raw: np.ndarray, thresholds: Any) -> dict:
    return {
        **classification_metrics(labels, probability, thresholds.threshold),
        **safety_net_metrics(labels, probability, thresholds.threshold, thresholds.review_threshold),
        "ece": expected_calibration_error(labels, probability),
        "ece_uncalibrated": expected_calibration_error(labels, raw),
    }


def model_card(options: FitOptions, data: FitDataset, split: Any, result: Any, evaluation: dict, *, seconds: float,
               network: NetworkFile | None, parent: ModelBundle | None) -> ModelCard:
    """The card of a fit, built once: ``save_bundle`` adds only what saving fixes (model_id, created, network file)."""
    thresholds = evaluation["thresholds"]
    return ModelCard(
        model_id="",
        mriscan_version=__version__,
        architecture=options.arch,
        parameters=int(result.model.count_params()),
        input_size=options.preprocessing.image_size,
        input_channels=1,
        preprocessing=options.preprocessing,
        class_names=tuple(CLASS_NAMES),
        threshold=thresholds.threshold,
        review_threshold=thresholds.review_threshold,
        threshold_rule=f"largest threshold with validation sensitivity >= {options.target_recall} "
                       f"on the tumours of {', '.join(evaluation['threshold_sources'])}",
        review_threshold_rule="largest threshold below which at most 0.5% of all validation tumours fall "
                              "(synthetic lesions included)",
        threshold_sources=tuple(evaluation["threshold_sources"]),
        threshold_warning=thresholds.warning,
        calibration=Calibration(
            method="temperature scaling on validation, of the outputs of the network that predicts",
            temperature=evaluation["temperature"],
            network=f"model.onnx ({network.entry['precision']})" if network else "model.keras"),
        data={**data.counts, "data_dirs": [str(d) for d in options.data_dirs],
              "split_sizes": {"train": len(split.train), "validation": len(split.validation), "test": len(split.test)}},
        training={"epochs_requested": options.epochs, "epochs_run": len(result.history.get("loss", [])),
                  "best_epoch": result.best_epoch, "batch_size": options.batch_size, "seed": options.seed,
                  "learning_rate": result.schedule,
                  "augment": options.augment, "fractions": list(options.fractions),
                  "source_balance": options.source_balance, "strip_probability": options.strip_probability,
                  "seconds": round(seconds, 1), "command": options.command},
        metrics={"validation": evaluation["validation"], "test": evaluation["test"],
                 "test_by_source": evaluation["test_by_source"]},
        input_statistics_ranges=training_ranges([r.statistics for r in data.records]),
        lineage=_lineage(options, data, parent),
    )


def _write_metrics_and_plots(folder: Path, card: ModelCard, history: dict, evaluation: dict) -> None:
    from mriscan.evaluation.plots import plot_confusion_matrix, plot_roc, plot_training_curves

    metrics = {"history": history, **card.metrics,
               "thresholds": asdict(evaluation["thresholds"]), "temperature": evaluation["temperature"],
               "validation_predictions": evaluation["validation_predictions"]}
    (folder / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
    plot_training_curves(history, folder / "training_curves.png")
    plot_confusion_matrix(card.metrics["test"]["confusion_matrix"], "test split", folder / "confusion_matrix.png")
    threshold = evaluation["thresholds"].threshold
    plot_roc(evaluation["curves"], folder / "roc_curve.png", {name: threshold for name in evaluation["curves"]})
