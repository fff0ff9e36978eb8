"""``mriscan explain``: pick the images, explain each one, write its overlay and the review page.

TARGET is one image, a folder (walked like ``scan`` walks it), or a scan CSV (its rows predicted
``tumor`` or flagged, most uncertain first; the folder it scanned is read from its run record).
Each image, each frame of a multi-frame DICOM, or each slice of a volume (in its acquisition plane,
or the CSV row's plane) gets an overlay named ``<file name>[.<plane>][.f<frame>].<method>.png`` under
the output folder, mirroring the input tree, and an
``index.html`` at the top of it lists them all for a reviewer. The output folder is never inside
the scanned tree by default, and it is marked so that a scan never takes it for patient images.

One image's failure (unreadable, changed since the scan, missing frame, an existing file that is
not ours) becomes a line in the summary and on the page, never the end of the batch.
"""

from __future__ import annotations

import csv
import io
import math
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path, PurePosixPath

import numpy as np
from joblib import Parallel, delayed

from mriscan.data.preprocess import PreprocessConfig, preprocess
from mriscan.errors import ExplainError, OutputError, UnreadableImageError
from mriscan.explain.base import Explainer, Explanation
from mriscan.explain.factory import bundle_explainer
from mriscan.explain.overlay import OverlayCaption, render_overlay
from mriscan.explain.review_page import INDEX_NAME, FailedCase, ReviewCase, check_index_writable, render_index
from mriscan.io.atomic import replace_file
from mriscan.io.discover import find_candidates, relative_posix
from mriscan.io.hashing import file_sha256
from mriscan.io.nifti import PLANES
from mriscan.io.own_outputs import OVERLAY_SUFFIXES, is_mriscan_overlay, mark_output_folder
from mriscan.io.reader import read_image
from mriscan.model.bundle import ModelBundle
from mriscan.scan.run_record import ScanRecord, read_record

_REQUIRED_COLUMNS = ("path", "probability", "flagged", "flag_reason", "threshold", "error")


@dataclass(frozen=True)
class ExplainSummary:
    """What one ``run_explain`` did.

    Attributes
    ----------
    cases : the explained images, in the order the review page lists them.
    failures : the images that could not be explained, with the reason.
    error_rows_skipped : scan CSV rows skipped because the scan could not read that file.
    index_path : the review page.
    method : ``"lime"`` or ``"gradcam"``.
    """

    cases: tuple[ReviewCase, ...]
    failures: tuple[FailedCase, ...]
    error_rows_skipped: int
    index_path: Path
    method: str


@dataclass(frozen=True)
class ExplainJob:
    """One file to explain; ``frame`` None means every frame (every slice in ``plane``) it has.

    ``plane`` None cuts a volume in its acquisition plane.
    """

    source: Path
    display_path: str
    frame: int | None = None
    flag_reasons: tuple[str, ...] | None = None  # a scan CSV row's flag codes; None for an image or folder
    sha256: str = ""  # for a scan CSV row: the bytes that were scanned; a changed file is refused
    plane: str | None = None  # a volume's slices in this plane (None: its acquisition plane)


@dataclass(frozen=True)
class _Plan:
    """The files to explain; display paths and mirrored outputs are relative to ``root``."""

    jobs: list[ExplainJob]
    root: Path
    scanned_dir: Path | None = None  # for a scan CSV: the scanned folder, which the default output avoids
    failures: list[FailedCase] = field(default_factory=list)
    error_rows_skipped: int = 0


@dataclass(frozen=True)
class _Explained:
    job: ExplainJob
    frame: int | None
    original: np.ndarray  # the decoded pixels, shown beside the model input
    image: np.ndarray
    explanation: Explanation
    plane: str | None = None


def run_explain(
    target: Path,
    bundle: ModelBundle,
    *,
    out_dir: Path | None = None,
    method: str = "lime",
    num_samples: int = 1000,
    all_rows: bool = False,
    limit: int | None = None,
    input_root: Path | None = None,
    seed: int = 2021,
    workers: int = 1,
) -> ExplainSummary:
    """Explain the model's predictions for TARGET and write overlays plus ``index.html``.

    Parameters
    ----------
    target : an image file, a folder of images, or a scan CSV written by ``mriscan scan``.
    bundle : the loaded model bundle (the one the scan used, for a CSV).
    out_dir : where overlays go, mirroring the input tree; None: :func:`default_output_dir`.
    method : ``"lime"`` or ``"gradcam"``.
    num_samples : LIME's perturbed images per explanation.
    all_rows : for a CSV, explain every readable row instead of the tumour and flagged ones only.
    limit : explain at most this many files; for a CSV, the most uncertain ones
        (smallest ``|probability - threshold|``) first.
    input_root : for a CSV, the folder its ``path`` column is relative to (the scanned
        INPUT_DIR); default: the one in the CSV's run record (without one, an ExplainError).
    seed : LIME's random seed; the same seed, image, model and settings give the same overlay bytes.
    workers : images explained at once (-1: one per core, as the CLI's ``--workers``), in
        threads sharing TensorFlow's thread pool, so the CPU is not oversubscribed; pictures
        are drawn one at a time.

    Returns
    -------
    The summary; the review page is at ``summary.index_path``, at the top of the output folder.

    Raises
    ------
    ExplainError
        For bad settings, a missing TARGET, a CSV that is not a scan CSV of this model, or a
        default output folder that would fall inside the scanned folder.
    OutputError
        When the output folder cannot be created or an ``index.html`` there is not mriscan's.
    """
    _check_settings(limit, workers)
    config = bundle.preprocess_config
    # Built first: it refuses an unknown method, too few samples or an unsuitable model.
    explainer = bundle_explainer(bundle, method, num_samples=num_samples, seed=seed)
    plan = _plan_targets(target, all_rows=all_rows, limit=limit, input_root=input_root, model_id=bundle.model_id)
    out_dir = Path(os.path.abspath(out_dir if out_dir is not None else default_output_dir(target, plan.scanned_dir)))
    index_path = out_dir / INDEX_NAME
    check_index_writable(index_path)
    _make_folder(out_dir)
    cases, failures = [], list(plan.failures)
    for outcome in _outcomes(plan.jobs, explainer, config, workers):
        if isinstance(outcome, _Explained):
            outcome = _write_case(outcome, bundle, root=plan.root, out_dir=out_dir)
        (cases if isinstance(outcome, ReviewCase) else failures).append(outcome)
    title = f"mriscan explanations ({method}), model {bundle.model_id[:12]}"
    page = render_index(cases, failures, index_dir=out_dir, title=title)
    _write_atomically(index_path, page.encode("utf-8"), what="review page")
    return ExplainSummary(tuple(cases), tuple(failures), plan.error_rows_skipped, index_path, method)


def scan_record_of(target: Path) -> ScanRecord | None:
    """The run record of TARGET when it is a scan CSV that has one (what the scan read, with which model)."""
    return read_record(target) if _is_csv(target) else None


def default_output_dir(target: Path, scanned_dir: Path | None = None) -> Path:
    """Where explain writes without ``--out-dir``: a ``-review`` folder beside TARGET, never inside it.

    For a scan CSV ``results.csv``: ``results-review`` beside it; for a folder ``incoming``:
    ``incoming-review`` beside it; for an image: ``<its folder>-review`` beside its folder.

    Raises
    ------
    ExplainError
        When that folder would be inside ``scanned_dir`` (the CSV was written into the scanned tree).

    Examples
    --------
    >>> default_output_dir(Path("/nightly/results.csv")).as_posix()
    '/nightly/results-review'
    >>> default_output_dir(Path("/data/one/scan.jpg")).as_posix()
    '/data/one-review'
    """
    target = Path(os.path.abspath(target))
    if target.suffix.lower() == ".csv":
        out = target.with_name(target.stem + "-review")
    elif target.is_dir():
        out = target.with_name(target.name + "-review")
    else:
        out = target.parent.with_name(target.parent.name + "-review")
    if scanned_dir is not None and _inside(out, Path(os.path.abspath(scanned_dir))):
        raise ExplainError(
            f"the default output folder {out} would be inside the scanned folder {scanned_dir}, where the next "
            "scan would meet it; pass --out-dir with a folder outside the scanned tree"
        )
    return out


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def _is_csv(target: Path) -> bool:
    return target.is_file() and target.suffix.lower() == ".csv"


def _check_settings(limit: int | None, workers: int) -> None:
    if limit is not None and limit < 1:
        raise ExplainError(f"limit must be 1 or more (or left out for no limit); received: limit={limit}")
    if workers == 0:
        raise ExplainError(f"workers must be 1 or more, or -1 for all cores; received: workers={workers}")


def _plan_targets(target: Path, *, all_rows: bool, limit: int | None, input_root: Path | None, model_id: str) -> _Plan:
    """Decide which files to explain for TARGET (see :func:`run_explain`)."""
    if _is_csv(target):
        rows = _read_scan_rows(target)
        _check_model(rows, model_id, target)
        root = input_root if input_root is not None else _scanned_folder(target)
        return _plan_rows(rows, root=Path(os.path.abspath(root)), all_rows=all_rows, limit=limit)
    if target.is_dir():
        root = Path(os.path.abspath(target))
        jobs = [ExplainJob(path, relative_posix(path, root)) for path in find_candidates(root)]
        return _Plan(jobs[:limit], root)
    if target.is_file():
        root = Path(os.path.abspath(target.parent))
        return _Plan([ExplainJob(root / target.name, target.name)], root)
    raise ExplainError(f"{target} does not exist. Pass an image, a folder of images, or a scan CSV.")


def _scanned_folder(csv_path: Path) -> Path:
    """The INPUT_DIR the scan of ``csv_path`` read, from its run record."""
    record = read_record(csv_path)
    if record is None:
        raise ExplainError(
            f"{csv_path} has no run record beside it ({csv_path.name}.run.json, written by `mriscan scan`), so "
            "the folder its paths are relative to is unknown; pass --input-root with the scanned INPUT_DIR"
        )
    return Path(record.input_dir)


def _read_scan_rows(csv_path: Path) -> list[dict[str, str]]:
    """The rows of a scan CSV, as strings.

    Raises
    ------
    ExplainError
        When the file cannot be read or lacks the columns ``mriscan scan`` writes.
    """
    try:
        text = csv_path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as error:
        raise ExplainError(
            f"Cannot read the scan CSV {csv_path}: {error}. Check the file and its permissions."
        ) from error
    reader = csv.DictReader(io.StringIO(text))
    missing = [column for column in _REQUIRED_COLUMNS if column not in (reader.fieldnames or [])]
    if missing:
        raise ExplainError(
            f"{csv_path} is not a scan CSV written by `mriscan scan` (missing columns: {', '.join(missing)}). "
            "Pass an image, a folder of images, or a scan CSV."
        )
    return [{key: value or "" for key, value in row.items() if key is not None} for row in reader]


def _check_model(rows: Sequence[dict[str, str]], model_id: str, csv_path: Path) -> None:
    scanned_with = {row.get("model_id", "") for row in rows} - {"", model_id}
    if scanned_with:
        other = sorted(scanned_with)[0]
        raise ExplainError(
            f"{csv_path} was written by model {other[:12]}, but the loaded model is {model_id[:12]}. "
            "Load the model the scan used (its model folder), or scan again with this one."
        )


def select_rows(
    rows: Sequence[dict[str, str]], *, all_rows: bool, limit: int | None
) -> tuple[list[dict[str, str]], int]:
    """Pick the scan CSV rows to explain: readable rows predicted tumour or flagged (or all), most uncertain first.

    These are the rows a person reviews: every tumour call, and every no_tumor the scan did not
    trust (near the threshold, poor or unusual input). Unreadable rows have nothing to explain.

    Returns
    -------
    (selected rows, number of rows skipped because the scan recorded an error for them).

    Examples
    --------
    >>> rows = [{"probability": p, "prediction": "tumor", "threshold": "0.5", "flagged": "false", "error": ""}
    ...         for p in ("0.9", "0.55")]
    >>> [row["probability"] for row in select_rows(rows, all_rows=False, limit=1)[0]]
    ['0.55']
    """
    readable = [row for row in rows if not row["error"].strip()]
    wanted = [row for row in readable if all_rows or _for_review(row)]
    wanted.sort(key=_uncertainty)
    return wanted[:limit], len(rows) - len(readable)


def _for_review(row: dict[str, str]) -> bool:
    return row["flagged"].strip().lower() == "true" or row.get("prediction", "").strip() == "tumor"


def _uncertainty(row: dict[str, str]) -> float:
    try:
        return abs(float(row["probability"]) - float(row["threshold"]))
    except ValueError:
        return math.inf


def _plan_rows(
    rows: Sequence[dict[str, str]], *, root: Path, all_rows: bool, limit: int | None
) -> _Plan:
    selected, skipped = select_rows(rows, all_rows=all_rows, limit=limit)
    jobs, failures = [], []
    for row in selected:
        relative, frame = PurePosixPath(row["path"]), row.get("frame", "").strip()
        if relative.is_absolute() or ".." in relative.parts or not (frame == "" or frame.isdigit()):
            failures.append(FailedCase(row["path"], "the CSV row's path or frame is not valid; skipped"))
            continue
        reasons = tuple(code for code in row["flag_reason"].split(";") if code.strip())
        plane = row.get("plane", "").strip() or None
        if plane not in (None, *PLANES):
            failures.append(FailedCase(row["path"], f"the CSV row's plane {plane!r} is not valid; skipped"))
            continue
        jobs.append(ExplainJob(root.joinpath(*relative.parts), row["path"], int(frame) if frame else None, reasons,
                               row.get("sha256", "").strip(), plane))
    return _Plan(jobs, root, root, failures, skipped)


def _outcomes(
    jobs: Sequence[ExplainJob], explainer: Explainer, config: PreprocessConfig, workers: int
) -> Iterator[_Explained | FailedCase]:
    """Explain the jobs, in order, ``workers`` at a time; outcomes stream as they finish."""
    work = partial(explain_job, explainer=explainer, config=config)
    if workers == 1:
        for job in jobs:
            yield from work(job)
        return
    parallel = Parallel(n_jobs=workers, backend="threading", return_as="generator")
    for outcomes in parallel(delayed(work)(job) for job in jobs):
        yield from outcomes


def explain_job(job: ExplainJob, explainer: Explainer, config: PreprocessConfig) -> list[_Explained | FailedCase]:
    """Read one file and explain each of its wanted frames; problems become FailedCase."""
    changed = _changed_since_scan(job)
    if changed:
        return [FailedCase(job.display_path, changed)]
    try:
        frames = read_image(job.source, least_side=config.decode_least_side, planes=job.plane or "acquisition")
    except UnreadableImageError as error:
        return [FailedCase(job.display_path, str(error))]
    if job.frame is not None:
        frames = [decoded for decoded in frames if decoded.frame == job.frame and decoded.plane == job.plane]
        if not frames:
            return [
                FailedCase(job.display_path, f"frame {job.frame} is not in the file; was it replaced since the scan?")
            ]
    outcomes: list[_Explained | FailedCase] = []
    for decoded in frames:
        try:
            image = preprocess(decoded.pixels, config)
        except ValueError as error:
            outcomes.append(FailedCase(job.display_path, f"cannot prepare the image: {error}"))
            continue
        outcomes.append(_Explained(job, decoded.frame, decoded.pixels, image, explainer.explain(image),
                                   decoded.plane))
    return outcomes


def _changed_since_scan(job: ExplainJob) -> str:
    """Why the file is not the one the scan classified ("" when it is, or when there is no sha256 to check)."""
    if not job.sha256:
        return ""
    try:
        now = file_sha256(job.source)
    except OSError as error:
        return f"cannot read {job.source} ({error.strerror}): moved or deleted since the scan? Scan again"
    if now != job.sha256:
        return ("the file changed since the scan (its sha256 differs from the CSV's): the CSV's result is not "
                "this file's. Scan again before explaining it")
    return ""


def overlay_path(source: Path, frame: int | None, method: str, *, root: Path, out_dir: Path,
                 plane: str | None = None) -> Path:
    """Where the overlay of ``source`` (a frame, or a slice in ``plane``) goes: under ``out_dir``, mirroring ``root``.

    Examples
    --------
    >>> overlay_path(Path("/in/a/b.dcm"), 3, "lime", root=Path("/in"), out_dir=Path("/out")).as_posix()
    '/out/a/b.dcm.f3.lime.png'
    >>> overlay_path(Path("/in/b.png"), None, "gradcam", root=Path("/in"), out_dir=Path("/out")).as_posix()
    '/out/b.png.gradcam.png'
    >>> overlay_path(Path("/in/t1.nii.gz"), 12, "lime", root=Path("/in"), out_dir=Path("/out"), plane="axial").name
    't1.nii.gz.axial.f12.lime.png'
    """
    where = (f".{plane}" if plane else "") + (f".f{frame}" if frame is not None else "")
    name = source.name + where + OVERLAY_SUFFIXES[method]
    return out_dir / source.parent.relative_to(root) / name


def _write_case(explained: _Explained, bundle: ModelBundle, *, root: Path, out_dir: Path) -> ReviewCase | FailedCase:
    """Draw and write one overlay; the title's probability is the bundle's, as the scan reports it."""
    job, frame, plane = explained.job, explained.frame, explained.plane
    display = job.display_path if frame is None else f"{job.display_path} ({plane or 'frame'} {frame})"
    probability = float(bundle.predict(explained.image[np.newaxis])[0])
    decision = bundle.decide(probability)
    caption = OverlayCaption(probability, decision, bundle.threshold, bundle.model_id, job.flag_reasons)
    path = overlay_path(job.source, frame, explained.explanation.method, root=root, out_dir=out_dir,
                        plane=explained.plane)
    if path.exists() and not is_mriscan_overlay(path):
        return FailedCase(display, f"{path} exists and is not an overlay written by mriscan; move it or use --out-dir")
    try:
        picture = render_overlay(explained.image, explained.explanation, caption, explained.original)
        _write_atomically(path, picture, what="overlay")
    except OutputError as error:
        return FailedCase(display, str(error))
    return ReviewCase(path, display, probability, decision, job.flag_reasons or (), job.source)


def _write_atomically(path: Path, data: bytes, *, what: str) -> None:
    """Write ``data`` to ``path`` through a temporary file, so no half-written file is ever seen.

    Raises
    ------
    OutputError
        When the folder cannot be created or the file cannot be written.
    """
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        replace_file(path, data)
    except OSError as error:
        raise OutputError(
            f"Cannot write the {what} {path}: {error.strerror}. Check permissions and free space."
        ) from error


def _make_folder(folder: Path) -> None:
    """Create the output folder and mark it as mriscan's, so no scan takes its pictures for patient images."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        mark_output_folder(folder)
    except OSError as error:
        raise OutputError(
            f"Cannot create the output folder {folder}: {error.strerror}. Choose another --out-dir."
        ) from error
