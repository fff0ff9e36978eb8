"""Shared fixtures: small images and a tiny model bundle, all made here (nothing downloaded)."""

from __future__ import annotations

import io
import os
from pathlib import Path

import cv2
import numpy as np
import pydicom  # noqa: F401  (the DICOM fixture builder below needs it)
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, generate_uid

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

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
    image *= 90 + 25 * texture
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


@pytest.fixture(scope="session")
def tiny_bundle(tmp_path_factory) -> Path:
    """A small untrained 'seed' network saved as a proper bundle (64x64 input)."""
    from mriscan.architectures import build_model
    from mriscan.model import save_bundle
    from mriscan.preprocess import PreprocessConfig

    out = tmp_path_factory.mktemp("bundle") / "model"
    card = {
        "architecture": "seed",
        "input_size": 64,
        "preprocessing": PreprocessConfig(image_size=64).to_dict(),
        "threshold": 0.5,
        "review_threshold": 0.3,
        "input_statistics_ranges": {},
    }
    save_bundle(build_model("seed", 64), card, out)
    return out
