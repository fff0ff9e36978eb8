"""The reviewer's ``index.html``: one page showing every explained case, linking to its overlay and source image.

Each case is one section: the image's path, decision, P(tumour) and flags in a heading a reader
can read, then the overlay at its full width (it holds the original image, the model input and
the evidence, and its text is sized for that width; the page scales it down on a narrow window).

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

_STYLE = """
body { font-family: system-ui, sans-serif; font-size: 17px; line-height: 1.4; margin: 1.5em; color: #222; }
h1 { font-size: 1.4em; margin-bottom: 0.2em; }
p.note { color: #555; margin-top: 0; }
section.case { border-top: 2px solid #ccc; padding: 0.8em 0 1.4em; }
h2 { font-size: 1.15em; margin: 0 0 0.3em; }
.path { font-family: ui-monospace, monospace; word-break: break-all; }
.number { font-variant-numeric: tabular-nums; }
.tumor { color: #b2182b; font-weight: 600; }
.no_tumor { color: #2166ac; font-weight: 600; }
p.links a { margin-right: 1.2em; }
img { display: block; max-width: 100%; height: auto; border: 1px solid #ccc; }
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
    source : the image file itself (the page links to it); None: no link.
    """

    overlay: Path
    display_path: str
    probability: float
    decision: str
    flag_reasons: tuple[str, ...] = ()
    source: Path | None = None


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
    sections = "\n".join(_case_section(case, index_dir) for case in cases)
    summary = f"{len(cases)} explained, {len(failures)} not explained."
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        _GENERATOR,
        f"<title>{html.escape(title)}</title>",
        f"<style>\n{_STYLE}\n</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        f'<p class="note">{summary} Research and triage aid, not a diagnostic device.</p>',
        sections,
        _failure_list(failures),
        "</body></html>",
        "",
    ]
    return "\n".join(parts)


def _case_section(case: ReviewCase, index_dir: Path) -> str:
    overlay = html.escape(relative_link(case.overlay, index_dir), quote=True)
    path = html.escape(case.display_path)
    decision = html.escape(case.decision)
    flags = html.escape(", ".join(case.flag_reasons)) or "not flagged"
    links = [f'<a href="{overlay}">Open the overlay</a>']
    if case.source is not None:
        source = html.escape(relative_link(case.source, index_dir), quote=True)
        links.append(f'<a href="{source}">Open the source image</a>')
    return (
        f'<section class="case"><h2><span class="path">{path}</span></h2>'
        f'<p><span class="{decision}">{decision}</span> &middot; P(tumour) <span class="number">'
        f"{case.probability:.3f}</span> &middot; flags: {flags}</p>"
        f'<p class="links">{" ".join(links)}</p>'
        f'<img src="{overlay}" alt="overlay of {html.escape(case.display_path, quote=True)}"></section>'
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
