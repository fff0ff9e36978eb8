"""Make a synthetic dataset: plan, render in parallel chunks, write class folders and a manifest.

Layout of the output folder::

    yes/synth_000001.png     tumour images      (class folders a trainer reads directly)
    no/synth_000000.png      healthy images
    masks/synth_000001.png   uint8 0/255 mask of each tumour image's mass (same stem)
    manifest.csv             file, label, origin, plane, contrast, slice_index, pair_id,
                             x0, y0, x1, y1 (mass bounding box, x1/y1 exclusive), seed

The same arguments give the same bytes: every image has its own seed, rows are sorted and
nothing records a time.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mriscan.data.dataset import SYNTHETIC_MANIFEST
from mriscan.errors import SynthError
from mriscan.io.atomic import staged_output_folder
from mriscan.synth.anatomy import PLANES, TemplateVolumes, load_template, slice_positions
from mriscan.synth.contrast import CONTRASTS
from mriscan.synth.healthy import list_healthy_sources, read_grey
from mriscan.synth.output import IMAGE_FORMATS, write_image, write_manifest
from mriscan.synth.plan import Job, plan_jobs
from mriscan.synth.render import RenderedSlice, render_on_healthy, render_template_slice

# Jobs per parallel task: large enough to amortise the task overhead, small enough to balance.
_CHUNK = 32


@dataclass(frozen=True)
class SynthSummary:
    """What a run wrote.

    Attributes
    ----------
    out_dir : the dataset folder.
    images, tumour, healthy, pairs : counts of images written (pairs: twins sharing a pair_id).
    manifest : path of ``manifest.csv``.
    seconds : wall time of the run.
    """

    out_dir: Path
    images: int
    tumour: int
    healthy: int
    pairs: int
    manifest: Path
    seconds: float


@dataclass(frozen=True)
class _Settings:
    """What every worker needs besides its jobs."""

    folder: Path
    volumes: TemplateVolumes | None
    size_range: tuple[int, int]
    suffix: str


def _check_choices(name: str, chosen: tuple[str, ...], allowed: tuple[str, ...]) -> tuple[str, ...]:
    """Return ``chosen`` as a tuple if it is a non-empty subset of ``allowed``, else raise."""
    chosen = tuple(chosen)
    unknown = [c for c in chosen if c not in allowed]
    if not chosen or unknown:
        raise SynthError(f"{name} must be one or more of {', '.join(allowed)}; received: {', '.join(chosen) or 'none'}")
    return chosen


def _check_numbers(n: int, lesion_fraction: float, paired: bool, workers: int, image_format: str,
                   size_range: tuple[int, int]) -> None:
    """Raise a SynthError naming the first setting that cannot work."""
    if n < 1 or (paired and n % 2):
        raise SynthError(f"n must be a positive{' even' if paired else ''} number of images; received: n={n}")
    if not 0.0 <= lesion_fraction <= 1.0:
        raise SynthError(f"lesion_fraction must be between 0 and 1; received: {lesion_fraction}")
    if workers == 0 or workers < -1:
        raise SynthError(f"workers must be a positive number or -1 for all cores; received: {workers}")
    if image_format not in IMAGE_FORMATS:
        raise SynthError(f"image_format must be one of {', '.join(IMAGE_FORMATS)}; received: {image_format!r}")
    low, high = size_range
    if not 64 <= low <= high <= 4096:
        raise SynthError(f"size_range must be (low, high) with 64 <= low <= high <= 4096; received: {size_range}")


def _bounding_box(mask: np.ndarray) -> tuple[str, str, str, str]:
    """Return ``x0, y0, x1, y1`` of the mask's nonzero pixels (x1, y1 exclusive) as strings."""
    rows, columns = np.nonzero(mask)
    return str(columns.min()), str(rows.min()), str(columns.max() + 1), str(rows.max() + 1)


def _render_job(job: Job, settings: _Settings) -> RenderedSlice:
    """Render a job's slice (and its lesioned twin if any output is a tumour image)."""
    wants_lesion = any(output.label == "yes" for output in job.outputs)
    if job.source is None:
        return render_template_slice(settings.volumes, job.plane, job.slice_index, job.contrast, job.seed,
                                     settings.size_range, wants_lesion)
    source = read_grey(job.source)
    if source is None:
        raise SynthError(f"{job.source} could no longer be decoded; check the file and run again")
    return render_on_healthy(source, job.contrast, job.seed) if wants_lesion else RenderedSlice(healthy=source)


def _write_job(job: Job, rendered: RenderedSlice, settings: _Settings) -> list[dict[str, str]]:
    """Write a job's image(s) and mask(s); return their manifest rows."""
    rows = []
    for output in job.outputs:
        file = f"{output.label}/{output.stem}.{settings.suffix}"
        box = ("", "", "", "")
        if output.label == "yes":
            write_image(settings.folder / file, rendered.lesioned)
            write_image(settings.folder / "masks" / f"{output.stem}.png", rendered.mask)
            box = _bounding_box(rendered.mask)
        else:
            write_image(settings.folder / file, rendered.healthy)
        rows.append({"file": file, "label": output.label, "origin": job.origin, "plane": job.plane,
                     "contrast": job.contrast, "slice_index": "" if job.slice_index is None else str(job.slice_index),
                     "pair_id": job.pair_id, "x0": box[0], "y0": box[1], "x1": box[2], "y1": box[3],
                     "seed": str(job.seed)})
    return rows


def _render_chunk(jobs: list[Job], settings: _Settings) -> list[dict[str, str]]:
    """Render and write one chunk of jobs (the unit of parallel work)."""
    rows = []
    for job in jobs:
        rows.extend(_write_job(job, _render_job(job, settings), settings))
    return rows


def _run(jobs: list[Job], settings: _Settings, workers: int) -> list[dict[str, str]]:
    """Render all jobs, in parallel chunks when there is more than one chunk and one worker."""
    from joblib import Parallel, delayed, effective_n_jobs

    parallel = effective_n_jobs(workers)
    size = int(np.clip(np.ceil(len(jobs) / (4 * parallel)), 4, _CHUNK))
    chunks = [jobs[i:i + size] for i in range(0, len(jobs), size)]
    if parallel == 1 or len(chunks) == 1:
        return [row for chunk in chunks for row in _render_chunk(chunk, settings)]
    results = Parallel(n_jobs=workers)(delayed(_render_chunk)(chunk, settings) for chunk in chunks)
    return [row for rows in results for row in rows]


def _plan(n: int, seed: int, planes: tuple[str, ...], contrasts: tuple[str, ...], lesion_fraction: float,
          paired: bool, from_healthy: Path | None) -> tuple[list[Job], TemplateVolumes | None]:
    """Load what the run draws from (template or healthy folder) and plan its jobs."""
    if from_healthy is not None:
        sources = list_healthy_sources(Path(from_healthy))
        return plan_jobs(n, seed, planes, contrasts, lesion_fraction, paired, sources=sources), None
    volumes = load_template()
    positions = {plane: slice_positions(volumes, plane) for plane in planes}
    return plan_jobs(n, seed, planes, contrasts, lesion_fraction, paired, positions=positions), volumes


def generate_dataset(out_dir: Path, n: int, seed: int, *, planes: tuple[str, ...] = PLANES,
                     contrasts: tuple[str, ...] = CONTRASTS, lesion_fraction: float = 0.5, paired: bool = False,
                     from_healthy: Path | None = None, workers: int = -1, image_format: str = "png",
                     size_range: tuple[int, int] = (160, 512), overwrite: bool = False) -> SynthSummary:
    """Write a synthetic brain MRI dataset of ``n`` images into ``out_dir``.

    Parameters
    ----------
    out_dir : new or empty folder for the dataset (see the module docstring for its layout).
    n : number of images; in paired mode an even number (``n / 2`` healthy/tumour twins).
    seed : the run's seed; the same arguments give byte-identical output.
    planes, contrasts : choices from :data:`PLANES` and :data:`CONTRASTS`, cycled evenly.
    lesion_fraction : share of tumour images (ignored when ``paired``: then exactly half).
    paired : write each slice twice, healthy and with a lesion, with a shared ``pair_id``.
    from_healthy : folder of real healthy slices to draw lesions into, instead of the template;
        their sequence is unknown, so lesions are drawn in the ``contrasts`` given (pass the
        folder's own, e.g. ``("t2",)``) and ``plane`` is left empty. Healthy outputs are the
        sources as decoded, in grey.
    workers : parallel processes (-1: all cores); the output does not depend on it.
    image_format : ``"png"`` or ``"jpg"`` for the images (masks are always PNG).
    size_range : smallest and largest output side in pixels (template mode).
    overwrite : replace ``out_dir`` if it is not empty (the old one is kept as ``<name>.replaced-<time>``).

    Returns
    -------
    The :class:`SynthSummary`.

    Raises
    ------
    SynthError
        On an unusable setting, a healthy folder without usable images, or (template mode) the
        optional extra ``mriscan[synth]`` missing.
    OutputError
        On a non-empty ``out_dir`` without ``overwrite``.
    """
    started = time.perf_counter()
    planes = _check_choices("planes", planes, PLANES)
    contrasts = _check_choices("contrasts", contrasts, CONTRASTS)
    _check_numbers(n, lesion_fraction, paired, workers, image_format, size_range)
    out_dir = Path(out_dir)
    with staged_output_folder(out_dir, overwrite=overwrite, kind="dataset") as staged:
        staging = staged.path
        jobs, volumes = _plan(n, seed, planes, contrasts, lesion_fraction, paired, from_healthy)
        for folder in ("yes", "no", "masks"):
            (staging / folder).mkdir()
        rows = _run(jobs, _Settings(staging, volumes, (int(size_range[0]), int(size_range[1])), image_format),
                    workers)
        write_manifest(staging / SYNTHETIC_MANIFEST, rows)
    tumour = sum(row["label"] == "yes" for row in rows)
    return SynthSummary(out_dir=out_dir, images=len(rows), tumour=tumour, healthy=len(rows) - tumour,
                        pairs=len(jobs) if paired else 0, manifest=out_dir / SYNTHETIC_MANIFEST,
                        seconds=time.perf_counter() - started)
