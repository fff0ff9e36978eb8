"""DICOM decoding cost: mriscan's float32 rescale + LINEAR window against pydicom's general path.

    python benchmarks/bench_dicom.py [--data ../shared/data/br35h] [--n 300] [--side 512]

Writes ``--n`` MR DICOM files (Explicit VR Little Endian, 12 bits stored, Rescale Slope/Intercept
and a LINEAR window: the common header) from Br35H slices resized to ``--side`` pixels, then times,
in this one process and with one OpenCV thread, on the same files:
- pydicom parsing and ``pixel_array`` alone;
- the display step as pydicom computes it (``apply_modality_lut`` + ``apply_voi_lut``, float64);
- the display step as mriscan computes it for this header (float32, three passes);
- mriscan's whole decode, and its whole load (decode + preprocess + quality checks).
The two display steps are compared value by value. Figures are CPU ms per file and ratios within
the run.
"""

from __future__ import annotations

import argparse
import io
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data" / "br35h"


def write_dicoms(sources: list[Path], side: int, folder: Path) -> list[Path]:
    """One MR DICOM file per source slice: 12-bit values, rescale to Hounsfield-like units, a window."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, generate_uid

    paths = []
    for index, source in enumerate(sources):
        grey = cv2.resize(cv2.imread(str(source), cv2.IMREAD_GRAYSCALE), (side, side), interpolation=cv2.INTER_AREA)
        dataset = Dataset()
        dataset.file_meta = FileMetaDataset()
        dataset.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        dataset.file_meta.MediaStorageSOPClassUID = dataset.SOPClassUID = MRImageStorage
        dataset.file_meta.MediaStorageSOPInstanceUID = dataset.SOPInstanceUID = generate_uid()
        dataset.Modality, dataset.PhotometricInterpretation = "MR", "MONOCHROME2"
        dataset.Rows = dataset.Columns = side
        dataset.SamplesPerPixel, dataset.BitsAllocated, dataset.BitsStored, dataset.HighBit = 1, 16, 12, 11
        dataset.PixelRepresentation = 0
        dataset.RescaleSlope, dataset.RescaleIntercept = 1, -1024
        dataset.WindowCenter, dataset.WindowWidth = 1000, 2000
        dataset.PixelData = (grey.astype(np.uint16) * 12).astype("<u2").tobytes()
        buffer = io.BytesIO()
        dataset.save_as(buffer, enforce_file_format=True)
        path = folder / f"slice{index:04d}.dcm"
        path.write_bytes(buffer.getvalue())
        paths.append(path)
    return paths


def cpu_ms_per_file(run: Callable[[], object], n: int) -> float:
    started = time.process_time()
    run()
    return 1000 * (time.process_time() - started) / n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--n", type=int, default=300)
    parser.add_argument("--side", type=int, default=512)
    args = parser.parse_args()
    sources = sorted(args.data.rglob("*.jpg"))
    if not sources:
        print(f"no data at {args.data}; skipping")
        return
    import pydicom
    from pydicom.pixels import apply_modality_lut, apply_voi_lut

    from mriscan.data.loader import load_chunk
    from mriscan.data.preprocess import PreprocessConfig
    from mriscan.execution.local import single_threaded_opencv
    from mriscan.io.dicom import linear_display
    from mriscan.io.reader import decode_bytes

    single_threaded_opencv()
    picked = [sources[i * len(sources) // args.n] for i in range(min(args.n, len(sources)))]
    with tempfile.TemporaryDirectory() as folder:
        paths = write_dicoms(picked, args.side, Path(folder))
        data = [path.read_bytes() for path in paths]
        datasets = [pydicom.dcmread(io.BytesIO(blob)) for blob in data]
        stored = [dataset.pixel_array for dataset in datasets]
        n = len(paths)
        decode_bytes(data[0])  # imports
        costs = {
            "pydicom parse + pixel_array": cpu_ms_per_file(
                lambda: [pydicom.dcmread(io.BytesIO(blob)).pixel_array for blob in data], n),
            "display step, pydicom (float64)": cpu_ms_per_file(
                lambda: [apply_voi_lut(apply_modality_lut(s, d), d) for s, d in zip(stored, datasets, strict=True)], n),
            "display step, mriscan (float32)": cpu_ms_per_file(
                lambda: [linear_display(s, d) for s, d in zip(stored, datasets, strict=True)], n),
            "mriscan decode (whole)": cpu_ms_per_file(lambda: [decode_bytes(blob) for blob in data], n),
            "mriscan load (decode + preprocess + quality)": cpu_ms_per_file(
                lambda: load_chunk(paths, PreprocessConfig(), 10**9), n),
        }
        difference = max(float(np.abs(linear_display(s, d) - apply_voi_lut(apply_modality_lut(s, d), d)).max())
                         for s, d in zip(stored[:50], datasets[:50], strict=True))
    print(f"{n} DICOM files, {args.side}x{args.side}, 12 bits stored, rescale + LINEAR window; CPU per file:")
    for name, cost in costs.items():
        print(f"  {name:46s} {cost:.3f} ms")
    ratio = costs["display step, pydicom (float64)"] / max(costs["display step, mriscan (float32)"], 1e-9)
    print(f"display step: mriscan's is {ratio:.1f}x cheaper; largest difference {difference:.3g} "
          f"(the window's output spans 4,095, so float32 rounding is ~2e-4)")


if __name__ == "__main__":
    sys.exit(main())
