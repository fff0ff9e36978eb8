"""``mriscan scan``: candidates -> parallel decode + preprocess -> batched prediction -> flags -> CSV.

Files stream through in chunks (memory stays bounded) and every candidate gets a row (one per frame
of a multi-frame DICOM, one per slice of a volume, which is decoded once), with an error when it
could not be read. With ``--studies``, the rows are summarised per study at the end
(:mod:`mriscan.scan.studies`). With the bundle's ONNX network, each worker process decodes,
preprocesses and predicts its chunks and sends back only rows; with a Keras-only bundle, workers
decode and preprocess while the network predicts in this process.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path

import numpy as np

from mriscan import __version__
from mriscan.data.loader import LoadedImage, chunk_files, iter_loaded_chunks, load_chunk
from mriscan.errors import NoImagesError
from mriscan.execution.base import DEFAULT_CHUNK_SIZE
from mriscan.execution.executor import choose_executor
from mriscan.execution.shipping import opened
from mriscan.io.discover import find_candidates, relative_posix
from mriscan.io.hashing import file_sha256
from mriscan.io.nifti import PLANES
from mriscan.io.reader import DEFAULT_MAX_PIXELS
from mriscan.model.bundle import TUMOR, ModelBundle
from mriscan.model.portable import PortableModel
from mriscan.model.quality_floor import quality_warnings
from mriscan.scan.flags import UNREADABLE, Flag, flag_result
from mriscan.scan.results import COLUMNS, UID_COLUMNS, ResultsWriter, Row, ScanResult
from mriscan.scan.run_record import ScanRecord, utc_now
from mriscan.scan.studies import StudyRule, check_study_output, summarise_studies, write_studies

ProgressCallback = Callable[[int, int], None]


@dataclass(frozen=True)
class ScanOptions:
    """Everything ``mriscan scan`` was asked to do."""

    input_dir: Path
    out: Path
    workers: int = -1
    resume: bool = False
    overwrite: bool = False
    dicom_uids: bool = False
    chunk_size: int = DEFAULT_CHUNK_SIZE
    max_pixels: int = DEFAULT_MAX_PIXELS
    scheduler: str | None = None  # a Dask scheduler address: predict on that cluster (mriscan.execution.cluster)
    allow_empty: bool = False  # an INPUT_DIR without candidates is a normal night, not an error
    planes: str = "acquisition"  # the planes volumes are cut in (mriscan.io.nifti.PLANE_CHOICES)
    studies: Path | None = None  # where to write one row per study (mriscan.scan.studies)


@dataclass
class ScanSummary:
    """What a scan did, for the closing summary and the exit code."""

    candidates: int = 0
    scanned: int = 0
    tumor: int = 0
    flagged: int = 0
    unreadable: int = 0
    skipped: int = 0
    studies: int = 0
    seconds: float = 0.0
    rows: list[Row] = field(default_factory=list, repr=False)

    @property
    def files_per_second(self) -> float:
        return self.scanned / self.seconds if self.seconds > 0 else 0.0


def prepare_output(options: ScanOptions) -> ResultsWriter:
    """Check and lock the outputs before any work, so a bad --out or --studies fails fast.

    With --studies the slice CSV keeps the UID columns too: a resumed run rebuilds the studies from it.
    """
    if options.studies is not None:
        check_study_output(options.studies, resume=options.resume, overwrite=options.overwrite)
    columns = COLUMNS + (UID_COLUMNS if options.dicom_uids or options.studies is not None else ())
    return ResultsWriter(options.out, columns, resume=options.resume, overwrite=options.overwrite)


def run_scan(
    options: ScanOptions,
    bundle: ModelBundle,
    writer: ResultsWriter,
    on_progress: ProgressCallback | None = None,
) -> ScanSummary:
    """Scan every candidate under ``options.input_dir`` into ``writer``; return the summary."""
    started, started_at = time.monotonic(), utc_now()
    summary = ScanSummary()
    try:
        candidates = find_candidates(options.input_dir)
        if not candidates and not options.allow_empty:
            raise NoImagesError(
                f"no candidate image under {os.path.abspath(options.input_dir)}: is the share mounted and the "
                "night's export finished? (pass --allow-empty where an empty night is normal)"
            )
        summary.candidates = len(candidates)
        todo = _files_to_scan(candidates, writer, bundle.model_id, options)
        summary.skipped = len(candidates) - len(todo)
        writer.start(relative_posix(path, options.input_dir) for path in todo)
        done = summary.skipped
        if on_progress is not None:  # starts the clock, so files/s and ETA leave out start-up and skipped files
            on_progress(done, len(candidates))
        for results in _predicted_chunks(todo, options, bundle):
            writer.append(results)
            _count(summary, results)
            done += len({result.path for result in results})
            if on_progress is not None:
                on_progress(done, len(candidates))
        summary.rows = writer.finish(_record(options, bundle, summary, started_at))
        if options.studies is not None:
            studies = summarise_studies(summary.rows, StudyRule(bundle.threshold, bundle.review_threshold),
                                        bundle.model_id)
            write_studies(options.studies, studies)
            summary.studies = len(studies)
    finally:
        writer.close()
    summary.seconds = time.monotonic() - started
    return summary


def _record(options: ScanOptions, bundle: ModelBundle, summary: ScanSummary, started_at: str) -> ScanRecord:
    """The run record written beside the CSV: what explain needs to follow on, and what a site monitors."""
    counts = {name: getattr(summary, name) for name in ("candidates", "scanned", "tumor", "flagged", "unreadable",
                                                         "skipped")}
    return ScanRecord(input_dir=os.path.abspath(options.input_dir), model_dir=os.path.abspath(bundle.directory),
                      model_id=bundle.model_id, started=started_at, finished=utc_now(),
                      mriscan_version=__version__, model_warnings=tuple(quality_warnings(bundle.card)),
                      counts=counts)


def _predicted_chunks(paths: list[Path], options: ScanOptions, bundle: ModelBundle) -> Iterator[list[ScanResult]]:
    """Results of ``paths`` chunk by chunk, in input order.

    With the bundle's ONNX network (or on a --scheduler cluster), each worker decodes, preprocesses
    and predicts its chunks with the model shipped to it; a Keras-only bundle predicts here, on
    what local workers decoded and preprocessed.
    """
    chunks = chunk_files(paths, options.chunk_size)
    if not chunks:  # e.g. a --resume with nothing left to do: no need for workers or the cluster
        return
    if bundle.network is None and options.scheduler is None:
        for chunk in iter_loaded_chunks(paths, bundle.preprocess_config, workers=options.workers,
                                        chunk_size=options.chunk_size, max_pixels=options.max_pixels,
                                        planes=options.planes):
            yield predict_results(chunk, bundle, options.input_dir)
        return
    model = PortableModel.from_bundle(bundle)
    task = partial(results_on_worker, model_key=model.key, root=options.input_dir, max_pixels=options.max_pixels,
                   planes=options.planes)
    with choose_executor(options.workers, scheduler=options.scheduler, chunks=len(chunks),
                         shipments=[model]) as executor:
        yield from executor.map_ordered(task, chunks)


def results_on_worker(paths: list[Path], model_key: str, root: Path, max_pixels: int,
                      planes: str = "acquisition") -> list[ScanResult]:
    """A worker's task (inline, local process or Dask): one chunk's results, by the model shipped as ``model_key``."""
    return results_of_chunk(paths, opened(model_key), root, max_pixels, planes)


def results_of_chunk(paths: list[Path], bundle: ModelBundle, root: Path, max_pixels: int,
                     planes: str = "acquisition") -> list[ScanResult]:
    """Decode, preprocess and predict one chunk of files; return its results."""
    return predict_results(load_chunk(paths, bundle.preprocess_config, max_pixels, planes), bundle, root)


def _files_to_scan(candidates: list[Path], writer: ResultsWriter, model_id: str, options: ScanOptions) -> list[Path]:
    """With --resume, skip files whose rows were made from the same bytes by the same model.

    A volume's rows must also be in the planes asked for, and with --studies every row must carry the
    UID columns (a CSV written without them cannot tell which study a DICOM file belongs to). The last
    file of an interrupted run is scanned again: some of its rows may be missing.
    """
    if not writer.previous:
        return candidates
    previous: dict[str, list[Row]] = {}
    for row in writer.previous.values():
        previous.setdefault(row["path"], []).append(row)
    needs_uids = options.studies is not None
    todo = []
    for path in candidates:
        relative = relative_posix(path, options.input_dir)
        rows = previous.get(relative, []) if relative != writer.maybe_incomplete else []
        reusable = rows and all(_reusable(row, model_id, needs_uids) for row in rows)
        if not (reusable and _in_planes(rows, options.planes) and _same_bytes(path, rows[0])):
            todo.append(path)
    return todo


def _reusable(row: Row, model_id: str, needs_uids: bool) -> bool:
    has_uids = all(column in row for column in UID_COLUMNS)
    return row.get("model_id") == model_id and not row.get("error") and (has_uids or not needs_uids)


def _in_planes(rows: list[Row], planes: str) -> bool:
    """Whether a file's rows are in the planes asked for (always, for a file that is not a volume)."""
    found = {row.get("plane") or "" for row in rows} - {""}
    if not found:
        return True
    if planes == "acquisition":
        return len(found) == 1
    return found == (set(PLANES) if planes == "all" else {planes})


def _same_bytes(path: Path, row: Row) -> bool:
    try:
        return file_sha256(path) == row.get("sha256")
    except OSError:
        return False


def predict_results(chunk: list[LoadedImage], bundle: ModelBundle, root: Path) -> list[ScanResult]:
    """Results for one chunk of loaded images: predictions in one batch, errors as results."""
    readable = [record for record in chunk if record.ok]
    probabilities = bundle.predict(np.stack([r.model_input for r in readable])) if readable else []
    probability_of = {id(r): float(p) for r, p in zip(readable, probabilities, strict=True)}
    return [_result(record, probability_of.get(id(record)), bundle, root) for record in chunk]


def _result(record: LoadedImage, probability: float | None, bundle: ModelBundle, root: Path) -> ScanResult:
    result = ScanResult(path=relative_posix(record.path, root), frame=record.frame, plane=record.plane,
                        sha256=record.sha256,
                        threshold=bundle.threshold, review_threshold=bundle.review_threshold,
                        model_id=bundle.model_id, dicom_uids=record.dicom_uids)
    if probability is None:
        error = record.error or "unreadable"
        return replace(result, error=error, flag=Flag((UNREADABLE,), (error,)))
    prediction = bundle.decide(probability)
    flag = flag_result(record, probability, prediction == TUMOR, bundle.threshold, bundle.review_threshold,
                       bundle.card.statistics_ranges)
    return replace(result, probability=probability, prediction=prediction, flag=flag)


def _count(summary: ScanSummary, results: Iterable[ScanResult]) -> None:
    """Add results to the counts; ``flagged`` counts every result for review, the unreadable ones too."""
    for result in results:
        summary.flagged += result.flag.flagged
        if not result.readable:
            summary.unreadable += 1
            continue
        summary.scanned += 1
        summary.tumor += result.prediction == TUMOR
