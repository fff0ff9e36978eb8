"""Tests of mriscan.explain.review_page: relative escaped links, ownership, and a real headless browser."""

from __future__ import annotations

import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlparse

import numpy as np
import pytest
from PIL import Image

from mriscan.errors import OutputError
from mriscan.explain.review_page import (
    INDEX_NAME,
    FailedCase,
    ReviewCase,
    check_index_writable,
    relative_link,
    render_index,
)

TRICKY_NAMES = ("plain.png", "sub dir/a b#1.png", "odd/<b>&'quote\".png", "deep/er/ünï.png")


class _Page(HTMLParser):
    """Collects the links, image sources and tags of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.hrefs: list[str] = []
        self.sources: list[str] = []
        self.tags: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.add(tag)
        values = dict(attrs)
        if tag == "a":
            self.hrefs.append(values["href"] or "")
        if tag == "img":
            self.sources.append(values["src"] or "")


def _cases(out: Path) -> list[ReviewCase]:
    """Overlay PNGs (1200 px wide, as explain draws them) under ``out`` and one outside it, each with its
    source image in ``incoming`` beside ``out``; names that need escaping."""
    cases = []
    for number, name in enumerate(TRICKY_NAMES):
        overlay, source = out / f"{name}.lime.png", out.parent / "incoming" / name
        for picture in (overlay, source):
            picture.parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (1200, 480), (200, 40, 40)).save(overlay, format="PNG")
        Image.new("L", (256, 256), 90).save(source, format="PNG")
        decision = "tumor" if number % 2 else "no_tumor"
        cases.append(ReviewCase(overlay, name, 0.1 + 0.2 * number, decision, ("near_threshold",), source))
    outside = out.parent / "elsewhere" / "x.png.lime.png"
    outside.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (1200, 480)).save(outside)
    source = out.parent / "incoming" / "x.png"
    Image.new("L", (64, 64)).save(source)
    return [*cases, ReviewCase(outside, "../elsewhere/x.png", 0.5, "tumor", (), source)]


def _write_page(out: Path) -> tuple[Path, list[ReviewCase]]:
    cases = _cases(out)
    failures = [FailedCase("broken <1>.jpg", "could not decode & gave up")]
    index = out / INDEX_NAME
    index.write_text(render_index(cases, failures, index_dir=out, title="mriscan <lime>"), encoding="utf-8")
    return index, cases


def test_links_are_relative_and_point_at_the_overlays_and_the_source_images(tmp_path: Path) -> None:
    index, cases = _write_page(tmp_path / "out")
    page = _Page()
    page.feed(index.read_text(encoding="utf-8"))
    assert len(page.sources) == len(cases) and len(page.hrefs) == 2 * len(cases)
    for link in page.hrefs + page.sources:
        assert not urlparse(link).scheme and not link.startswith("/")
        assert (index.parent / unquote(link)).resolve().is_file()
    assert {(index.parent / unquote(link)).resolve() for link in page.sources} == {c.overlay.resolve() for c in cases}
    assert {(index.parent / unquote(link)).resolve() for link in page.hrefs} == {
        path.resolve() for case in cases for path in (case.overlay, case.source)}


def test_page_is_self_contained_and_escaped(tmp_path: Path) -> None:
    index, _ = _write_page(tmp_path / "out")
    text = index.read_text(encoding="utf-8")
    page = _Page()
    page.feed(text)
    assert "script" not in page.tags and "link" not in page.tags and "http" not in text
    assert "<b>" not in text and "&lt;b&gt;&amp;" in text
    assert "broken &lt;1&gt;.jpg" in text and "could not decode &amp; gave up" in text
    assert "<title>mriscan &lt;lime&gt;</title>" in text
    assert "0.300" in text and "near_threshold" in text


def test_relative_link_encodes_what_urls_cannot_hold() -> None:
    assert relative_link(Path("/o/a b/c#d?.png"), Path("/o")) == "a%20b/c%23d%3F.png"
    assert relative_link(Path("/x/y.png"), Path("/o/p")) == "../../x/y.png"


def test_an_index_not_written_by_mriscan_is_never_replaced(tmp_path: Path) -> None:
    theirs = tmp_path / INDEX_NAME
    theirs.write_text("<html>the hospital's own page</html>")
    with pytest.raises(OutputError, match="not written by mriscan"):
        check_index_writable(theirs)
    ours, _ = _write_page(tmp_path / "out")
    check_index_writable(ours)
    check_index_writable(tmp_path / "absent" / INDEX_NAME)


_CHECKER = """<!DOCTYPE html><html><body style="margin:0">
<iframe id="page" src="{index}" style="width:1280px;height:900px;border:0"></iframe><pre id="result">pending</pre>
<script>
document.getElementById("page").addEventListener("load", function () {{
  var doc = this.contentDocument, lines = [];
  if (!doc) {{ document.getElementById("result").textContent = "no access"; return; }}
  doc.querySelectorAll("img").forEach(function (img) {{
    lines.push((img.complete && img.naturalWidth > 0 ? "loaded " : "broken ") + img.src);
    lines.push("width " + Math.round(img.getBoundingClientRect().width));
  }});
  lines.push("font " + parseFloat(getComputedStyle(doc.querySelector("h2")).fontSize));
  doc.querySelectorAll("a").forEach(function (a) {{ lines.push("link " + a.href); }});
  document.getElementById("result").textContent = "checked\\n" + lines.join("\\n");
}});
</script></body></html>
"""


def _chromium() -> str:
    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    if binary is None:
        pytest.skip("no chromium binary (apt-get install chromium)")
    return binary


@pytest.mark.slow
def test_every_thumbnail_loads_and_every_link_resolves_in_chromium(tmp_path: Path) -> None:
    binary = _chromium()
    index, cases = _write_page(tmp_path / "out")
    checker = index.parent / "check.html"
    checker.write_text(_CHECKER.format(index=INDEX_NAME), encoding="utf-8")
    command = [
        binary, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        f"--user-data-dir={tmp_path / 'profile'}", "--allow-file-access-from-files",
        "--virtual-time-budget=10000", "--dump-dom", checker.as_uri(),
    ]  # fmt: skip
    dom = subprocess.run(command, capture_output=True, text=True, timeout=120, check=True).stdout
    result = dom.split('<pre id="result">', 1)[1].split("</pre>", 1)[0]
    lines = result.splitlines()
    assert lines[0] == "checked", result
    images = [line for line in lines if line.startswith(("loaded ", "broken "))]
    assert len(images) == len(cases) and all(line.startswith("loaded ") for line in images), result
    links = [line.removeprefix("link ") for line in lines if line.startswith("link ")]
    assert len(links) == 2 * len(cases)
    for link in links:
        assert Path(unquote(urlparse(link).path)).is_file(), link
    # In a 1280 px window each overlay is shown at (nearly) its own 1200 px, so its 11 pt text stays readable
    # (a 400 px thumbnail made it 5 px), and the page's own text is at least 16 px.
    widths = [int(line.split()[1]) for line in lines if line.startswith("width ")]
    assert len(widths) == len(cases) and min(widths) >= 1100, result
    assert float(next(line for line in lines if line.startswith("font ")).split()[1]) >= 16, result


@pytest.mark.slow
def test_a_screenshot_at_a_normal_window_size_shows_the_cases(tmp_path: Path) -> None:
    """The page as a reviewer sees it in a 1280x900 window (the PNG is kept for a person to look at)."""
    binary = _chromium()
    index, _ = _write_page(tmp_path / "out")
    shot = tmp_path / "review.png"
    command = [binary, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--hide-scrollbars",
               f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1280,900", f"--screenshot={shot}",
               index.as_uri()]
    subprocess.run(command, capture_output=True, text=True, timeout=120, check=True)
    with Image.open(shot) as picture:
        assert picture.size == (1280, 900)
        red = np.asarray(picture.convert("RGB"))[..., 0].astype(int) - np.asarray(picture.convert("RGB"))[..., 1]
    assert (red > 120).mean() > 0.2  # the first overlay (red here) fills a good part of the window
