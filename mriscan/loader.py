"""Parallel, chunked loading: file -> decoded image -> model input, with per-file error records.

A file that cannot be read becomes a :class:`LoadedImage` with ``error`` set; it never raises,
so one bad file cannot stop a batch. Work is spread over processes with joblib in chunks, and
results stream back chunk by chunk so memory stays bounded however large the folder is.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from joblib import Parallel, delayed

from mriscan.errors import MriscanError
from mriscan.hashing import file_sha256
from mriscan.imageio import DEFAULT_MAX_PIXELS, read_image
from mriscan.preprocess import PreprocessConfig, preprocess
from mriscan.quality import input_statistics, low_quality_reasons

DEFAULT_CHUNK_SIZE = 64


@dataclass(frozen=True)
class LoadedImage:
    """One image (one frame of a multi-frame DICOM) ready for the model, or the reason it is not."""

    path: Path
    sha256: str
    frame: int | None = None
    model_input: np.ndarray | None = None
    low_quality: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()
    had_colour: bool = False
    statistics: dict[str, float] = field(default_factory=dict)
    dicom_uids: dict[str, str] = field(default_factory=dict)
    error: str = ""

    @property
    def ok(self) -> bool:
        """True when the image was decoded and preprocessed."""
        return self.model_input is not None


def _sha256_or_empty(path: Path) -> str:
    # Only regular files: reading a named pipe with an image name would block the batch.
    if not path.is_file():
        return ""
    try:
        return file_sha256(path)
    except OSError:
        return ""


def load_file(
    path: Path, config: PreprocessConfig, max_pixels: int = DEFAULT_MAX_PIXELS
) -> list[LoadedImage]:
    """Decode and preprocess one file; errors become a single record with ``error`` set."""
    sha256 = _sha256_or_empty(path)
    try:
        decoded = read_image(path, max_pixels=max_pixels)
    except MriscanError as error:
        return [LoadedImage(path=path, sha256=sha256, error=str(error))]
    records = []
    for image in decoded:
        try:
            model_input = preprocess(image.pixels, config)
        except (ValueError, MriscanError) as error:
            records.append(LoadedImage(path=path, sha256=sha256, frame=image.frame, error=str(error)))
            continue
        records.append(
            LoadedImage(
                path=path,
                sha256=sha256,
                frame=image.frame,
                model_input=model_input,
                low_quality=tuple(low_quality_reasons(image.pixels)),
                warnings=tuple(image.warnings),
                had_colour=image.had_colour,
                statistics=input_statistics(image.pixels, model_input),
                dicom_uids=dict(image.dicom_uids),
            )
        )
    return records


def _load_chunk(paths: Sequence[Path], config: PreprocessConfig, max_pixels: int) -> list[LoadedImage]:
    return [record for path in paths for record in load_file(path, config, max_pixels)]


def iter_loaded_chunks(
    paths: Sequence[Path],
    config: PreprocessConfig,
    *,
    workers: int = -1,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> Iterator[list[LoadedImage]]:
    """Load files in parallel and yield their records chunk by chunk, in input order.

    Parameters
    ----------
    paths : files to load.
    config : the preprocessing settings (from the model card at scan time).
    workers : joblib ``n_jobs`` (-1 = all cores, 1 = in this process).
    chunk_size : files per joblib task; also the granularity of streaming.
    max_pixels : decompression-bomb limit passed to the decoder.
    """
    chunks = [list(paths[i : i + chunk_size]) for i in range(0, len(paths), chunk_size)]
    if not chunks:
        return
    if workers == 1 or len(chunks) == 1:
        for chunk in chunks:
            yield _load_chunk(chunk, config, max_pixels)
        return
    # Bounded look-ahead: joblib's generator keeps only a few chunks in flight.
    parallel = Parallel(n_jobs=workers, return_as="generator", pre_dispatch="2*n_jobs")
    yield from parallel(delayed(_load_chunk)(chunk, config, max_pixels) for chunk in chunks)


def load_all(
    paths: Sequence[Path],
    config: PreprocessConfig,
    *,
    workers: int = -1,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    on_chunk: Callable[[int], None] | None = None,
) -> list[LoadedImage]:
    """Load every file into memory (for training); ``on_chunk(files_done)`` reports progress."""
    records: list[LoadedImage] = []
    for chunk in iter_loaded_chunks(paths, config, workers=workers, chunk_size=chunk_size):
        records.extend(chunk)
        if on_chunk is not None:
            on_chunk(len({record.path for record in chunk}))
    return records
