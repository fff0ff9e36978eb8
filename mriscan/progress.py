"""What the CLI shows while work runs: a rich progress bar on a terminal, plain log lines otherwise."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

if TYPE_CHECKING:
    from mriscan.model.card import ModelCard

LOG_INTERVAL_SECONDS = 30.0


def _console() -> Console:
    return Console(stderr=True)


class _Bar:
    """A rich progress bar when stderr is a terminal; periodic plain lines (cron) otherwise."""

    def __init__(self, quiet: bool = False) -> None:
        self.quiet = quiet
        self.console = _console()
        self.interactive = self.console.is_terminal and not quiet
        self.progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TextColumn("{task.fields[rate]}"), TimeElapsedColumn(), TimeRemainingColumn(),
                                 console=self.console, disable=not self.interactive)
        self.task: Any = None
        self._last_log = 0.0
        self._started = time.monotonic()
        self._done_at_start = 0

    def __enter__(self) -> _Bar:
        self.progress.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.__exit__(*exc)

    def begin(self, description: str, total: int, done: int = 0) -> None:
        """Start the clock; ``done`` items (e.g. kept by --resume) do not count towards the rate."""
        self._started = self._last_log = time.monotonic()
        self._done_at_start = done
        self.task = self.progress.add_task(description, total=total, completed=done, rate="")
        self.log(f"{description}: {total - done} of {total} to do" if done else f"{description}: {total} to do")

    def set_done(self, done: int, total: int) -> None:
        elapsed = max(time.monotonic() - self._started, 1e-6)
        rate = f"{(done - self._done_at_start) / elapsed:.1f}/s"
        if self.task is not None:
            self.progress.update(self.task, completed=done, total=total, rate=rate)
        if not self.interactive and time.monotonic() - self._last_log >= LOG_INTERVAL_SECONDS:
            self._last_log = time.monotonic()
            self.log(f"{done}/{total} ({rate})")

    def log(self, message: str) -> None:
        if self.quiet:
            return
        if self.interactive:
            self.progress.console.log(message)
        else:
            print(f"[mriscan {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


class ScanProgress(_Bar):
    """Progress of a scan: files done of candidates, files/s, ETA."""

    def update(self, done: int, total: int) -> None:
        if self.task is None:
            self.begin("scanning", total, done)
        self.set_done(done, total)


class RichFitProgress(_Bar):
    """Progress of a fit: stages, loading bar, one line per epoch."""

    def __init__(self) -> None:
        super().__init__(quiet=False)
        self._loaded = 0

    def stage(self, message: str) -> None:
        self.log(message)

    def loading(self, total_files: int) -> None:
        self.begin("loading images", total_files)

    def loaded(self, files: int) -> None:
        self._loaded += files
        self.set_done(self._loaded, self.progress.tasks[0].total if self.progress.tasks else self._loaded)

    def training(self, epochs: int) -> None:
        self.log(f"training for up to {epochs} epochs")

    def epoch(self, epoch: int, logs: dict[str, float]) -> None:
        self.log(f"epoch {epoch}: loss {logs.get('loss', float('nan')):.4f}, "
                 f"validation AUROC {logs.get('val_auroc', float('nan')):.4f}")


def print_fit_summary(card: ModelCard, out_dir: Path) -> None:
    """The closing table of a fit: data, thresholds, validation and test metrics."""
    table = Table(title=f"mriscan fit: {out_dir} (model_id {card.model_id[:12]})")
    table.add_column("split")
    for name in ("n", "AUROC", "sensitivity", "specificity", "accuracy", "tumors predicted or flagged"):
        table.add_column(name, justify="right")
    for split in ("validation", "test"):
        m = (card.metrics or {})[split]
        table.add_row(split, str(m["n"]), _fmt(m["auroc"]), _fmt(m["sensitivity"]), _fmt(m["specificity"]),
                      _fmt(m["accuracy"]), _fmt(m["tumors_predicted_or_flagged"]))
    console = Console()
    console.print(table)
    data, training = card.data or {}, card.training or {}
    console.print(f"images found {data['files_found']}, unreadable {data['unreadable']}, duplicates removed "
                  f"{data['duplicates_removed']}, used {data['images_used']}; threshold {card.threshold:.4g}, "
                  f"review threshold {card.review_threshold:.4g}; {training['seconds']:.0f} s")


def print_scan_summary(summary: Any, out: Path, studies: Path | None = None) -> None:
    """The closing line of a scan: always one plain line, so cron logs can be grepped."""
    study_text = f", {summary.studies} studies -> {studies}" if studies is not None else ""
    print(
        f"scanned {summary.scanned}, tumor {summary.tumor}, flagged {summary.flagged}, "
        f"unreadable {summary.unreadable}, skipped (resume) {summary.skipped} in {summary.seconds:.1f} s "
        f"({summary.files_per_second:.1f} files/s) -> {out}{study_text}",
        file=sys.stderr, flush=True,
    )


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"
