"""Parallel, chunked loading: file -> decoded image -> model input, with per-file error records.

A file that cannot be read becomes a :class:`LoadedImage` with ``error`` set; it never raises,
so one bad file cannot stop a batch. Work is spread over processes in chunks
(:func:`mriscan.execution.executor.choose_executor`), results stream back chunk by chunk, and memory stays bounded
however large the folder is.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np

from mriscan.data.preprocess import PreprocessConfig, preprocess
from mriscan.data.quality import input_statistics, low_quality_reasons
from mriscan.errors import MriscanError
from mriscan.execution.base import DEFAULT_CHUNK_SIZE
from mriscan.execution.executor import choose_executor
from mriscan.io.dicom import read_dicom_uids
from mriscan.io.discover import VOLUME_SUFFIXES
from mriscan.io.hashing import bytes_sha256, file_sha256
from mriscan.io.image import DecodedImage
from mriscan.io.reader import DEFAULT_MAX_PIXELS, decode_bytes, read_file_bytes


@dataclass(frozen=True)
class LoadedImage:
    """One image (one frame of a multi-frame DICOM, one slice of a volume) ready for the model, or the reason it is not.

    ``outside_head`` marks a slice of a volume that barely cuts the head (its reason is among
    ``low_quality``): scan reports it, fit does not train on it.
    """

    path: Path
    sha256: str
    frame: int | None = None
    plane: str | None = None
    outside_head: bool = False
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

    @property
    def image_key(self) -> str:
        """The file's sha256, with the plane and frame for one frame or slice of a file that holds several.

        Frames of one file share its sha256; this key tells them apart, so that exact-copy detection
        (fit, dedup) does not take the slices of a volume for copies of each other.
        """
        if self.frame is None:
            return self.sha256
        return f"{self.sha256}:{self.plane or 'frame'}:{self.frame}"


def _sha256_or_empty(path: Path) -> str:
    # Only regular files: reading a named pipe with an image name would block the batch.
    if not path.is_file():
        return ""
    try:
        return file_sha256(path)
    except OSError:
        return ""


def load_file(
    path: Path, config: PreprocessConfig, max_pixels: int = DEFAULT_MAX_PIXELS, planes: str = "acquisition"
) -> list[LoadedImage]:
    """Decode and preprocess one file (a volume once, into its slices in ``planes``).

    Errors become a single record with ``error`` set; an unreadable DICOM file keeps its UIDs when its
    header can be read, so that its study knows it lost a slice.
    """
    return _preprocessed(decode_file(path, config, max_pixels, planes), config)


@dataclass(frozen=True)
class DecodedFile:
    """One file read and decoded, not yet preprocessed: its images, or the record saying why there are none."""

    path: Path
    sha256: str
    images: tuple[DecodedImage, ...] = ()
    failure: LoadedImage | None = None

    @property
    def pixels(self) -> int:
        """How many decoded pixels it holds (what keeping it costs in memory)."""
        return sum(image.pixels.size for image in self.images)


def decode_file(
    path: Path, config: PreprocessConfig, max_pixels: int = DEFAULT_MAX_PIXELS, planes: str = "acquisition"
) -> DecodedFile:
    """Read one file once, fingerprint its bytes and decode them; a failure is kept as its record."""
    try:
        data = read_file_bytes(path, max_pixels)
    except MriscanError as error:
        return DecodedFile(path, "", failure=LoadedImage(path=path, sha256=_sha256_or_empty(path), error=str(error)))
    sha256 = bytes_sha256(data)  # the bytes that are decoded, read once
    try:
        decoded = decode_bytes(data, max_pixels=max_pixels, name=str(path), least_side=config.decode_least_side,
                               planes=planes)
    except MriscanError as error:
        failure = LoadedImage(path=path, sha256=sha256, error=str(error), dicom_uids=dict(read_dicom_uids(data)))
        return DecodedFile(path, sha256, failure=failure)
    return DecodedFile(path, sha256, images=tuple(decoded))


def _preprocessed(decoded: DecodedFile, config: PreprocessConfig) -> list[LoadedImage]:
    """The records of a decoded file: one per image, or its failure."""
    if decoded.failure is not None:
        return [decoded.failure]
    return [_load_frame(decoded.path, decoded.sha256, image, config) for image in decoded.images]


def _load_frame(path: Path, sha256: str, image: DecodedImage, config: PreprocessConfig) -> LoadedImage:
    """Preprocess one decoded image (one frame) and describe it; a refusal becomes the record's error."""
    try:
        model_input = preprocess(image.pixels, config)
    except (ValueError, MriscanError) as error:
        return LoadedImage(path=path, sha256=sha256, frame=image.frame, plane=image.plane, error=str(error),
                           dicom_uids=dict(image.dicom_uids))
    outside_head = (image.outside_head,) if image.outside_head else ()
    return LoadedImage(
        path=path,
        sha256=sha256,
        frame=image.frame,
        plane=image.plane,
        outside_head=bool(image.outside_head),
        model_input=model_input,
        low_quality=outside_head + tuple(low_quality_reasons(image.pixels)),
        warnings=tuple(image.warnings),
        had_colour=image.had_colour,
        statistics=input_statistics(image.pixels, model_input),
        dicom_uids=dict(image.dicom_uids),
    )


VOLUME_IMAGES = 32
"""How many 2-D files a volume counts as when files are cut into chunks: roughly its slices."""


def chunk_files(paths: Sequence[Path], chunk_size: int) -> list[list[Path]]:
    """``paths`` cut into consecutive chunks (tasks) of about ``chunk_size`` images each.

    A 2-D file counts as one image and a volume (``.nii``, ``.nii.gz``) as :data:`VOLUME_IMAGES`, so
    that a folder of volumes still spreads over the workers instead of landing in one chunk.

    Examples
    --------
    >>> [len(chunk) for chunk in chunk_files([Path(f"v{i}.nii.gz") for i in range(5)], 64)]
    [2, 2, 1]
    >>> [len(chunk) for chunk in chunk_files([Path(f"{i}.png") for i in range(5)], 2)]
    [2, 2, 1]
    """
    chunks: list[list[Path]] = []
    weight = 0
    for path in paths:
        images = VOLUME_IMAGES if str(path).lower().endswith(VOLUME_SUFFIXES) else 1
        if not chunks or weight + images > chunk_size:
            chunks.append([])
            weight = 0
        chunks[-1].append(path)
        weight += images
    return chunks


STAGED_PIXELS = 16 * 2**20
"""Decoded pixels :func:`load_chunk` holds before preprocessing them (64 slices of 512 x 512)."""


def load_chunk(
    paths: Sequence[Path], config: PreprocessConfig, max_pixels: int, planes: str = "acquisition"
) -> list[LoadedImage]:
    """The records of a chunk of files, in order (one task of a worker, local or on a cluster).

    Files are decoded in runs and then preprocessed, rather than each file decoded and preprocessed
    in turn: the same records for less CPU (the decoder's and the preprocessing's code and tables
    stay in the CPU's caches; see docs/performance.md). A run ends once it holds
    :data:`STAGED_PIXELS` decoded pixels, so memory stays bounded whatever the images' sizes.
    """
    records: list[LoadedImage] = []
    run: list[DecodedFile] = []
    held = 0
    for path in paths:
        run.append(decode_file(path, config, max_pixels, planes))
        held += run[-1].pixels
        if held >= STAGED_PIXELS:
            records.extend(record for decoded in run for record in _preprocessed(decoded, config))
            run, held = [], 0
    records.extend(record for decoded in run for record in _preprocessed(decoded, config))
    return records


def iter_loaded_chunks(
    paths: Sequence[Path],
    config: PreprocessConfig,
    *,
    workers: int = -1,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    planes: str = "acquisition",
) -> Iterator[list[LoadedImage]]:
    """Load files in parallel and yield their records chunk by chunk, in input order.

    Parameters
    ----------
    paths : files to load.
    config : the preprocessing settings (from the model card at scan time).
    workers : worker processes, counted as joblib's ``n_jobs`` (-1 = all cores, 1 = in this process).
    chunk_size : files per task; also the granularity of streaming.
    max_pixels : decompression-bomb limit passed to the decoder.
    planes : the planes volumes are cut in (:data:`mriscan.io.nifti.PLANE_CHOICES`).
    """
    chunks = chunk_files(paths, chunk_size)
    with choose_executor(workers, chunks=len(chunks)) as executor:
        yield from executor.map_ordered(partial(load_chunk, config=config, max_pixels=max_pixels, planes=planes),
                                       chunks)


def load_all(
    paths: Sequence[Path],
    config: PreprocessConfig,
    *,
    workers: int = -1,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    on_chunk: Callable[[int], None] | None = None,
    planes: str = "acquisition",
) -> list[LoadedImage]:
    """Load every file into memory (for training); ``on_chunk(files_done)`` reports progress."""
    records: list[LoadedImage] = []
    for chunk in iter_loaded_chunks(paths, config, workers=workers, chunk_size=chunk_size, planes=planes):
        records.extend(chunk)
        if on_chunk is not None:
            on_chunk(len({record.path for record in chunk}))
    return records
