"""The nightly chain as a site runs it from cron: scan, then review (the flagged rows), then explain.

Each test follows one promise of the README's "Nightly workflow" section through the CLI, with
exit codes and file contents; nothing here may pass silently when the chain breaks.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import REPO, brain_like, save_seed_bundle

from mriscan.cli import EXIT_FATAL, EXIT_INTERRUPTED, EXIT_NO_INPUT, EXIT_OK, EXIT_UNREADABLE, cli
from mriscan.io.own_outputs import OUTPUT_FOLDER_MARKER

SAMPLE_INCOMING = REPO / "sample_data" / "incoming"


def _run(*args: object):
    return CliRunner().invoke(cli, [str(arg) for arg in args])


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def _tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture
def incoming(tmp_path: Path, write_png) -> Path:
    root = tmp_path / "incoming"
    for seed in range(3):
        write_png(root / f"slice{seed}.png", brain_like(seed, lesion=seed == 1))
    (root / "sub").mkdir()
    (root / "sub" / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    return root


@pytest.mark.slow
def test_scan_then_explain_sample_data_needs_no_extra_option(tmp_path: Path) -> None:
    """The README's chain, on sample_data with the shipped model: explain finds the folder and model itself."""
    before = _tree(SAMPLE_INCOMING)
    out = tmp_path / "nightly" / "results.csv"
    out.parent.mkdir()
    scan = _run("scan", SAMPLE_INCOMING, "--out", out, "--workers", "1", "--quiet")
    assert scan.exit_code in (EXIT_OK, EXIT_UNREADABLE), scan.output
    record = json.loads((out.parent / "results.csv.run.json").read_text())
    assert record["input_dir"] == str(SAMPLE_INCOMING) and record["model_id"] == _rows(out)[0]["model_id"]
    assert record["counts"]["candidates"] == len(_rows(out)) and record["finished"]
    explain = _run("explain", out, "--limit", "2", "--samples", "20", "--workers", "1")
    assert explain.exit_code == EXIT_OK, explain.output
    review = out.parent / "results-review"
    assert "2 overlays" in explain.output and (review / "index.html").is_file()
    assert len(list(review.rglob("*.lime.png"))) == 2
    assert _tree(SAMPLE_INCOMING) == before  # nothing written into the scanned folder


def test_explain_follows_the_run_record_to_the_folder_and_the_model(incoming: Path, tmp_path: Path) -> None:
    model = save_seed_bundle(tmp_path / "site-model", image_size=32, threshold=0.0)  # every slice a tumour call
    out = tmp_path / "results.csv"
    assert _run("scan", incoming, "--out", out, "--model", model, "--workers", "1").exit_code == EXIT_UNREADABLE
    explain = _run("explain", out, "--samples", "20", "--workers", "1")  # no --model, no --input-root
    assert explain.exit_code == EXIT_OK, explain.output
    assert "3 overlays" in explain.output and "1 unreadable rows skipped" in explain.output
    assert sorted(p.name for p in (tmp_path / "results-review").iterdir()) == [
        OUTPUT_FOLDER_MARKER, "index.html", "slice0.png.lime.png", "slice1.png.lime.png", "slice2.png.lime.png"]


def test_explain_that_explains_nothing_exits_1(incoming: Path, tmp_path: Path, tiny_bundle: Path) -> None:
    out = tmp_path / "results.csv"
    _run("scan", incoming, "--out", out, "--model", tiny_bundle, "--workers", "1")
    shutil.move(incoming, tmp_path / "moved-away")
    explain = _run("explain", out, "--all", "--samples", "20", "--workers", "1")
    assert explain.exit_code == EXIT_FATAL and "nothing could be explained" in explain.output
    assert "moved or deleted since the scan" in explain.output


def test_a_replaced_file_is_refused_with_its_reason(incoming: Path, tmp_path: Path, tiny_bundle: Path,
                                                    write_png) -> None:
    out = tmp_path / "results.csv"
    _run("scan", incoming, "--out", out, "--model", tiny_bundle, "--workers", "1")
    write_png(incoming / "slice0.png", brain_like(77, lesion=True))  # another patient's slice, same name
    explain = _run("explain", out, "--all", "--samples", "20", "--workers", "1")
    assert explain.exit_code == EXIT_UNREADABLE
    assert "could not explain slice0.png: the file changed since the scan" in explain.output
    assert not (tmp_path / "results-review" / "slice0.png.lime.png").exists()


def test_explain_output_is_never_scanned_as_patient_images(incoming: Path, tmp_path: Path, tiny_bundle: Path) -> None:
    single = _run("explain", incoming / "slice1.png", "--model", tiny_bundle, "--samples", "20")
    assert single.exit_code == EXIT_OK, single.output
    assert _tree(incoming).keys() == {"slice0.png", "slice1.png", "slice2.png", "sub/broken.jpg"}
    # Even when a site points --out-dir into the incoming tree, or copies an overlay there, scan skips them.
    inside = _run("explain", incoming, "--model", tiny_bundle, "--samples", "20", "--out-dir", incoming / "review")
    assert inside.exit_code == EXIT_UNREADABLE, inside.output  # broken.jpg cannot be explained
    shutil.copy(incoming / "review" / "slice0.png.lime.png", incoming / "sub" / "slice0.png.lime.png")
    out = tmp_path / "results.csv"
    _run("scan", incoming, "--out", out, "--model", tiny_bundle, "--workers", "1")
    assert [row["path"] for row in _rows(out)] == ["slice0.png", "slice1.png", "slice2.png", "sub/broken.jpg"]


@pytest.mark.parametrize("command", [["scan", "IN", "--out", "OUT"], ["explain", "IN"],
                                     ["dedup", "IN", "--out", "OUT"]])
@pytest.mark.parametrize("workers", ["0", "-2"])
def test_a_bad_worker_count_is_a_usage_error(incoming: Path, tmp_path: Path, command: list[str], workers: str) -> None:
    args = [{"IN": str(incoming), "OUT": str(tmp_path / "r.csv")}.get(arg, arg) for arg in command]
    result = _run(*args, "--workers", workers)
    assert result.exit_code == 2 and "not a worker count" in result.output
    assert list(tmp_path.glob("r.csv*")) == []


def test_an_empty_or_missing_input_folder_is_its_own_exit_code(tmp_path: Path, tiny_bundle: Path) -> None:
    (tmp_path / "mnt").mkdir()
    empty = _run("scan", tmp_path / "mnt", "--out", tmp_path / "r.csv", "--model", tiny_bundle)
    assert empty.exit_code == EXIT_NO_INPUT and "no candidate image" in empty.output and "--allow-empty" in empty.output
    assert list(tmp_path.glob("r.csv*")) == []  # nothing that could pass for a complete, empty night
    missing = _run("scan", tmp_path / "not-mounted", "--out", tmp_path / "r.csv", "--model", tiny_bundle)
    assert missing.exit_code == EXIT_NO_INPUT and "mounted" in missing.output
    allowed = _run("scan", tmp_path / "mnt", "--out", tmp_path / "r.csv", "--model", tiny_bundle, "--allow-empty")
    assert allowed.exit_code == EXIT_OK and _rows(tmp_path / "r.csv") == []
    assert json.loads((tmp_path / "r.csv.run.json").read_text())["counts"]["candidates"] == 0


def test_every_row_to_review_is_flagged_unreadable_ones_too(incoming: Path, tmp_path: Path, tiny_bundle: Path) -> None:
    out = tmp_path / "results.csv"
    assert _run("scan", incoming, "--out", out, "--model", tiny_bundle).exit_code == EXIT_UNREADABLE
    broken = next(row for row in _rows(out) if row["path"] == "sub/broken.jpg")
    assert (broken["flagged"], broken["flag_reason"]) == ("true", "unreadable") and broken["flag_detail"]


def test_a_weak_model_is_announced_by_scan_and_explain_and_recorded(incoming: Path, tmp_path: Path) -> None:
    weak = save_seed_bundle(tmp_path / "weak", image_size=32, review_threshold=0.5,
                            metrics={"validation": {"auroc": 0.556, "n": 40}})
    out = tmp_path / "results.csv"
    scan = _run("scan", incoming, "--out", out, "--model", weak, "--quiet")
    assert scan.exit_code == EXIT_UNREADABLE
    for words in ("validation AUROC 0.556 is below the floor", "40 validation images", "review band is empty"):
        assert words in scan.output
    assert any("0.556" in warning for warning in json.loads(out.with_name("results.csv.run.json").read_text())[
        "model_warnings"])
    explain = _run("explain", incoming / "slice0.png", "--model", weak, "--samples", "20")
    assert "validation AUROC 0.556 is below the floor" in explain.output


def _readme_nightly_script() -> str:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    block = readme.split("<!-- nightly-script -->\n```sh\n", 1)[1]
    return block.split("```", 1)[0]


@pytest.mark.slow
def test_the_readme_nightly_script_runs_the_whole_chain(incoming: Path, tmp_path: Path) -> None:
    """The script in the README, run as cron would (no terminal), with `mriscan` being this checkout."""
    model = save_seed_bundle(tmp_path / "models" / "current", image_size=32, threshold=0.0)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "mriscan").write_text(f'#!/bin/sh\nexec "{sys.executable}" -m mriscan "$@"\n')
    (bin_dir / "mriscan").chmod(0o755)
    script = tmp_path / "nightly.sh"
    script.write_text(_readme_nightly_script().replace("--limit 200", "--limit 200 --samples 20"))
    night = tmp_path / "var" / "2026-12-03"
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "PYTHONPATH": str(REPO),
           "INCOMING": str(incoming), "MODEL": str(model), "NIGHT": str(night)}
    ran = subprocess.run(["sh", str(script)], env=env, capture_output=True, text=True, timeout=300,
                         stdin=subprocess.DEVNULL)
    assert ran.returncode == EXIT_OK, ran.stdout + ran.stderr  # explain's code: every row to review explained
    assert "some files could not be read" in ran.stdout
    assert "3 overlays" in ran.stdout
    assert sorted(p.name for p in night.iterdir()) == ["results-review", "results.csv", "results.csv.run.json"]
    assert (night / "results-review" / "index.html").is_file()
    shutil.rmtree(incoming)
    incoming.mkdir()  # the next night, the share is not mounted: an empty mount point
    empty = subprocess.run(["sh", str(script)], env={**env, "NIGHT": str(tmp_path / "var" / "next")},
                           capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)
    assert empty.returncode == EXIT_NO_INPUT and "nothing to scan" in empty.stdout


def test_an_interrupted_scan_says_how_to_resume(incoming: Path, tmp_path: Path, tiny_bundle: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    import mriscan.scan.pipeline

    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(mriscan.scan.pipeline, "run_scan", interrupted)
    result = _run("scan", incoming, "--out", tmp_path / "r.csv", "--model", tiny_bundle)
    assert result.exit_code == EXIT_INTERRUPTED
    assert "interrupted" in result.output and "--resume to continue" in result.output
    assert "Aborted" not in result.output


def test_quiet_keeps_library_warnings_off_the_terminal_and_in_the_row(tmp_path: Path, tiny_bundle: Path,
                                                                       capfd: pytest.CaptureFixture) -> None:
    import cv2

    encoded = cv2.imencode(".jpg", brain_like(3))[1].tobytes()
    incoming = tmp_path / "incoming"
    incoming.mkdir()
    (incoming / "extraneous.jpg").write_bytes(encoded[:-2] + bytes(16) + encoded[-2:])  # libjpeg complains
    capfd.readouterr()
    result = _run("scan", incoming, "--out", tmp_path / "r.csv", "--model", tiny_bundle, "--workers", "1", "--quiet")
    captured = capfd.readouterr()
    assert result.exit_code == EXIT_OK and result.output == "" and captured.err == "" and captured.out == ""
    [row] = _rows(tmp_path / "r.csv")
    assert "decoded_with_warnings" in row["flag_reason"] and row["flagged"] == "true"
    assert "decoder: Corrupt JPEG data" in row["flag_detail"] and "extraneous bytes" in row["flag_detail"]


def test_pydicom_warnings_lose_their_quoted_values() -> None:
    from mriscan.io.decoder_messages import python_warning_text

    text = python_warning_text(UserWarning("Invalid value for VR PN: 'Doe^Jane' (0010,0010)"))
    assert "Doe" not in text and "(0010,0010)" in text
