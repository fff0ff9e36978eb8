"""Scan throughput, start-up and peak memory, against a decode-only bound measured in the same run.

    python benchmarks/bench_scan.py [--data ../shared/data/br35h] [--repeat 4] [--model models/default] [--rounds 5]
                                    [--nifti ../shared/data/openms] [--nifti-only]

Prints, for the files of ``--data`` (repeated ``--repeat`` times through symlinks to reach 10,000+):
- decode-only bound: files/s to decode (grey) and resize (150x150) with all cores (joblib);
- mriscan scan: files/s end to end, start-up (a scan of one file), marginal throughput and its
  ratio to the decode-only bound. The marginal throughput is the two-point rate
  (N - K) / (T_N - T_K) between a scan of all N files and one of K = 512 of them, spread over
  the set (eight chunks, so both worker processes start): every fixed cost is removed, the worker
  processes' start-up included, which a one-file scan (no workers) does not pay. The bound's worker processes are
  started before it is timed, for the same reason. The older estimate, N / (T_N - T_1) with the
  one-file scan, is printed beside it;
- peak memory (RSS summed over the scan process and its workers, sampled every 0.2 s), of the full
  scan and of the K-file one: bounded memory means about the same for both;
- CPU time per file of the bound and of the scan (two-point, as above), and their ratio: on a shared
  machine the files/s figures move with what else runs, the CPU cost per file much less so;
- CPU per file of each stage (read, decode, preprocess, quality checks, network, rows) in one
  process, against the bound's, so the sum can be set against what the 0.5x target leaves;
- the model's CPU cost per image against decoding's per file (issue 4's speed goal: at most 1x).
With ``--rounds N`` the bound and the scans are measured N times, alternating, and the median
ratio is printed too: on this shared machine one round's ratio moved between 0.32 and 0.50.
- a NIfTI row, for the volumes of ``--nifti``: slices/s and CPU per slice of a scan (marginal: a scan
  of four volumes, which starts both workers too, removed) against a decode-only bound in the same run
  (all cores: nibabel load, every slice of the last array axis, resized to 150x150), and their ratio.
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
import numpy as np
from joblib import Parallel, delayed

from mriscan.model.bundle import ModelBundle

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data" / "br35h"
DEFAULT_VOLUMES = REPO.parent / "shared" / "data" / "openms"
FIRST_VOLUMES = 4
"""Volumes of the shorter scan of the NIfTI row's two-point figures (two chunks: both workers start)."""
FIRST = 512
"""Files of the shorter scan of the two-point marginal throughput: eight chunks, so both workers start."""


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


def nifti_decode_only(paths: list[Path]) -> tuple[float, float, int]:
    """Seconds and CPU seconds to load every volume (nibabel) and resize each slice of its last axis to 150x150;
    the slice count."""

    def work(path: Path) -> int:
        import nibabel as nib

        volume = np.asarray(nib.load(path).dataobj, dtype=np.float32)
        for index in range(volume.shape[2]):
            cv2.resize(volume[:, :, index], (150, 150), interpolation=cv2.INTER_AREA)
        return volume.shape[2]

    started, cpu_before = time.monotonic(), _tree_cpu(os.getpid())
    slices = sum(Parallel(n_jobs=-1)(delayed(work)(path) for path in paths))
    return time.monotonic() - started, _tree_cpu(os.getpid()) - cpu_before, slices


def measure_nifti(folder: Path, tmp_path: Path, model: Path | None) -> None:
    """The NIfTI row: scan slices/s and CPU per slice (two-point, against a scan of four volumes), and the bound's.

    With 15 volumes the two-point rate moves with the machine's load; the CPU per slice much less.
    """
    volumes = sorted(p for p in folder.rglob("*") if p.name.endswith((".nii", ".nii.gz")))
    if not volumes:
        print(f"no volumes at {folder}; no NIfTI row")
        return
    (tmp_path / "first-volumes").mkdir()  # two chunks: both worker processes start, as in the full scan
    for index, volume in enumerate(volumes[::max(1, len(volumes) // FIRST_VOLUMES)][:FIRST_VOLUMES]):
        (tmp_path / "first-volumes" / f"{index}-{volume.name}").symlink_to(volume)
    nifti_decode_only(volumes[:2])  # starts the bound's worker processes
    bound, bound_cpu, bound_slices = nifti_decode_only(volumes)
    one, _, one_cpu = timed_scan(tmp_path / "first-volumes", tmp_path / "first-volumes.csv", model)
    total, peak, total_cpu = timed_scan(folder, tmp_path / "volumes.csv", model)
    rows = sum(1 for _ in (tmp_path / "volumes.csv").open()) - 1
    one_rows = sum(1 for _ in (tmp_path / "first-volumes.csv").open()) - 1
    marginal, bound_rate = (rows - one_rows) / max(total - one, 1e-6), bound_slices / bound
    bound_ms, scan_ms = 1000 * bound_cpu / bound_slices, 1000 * (total_cpu - one_cpu) / (rows - one_rows)
    print(f"NIfTI: {len(volumes)} volumes, {rows} slices (acquisition plane), load average {os.getloadavg()[0]:.1f}")
    print(f"  decode-only bound {bound_rate:.1f} slices/s; scan end to end {rows / total:.1f} slices/s "
          f"({total:.1f} s), marginal {marginal:.1f} slices/s = {marginal / bound_rate:.2f} x the bound")
    print(f"  CPU per slice: bound {bound_ms:.2f} ms, scan {scan_ms:.2f} ms (two-point) = {bound_ms / scan_ms:.2f} x; "
          f"peak memory {peak / 2**30:.2f} GB")


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


def stage_costs(files: list[Path], model: Path | None, n: int = 1024) -> dict[str, float]:
    """CPU ms per file of each stage of a scan, and of the bound's work, all in this one process.

    The stages are the loader's and the main process's, called one after the other on the same
    files with one OpenCV thread (as in the loader's workers), so that their sum can be set against
    the budget the 0.5x target leaves: twice the bound's CPU per file.
    """
    from mriscan.data.loader import load_chunk
    from mriscan.data.preprocess import preprocess
    from mriscan.data.quality import input_statistics, low_quality_reasons
    from mriscan.execution.local import single_threaded_opencv
    from mriscan.io.hashing import bytes_sha256
    from mriscan.io.reader import decode_bytes, read_file_bytes
    from mriscan.model.bundle import load_bundle
    from mriscan.scan.pipeline import predict_results

    single_threaded_opencv()
    sample = [files[i * len(files) // n] for i in range(n)] if len(files) >= n else (files * n)[:n]  # spread out
    bundle = load_bundle(model, keras=False)  # as scan loads it: the ONNX network when the bundle has one
    config = bundle.preprocess_config
    data = [read_file_bytes(path) for path in sample]
    decoded = [decode_bytes(blob, least_side=config.decode_least_side)[0] for blob in data]
    inputs = [preprocess(image.pixels, config) for image in decoded]
    records = load_chunk(sample[:64], config, 10**9)
    bundle.predict(np.stack(inputs[:64]))  # builds the folded network and traces the graph
    folder = sample[0].parent
    without_network = _ConstantBundle(bundle.model, bundle.card, bundle.directory, bundle.network)
    stages: dict[str, Callable[[], object]] = {
        "bound: grey decode + resize": lambda: [
            cv2.resize(cv2.imread(str(path), cv2.IMREAD_GRAYSCALE), (150, 150), interpolation=cv2.INTER_AREA)
            for path in sample],
        "read + sha256": lambda: [bytes_sha256(read_file_bytes(path)) for path in sample],
        "decode (colour check, grey)": lambda: [decode_bytes(blob, least_side=config.decode_least_side)
                                                for blob in data],
        "preprocess": lambda: [preprocess(image.pixels, config) for image in decoded],
        "quality checks": lambda: [(low_quality_reasons(image.pixels), input_statistics(image.pixels, x))
                                   for image, x in zip(decoded, inputs, strict=True)],
        "network": lambda: bundle.predict(np.stack(inputs)),
        "flags + CSV row": lambda: [[result.row() for result in predict_results(records, without_network, folder)]
                                    for _ in range(n // 64)],
    }
    costs = {}
    for name, run in stages.items():
        started = time.process_time()
        run()
        costs[name] = 1000 * (time.process_time() - started) / n
    return costs


class _ConstantBundle(ModelBundle):
    """The bundle with the network left out, to time what a scan's rows cost besides it."""

    def predict(self, batch):
        return np.full(len(batch), 0.5)


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
    parser.add_argument("--nifti", type=Path, default=DEFAULT_VOLUMES, help="volumes for the NIfTI row")
    parser.add_argument("--nifti-only", action="store_true", help="measure the NIfTI row only")
    parser.add_argument("--rounds", type=int, default=1,
                        help="measure bound and scan this many times, alternating, and print the median ratio "
                             "(on a noisy machine one round's ratio moves by +-20%%)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        measure_nifti(args.nifti, Path(tmp), args.model)
    if args.nifti_only:
        return
    files = sorted(p for p in args.data.rglob("*") if p.is_file())
    if not files:
        print(f"no data at {args.data}; skipping")
        return
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        links = repeated_tree(files, args.repeat, tmp_path / "in")
        (tmp_path / "one").mkdir()
        (tmp_path / "one" / files[0].name).symlink_to(files[0])
        (tmp_path / "first").mkdir()
        sample = links[:: max(1, len(links) // FIRST)][:FIRST]  # spread out: the same mix of files as the rest
        for index, link in enumerate(sample):
            (tmp_path / "first" / f"{index}-{link.name}").symlink_to(link.resolve())
        decode_only(sample)  # starts the bound's worker processes: the bound is timed without them
        ratios = []
        for round_number in range(1, args.rounds + 1):
            if args.rounds > 1:
                print(f"round {round_number} of {args.rounds}")
            ratios.append(measure_round(links, tmp_path, args.model, f"{len(files)} x {args.repeat}", round_number))
    if args.rounds > 1:
        print(f"marginal throughput over {args.rounds} rounds: median {np.median(ratios):.2f} x the decode-only "
              f"bound (min {min(ratios):.2f}, max {max(ratios):.2f})")
    costs = stage_costs(files, args.model)
    bound_one = costs.pop("bound: grey decode + resize")
    print(f"CPU per file by stage, one process, one OpenCV thread (the 0.5x target leaves twice the "
          f"bound's {bound_one:.2f} ms = {2 * bound_one:.2f} ms for all of them):")
    for name, cost in costs.items():
        print(f"  {name:28s} {cost:.3f} ms = {cost / bound_one:.2f} x the bound")
    print(f"  {'sum':28s} {sum(costs.values()):.3f} ms = {sum(costs.values()) / bound_one:.2f} x the bound")
    print(f"network vs decode: the bound's grey decode + resize {bound_one:.3f} ms/file, network "
          f"{costs['network']:.3f} ms/image = {costs['network'] / bound_one:.2f} x (issue 4's goal: at most 1x)")


def measure_round(links: list[Path], tmp_path: Path, model: Path | None, composition: str, number: int) -> float:
    """One bound, a one-file, a K-file and a full scan; print their figures and return the marginal ratio."""
    load_before = os.getloadavg()[0]
    bound, bound_cpu = decode_only(links)
    startup, _, startup_cpu = timed_scan(tmp_path / "one", tmp_path / f"one-{number}.csv", model)
    first, first_peak, first_cpu = timed_scan(tmp_path / "first", tmp_path / f"first-{number}.csv", model)
    total, peak, total_cpu = timed_scan(tmp_path / "in", tmp_path / f"all-{number}.csv", model)
    n, bound_rate = len(links), len(links) / bound
    marginal = (n - FIRST) / max(total - first, 1e-6)
    one_file_marginal = n / max(total - startup, 1e-6)
    fixed = total - n / marginal  # the time a scan of no files would take
    bound_ms, scan_ms = 1000 * bound_cpu / n, 1000 * (total_cpu - first_cpu) / (n - FIRST)
    print(f"files: {n} ({composition}) on {os.cpu_count()} cores, "
          f"load average {load_before:.1f} before, {os.getloadavg()[0]:.1f} after")
    print(f"decode-only bound: {bound_rate:.1f} files/s (worker processes started before timing)")
    print(f"scan end to end:   {n / total:.1f} files/s ({total:.1f} s)")
    print(f"scan start-up:     {startup:.2f} s (one file); fixed cost {fixed:.2f} s (two-point, with the workers)")
    print(f"scan marginal:     {marginal:.1f} files/s = {marginal / bound_rate:.2f} x decode-only bound "
          f"(two-point, {n} vs {FIRST} files; one-file start-up removed instead: {one_file_marginal:.1f} files/s "
          f"= {one_file_marginal / bound_rate:.2f} x)")
    print(f"scan peak memory:  {peak / 2**30:.2f} GB (process tree RSS; {first_peak / 2**30:.2f} GB for the "
          f"{FIRST}-file scan: memory stays bounded if the two are about the same)")
    print(f"CPU per file:      bound {bound_ms:.2f} ms, scan {scan_ms:.2f} ms (two-point) "
          f"= {bound_ms / max(scan_ms, 1e-9):.2f} x")
    return marginal / bound_rate


if __name__ == "__main__":
    main()
