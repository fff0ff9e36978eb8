"""Benchmark of mriscan.dedup.index on real slices with planted copies: speed, memory, precision, recall.

Usage::

    python benchmarks/bench_dedup.py                     # sizes 3000 30000 100000
    python benchmarks/bench_dedup.py --sizes 3000 10000  # a quicker run

What it builds, per size n: distinct originals from ../shared/data (Br35H and figshare tumors,
decoded grey with OpenCV; originals whose copy score (``pixel_correlation``, aligned from a plain
correlation of 0.8 as in the dedup) with an earlier one reaches 0.93 are dropped, about 2,400 of
5,080, so the data's own copies do not count as false positives; copies re-cropped or zoomed by
more than the alignment undoes stay, and count as false positives when planted copies bridge
them), up to n/2 of them, plus planted copies (JPEG re-encoding at quality 50-90,
downscaling to 0.5-0.9x, shifts of 1-3 px, and combinations; 2% are byte-identical) spread at
random over the originals, shuffled. Every image passes through ``mriscan.data.preprocess`` and
``mriscan.dedup.index.thumbnail`` as in ``fit``. An original and its copies form the true group. Beyond
about 6,000 images the originals run out, so larger sets hold more copies per original. Copies
are made in memory in worker processes and only their thumbnails are kept (no files on disk);
at 100,000 images the thumbnails take about 1.6 GB.

What it reports, per size: time and peak traced memory of ``find_duplicate_groups`` (hashing and
grouping; the thumbnails are inputs and not counted), pairwise precision and recall of the groups
against the truth, the two stages' recall on the pairs (image, first image of its true group):
candidate recall (the multi-index returns the pair within ``max_hamming`` dHash bits) and
confirmation recall (of those candidates, the copy score reaches ``min_correlation``), the share of
planted redundant images removed and how many removed images were kept against another original
("wrong"), the log-log slope of time against n, and an all-pairs baseline (every pair's dHash
distance, then the same confirmation and grouping rule) timed in the same run on each size up to
``--all-pairs-max`` (always the smallest), as a ratio, extrapolated as n^2 to the largest size.
It never asserts timings.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import tracemalloc
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from joblib import Parallel, delayed

REPOSITORY = Path(__file__).resolve().parents[1]
if str(REPOSITORY) not in sys.path:
    sys.path.insert(0, str(REPOSITORY))  # so that a checkout runs it without installing mriscan

from mriscan.data.preprocess import preprocess  # noqa: E402
from mriscan.dedup.index import (  # noqa: E402
    DEFAULT_MAX_HAMMING,
    DEFAULT_MIN_CORRELATION,
    find_duplicate_groups,
    hash_neighbours,
    perceptual_hash,
    pixel_correlation,
    thumbnail,
)

DEFAULT_DATA = REPOSITORY.parent / "shared" / "data"
ORIGINALS_MIN_DISTINCT_CORRELATION = 0.93
ALIGNMENT_WORTH_TRYING = 0.8  # plain correlation from which the distinct filter aligns a pair, as dedup does
EXACT_COPY_SHARE = 0.02


@dataclass(frozen=True)
class Benchmark:
    """One planted set: thumbnails, fake sha256s and the true group (original) of each image."""

    thumbnails: np.ndarray
    sha256s: list[str]
    truth: np.ndarray


@dataclass(frozen=True)
class Measurement:
    """Figures of one size; the all-pairs fields are None where the baseline was not run."""

    n: int
    seconds: float
    peak_mib: float
    precision: float
    recall: float
    candidate_recall: float  # pairs (image, first of its true group) the multi-index returns
    confirmation_recall: float  # of those candidates, the pairs whose copy score confirms them
    removed_share: float  # planted redundant images the dedup removes
    wrong_removals: int  # removed images whose kept image comes from another original
    all_pairs_seconds: float | None
    all_pairs_agreement: float | None  # share of images with the same kept image in both


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; return the process exit code (0 also when the data is absent)."""
    args = _parse(argv)
    files = sorted((args.data / "br35h").glob("*/*")) + sorted((args.data / "figshare" / "tumor").glob("*"))
    if not (args.data / "br35h").is_dir() or not files:
        print(f"Skipped: no Br35H images under {args.data}/br35h (pass --data to point at ../shared/data).")
        return 0
    started = time.perf_counter()
    thumbs = _load_originals(files, args.workers)
    distinct = _distinct(thumbs)
    print(f"{len(files)} files decoded and preprocessed in {time.perf_counter() - started:.0f} s; "
          f"{len(distinct)} distinct originals after dropping the data's own copies")  # fmt: skip
    _report_thresholds(files, thumbs)
    cache: dict[tuple[int, int], np.ndarray] = {}
    measurements = []
    for n in sorted(args.sizes):
        with_all_pairs = n <= args.all_pairs_max or n == min(args.sizes)
        bench = _build(n, files, thumbs, distinct, cache, args.seed, args.workers)
        measurements.append(_measure(bench, with_all_pairs))
        del bench  # the next, larger set is built without this one still held
        print(f"n={n}: {measurements[-1]}; load average {os.getloadavg()}", flush=True)
    _report(measurements)
    return 0


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[3000, 30000, 100000])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="folder holding br35h/ and figshare/")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=2, help="processes for decoding and preprocessing")
    parser.add_argument(
        "--all-pairs-max", type=int, default=3000, help="largest size to also time the all-pairs baseline on"
    )
    return parser.parse_args(argv)


def _decode(path: Path) -> np.ndarray:
    return cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)  # by content: some PNGs are named .jpg


def _thumbnail_of(image: np.ndarray) -> np.ndarray:
    return thumbnail(preprocess(image))


def _original_thumbnails(paths: list[Path]) -> list[np.ndarray]:
    return [_thumbnail_of(_decode(path)) for path in paths]


def _load_originals(files: list[Path], workers: int) -> np.ndarray:
    chunks = [files[i : i + 256] for i in range(0, len(files), 256)]
    results = Parallel(n_jobs=workers)(delayed(_original_thumbnails)(chunk) for chunk in chunks)
    return np.stack([thumb for chunk in results for thumb in chunk])


def _standardised(thumbs: np.ndarray) -> np.ndarray:
    flat = thumbs.reshape(len(thumbs), -1).astype(np.float32)
    flat = flat - flat.mean(axis=1, keepdims=True)
    return flat / np.maximum(np.linalg.norm(flat, axis=1, keepdims=True), 1e-6)


def _distinct(thumbs: np.ndarray) -> np.ndarray:
    """Indices of originals whose copy score stays below the limit against every earlier kept one.

    The copy score is aligned (``pixel_correlation``) for pairs whose plain correlation is close
    enough to be worth it: the data holds shifted and rescaled copies of its own.
    """
    similarity = _standardised(thumbs) @ _standardised(thumbs).T
    kept: list[int] = []
    for row in range(len(thumbs)):
        plain = similarity[row, kept]
        if plain.size and plain.max() >= ORIGINALS_MIN_DISTINCT_CORRELATION:
            continue
        close = np.asarray(kept)[plain >= ALIGNMENT_WORTH_TRYING] if plain.size else []
        limit = ORIGINALS_MIN_DISTINCT_CORRELATION
        if all(pixel_correlation(thumbs[row], thumbs[other], min_correlation=limit) < limit for other in close):
            kept.append(row)
    return np.array(kept)


def _report_thresholds(files: list[Path], thumbs: np.ndarray) -> None:
    """Copy score of consecutive figshare files (mostly neighbouring slices, different images)."""
    figshare = [i for i, path in enumerate(files) if "figshare" in path.parts]
    if len(figshare) < 2:
        return
    pairs = zip(figshare[:-1], figshare[1:], strict=True)
    neighbours = np.array([pixel_correlation(thumbs[a], thumbs[b]) for a, b in pairs])
    above = int((neighbours >= DEFAULT_MIN_CORRELATION).sum())
    print(f"consecutive figshare files: {len(neighbours)} pairs, copy score median {np.median(neighbours):.3f}, "
          f"p99 {np.percentile(neighbours, 99):.3f}, max {neighbours.max():.3f}; "
          f"{above} reach min_correlation={DEFAULT_MIN_CORRELATION}")  # fmt: skip


def planted_copy(raw: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A re-encoded, rescaled and/or shifted copy, as collections accumulate them."""
    steps = rng.choice(["jpeg", "resize", "shift"], size=int(rng.integers(1, 4)), replace=False)
    image = raw
    if "shift" in steps:
        dx, dy = rng.integers(-3, 4, size=2)
        image = cv2.warpAffine(image, np.float32([[1, 0, dx], [0, 1, dy]]), (image.shape[1], image.shape[0]))
    if "resize" in steps:
        factor = rng.uniform(0.5, 0.9)
        size = (max(16, int(image.shape[1] * factor)), max(16, int(image.shape[0] * factor)))
        image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    if "jpeg" in steps:
        _, encoded = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(50, 91))])
        image = cv2.imdecode(encoded, cv2.IMREAD_GRAYSCALE)
    return image


def _copy_thumbnails(jobs: list[tuple[Path, int, int]], seed: int) -> list[np.ndarray]:
    thumbs, path_decoded, decoded = [], None, None  # jobs come sorted by original: decode each once
    for path, original, number in jobs:
        if path != path_decoded:
            path_decoded, decoded = path, _decode(path)
        thumbs.append(_thumbnail_of(planted_copy(decoded, np.random.default_rng([seed, original, number]))))
    return thumbs


def _build(
    n: int,
    files: list[Path],
    thumbs: np.ndarray,
    distinct: np.ndarray,
    cache: dict[tuple[int, int], np.ndarray],
    seed: int,
    workers: int,
) -> Benchmark:
    """Plant copies for a set of n images; copy k of an original is the same in every size (cached)."""
    rng = np.random.default_rng([seed, n])
    originals = np.random.default_rng(seed).permutation(distinct)[: min(len(distinct), n // 2)]
    owners = np.sort(rng.choice(originals, size=n - len(originals)))
    copy_numbers = np.arange(len(owners)) - np.searchsorted(owners, owners)
    _fill_cache([(int(o), int(k)) for o, k in zip(owners, copy_numbers, strict=True)], files, cache, seed, workers)
    exact = rng.random(len(owners)) < EXACT_COPY_SHARE
    images, shas = [thumbs[o] for o in originals], [f"file-{o}" for o in originals]
    for owner, number, is_exact in zip(owners, copy_numbers, exact, strict=True):
        images.append(thumbs[owner] if is_exact else cache[int(owner), int(number)])
        shas.append(f"file-{owner}" if is_exact else f"copy-{owner}-{number}")
    truth = np.concatenate([originals, owners])
    order = rng.permutation(n)
    return Benchmark(np.stack(images)[order], [shas[i] for i in order], truth[order])


def _fill_cache(wanted: list[tuple[int, int]], files: list[Path], cache: dict, seed: int, workers: int) -> None:
    missing = [key for key in wanted if key not in cache]
    chunks = [missing[i : i + 256] for i in range(0, len(missing), 256)]
    results = Parallel(n_jobs=workers)(
        delayed(_copy_thumbnails)([(files[o], o, k) for o, k in chunk], seed) for chunk in chunks
    )
    for chunk, thumbs in zip(chunks, results, strict=True):
        cache.update(zip(chunk, thumbs, strict=True))


def _measure(bench: Benchmark, with_all_pairs: bool) -> Measurement:
    """Time, trace and score find_duplicate_groups on one set (and the all-pairs baseline if asked)."""
    started = time.perf_counter()
    groups = find_duplicate_groups(bench.sha256s, bench.thumbnails)
    seconds = time.perf_counter() - started
    tracemalloc.start()
    find_duplicate_groups(bench.sha256s, bench.thumbnails)
    peak = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    precision, recall = _pairwise_precision_recall(groups.group_ids, bench.truth)
    candidate_recall, confirmation_recall = _stage_recalls(bench)
    removed = groups.removed()
    redundant = len(bench.truth) - len(np.unique(bench.truth))
    all_pairs_seconds = agreement = None
    if with_all_pairs:
        started = time.perf_counter()
        kept = _all_pairs_kept(bench)
        all_pairs_seconds = time.perf_counter() - started
        agreement = float(np.mean(kept == groups.kept))
    return Measurement(
        n=len(bench.truth),
        seconds=seconds,
        peak_mib=peak,
        precision=precision,
        recall=recall,
        candidate_recall=candidate_recall,
        confirmation_recall=confirmation_recall,
        removed_share=float(removed.sum() / max(redundant, 1)),
        wrong_removals=int((bench.truth[groups.kept[removed]] != bench.truth[removed]).sum()),
        all_pairs_seconds=all_pairs_seconds,
        all_pairs_agreement=agreement,
    )


def _stage_recalls(bench: Benchmark) -> tuple[float, float]:
    """Candidate and confirmation recall on the pairs (image, first image of its true group).

    The first images of the true groups are indexed as ``find_duplicate_groups`` indexes its kept
    images (``hash_neighbours``: same substrings, same bucket cap); each other image queries them.
    """
    _, first, inverse = np.unique(bench.truth, return_index=True, return_inverse=True)
    representative = first[inverse.ravel()]
    indexed = np.sort(first)
    members = np.flatnonzero(representative != np.arange(len(representative)))
    candidates = hash_neighbours(bench.thumbnails[members], bench.thumbnails[indexed])
    found = confirmed = 0
    for row, rows in zip(members, candidates, strict=True):
        other = representative[row]
        if np.searchsorted(indexed, other) not in rows:
            continue
        found += 1
        confirmed += int(pixel_correlation(bench.thumbnails[row], bench.thumbnails[other]) >= DEFAULT_MIN_CORRELATION)
    return found / max(len(members), 1), confirmed / max(found, 1)


def _pairs_within(labels: np.ndarray) -> int:
    counts = np.unique(labels, return_counts=True)[1].astype(np.int64)
    return int((counts * (counts - 1) // 2).sum())


def _pairwise_precision_recall(predicted: np.ndarray, truth: np.ndarray) -> tuple[float, float]:
    """Share of same-group pairs that are true copies, and of true copy pairs put in one group."""
    _, joint = np.unique(np.stack([predicted, truth]), axis=1, return_inverse=True)
    both, in_predicted, in_truth = _pairs_within(joint.ravel()), _pairs_within(predicted), _pairs_within(truth)
    return both / max(in_predicted, 1), both / max(in_truth, 1)


def _report(measurements: list[Measurement]) -> None:
    print(f"\n{'images':>8} {'seconds':>8} {'us/image':>9} {'peak MiB':>9} {'pair prec':>10} {'pair rec':>9} "
          f"{'cand rec':>9} {'conf rec':>9} {'removed':>8} {'wrong':>6} "
          f"{'all-pairs s':>12} {'ratio':>6} {'agree':>6}")  # fmt: skip
    for m in measurements:
        baseline = "" if m.all_pairs_seconds is None else (
            f"{m.all_pairs_seconds:>12.2f} {m.all_pairs_seconds / m.seconds:>6.1f} {m.all_pairs_agreement:>6.3f}"
        )  # fmt: skip
        print(f"{m.n:>8} {m.seconds:>8.2f} {1e6 * m.seconds / m.n:>9.0f} {m.peak_mib:>9.1f} {m.precision:>10.4f} "
              f"{m.recall:>9.4f} {m.candidate_recall:>9.4f} {m.confirmation_recall:>9.4f} "
              f"{m.removed_share:>8.3f} {m.wrong_removals:>6} {baseline}", flush=True)  # fmt: skip
    if len(measurements) > 1:
        slope = np.polyfit(np.log([m.n for m in measurements]), np.log([m.seconds for m in measurements]), 1)[0]
        print(f"growth exponent of time with n (log-log slope): {slope:.2f}")
    timed = [m for m in measurements if m.all_pairs_seconds is not None]
    largest, biggest_timed = measurements[-1], timed[-1]
    if largest.n > biggest_timed.n:
        estimate = biggest_timed.all_pairs_seconds * (largest.n / biggest_timed.n) ** 2
        print(f"all-pairs baseline extrapolated (n^2) to {largest.n} images: {estimate:.0f} s, "
              f"{estimate / largest.seconds:.0f}x the indexed time")  # fmt: skip


def _all_pairs_kept(bench: Benchmark) -> np.ndarray:
    bits = np.unpackbits(np.stack([perceptual_hash(t) for t in bench.thumbnails]), axis=1).astype(np.float32)
    distances = bits @ (1 - bits).T + (1 - bits) @ bits.T
    kept = np.arange(len(bits))
    first_of_sha: dict[str, int] = {}
    for row, sha in enumerate(bench.sha256s):
        first = first_of_sha.setdefault(sha, row)
        if first != row:
            kept[row] = kept[first]
            continue
        leaders = np.flatnonzero((kept[:row] == np.arange(row)) & (distances[row, :row] <= DEFAULT_MAX_HAMMING))
        scores = np.array([pixel_correlation(bench.thumbnails[row], bench.thumbnails[i]) for i in leaders])
        if len(leaders) and scores.max() >= DEFAULT_MIN_CORRELATION:
            kept[row] = leaders[int(np.argmax(scores))]
    return kept


if __name__ == "__main__":
    sys.exit(main())
