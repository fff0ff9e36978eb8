"""How well a bundle's fingerprints recognise copies of its training images, on real slices.

Usage::

    python benchmarks/bench_training_copies.py                 # ../shared/data/br35h
    python benchmarks/bench_training_copies.py --data DIR --copies 500

What it builds: Br35H's distinct slices (one per dedup group, so the data's own copies do not count),
shuffled and cut in two halves: the "training" images, whose fingerprints a bundle would keep
(``mriscan.dedup.fingerprints``), and the "new" images. Up to ``--copies`` training images each get a
planted copy (``bench_dedup.planted_copy``: JPEG re-encoding, downscaling, shifts, or combinations).
Every image passes through ``preprocess`` at the default model's settings, as fit and evaluate see it.

What it reports, for three tests of a near copy: the share of planted copies found, and the share of
new images taken for copies (they are not: every such one is a false alarm, left out of a site's
figures for nothing):

* the hash alone (dedup's dHash within ``DEFAULT_MAX_HAMMING`` bits);
* the fingerprints' test (that hash, confirmed by the 8x8 sketches), what evaluate uses;
* dedup's own test (confirmed on the 64x64 thumbnails), which a bundle cannot ship.

It also prints the fingerprints file's bytes per image and the seconds per image of the matching.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

# bench_dedup (beside this script) puts this checkout on sys.path: it runs without installing mriscan.
from bench_dedup import REPOSITORY, planted_copy

from mriscan.data.loader import load_all
from mriscan.data.preprocess import PreprocessConfig, preprocess
from mriscan.dedup.fingerprints import ImageFingerprints
from mriscan.dedup.index import (
    HashIndex,
    find_cross_duplicates,
    find_duplicate_groups,
    perceptual_hashes,
    thumbnail,
    thumbnails,
)
from mriscan.io.discover import find_candidates

DEFAULT_DATA = REPOSITORY.parent / "shared" / "data" / "br35h"


def main(argv: list[str] | None = None) -> int:
    options = _parse(argv)
    records = [r for r in load_all(sorted(find_candidates(options.data)), PreprocessConfig(), workers=options.workers)
               if r.ok]
    thumbs = thumbnails(r.model_input for r in records)
    distinct = np.flatnonzero(~find_duplicate_groups([r.image_key for r in records], thumbs).removed())
    order = np.random.default_rng(options.seed).permutation(distinct)
    training, new = order[: len(order) // 2], order[len(order) // 2 :]
    copies = _planted_copies([records[i].path for i in training[: options.copies]], options.seed)
    print(f"{len(records)} slices, {len(distinct)} distinct: {len(training)} training, {len(new)} new, "
          f"{len(copies)} planted copies of training slices")
    fingerprints = ImageFingerprints.of_images([records[i].image_key for i in training], thumbs[training])
    started = time.process_time()
    _report("fingerprints (hash + 8x8 sketch)", _found_by_fingerprints(fingerprints, copies),
            _found_by_fingerprints(fingerprints, thumbs[new]))
    per_image = (time.process_time() - started) / (len(copies) + len(new))
    _report("hash alone", _found_by_hash(thumbs[training], copies), _found_by_hash(thumbs[training], thumbs[new]))
    _report("dedup's test (64x64 thumbnails)", _found_by_dedup(thumbs[training], copies),
            _found_by_dedup(thumbs[training], thumbs[new]))
    print(f"fingerprints file: {len(fingerprints.to_bytes()) / len(training):.0f} bytes per image; "
          f"matching: {1000 * per_image:.2f} ms of CPU per image")
    return 0


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="folder of slices (default: shared Br35H)")
    parser.add_argument("--copies", type=int, default=500, help="training slices that get a planted copy")
    parser.add_argument("--seed", type=int, default=2021)
    parser.add_argument("--workers", type=int, default=-1)
    return parser.parse_args(argv)


def _planted_copies(paths: list[Path], seed: int) -> np.ndarray:
    """The thumbnail of one planted copy of each file, made in memory (decoded by content, as bench_dedup)."""
    import cv2

    return np.stack([thumbnail(preprocess(planted_copy(cv2.imread(str(path), cv2.IMREAD_GRAYSCALE),
                                                       np.random.default_rng([seed, number]))))
                     for number, path in enumerate(paths)])


def _found_by_fingerprints(fingerprints: ImageFingerprints, queries: np.ndarray) -> np.ndarray:
    return np.array([kind != "" for kind in fingerprints.copies([f"{i:064x}" for i in range(len(queries))], queries)])


def _found_by_hash(indexed: np.ndarray, queries: np.ndarray) -> np.ndarray:
    index = HashIndex(perceptual_hashes(indexed))
    return np.array([len(index.neighbours(packed)[0]) > 0 for packed in perceptual_hashes(queries)])


def _found_by_dedup(indexed: np.ndarray, queries: np.ndarray) -> np.ndarray:
    found = find_cross_duplicates([f"q{i}" for i in range(len(queries))], queries,
                                  [f"t{i}" for i in range(len(indexed))], indexed)
    return np.isin(np.arange(len(queries)), [pair.index_a for pair in found])


def _report(test: str, copies_found: np.ndarray, new_taken: np.ndarray) -> None:
    print(f"{test:34s} copies found {copies_found.mean():.3f}   new images taken for copies {new_taken.mean():.3f}")


if __name__ == "__main__":
    sys.exit(main())
