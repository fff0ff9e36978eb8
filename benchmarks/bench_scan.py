"""Scan throughput, start-up and peak memory, against a decode-only bound measured in the same run.

    python benchmarks/bench_scan.py [--data ../shared/data/br35h] [--repeat 4] [--model models/default]

Prints, for the files of ``--data`` (repeated ``--repeat`` times through symlinks to reach 10,000+):
- decode-only bound: files/s to decode (grey) and resize (150x150) with all cores (joblib);
- mriscan scan: files/s end to end, start-up (a scan of one file), marginal throughput
  (start-up removed) and its ratio to the decode-only bound;
- peak memory (RSS summed over the scan process and its workers, sampled every 0.2 s).
Targets on a 2-core machine: ratio >= 0.5, start-up < 5 s, peak memory < 1.5 GB for 10,000 files.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import cv2
from joblib import Parallel, delayed

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data" / "br35h"


def decode_only(paths: list[Path]) -> float:
    """Seconds to decode (grey) and resize every file with all cores."""

    def work(chunk: list[Path]) -> int:
        for path in chunk:
            image = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
            if image is not None:
                cv2.resize(image, (150, 150), interpolation=cv2.INTER_AREA)
        return len(chunk)

    chunks = [paths[i : i + 64] for i in range(0, len(paths), 64)]
    started = time.monotonic()
    Parallel(n_jobs=-1)(delayed(work)(chunk) for chunk in chunks)
    return time.monotonic() - started


def _tree_rss(pid: int) -> int:
    """Resident memory in bytes of a process and all its descendants (from /proc)."""
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            children.setdefault(int(fields[1]), []).append(int(entry.name))
            rss[int(entry.name)] = int(fields[21]) * os.sysconf("SC_PAGE_SIZE")
        except (OSError, IndexError, ValueError):
            continue
    total, todo = 0, [pid]
    while todo:
        current = todo.pop()
        total += rss.get(current, 0)
        todo.extend(children.get(current, []))
    return total


def timed_scan(input_dir: Path, out: Path, model: Path | None) -> tuple[float, int]:
    """Run ``mriscan scan`` as a subprocess; return (seconds, peak tree RSS in bytes)."""
    command = [sys.executable, "-m", "mriscan", "scan", str(input_dir), "--out", str(out), "--quiet"]
    if model is not None:
        command += ["--model", str(model)]
    started = time.monotonic()
    process = subprocess.Popen(command)
    peak = [0]

    def sample() -> None:
        while process.poll() is None:
            peak[0] = max(peak[0], _tree_rss(process.pid))
            time.sleep(0.2)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    code = process.wait()
    sampler.join()
    if code not in (0, 3):
        raise SystemExit(f"scan failed with exit code {code}")
    return time.monotonic() - started, peak[0]


def repeated_tree(files: list[Path], repeat: int, root: Path) -> list[Path]:
    """Symlink the files ``repeat`` times into ``root`` so the scan sees repeat*n candidates."""
    links = []
    for copy in range(repeat):
        folder = root / f"copy{copy}"
        folder.mkdir(parents=True)
        for path in files:
            link = folder / path.name
            link.symlink_to(path)
            links.append(link)
    return links


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--repeat", type=int, default=1, help="repeat the files this many times (4 -> 12,000)")
    parser.add_argument("--model", type=Path, default=None)
    args = parser.parse_args()
    files = sorted(p for p in args.data.rglob("*") if p.is_file())
    if not files:
        print(f"no data at {args.data}; skipping")
        return
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        links = repeated_tree(files, args.repeat, tmp_path / "in")
        bound = decode_only(links)
        (tmp_path / "one").mkdir()
        (tmp_path / "one" / files[0].name).symlink_to(files[0])
        startup, _ = timed_scan(tmp_path / "one", tmp_path / "one.csv", args.model)
        total, peak = timed_scan(tmp_path / "in", tmp_path / "all.csv", args.model)
    n = len(links)
    marginal = n / max(total - startup, 1e-6)
    print(f"files: {n} ({len(files)} x {args.repeat}) on {os.cpu_count()} cores")
    print(f"decode-only bound: {n / bound:.1f} files/s")
    print(f"scan end to end:   {n / total:.1f} files/s ({total:.1f} s)")
    print(f"scan start-up:     {startup:.2f} s (one file)")
    print(f"scan marginal:     {marginal:.1f} files/s = {marginal / (n / bound):.2f} x decode-only bound")
    print(f"scan peak memory:  {peak / 2**30:.2f} GB (process tree RSS)")


if __name__ == "__main__":
    main()
