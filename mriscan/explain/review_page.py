"""The reviewer's ``index.html``: one page listing every explained case, linking to its overlay.

The page is self-contained (inline CSS, no script, nothing fetched from a network) and uses
relative links, so the output folder can be zipped, moved or opened from a share. Paths are
HTML-escaped in text and percent-encoded in links.
"""

from __future__ import annotations

import html
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from mriscan.errors import OutputError

INDEX_NAME = "index.html"
_GENERATOR = '<meta name="generator" content="mriscan explain">'
_THUMBNAIL_WIDTH = 400

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5em; color: #222; }
h1 { font-size: 1.3em; margin-bottom: 0.2em; }
p.note { color: #555; margin-top: 0; }
table { border-collapse: collapse; }
th, td { border-bottom: 1px solid #ddd; padding: 6px 10px; text-align: left; vertical-align: middle; }
th { background: #f3f3f3; position: sticky; top: 0; }
td.path { font-family: ui-monospace, monospace; word-break: break-all; max-width: 28em; }
td.number { font-variant-numeric: tabular-nums; }
.tumor { color: #b2182b; font-weight: 600; }
.no_tumor { color: #2166ac; }
img { display: block; border: 1px solid #ccc; }
""".strip()


@dataclass(frozen=True)
class ReviewCase:
    """One explained image (or DICOM frame) as the index lists it.

    Attributes
    ----------
    overlay : where the overlay PNG was written.
    display_path : the image's path as the user knows it (relative to the scanned folder).
    probability : the model's P(tumour).
    decision : ``"tumor"`` or ``"no_tumor"``.
    flag_reasons : the scan's flag codes, e.g. ``("near_threshold",)``; empty when unflagged.
    """

    overlay: Path
    display_path: str
    probability: float
    decision: str
    flag_reasons: tuple[str, ...] = ()


@dataclass(frozen=True)
class FailedCase:
    """An image that could not be explained, and why (listed on the page, never fatal)."""

    display_path: str
    reason: str


def relative_link(target: Path, from_dir: Path) -> str:
    """A percent-encoded relative URL from ``from_dir`` to ``target``.

    Examples
    --------
    >>> relative_link(Path("/out/a b/x#1.png"), Path("/out"))
    'a%20b/x%231.png'
    """
    relative = os.path.relpath(os.path.abspath(target), os.path.abspath(from_dir))
    return quote(Path(relative).as_posix())


def render_index(cases: Sequence[ReviewCase], failures: Sequence[FailedCase], *, index_dir: Path, title: str) -> str:
    """Return the HTML of the review page for ``cases``, linking relative to ``index_dir``."""
    rows = "\n".join(_case_row(case, index_dir) for case in cases)
    summary = f"{len(cases)} explained, {len(failures)} not explained."
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        _GENERATOR,
        f"<title>{html.escape(title)}</title>",
        f"<style>\n{_STYLE}\n</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        f'<p class="note">{summary} Research and triage aid, not a diagnostic device.</p>',
        "<table><thead><tr><th>Overlay</th><th>Image</th><th>P(tumour)</th><th>Decision</th>"
        "<th>Flags</th></tr></thead><tbody>",
        rows,
        "</tbody></table>",
        _failure_list(failures),
        "</body></html>",
        "",
    ]
    return "\n".join(parts)


def _case_row(case: ReviewCase, index_dir: Path) -> str:
    link = html.escape(relative_link(case.overlay, index_dir), quote=True)
    path = html.escape(case.display_path)
    decision = html.escape(case.decision)
    flags = html.escape(", ".join(case.flag_reasons)) or "&ndash;"
    thumbnail = (
        f'<img src="{link}" width="{_THUMBNAIL_WIDTH}" alt="overlay of {html.escape(case.display_path, quote=True)}">'
    )
    return (
        f'<tr><td><a href="{link}">{thumbnail}</a></td>'
        f'<td class="path"><a href="{link}">{path}</a></td>'
        f'<td class="number">{case.probability:.3f}</td>'
        f'<td class="{decision}">{decision}</td><td>{flags}</td></tr>'
    )


def _failure_list(failures: Sequence[FailedCase]) -> str:
    if not failures:
        return ""
    items = "\n".join(
        f'<li><span class="path">{html.escape(failure.display_path)}</span>: {html.escape(failure.reason)}</li>'
        for failure in failures
    )
    return f"<h2>Not explained</h2>\n<ul>\n{items}\n</ul>"


def is_mriscan_index(path: Path) -> bool:
    """True when ``path`` is a review page that :func:`render_index` made."""
    try:
        with path.open(encoding="utf-8", errors="replace") as page:
            return _GENERATOR in page.read(4096)
    except OSError:
        return False


def check_index_writable(path: Path) -> None:
    """Refuse, before any work, to replace an ``index.html`` that mriscan did not write.

    Raises
    ------
    OutputError
        When ``path`` exists and is somebody else's page.
    """
    if path.exists() and not is_mriscan_index(path):
        raise OutputError(
            f"{path} already exists and was not written by mriscan; "
            "choose another output folder with --out-dir, or move that file"
        )
