"""Shared fixtures: small images and a tiny model bundle, all made here (nothing downloaded)."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pydicom  # noqa: F401  (the DICOM fixture builder below needs it)
import pytest
from hypothesis import settings
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, generate_uid

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# No time limit per example: tests assert results, never timings (a busy machine made them flaky).
settings.register_profile("mriscan", deadline=None)
settings.load_profile("mriscan")

REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = REPO.parent / "shared" / "data"

PATIENT_NAME = "Doe^Jane"
PATIENT_ID = "PID-8675309"
PATIENT_BIRTH_DATE = "19700101"
PATIENT_VALUES = (PATIENT_NAME, PATIENT_ID, PATIENT_BIRTH_DATE, "Doe", "Jane")


def dicom_bytes(
    stored: np.ndarray,
    *,
    bits_stored: int,
    photometric: str = "MONOCHROME2",
    **attributes: object,
) -> bytes:
    """A Part 10 DICOM file (Explicit VR Little Endian) holding ``stored`` and a patient name.

    ``stored`` is (rows, columns), (frames, rows, columns) with ``NumberOfFrames`` given, or
    (rows, columns, 3) for RGB.
    """
    dataset = Dataset()
    dataset.file_meta = FileMetaDataset()
    dataset.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    dataset.file_meta.MediaStorageSOPClassUID = MRImageStorage
    dataset.file_meta.MediaStorageSOPInstanceUID = dataset.SOPInstanceUID = generate_uid()
    dataset.SOPClassUID = MRImageStorage
    dataset.StudyInstanceUID, dataset.SeriesInstanceUID = generate_uid(), generate_uid()
    dataset.PatientName, dataset.PatientID = PATIENT_NAME, PATIENT_ID
    dataset.PatientBirthDate = PATIENT_BIRTH_DATE
    dataset.Modality = "MR"
    colour = photometric == "RGB"
    dataset.Rows, dataset.Columns = stored.shape[-3:-1] if colour else stored.shape[-2:]
    dataset.SamplesPerPixel = 3 if colour else 1
    if colour:
        dataset.PlanarConfiguration = 0
    dataset.PhotometricInterpretation = photometric
    dataset.BitsAllocated = stored.dtype.itemsize * 8
    dataset.BitsStored, dataset.HighBit = bits_stored, bits_stored - 1
    dataset.PixelRepresentation = int(np.issubdtype(stored.dtype, np.signedinteger))
    for keyword, value in attributes.items():
        setattr(dataset, keyword, value)
    if stored.size:
        dataset.PixelData = stored.astype(stored.dtype.newbyteorder("<")).tobytes()
    buffer = io.BytesIO()
    dataset.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def brain_like(seed: int, size: tuple[int, int] = (180, 160), lesion: bool = False) -> np.ndarray:
    """A grey uint8 slice: an ellipse 'head' with texture in a black frame, optionally a bright blob."""
    rng = np.random.default_rng(seed)
    height, width = size
    image = np.zeros(size, np.float32)
    centre = (width // 2 + int(rng.integers(-5, 6)), height // 2 + int(rng.integers(-5, 6)))
    axes = (int(width * 0.38), int(height * 0.42))
    cv2.ellipse(image, centre, axes, 0, 0, 360, 1.0, -1)
    texture = cv2.GaussianBlur(rng.normal(0, 1, size).astype(np.float32), (0, 0), 3)
    # Coarse structure too, so that two seeds stay different slices at dedup's thumbnail scale.
    coarse = cv2.GaussianBlur(rng.normal(0, 1, size).astype(np.float32), (0, 0), 10)
    image *= np.maximum(90 + 25 * texture + 12 * coarse / max(float(coarse.std()), 1e-6), 40)
    if lesion:
        spot = (centre[0] + int(rng.integers(-20, 20)), centre[1] + int(rng.integers(-20, 20)))
        cv2.circle(image, spot, int(rng.integers(10, 18)), 230.0, -1)
    return np.clip(image, 0, 255).astype(np.uint8)


@pytest.fixture
def write_png():
    """Write a uint8 array as PNG and return its path."""

    def write(path: Path, pixels: np.ndarray) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        assert cv2.imwrite(str(path), pixels)
        return path

    return write


@pytest.fixture
def labelled_folder(tmp_path: Path, write_png) -> Path:
    """A tiny class-folder data set: 30 tumour and 30 healthy brain-like images."""
    root = tmp_path / "data"
    for i in range(30):
        write_png(root / "yes" / f"y{i}.png", brain_like(i, lesion=True))
        write_png(root / "no" / f"n{i}.png", brain_like(1000 + i))
    return root


def save_seed_bundle(out: Path, *, image_size: int = 64, threshold: float = 0.5, review_threshold: float = 0.3,
                     zero_weights: bool = False, seen: list[Path] | None = None, **card: object) -> Path:
    """Save an untrained 'seed' network as a proper bundle; with ``zero_weights`` it says P = 0.5 to everything.

    Its card claims validation figures above the quality floor (so scans with it print no model
    warning) unless ``metrics`` is given: tests of the floor pass their own. With ``seen``, the bundle
    keeps the fingerprints of those image files as the images it was trained on (as fit would).
    """
    from mriscan.data.preprocess import PreprocessConfig
    from mriscan.model.architectures import build_model
    from mriscan.model.bundle import save_bundle
    from mriscan.model.card import ModelCard

    model = build_model("seed", image_size)
    if zero_weights:
        model.set_weights([np.zeros_like(w) for w in model.get_weights()])
    fields = {"model_id": "", "architecture": "seed", "input_size": image_size,
              "preprocessing": PreprocessConfig(image_size=image_size).to_dict(), "threshold": threshold,
              "review_threshold": review_threshold, "input_statistics_ranges": {},
              "metrics": {"validation": {"auroc": 0.95, "n": 400}}, **card}
    fingerprints = None if seen is None else fingerprints_of(seen, image_size)
    save_bundle(model, ModelCard.from_json(fields), out, fingerprints=fingerprints)
    return out


def fingerprints_of(paths: list[Path], image_size: int = 64):
    """The fingerprints fit keeps of these image files, preprocessed at ``image_size`` as a seed bundle's images."""
    from mriscan.data.loader import load_all
    from mriscan.data.preprocess import PreprocessConfig
    from mriscan.dedup.fingerprints import ImageFingerprints
    from mriscan.dedup.index import thumbnails

    records = [r for r in load_all(paths, PreprocessConfig(image_size=image_size), workers=1) if r.ok]
    return ImageFingerprints.of_images([r.image_key for r in records], thumbnails(r.model_input for r in records))


@pytest.fixture(scope="session")
def tiny_bundle(tmp_path_factory) -> Path:
    """A small untrained 'seed' network saved as a proper bundle (64x64 input)."""
    return save_seed_bundle(tmp_path_factory.mktemp("bundle") / "model")


def write_class_folders(root: Path, seeds: range, healthy_offset: int = 1000) -> Path:
    """yes/ and no/ class folders of brain-like PNGs: lesioned ones from ``seeds``, healthy ones from
    ``healthy_offset + seeds``."""
    for seed in seeds:
        for label, lesion, offset in (("yes", True, 0), ("no", False, healthy_offset)):
            path = root / label / f"{label}{seed}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            assert cv2.imwrite(str(path), brain_like(offset + seed, lesion=lesion))
    return root


class SilentFitProgress:
    def stage(self, message: str) -> None: ...
    def loading(self, total_files: int) -> None: ...
    def loaded(self, files: int) -> None: ...
    def training(self, epochs: int) -> None: ...
    def epoch(self, epoch: int, logs: dict[str, float]) -> None: ...


@pytest.fixture(scope="session")
def holdout_folder(tmp_path_factory) -> Path:
    """Labelled images no fixture model saw: 25 tumour and 25 healthy brain-like slices."""
    return write_class_folders(tmp_path_factory.mktemp("holdout") / "holdout", range(300, 325))


@pytest.fixture(scope="session")
def trained_bundle(tmp_path_factory) -> Path:
    """A 'seed' network fitted for 2 epochs at 64 px on 30 + 30 brain-like slices; it separates them well."""
    from mriscan.data.preprocess import PreprocessConfig
    from mriscan.model.fit import FitOptions, run_fit

    root = tmp_path_factory.mktemp("trained")
    options = FitOptions(data_dirs=(write_class_folders(root / "train", range(30)),), out_dir=root / "model",
                         preprocessing=PreprocessConfig(image_size=64), arch="seed", epochs=2, workers=1, seed=3)
    run_fit(options, SilentFitProgress())
    return root / "model"


def with_trained_statistics(model):
    """Give every BatchNormalization layer non-trivial statistics, as training would."""
    import keras

    rng = np.random.default_rng(0)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            channels = layer.get_weights()[0].shape[0]
            layer.set_weights([rng.uniform(0.5, 2, channels), rng.normal(0, 0.5, channels),
                               rng.normal(0, 0.3, channels), rng.uniform(0.2, 3, channels)])
    return model


def run_cli_in_fresh_process(args: list[str]) -> tuple[object, bool, bool]:
    """Run ``mriscan ARGS`` in a new interpreter; return (exit code, TensorFlow imported, Keras imported).

    A fresh process, because this one has long imported TensorFlow for other tests.
    """
    program = (
        "import sys\n"
        "from mriscan.cli import main\n"
        f"sys.argv = ['mriscan', *{[str(arg) for arg in args]!r}]\n"
        "try:\n    main()\nexcept SystemExit as stop:\n    code = stop.code\n"
        "print('mriscan-exit', code, 'tensorflow' in sys.modules, 'keras' in sys.modules)\n"
    )
    result = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=120)
    report = [line.split() for line in result.stdout.splitlines() if line.startswith("mriscan-exit ")]
    assert report, result.stdout + result.stderr
    _, code, tensorflow, keras = report[-1]
    return int(code), tensorflow == "True", keras == "True"


SLOW_FIXTURES = frozenset({"trained_bundle", "fitted"})
"""Fixtures that train a model: every test that uses one is marked ``slow``."""


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark the tests that need a trained model ``slow``, so ``-m "not slow"`` leaves them out."""
    for item in items:
        if SLOW_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)


def nifti_bytes(data: np.ndarray, affine: np.ndarray | None = None, *, gz: bool = False, version: int = 1,
                slope: float | None = None, inter: float | None = None) -> bytes:
    """The bytes of a single-file NIfTI volume holding ``data`` as stored (slope and intercept in the header)."""
    import gzip

    import nibabel as nib

    image_type = nib.Nifti1Image if version == 1 else nib.Nifti2Image
    image = image_type(data, np.eye(4) if affine is None else affine)
    image.header.set_data_dtype(data.dtype)
    if slope is not None:
        image.header.set_slope_inter(slope, inter)
    raw = image.to_bytes()
    return gzip.compress(raw, mtime=0) if gz else raw


def head_volume(seed: int, slices: int = 8, lesion: bool = False) -> np.ndarray:
    """A uint16 RAS+ volume of ``brain_like`` axial slices (x, y, z), air above and below the head."""
    volume = np.zeros((160, 180, slices + 2), np.uint16)
    for index in range(slices):
        # brain_like is a displayed slice (rows anterior to posterior, columns right to left): back to RAS.
        shown = brain_like(seed * 100 + index, lesion=lesion and slices // 3 <= index < 2 * slices // 3)
        volume[:, :, index + 1] = shown[::-1, ::-1].T.astype(np.uint16) * 4
    return volume
