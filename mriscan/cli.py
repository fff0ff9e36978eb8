"""The ``mriscan`` command line: parse options, call the library, print, map errors to exit codes.

Heavy libraries (tensorflow, keras, lime) are imported inside the commands that need them, so
``mriscan --help`` and ``mriscan --version`` answer at once.
"""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import wraps
from pathlib import Path
from typing import Any

import click

from mriscan import __version__
from mriscan.errors import MriscanError

# TensorFlow's C++ start-up chatter (CUDA probes, CPU features) would drown the progress lines.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

EXIT_OK = 0
EXIT_FATAL = 1
EXIT_USAGE = 2
EXIT_UNREADABLE = 3
EXIT_NO_INPUT = 4
EXIT_BELOW_FLOOR = 5
EXIT_INTERRUPTED = 130

EXIT_CODES_HELP = (
    "Exit codes: 0 success; 3 output complete but some files could not be read (or explained); "
    "1 fatal error (no or bad model, unwritable output, bad data layout, nothing explained); 2 usage error; "
    "4 scan: INPUT_DIR missing or without any image (see --allow-empty); 5 fit: the model is below the "
    "quality floor (written, with its warnings in the card); 130 interrupted (scan: --resume continues)."
)


def _fatal_on_mriscan_error(command: Callable[..., Any]) -> Callable[..., Any]:
    """Turn a MriscanError raised by the library into a message and the fatal exit code."""

    @wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except MriscanError as error:
            click.echo(f"mriscan: error: {error}", err=True)
            sys.exit(EXIT_FATAL)

    return wrapper


@click.group(context_settings={"help_option_names": ["-h", "--help"]}, epilog=EXIT_CODES_HELP)
@click.version_option(__version__, prog_name="mriscan")
def cli() -> None:
    """mriscan: brain-tumour triage for 2-D MRI slices.

    A research and triage aid, not a diagnostic device.
    """


# --- commands -------------------------------------------------------------------------------



class _WorkerCount(click.ParamType):
    """``--workers``: a positive count, or -1 for all cores (0 and other negatives are usage errors)."""

    name = "integer"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        count = click.INT.convert(value, param, ctx)
        if count == 0 or count < -1:
            self.fail(f"{count} is not a worker count; give 1 or more, or -1 for all cores", param, ctx)
        return count


_WORKERS = click.option("--workers", type=_WorkerCount(), default=-1, show_default=True,
                        help="Parallel processes (-1: all cores, 1: none).")
_SCHEDULER = click.option("--scheduler", default=None, metavar="ADDRESS",
                          help="Run the work on the Dask cluster of this scheduler (e.g. tcp://10.0.0.5:8786) "
                               "instead of --workers; needs pip install 'mriscan[dask]'. Workers must read the "
                               "input files at the same paths.")
_VOLUME_PLANES = click.option("--planes", type=click.Choice(["acquisition", "axial", "coronal", "sagittal", "all"]),
                       default="acquisition", show_default=True,
                       help="Planes NIfTI volumes are cut in; acquisition: the one with the finest in-plane "
                            "resolution.")
_MODEL = click.option("--model", "model_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
                      help="Model bundle folder (default: the shipped model in models/default).")
_DATA_DIRS = click.argument("data_dirs", nargs=-1, required=True,
                            type=click.Path(exists=True, file_okay=False, path_type=Path))


def _stacked(*decorators: Callable[[Callable[..., Any]], Callable[..., Any]]) -> Callable[..., Any]:
    """Several click options as one decorator (the first listed comes first in --help)."""

    def apply(command: Callable[..., Any]) -> Callable[..., Any]:
        for decorator in reversed(decorators):
            command = decorator(command)
        return command

    return apply


_LABEL_NAMES = _stacked(
    click.option("--positive", multiple=True, help="Extra folder name meaning tumor (repeatable)."),
    click.option("--negative", multiple=True, help="Extra folder name meaning no tumor (repeatable)."),
)
# What evaluate, compare and promote share: how to read the labelled folders and make the intervals.
_MEASURING = _stacked(
    _LABEL_NAMES,
    click.option("--bootstrap", "resamples", type=click.IntRange(100), default=1000, show_default=True,
                 help="Bootstrap resamples for the 95% intervals."),
    click.option("--seed", type=int, default=2021, show_default=True, help="Seed of the bootstrap."),
    click.option("--include-training-copies", is_flag=True,
                 help="Keep images that are exact or near copies of a model's training or validation images in "
                      "the figures (by default they are counted and left out: they overstate the model)."),
    _WORKERS,
)
_REPORT_FOLDER = _stacked(
    click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
                 help="Report folder to write (must not exist or be empty, unless --overwrite)."),
    click.option("--overwrite", is_flag=True,
                 help="Replace an existing report folder (the old one is kept beside it)."),
)


@cli.command(epilog=EXIT_CODES_HELP)
@_DATA_DIRS
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Folder to write the model bundle into (must not exist, unless --overwrite).")
@click.option("--epochs", type=click.IntRange(1), default=20, show_default=True)
@click.option("--batch-size", type=click.IntRange(1), default=32, show_default=True)
@click.option("--image-size", type=click.IntRange(32, 512), default=None,
              help="Side of the model input in pixels.  [default: 150, or the --init-from model's]")
@click.option("--seed", type=int, default=2021, show_default=True)
@click.option("--arch", type=click.Choice(["compact", "lean", "seed"]), default=None,
              help="compact: the default network; lean: one convolution per deep stage (two thirds of the cost "
                   "per image, weaker); seed: the research notebook's network, for comparison.  "
                   "[default: compact, or the --init-from model's]")
@click.option("--init-from", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
              help="Continue training this model bundle's weights on the new data (same architecture and "
                   "preprocessing).")
@click.option("--exclude", "exclude_dirs", multiple=True,
              type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Folder that must stay unseen (e.g. a validation set): training images that copy one of its "
                   "images are removed (repeatable).")
@click.option("--target-recall", type=click.FloatRange(0.5, 1.0), default=0.98, show_default=True,
              help="Validation sensitivity the decision threshold must keep.")
@click.option("--threshold-from", "threshold_sources", multiple=True, metavar="FOLDER_NAME",
              help="Data folder (by name) whose validation tumours set the thresholds (repeatable).  "
                   "[default: every data folder not written by mriscan synth]")
@click.option("--split", "fractions", type=(float, float, float), default=(0.80, 0.15, 0.05), show_default=True,
              help="Train, validation and test fractions.")
@_LABEL_NAMES
@click.option("--no-augment", is_flag=True, help="Train without augmentation.")
@click.option("--source-balance", type=click.FloatRange(0.0, 1.0), default=0.0, show_default=True,
              help="Within each class, weight each data folder by count**(1 - B): 0 weights images equally, "
                   "1 weights folders equally.")
@click.option("--strip-augment", "strip_probability", type=click.FloatRange(0.0, 1.0), default=0.0,
              show_default=True, help="Share of training images shown skull-stripped (brain only).")
@click.option("--overwrite", is_flag=True, help="Replace an existing bundle (the old one is kept beside it).")
@_VOLUME_PLANES
@_WORKERS
@_fatal_on_mriscan_error
def fit(data_dirs: tuple[Path, ...], out_dir: Path, epochs: int, batch_size: int, image_size: int | None,
        seed: int, arch: str | None, init_from: Path | None, exclude_dirs: tuple[Path, ...], target_recall: float,
        threshold_sources: tuple[str, ...], fractions: tuple[float, float, float], positive: tuple[str, ...],
        negative: tuple[str, ...], no_augment: bool, source_balance: float, strip_probability: float,
        overwrite: bool, planes: str, workers: int) -> None:
    """Train a model on labelled class folders and save it as a bundle.

    DATA_DIRS each hold one sub-folder per class (yes/no, tumor/no_tumor, glioma, normal, ...).
    Duplicates are removed across all of them before the split. A class folder may hold NIfTI
    volumes: each slice in --planes (but those outside the head) is an image, and all slices of a
    volume stay in one split. With --init-from, training continues from an existing bundle's
    weights; the card records that parent and the data.
    """
    from mriscan.model.fit import FitOptions, resolve_model_settings, run_fit
    from mriscan.progress import RichFitProgress, print_fit_summary

    arch, preprocessing = resolve_model_settings(init_from, arch, image_size)
    options = FitOptions(
        data_dirs=data_dirs, out_dir=out_dir, preprocessing=preprocessing, arch=arch,
        epochs=epochs, batch_size=batch_size, seed=seed, target_recall=target_recall, fractions=fractions,
        workers=workers, positive=positive, negative=negative, overwrite=overwrite, augment=not no_augment,
        command="mriscan " + " ".join(sys.argv[1:]), init_from=init_from, exclude_dirs=exclude_dirs,
        threshold_sources=threshold_sources, source_balance=source_balance, strip_probability=strip_probability,
        planes=planes,
    )
    with RichFitProgress() as progress:
        card = run_fit(options, progress)
    print_fit_summary(card, out_dir)
    from mriscan.model.quality_floor import quality_warnings

    warnings = quality_warnings(card)
    if warnings:
        for warning in warnings:
            click.echo(f"mriscan: warning: {warning}", err=True)
        click.echo(f"mriscan: {out_dir} is below the quality floor: it was written (its card lists these "
                   "warnings), but scan and explain will repeat them on every run. Do not use it for triage.",
                   err=True)
        sys.exit(EXIT_BELOW_FLOOR)


@cli.command(epilog=EXIT_CODES_HELP)
@click.argument("input_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="CSV file to write; its run record (input folder, model, times) goes beside it as <out>.run.json.")
@_MODEL
@_WORKERS
@click.option("--resume", is_flag=True, help="Continue an earlier or interrupted run into the same CSV.")
@click.option("--overwrite", is_flag=True, help="Replace an existing CSV.")
@click.option("--dicom-uids", is_flag=True, help="Add Study/Series/SOP Instance UID columns (no patient data).")
@click.option("--studies", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also write one row per NIfTI volume and per DICOM study to this CSV (adds the UID columns).")
@_VOLUME_PLANES
@click.option("--max-pixels", type=click.IntRange(1), default=50_000_000, show_default=True,
              help="Refuse images declaring more pixels (volumes: voxels) than this (decompression-bomb guard).")
@click.option("--allow-empty", is_flag=True,
              help="An INPUT_DIR without images is a normal night: write an empty CSV and exit 0 (default: exit 4).")
@click.option("--quiet", is_flag=True, help="Print nothing but errors and the model's quality warnings.")
@_SCHEDULER
def scan(input_dir: Path, out: Path, model_dir: Path | None, workers: int, resume: bool, overwrite: bool,
         dicom_uids: bool, studies: Path | None, planes: str, max_pixels: int, allow_empty: bool, quiet: bool,
         scheduler: str | None) -> None:
    """Classify every image under INPUT_DIR (recursive) and write one CSV row per file, frame or slice.

    Candidates: .jpg .jpeg .png .bmp .tif .tiff (any case), DICOM (.dcm or the DICM marker) and NIfTI
    volumes (.nii, .nii.gz or the NIfTI magic);
    mriscan's own overlays and output folders are skipped.
    """
    if resume and overwrite:
        raise click.UsageError("--resume and --overwrite exclude each other")
    from mriscan.errors import InputFolderError
    from mriscan.progress import ScanProgress, print_scan_summary
    from mriscan.scan.pipeline import ScanOptions, prepare_output, run_scan

    options = ScanOptions(input_dir=input_dir, out=out, workers=workers, resume=resume, overwrite=overwrite,
                          dicom_uids=dicom_uids, max_pixels=max_pixels, scheduler=scheduler,
                          allow_empty=allow_empty, planes=planes, studies=studies)
    try:
        writer = prepare_output(options)
        try:
            bundle = _load_model(model_dir, quiet=quiet, keras=False)  # the ONNX network when the bundle has one
        except MriscanError:
            writer.close()
            raise
        _warn_about_model(bundle)
        with ScanProgress(quiet=quiet) as progress:
            summary = run_scan(options, bundle, writer, on_progress=progress.update)
    except InputFolderError as error:
        click.echo(f"mriscan: error: {error}", err=True)
        sys.exit(EXIT_NO_INPUT)
    except MriscanError as error:
        click.echo(f"mriscan: error: {error}", err=True)
        sys.exit(EXIT_FATAL)
    except KeyboardInterrupt:
        click.echo(f"mriscan: interrupted; {out} is unchanged and the rows done so far are kept in "
                   f"{out}.partial. Run the same command with --resume to continue.", err=True)
        sys.exit(EXIT_INTERRUPTED)
    if not quiet:
        print_scan_summary(summary, out, studies)
    sys.exit(EXIT_UNREADABLE if summary.unreadable else EXIT_OK)


def _warn_about_model(bundle: Any) -> None:
    """Print the model's quality warnings (even under --quiet: a weak model must never be used silently)."""
    from mriscan.model.quality_floor import quality_warnings

    for warning in quality_warnings(bundle.card):
        click.echo(f"mriscan: warning: model {bundle.directory}: {warning}", err=True)


@cli.command(epilog=EXIT_CODES_HELP)
@click.argument("data_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path), help="CSV file to write.")
@click.option("--overwrite", is_flag=True, help="Replace an existing CSV.")
@click.option("--image-size", type=click.IntRange(32, 512), default=150, show_default=True)
@click.option("--against", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
              help="Instead: list the images of DATA_DIR that copy an image of this folder (leakage check).")
@_WORKERS
@_SCHEDULER
@_fatal_on_mriscan_error
def dedup(data_dir: Path, out: Path, overwrite: bool, image_size: int, against: Path | None, workers: int,
          scheduler: str | None) -> None:
    """List the exact and near-duplicate groups under DATA_DIR that fit would remove.

    With --against OTHER: the images of DATA_DIR that are copies of images of OTHER.
    """
    from mriscan.data.preprocess import PreprocessConfig
    from mriscan.dedup.report import write_cross_report, write_duplicate_report

    config = PreprocessConfig(image_size=image_size)
    if against is not None:
        click.echo(write_cross_report(data_dir, against, out, config, workers=workers, overwrite=overwrite,
                                      scheduler=scheduler))
        return
    click.echo(write_duplicate_report(data_dir, out, config, workers=workers, overwrite=overwrite,
                                      scheduler=scheduler))


@cli.command(epilog=EXIT_CODES_HELP)
@click.argument("target", type=click.Path(exists=True, path_type=Path))
@click.option("--model", "model_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Model bundle folder (default: for a scan CSV, the model the scan used, from its run record; "
                   "else the shipped model in models/default).")
@click.option("--out-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Write overlays and index.html here, mirroring the input tree (default: a -review folder "
                   "beside TARGET, e.g. results-review/ for results.csv; never inside the scanned folder).")
@click.option("--method", type=click.Choice(["lime", "gradcam"]), default="lime", show_default=True)
@click.option("--samples", "--num-samples", "num_samples", type=click.IntRange(10), default=1000,
              show_default=True, help="LIME's perturbed images per explanation.")
@click.option("--all", "all_rows", is_flag=True,
              help="For a scan CSV: every readable row, not only the tumour and flagged ones.")
@click.option("--limit", type=click.IntRange(1), default=None, help="At most N images, most uncertain first.")
@click.option("--input-root", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
              help="For a scan CSV: the INPUT_DIR that was scanned (the CSV's paths are relative to it). "
                   "Default: the one in the CSV's run record (<csv>.run.json).")
@click.option("--seed", type=int, default=2021, show_default=True, help="Same seed and settings: same overlay bytes.")
@_WORKERS
@_fatal_on_mriscan_error
def explain(target: Path, model_dir: Path | None, out_dir: Path | None, method: str, num_samples: int,
            all_rows: bool, limit: int | None, input_root: Path | None, seed: int, workers: int) -> None:
    """Write overlays showing which regions drove each decision, and an index.html to review them.

    TARGET is an image, a folder, or a CSV written by scan: then the rows a person must review
    (predicted tumour or flagged; unreadable rows are listed, not explained), most uncertain first.
    """
    from mriscan.explain.batch import run_explain, scan_record_of
    from mriscan.explain.factory import method_needs_keras
    from mriscan.scan.run_record import describes

    record = scan_record_of(target)
    if record is not None and not describes(record, target):
        click.echo(f"mriscan: warning: {target} changed after the scan that wrote its run record; its rows are "
                   "checked against the files' sha256 one by one", err=True)
    if model_dir is None and record is not None:
        model_dir = Path(record.model_dir)
    # LIME on the bundle's network file needs no Keras model: then TensorFlow is never imported.
    bundle = _load_model(model_dir, keras=method_needs_keras(method))
    _warn_about_model(bundle)
    summary = run_explain(target, bundle, out_dir=out_dir, method=method, num_samples=num_samples,
                          all_rows=all_rows, limit=limit, input_root=input_root, seed=seed, workers=workers)
    click.echo(f"{len(summary.cases)} overlays ({summary.method}), {len(summary.failures)} failed, "
               f"{summary.error_rows_skipped} unreadable rows skipped; review page: {summary.index_path}")
    for failure in summary.failures:
        click.echo(f"  could not explain {failure.display_path}: {failure.reason}", err=True)
    if summary.failures and not summary.cases:
        click.echo("mriscan: error: nothing could be explained", err=True)
        sys.exit(EXIT_FATAL)
    sys.exit(EXIT_UNREADABLE if summary.failures else EXIT_OK)


_PLANES = ("axial", "coronal", "sagittal")
_CONTRASTS = ("t1", "t1ce", "t2", "flair")


@cli.command(epilog=EXIT_CODES_HELP)
@click.argument("out_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--n", "count", type=click.IntRange(1), required=True, help="Number of images to write.")
@click.option("--seed", type=int, default=2021, show_default=True, help="Same seed and options: same bytes.")
@click.option("--plane", "planes", type=click.Choice(_PLANES), multiple=True,
              help="Planes to cut (repeatable; default: all).")
@click.option("--contrast", "contrasts", type=click.Choice(_CONTRASTS), multiple=True,
              help="Contrasts to render (repeatable; default: all).")
@click.option("--lesion-fraction", type=click.FloatRange(0.0, 1.0), default=0.5, show_default=True)
@click.option("--paired", is_flag=True, help="Write every slice with and without its lesion (n must be even).")
@click.option("--from-healthy", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
              help="Draw lesions into real healthy slices from this folder instead of the template.")
@click.option("--format", "image_format", type=click.Choice(["png", "jpg"]), default="png", show_default=True)
@click.option("--size-range", type=(click.IntRange(32), click.IntRange(32)), default=(160, 512), show_default=True,
              help="Smallest and largest image side in pixels (template mode).")
@click.option("--overwrite", is_flag=True,
              help="Replace a non-empty OUT_DIR (the old one is kept beside it as <name>.replaced-<time>).")
@_WORKERS
@_fatal_on_mriscan_error
def synth(out_dir: Path, count: int, seed: int, planes: tuple[str, ...], contrasts: tuple[str, ...],
          lesion_fraction: float, paired: bool, from_healthy: Path | None, image_format: str,
          size_range: tuple[int, int], overwrite: bool, workers: int) -> None:
    """Write synthetic brain MRI slices (healthy and with lesions) into OUT_DIR.

    Writes yes/ and no/ class folders that fit reads directly, masks/ with each lesion's mask, and
    manifest.csv (origin, plane, contrast, lesion bounding box). Synthetic data, not patient images.
    """
    from mriscan.synth import generate_dataset

    summary = generate_dataset(out_dir, count, seed, planes=planes or _PLANES, contrasts=contrasts or _CONTRASTS,
                               lesion_fraction=lesion_fraction, paired=paired, from_healthy=from_healthy,
                               workers=workers, image_format=image_format, size_range=size_range,
                               overwrite=overwrite)
    click.echo(f"wrote {summary.images} images ({summary.tumour} with lesions, {summary.healthy} healthy) "
               f"to {summary.out_dir} in {summary.seconds:.1f} s")


@cli.command(epilog=EXIT_CODES_HELP)
@_DATA_DIRS
@_MODEL
@_REPORT_FOLDER
@_MEASURING
@_fatal_on_mriscan_error
def evaluate(data_dirs: tuple[Path, ...], model_dir: Path | None, out_dir: Path, overwrite: bool,
             positive: tuple[str, ...], negative: tuple[str, ...], resamples: int, seed: int,
             include_training_copies: bool, workers: int) -> None:
    """Measure a model on labelled class folders and write a report folder.

    AUROC, sensitivity and specificity at the model's threshold, tumours predicted or flagged,
    flagged share and calibration, with bootstrap 95% intervals; report.md, metrics.json and
    ROC, confusion-matrix and reliability pictures. DATA_DIRS follow fit's folder-name rules.
    Images that copy the model's training or validation images are counted and left out.
    """
    from mriscan.evaluation.evaluate import LabelledData
    from mriscan.evaluation.report import metrics_table, run_evaluation

    data = LabelledData(dirs=data_dirs, positive=positive, negative=negative, workers=workers,
                        include_training_copies=include_training_copies)
    evaluation = run_evaluation(model_dir, data, out_dir, overwrite=overwrite, seed=seed, resamples=resamples)
    _warn_about_training_copies(evaluation.training_copies)
    click.echo(metrics_table({"value [95% CI]": evaluation.metrics}))
    click.echo(f"{evaluation.data['images']} images, {evaluation.data['unreadable']} unreadable"
               f"{_left_out(evaluation.training_copies)} -> {out_dir}")


@cli.command(epilog=EXIT_CODES_HELP)
@click.argument("model_a", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("model_b", type=click.Path(exists=True, file_okay=False, path_type=Path))
@_DATA_DIRS
@_REPORT_FOLDER
@_MEASURING
@_fatal_on_mriscan_error
def compare(model_a: Path, model_b: Path, data_dirs: tuple[Path, ...], out_dir: Path, overwrite: bool,
            positive: tuple[str, ...], negative: tuple[str, ...], resamples: int, seed: int,
            include_training_copies: bool, workers: int) -> None:
    """Compare two models on the same labelled images and write a report folder.

    Side-by-side metrics with bootstrap intervals, DeLong's test of the AUROC difference,
    McNemar's test at each model's own threshold, overlaid ROC curves and disagreements.csv.
    Images that copy either model's training or validation images are counted and left out.
    """
    from mriscan.evaluation.compare import comparison_table, disagreement_rows, run_comparison
    from mriscan.evaluation.evaluate import LabelledData

    data = LabelledData(dirs=data_dirs, positive=positive, negative=negative, workers=workers,
                        include_training_copies=include_training_copies)
    comparison = run_comparison(model_a, model_b, data, out_dir, overwrite=overwrite, seed=seed,
                                resamples=resamples)
    _warn_about_training_copies(comparison.training_copies)
    click.echo(f"A = {model_a}, B = {model_b}\n{comparison_table(comparison)}")
    click.echo(f"{comparison.data['images']} images{_left_out(comparison.training_copies)}, "
               f"{len(disagreement_rows(comparison))} called differently -> {out_dir}")


@cli.command(epilog=EXIT_CODES_HELP)
@click.argument("new_model", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--over", "current_model", required=True, type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="The bundle in service, replaced only if NEW_MODEL is not worse.")
@click.option("--data", "data_dirs", required=True, multiple=True,
              type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Labelled class folder to decide on, unseen by both models (repeatable).")
@_MEASURING
@_fatal_on_mriscan_error
def promote(new_model: Path, current_model: Path, data_dirs: tuple[Path, ...], positive: tuple[str, ...],
            negative: tuple[str, ...], resamples: int, seed: int, include_training_copies: bool,
            workers: int) -> None:
    """Put NEW_MODEL in CURRENT's place, only if it is not worse on the --data images.

    Refused (exit code 1) when the new sensitivity is more than 0.01 below the current one, when it
    misses significantly more tumours (McNemar), or when its AUROC is significantly lower (DeLong),
    at p < 0.05. The replaced bundle is kept as <CURRENT>.v<N>-<model_id>. The decision leaves out
    images that copy either model's training or validation images.
    """
    from mriscan.evaluation.compare import comparison_table
    from mriscan.evaluation.evaluate import LabelledData
    from mriscan.evaluation.promote import models_legend, promote_model

    data = LabelledData(dirs=data_dirs, positive=positive, negative=negative, workers=workers,
                        include_training_copies=include_training_copies)
    promotion = promote_model(new_model, current_model, data, seed=seed, resamples=resamples)
    _warn_about_training_copies(promotion.comparison.training_copies)
    click.echo(f"{models_legend(current_model, new_model)}\n{comparison_table(promotion.comparison)}")
    click.echo(f"promoted {new_model} (model_id {promotion.card.model_id[:12]}) to {current_model}; "
               f"the replaced model is kept as {promotion.kept_as}")


def _warn_about_training_copies(copies: Any) -> None:
    """Say how many images copy a model's training images, or that it cannot be told (never silently)."""
    for warning in copies.warnings():
        click.echo(f"mriscan: warning: {warning}", err=True)


def _left_out(copies: Any) -> str:
    """What the summary line says of the images left out as copies of training images (nothing when none were)."""
    return f", {copies.left_out} left out as copies of training images" if copies.left_out else ""


def _load_model(model_dir: Path | None, quiet: bool = False, keras: bool = True):
    """Load the bundle; under cron or --quiet, TensorFlow's native start-up lines are held back.

    TensorFlow's C++ side writes them to file descriptor 2 before any Python logging setting
    applies, so a nightly job would mail them every night. They are replayed if loading fails.
    """
    from mriscan.model.bundle import load_bundle

    if not (quiet or not sys.stderr.isatty()):
        return load_bundle(model_dir, keras=keras)
    with _native_stderr_held() as held:
        try:
            return load_bundle(model_dir, keras=keras)
        except BaseException:
            held.replay = True
            raise


class _HeldStderr:
    replay = False


@contextmanager
def _native_stderr_held() -> Iterator[_HeldStderr]:
    """Point file descriptor 2 at a temporary file for the block; replay it if asked to."""
    state = _HeldStderr()
    try:
        saved = os.dup(2)
    except OSError:  # no usable stderr (e.g. closed): nothing to hold back
        yield state
        return
    with tempfile.TemporaryFile() as capture:
        sys.stderr.flush()
        os.dup2(capture.fileno(), 2)
        try:
            yield state
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            if state.replay:
                capture.seek(0)
                sys.stderr.write(capture.read().decode(errors="replace"))


def main() -> None:
    """Console entry point."""
    cli()
