"""Scan and dedup on a Dask LocalCluster (``--scheduler``) against a local run of the same files, same run.

    python benchmarks/bench_cluster.py [--data ../shared/data/br35h] [--model models/default] [--workers 2]

Starts a LocalCluster of ``--workers`` single-threaded worker processes on this machine, then times
(each as a ``python -m mriscan`` process, wall clock from start to exit):
- the local baseline: ``mriscan scan`` (and ``mriscan dedup``) with its own joblib workers;
- the same command with ``--scheduler``, first on fresh workers (they load TensorFlow and the model)
  and again on warm workers (the model is kept per worker between scans);
and prints each time as a ratio to the local baseline, and whether the outputs are byte-identical.
On one machine the cluster shares the local run's cores, so the ratio measures what Dask costs,
not a speed-up: on a real cluster, throughput grows with the workers' cores.
"""

from __future__ import annotations

import argparse
import logging
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data" / "br35h"
sys.path.insert(0, str(REPO))  # the cluster's worker processes import mriscan from this checkout


def timed(command: list[str]) -> float:
    """Seconds a ``python -m mriscan`` command takes; exit codes 0 and 3 (some unreadable) are success."""
    started = time.monotonic()
    code = subprocess.run([sys.executable, "-m", "mriscan", *command], cwd=REPO).returncode
    if code not in (0, 3):
        raise SystemExit(f"mriscan {' '.join(command)} failed with exit code {code}")
    return time.monotonic() - started


def compare(name: str, local: float, runs: dict[str, float], outputs: list[Path]) -> None:
    """Print the local time and each cluster run's time as a ratio to it."""
    identical = all(path.read_bytes() == outputs[0].read_bytes() for path in outputs[1:])
    print(f"{name}: local {local:.1f} s (ratio 1.00)")
    for label, seconds in runs.items():
        print(f"{name}: {label} {seconds:.1f} s = {seconds / local:.2f} x local")
    print(f"{name}: outputs byte-identical to the local run: {'yes' if identical else 'NO'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--model", type=Path, default=None)
    parser.add_argument("--workers", type=int, default=2, help="worker processes of the LocalCluster")
    args = parser.parse_args()
    files = [p for p in args.data.rglob("*") if p.is_file()]
    if not files:
        print(f"no data at {args.data}; skipping")
        return
    from distributed import LocalCluster

    model = ["--model", str(args.model)] if args.model is not None else []
    print(f"files: {len(files)} under {args.data} on {os.cpu_count()} cores; LocalCluster of {args.workers} "
          "single-threaded worker processes")
    with tempfile.TemporaryDirectory() as tmp, LocalCluster(
        n_workers=args.workers, threads_per_worker=1, dashboard_address=":0", silence_logs=logging.ERROR
    ) as cluster:
        out = Path(tmp)
        cluster_args = ["--scheduler", cluster.scheduler_address]
        scan = ["scan", str(args.data), "--quiet", *model]
        local = timed([*scan, "--out", str(out / "local.csv")])
        cold = timed([*scan, "--out", str(out / "cold.csv"), *cluster_args])
        warm = timed([*scan, "--out", str(out / "warm.csv"), *cluster_args])
        compare("scan", local, {"cluster, fresh workers": cold, "cluster, warm workers": warm},
                [out / "local.csv", out / "cold.csv", out / "warm.csv"])
        dedup = ["dedup", str(args.data)]
        local = timed([*dedup, "--out", str(out / "dedup-local.csv")])
        on_cluster = timed([*dedup, "--out", str(out / "dedup-cluster.csv"), *cluster_args])
        compare("dedup", local, {"cluster": on_cluster}, [out / "dedup-local.csv", out / "dedup-cluster.csv"])


if __name__ == "__main__":
    main()
