"""Scan throughput, start-up and peak memory, against a decode-only bound measured in the same run.

    python benchmarks/bench_scan.py [--data ../shared/data/br35h] [--repeat 4] [--model models/default]

Prints, for the files of ``--data`` (repeated ``--repeat`` times through symlinks to reach 10,000+):
- decode-only bound: files/s to decode (grey) and resize (150x150) with all cores (joblib);
- mriscan scan: files/s end to end, start-up (a scan of one file), marginal throughput
  (start-up removed) and its ratio to the decode-only bound;
- peak memory (RSS summed over the scan process and its workers, sampled every 0.2 s);
- CPU time per file of the bound and of the scan (start-up removed), and their ratio: on a shared
  machine the files/s figures move with what else runs, the CPU cost per file much less so;
- the model's CPU cost per image against decoding's per file (issue 4's speed goal: at most 1x).
Targets on a 2-core machine: ratio >= 0.5, start-up < 5 s, peak memory < 1.5 GB for 10,000 files.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import cv2
from joblib import Parallel, delayed

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data" / "br35h"


def decode_only(paths: list[Path]) -> tuple[float, float]:
    """Seconds and CPU seconds (this process and its workers) to decode (grey) and resize every file."""

    def work(chunk: list[Path]) -> int:
        for path in chunk:
            image = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
            if image is not None:
                cv2.resize(image, (150, 150), interpolation=cv2.INTER_AREA)
        return len(chunk)

    chunks = [paths[i : i + 64] for i in range(0, len(paths), 64)]
    started, cpu_before = time.monotonic(), _tree_cpu(os.getpid())
    Parallel(n_jobs=-1)(delayed(work)(chunk) for chunk in chunks)
    return time.monotonic() - started, _tree_cpu(os.getpid()) - cpu_before


def _tree_sum(pid: int, value: Callable[[list[str]], float]) -> float:
    """Sum ``value(fields of /proc/PID/stat after the name)`` over a process and all its descendants."""
    children: dict[int, list[int]] = {}
    values: dict[int, float] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            children.setdefault(int(fields[1]), []).append(int(entry.name))
            values[int(entry.name)] = value(fields)
        except (OSError, IndexError, ValueError):
            continue
    total, todo = 0.0, [pid]
    while todo:
        current = todo.pop()
        total += values.get(current, 0.0)
        todo.extend(children.get(current, []))
    return total


def _tree_rss(pid: int) -> int:
    """Resident memory in bytes of a process and all its descendants (from /proc)."""
    return int(_tree_sum(pid, lambda fields: int(fields[21]) * os.sysconf("SC_PAGE_SIZE")))


def _tree_cpu(pid: int) -> float:
    """CPU seconds (user + system) used so far by a process and its living descendants."""
    return _tree_sum(pid, lambda fields: (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK"))


def _children_cpu() -> float:
    """CPU seconds of the finished child processes of this one (and of their finished children)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed_scan(input_dir: Path, out: Path, model: Path | None) -> tuple[float, int, float]:
    """Run ``mriscan scan`` as a subprocess; return (seconds, peak tree RSS in bytes, CPU seconds)."""
    command = [sys.executable, "-m", "mriscan", "scan", str(input_dir), "--out", str(out), "--quiet"]
    if model is not None:
        command += ["--model", str(model)]
    started, cpu_before = time.monotonic(), _children_cpu()
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
    return time.monotonic() - started, peak[0], _children_cpu() - cpu_before


def network_against_decoding(files: list[Path], model: Path | None, n: int = 1024) -> tuple[float, float]:
    """CPU ms per file to decode (grey) + resize, and CPU ms per image for the model's prediction.

    Issue 4's speed goal: the model may cost no more per image than decoding the image does.
    Both measured in this process, as CPU time (all threads), so the machine's load matters less.
    """
    import numpy as np

    from mriscan.model import load_bundle

    sample = (files * (n // max(len(files), 1) + 1))[:n]
    started = time.process_time()
    for path in sample:
        image = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
        if image is not None:
            cv2.resize(image, (150, 150), interpolation=cv2.INTER_AREA)
    decode_ms = 1000 * (time.process_time() - started) / n
    bundle = load_bundle(model)
    side = bundle.preprocess_config.image_size
    inputs = np.random.default_rng(0).uniform(0, 1, (n, side, side, 1)).astype(np.float32)
    bundle.predict(inputs[:64])  # builds the folded network and traces the graph
    started = time.process_time()
    bundle.predict(inputs)
    return decode_ms, 1000 * (time.process_time() - started) / n


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
        load_before = os.getloadavg()[0]
        bound, bound_cpu = decode_only(links)
        (tmp_path / "one").mkdir()
        (tmp_path / "one" / files[0].name).symlink_to(files[0])
        startup, _, startup_cpu = timed_scan(tmp_path / "one", tmp_path / "one.csv", args.model)
        total, peak, total_cpu = timed_scan(tmp_path / "in", tmp_path / "all.csv", args.model)
    n = len(links)
    marginal = n / max(total - startup, 1e-6)
    bound_ms, scan_ms = 1000 * bound_cpu / n, 1000 * (total_cpu - startup_cpu) / n
    print(f"files: {n} ({len(files)} x {args.repeat}) on {os.cpu_count()} cores, "
          f"load average {load_before:.1f} before, {os.getloadavg()[0]:.1f} after")
    print(f"decode-only bound: {n / bound:.1f} files/s")
    print(f"scan end to end:   {n / total:.1f} files/s ({total:.1f} s)")
    print(f"scan start-up:     {startup:.2f} s (one file)")
    print(f"scan marginal:     {marginal:.1f} files/s = {marginal / (n / bound):.2f} x decode-only bound")
    print(f"scan peak memory:  {peak / 2**30:.2f} GB (process tree RSS)")
    print(f"CPU per file:      bound {bound_ms:.2f} ms, scan {scan_ms:.2f} ms (start-up removed; "
          f"start-up {startup_cpu:.2f} s) = {bound_ms / max(scan_ms, 1e-9):.2f} x")
    decode_ms, network_ms = network_against_decoding(files, args.model)
    print(f"network vs decode: decode {decode_ms:.3f} ms/file, network {network_ms:.3f} ms/image (CPU, one "
          f"process) = {network_ms / decode_ms:.2f} x decoding")


if __name__ == "__main__":
    main()
