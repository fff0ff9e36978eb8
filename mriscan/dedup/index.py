"""Exact and near-duplicate grouping of MRI slices, in near-linear time.

Br35H holds byte-identical files, re-encoded, rescaled and re-contrasted copies of one slice, and
neighbouring slices of one patient that are different images.
A split that puts one copy in training and another in validation overstates accuracy, and a
grouping that chains weak links merges most of the set into one group. So:

1. Byte-identical files (same sha256) are exact copies.
2. Near-copy candidates are images whose 256-bit dHash (of the slightly blurred thumbnail, so that
   a shift of a pixel flips few bits) differs in at most ``max_hamming`` bits, found by multi-index
   hashing instead of comparing all pairs: the hash is cut into ``max_hamming + 1`` interleaved
   substrings, and two hashes that close must agree exactly on at least one of them (pigeonhole),
   so they share a bucket.
3. A candidate is confirmed only if its copy score reaches ``min_correlation``: the Pearson
   correlation of the two 64x64 thumbnails, or, where that falls short, the correlation after
   aligning one thumbnail onto the other by a small affine warp (ECC), less 0.01 because fitting a
   warp raises any pair's correlation. Brain slices look alike at hash resolution, copies look
   alike at pixel level once aligned.
4. Groups are stars: an image joins the best kept image it is confirmed against, never a group
   through one of its members, so chains of weak links cannot build giant groups.
5. Stars whose kept images share at least two confirmed copies merge. A copy too degraded to
   match its group's kept image becomes a kept image itself, and the later copies of that slice
   then split between the two stars; with tens of copies of one slice those splits, not the
   missed copies themselves, lose most of the pairs. Two images confirmed against both kept
   images are taken as evidence that the two are one slice; a single one is not (it may sit
   between two neighbouring slices).

Why the alignment: ``preprocess`` crops to the head found on a 128 px copy, so the crop box of a
re-encoded, rescaled or shifted copy moves in steps of 1/128 of the image side. Its thumbnail is
then shifted by up to a pixel and rescaled by up to 2% against the original's, enough to drop
the plain correlation of many copies below ``min_correlation``. An affine warp bounded to 5%
deformation and 2 px of shift (at 64 px) undoes that and little else.

The default thresholds were chosen on real slices with planted copies (docs/research.md);
``benchmarks/bench_dedup.py`` measures the whole search.
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import cv2
import numpy as np

THUMBNAIL_SIZE = 64
HASH_BITS = 256
DEFAULT_MAX_HAMMING = 24
DEFAULT_MIN_CORRELATION = 0.96
DEFAULT_MAX_BUCKET = 256

_HASH_GRID = (17, 16)  # (width, height) of the dHash resize: 16 differences in each of 16 rows
_HASH_TIE = 1.0 / 255.0  # neighbours closer than one grey level are equal, so flat areas hash 0
_FLAT_STD = 1e-3  # thumbnails with a smaller pixel standard deviation carry no structure to correlate
_FLAT_LEVEL = 1.0 / 255.0  # two flat thumbnails closer than one grey level are the same picture
_HASH_BLUR = 1.0 / 32.0  # Gaussian sigma before hashing, as a share of the thumbnail width (2 px at 64)
_ALIGN_FLOOR = 0.8  # plain correlation below which no alignment is tried (nearly all copies score more)
_MAX_ALIGNED = 8  # candidates aligned per image at most, best plain correlation first: bounds the work
_ECC_CRITERIA = (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 5, 1e-3)  # 5 steps reach copies' optimum
_MAX_DEFORMATION = 0.05  # largest |entry of warp - identity| of an accepted alignment (rotation/scale)
_MAX_SHIFT = 2.0 / 64.0  # largest shift of an accepted alignment, as a share of the thumbnail width
_MIN_SHARED_COPIES = 2  # images confirmed against two kept images that merge their groups
_ALIGNMENT_PENALTY = 0.01  # taken off an aligned correlation: fitting a warp also raises it for non-copies


def _popcount_table() -> np.ndarray:
    values = np.arange(1 << 16, dtype=np.uint32)
    table = np.zeros(1 << 16, dtype=np.uint8)
    for bit in range(16):
        table += ((values >> bit) & 1).astype(np.uint8)
    table.flags.writeable = False
    return table


_POPCOUNT16 = _popcount_table()


def thumbnail(model_input: np.ndarray) -> np.ndarray:
    """Shrink a preprocessed model input to the grey thumbnail used for duplicate detection.

    Parameters
    ----------
    model_input : array of shape ``(H, W)`` or ``(H, W, 1)``, float values in [0, 1], as
        returned by :func:`mriscan.data.preprocess.preprocess` (head-cropped and letterboxed).

    Returns
    -------
    float32 array of shape ``(THUMBNAIL_SIZE, THUMBNAIL_SIZE)``, resized with area averaging.

    Examples
    --------
    >>> thumbnail(np.ones((150, 150, 1), np.float32)).shape
    (64, 64)
    """
    pixels = np.asarray(model_input, dtype=np.float32)
    if pixels.ndim == 3 and pixels.shape[2] == 1:
        pixels = pixels[..., 0]
    if pixels.ndim != 2 or min(pixels.shape) < 1:
        raise ValueError(f"Expected a (H, W) or (H, W, 1) model input. Received: shape={pixels.shape}")
    size = (THUMBNAIL_SIZE, THUMBNAIL_SIZE)
    return cv2.resize(pixels, size, interpolation=cv2.INTER_AREA)


def thumbnails(model_inputs: Iterable[np.ndarray]) -> np.ndarray:
    """Stack the :func:`thumbnail` of each model input into an (n, 64, 64) array."""
    return np.stack([thumbnail(model_input) for model_input in model_inputs])


def perceptual_hash(thumb: np.ndarray) -> np.ndarray:
    """Compute the 256-bit difference hash (dHash) of a thumbnail.

    The thumbnail is blurred (sigma 1/32 of its width) and resized to 17x16 pixels; each bit says
    whether a pixel is brighter than its right-hand neighbour (16 rows of 16 comparisons), packed
    row by row. The blur makes a copy shifted or rescaled by a pixel flip fewer bits. Differences
    under one grey level (1/255) count as "not brighter", so flat areas (blank background, blank
    slices) hash to stable zeros instead of float rounding noise.

    Parameters
    ----------
    thumb : 2-D grey array, normally the output of :func:`thumbnail`.

    Returns
    -------
    uint8 array of shape ``(32,)``.

    Examples
    --------
    >>> ramp = np.tile(np.linspace(1.0, 0.0, 64, dtype=np.float32), (64, 1))
    >>> perceptual_hash(ramp)[:2]
    array([255, 255], dtype=uint8)
    """
    pixels = np.asarray(thumb, dtype=np.float32)
    blurred = cv2.GaussianBlur(pixels, (0, 0), _HASH_BLUR * pixels.shape[1])
    grid = cv2.resize(blurred, _HASH_GRID, interpolation=cv2.INTER_AREA)
    return np.packbits(grid[:, :-1] > grid[:, 1:] + _HASH_TIE)


def hamming_distance(hash_a: np.ndarray, hash_b: np.ndarray) -> int:
    """Count the bits in which two packed hashes differ.

    Examples
    --------
    >>> hamming_distance(np.array([0b1011], np.uint8), np.array([0b0001], np.uint8))
    2
    """
    return int(np.unpackbits(np.bitwise_xor(hash_a, hash_b)).sum())


def pixel_correlation(
    thumb_a: np.ndarray, thumb_b: np.ndarray, *, min_correlation: float = DEFAULT_MIN_CORRELATION
) -> float:
    """Copy score of two thumbnails, the confirmation test for a near copy.

    The Pearson correlation of their pixels; where that is below ``min_correlation`` but at least
    0.8, the better of it and the correlation after warping ``thumb_b`` onto ``thumb_a`` by a
    small affine transform (ECC; at most 5% scale or shear and 2 px shift at 64 px), less 0.01.
    The warp undoes the crop difference of a rescaled or shifted copy; the 0.01 offsets what
    fitting a warp gains on any pair (neighbouring slices included). Two flat thumbnails (no structure, e.g.
    blank slices) count as 1.0 when their grey levels agree and 0.0 otherwise; a flat and a
    structured thumbnail count as 0.0.

    Examples
    --------
    >>> a = np.arange(16, dtype=np.float32).reshape(4, 4)
    >>> round(pixel_correlation(a, 2 * a + 1), 6)
    1.0
    """
    prints_a = _fingerprints([""], np.asarray(thumb_a)[np.newaxis], DEFAULT_MAX_HAMMING, "sha256s", "thumb_a")
    prints_b = _fingerprints([""], np.asarray(thumb_b)[np.newaxis], DEFAULT_MAX_HAMMING, "sha256s", "thumb_b")
    return float(_copy_scores(prints_a, 0, prints_b, np.zeros(1, dtype=np.intp), min_correlation)[0])


@dataclass(frozen=True, eq=False)
class DuplicateGroups:
    """Which images are copies of which.

    Attributes
    ----------
    group_ids : int array, one per image; images in one group are copies of its kept image.
        Ids are numbered 0, 1, ... in the order of the groups' kept images.
    kinds : per image, ``"unique"`` (alone in its group), ``"kept"`` (the image a dedup keeps),
        ``"exact"`` (byte-identical to the kept image) or ``"near"`` (pixel-confirmed near copy of
        the kept image, or of a kept image whose group merged into this one).
    kept : int array, the index of the kept image of each image's group (itself if kept/unique).
    """

    group_ids: np.ndarray
    kinds: tuple[str, ...]
    kept: np.ndarray

    def removed(self) -> np.ndarray:
        """Return a boolean mask of the images a dedup removes (every copy but the kept one)."""
        return self.kept != np.arange(len(self.kept))


class CrossDuplicate(NamedTuple):
    """An image of set A that is a copy of an image of set B (a leak between the two sets)."""

    index_a: int
    index_b: int
    kind: str  # "exact" (same sha256) or "near" (pixel-confirmed)
    hamming: int
    correlation: float


def find_duplicate_groups(
    sha256s: Sequence[str],
    thumbnails: np.ndarray,
    *,
    max_hamming: int = DEFAULT_MAX_HAMMING,
    min_correlation: float = DEFAULT_MIN_CORRELATION,
    max_bucket: int = DEFAULT_MAX_BUCKET,
) -> DuplicateGroups:
    """Group exact and near copies within one set of images.

    Images are visited in index order. An image byte-identical to an earlier one joins that
    image's group. Otherwise it joins the kept image it correlates best with among the kept
    images within ``max_hamming`` dHash bits and at least ``min_correlation``; failing that, it
    becomes a kept image itself. Finally, groups whose kept images have at least two images
    confirmed against both merge (transitively). The kept image of a group is its lowest index.

    Parameters
    ----------
    sha256s : sha256 of each image's file bytes.
    thumbnails : array ``(n, 64, 64)`` of :func:`thumbnail` outputs, in the same order.
    max_hamming : largest dHash distance (of 256 bits) for a near-copy candidate.
    min_correlation : smallest thumbnail Pearson correlation that confirms a near copy.
    max_bucket : most kept images one hash bucket holds; beyond it a bucket is uninformative
        (e.g. near-blank slices all hash alike) and stops growing, which bounds the work per image.

    Returns
    -------
    DuplicateGroups

    Notes
    -----
    In a chain a ~ b ~ c where a and c are not copies, c does not join a's group, though it is a
    confirmed copy of b; it does when a second image is confirmed against both a and c. A member
    of a merged group is a confirmed copy of its own star's kept image, not always of the group's.
    Removing every non-kept image (as ``fit`` does) leaves no copy pair behind; splitting groups
    without removing them can leave such b, c pairs in two splits.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> base = cv2.GaussianBlur(rng.random((64, 64), dtype=np.float32), (0, 0), 3)
    >>> other = cv2.GaussianBlur(rng.random((64, 64), dtype=np.float32), (0, 0), 3)
    >>> groups = find_duplicate_groups(["a", "b", "a", "c"], np.stack([base, other, base, base + 0.01]))
    >>> groups.kinds
    ('kept', 'unique', 'exact', 'near')
    >>> int(groups.removed().sum())
    2
    """
    _check_limits(min_correlation, max_bucket)
    prints = _fingerprints(sha256s, thumbnails, max_hamming, "sha256s", "thumbnails")
    stars = _stars(sha256s, prints, max_hamming, min_correlation, max_bucket)
    return _groups_from_kept(*_merged_stars(stars, _MIN_SHARED_COPIES))


def find_cross_duplicates(
    sha256s_a: Sequence[str],
    thumbnails_a: np.ndarray,
    sha256s_b: Sequence[str],
    thumbnails_b: np.ndarray,
    *,
    max_hamming: int = DEFAULT_MAX_HAMMING,
    min_correlation: float = DEFAULT_MIN_CORRELATION,
    max_bucket: int = DEFAULT_MAX_BUCKET,
) -> list[CrossDuplicate]:
    """Find every image of set A that is a copy of an image of set B (leakage check).

    Uses the same candidates and confirmation test as :func:`find_duplicate_groups`, but
    reports every confirmed pair rather than grouping: one image of A may copy several of B.

    Parameters
    ----------
    sha256s_a, thumbnails_a : file sha256s and :func:`thumbnail` outputs of set A.
    sha256s_b, thumbnails_b : the same for set B.
    max_hamming, min_correlation, max_bucket : as in :func:`find_duplicate_groups`.

    Returns
    -------
    list of CrossDuplicate, sorted by ``(index_a, index_b)``.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> base = cv2.GaussianBlur(rng.random((64, 64), dtype=np.float32), (0, 0), 3)
    >>> other = cv2.GaussianBlur(rng.random((64, 64), dtype=np.float32), (0, 0), 3)
    >>> found = find_cross_duplicates(["x", "y"], np.stack([other, base]), ["z"], base[np.newaxis])
    >>> [(d.index_a, d.index_b, d.kind) for d in found]
    [(1, 0, 'near')]
    """
    _check_limits(min_correlation, max_bucket)
    prints_a = _fingerprints(sha256s_a, thumbnails_a, max_hamming, "sha256s_a", "thumbnails_a")
    prints_b = _fingerprints(sha256s_b, thumbnails_b, max_hamming, "sha256s_b", "thumbnails_b")
    index = _index_of(prints_b, max_bucket)
    rows_of_sha: dict[str, list[int]] = {}
    for row, sha in enumerate(sha256s_b):
        rows_of_sha.setdefault(sha, []).append(row)
    found: list[CrossDuplicate] = []
    for row, sha in enumerate(sha256s_a):
        candidates = index.candidates(prints_a.keys[row].tolist())
        near = _matches(prints_a, row, prints_b, candidates, max_hamming, min_correlation)
        exact_rows = np.asarray(rows_of_sha.get(sha, []), dtype=np.intp)
        found.extend(_cross_records(prints_a, row, prints_b, exact_rows, near))
    return found


def hash_neighbours(
    query_thumbnails: np.ndarray,
    indexed_thumbnails: np.ndarray,
    *,
    max_hamming: int = DEFAULT_MAX_HAMMING,
    max_bucket: int = DEFAULT_MAX_BUCKET,
) -> list[np.ndarray]:
    """Run the candidate stage alone: which indexed images each query image would be confirmed against.

    The indexed thumbnails go into the multi-index in order (with the same bucket cap as the
    searches); each query gets the indexed rows it returns within ``max_hamming`` dHash bits. The
    searches confirm each candidate with :func:`pixel_correlation`; this function lets a benchmark
    measure the two stages apart.

    Parameters
    ----------
    query_thumbnails, indexed_thumbnails : arrays ``(n, 64, 64)`` of :func:`thumbnail` outputs.
    max_hamming, max_bucket : as in :func:`find_duplicate_groups`.

    Returns
    -------
    list of int arrays, one per query image: ascending rows of ``indexed_thumbnails``.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> base = cv2.GaussianBlur(rng.random((64, 64), dtype=np.float32), (0, 0), 3)
    >>> other = cv2.GaussianBlur(rng.random((64, 64), dtype=np.float32), (0, 0), 3)
    >>> [rows.tolist() for rows in hash_neighbours(np.stack([base, other]), np.stack([other, base + 0.01]))]
    [[1], [0]]
    """
    query = perceptual_hashes(query_thumbnails, "query_thumbnails")
    index = HashIndex(perceptual_hashes(indexed_thumbnails, "indexed_thumbnails"), max_hamming=max_hamming,
                      max_bucket=max_bucket)
    return [index.neighbours(packed)[0] for packed in query]


def perceptual_hashes(thumbnails: np.ndarray, name: str = "thumbnails") -> np.ndarray:
    """The :func:`perceptual_hash` of each thumbnail of an ``(n, 64, 64)`` stack, as an ``(n, 32)`` uint8 array.

    Examples
    --------
    >>> perceptual_hashes(np.zeros((3, 64, 64), np.float32)).shape
    (3, 32)
    """
    thumbs = np.asarray(thumbnails)
    if thumbs.ndim != 3 or (len(thumbs) and min(thumbs.shape[1:]) < 2):
        raise ValueError(f"Expected {name} of shape (n, 64, 64). Received: shape={thumbs.shape}")
    if not len(thumbs):
        return np.zeros((0, HASH_BITS // 8), np.uint8)
    return np.stack([perceptual_hash(thumb) for thumb in thumbs])


class HashIndex:
    """Packed dHashes in a multi-index: which of them lie within ``max_hamming`` bits of a query hash.

    The candidate stage of the searches above, for a set that is searched many times as it stands
    (a model's training images, queried chunk by chunk): built once, asked once per query image.
    Buckets are capped at ``max_bucket`` rows, as in :func:`find_duplicate_groups`.

    Examples
    --------
    >>> hashes = np.zeros((2, 32), np.uint8); hashes[1, :4] = 255
    >>> rows, distances = HashIndex(hashes, max_hamming=24).neighbours(np.zeros(32, np.uint8))
    >>> rows.tolist(), distances.tolist()
    ([0], [0])
    """

    def __init__(self, hashes: np.ndarray, *, max_hamming: int = DEFAULT_MAX_HAMMING,
                 max_bucket: int = DEFAULT_MAX_BUCKET) -> None:
        _check_limits(DEFAULT_MIN_CORRELATION, max_bucket)
        _check_max_hamming(max_hamming)
        packed = np.ascontiguousarray(hashes, dtype=np.uint8).reshape(-1, HASH_BITS // 8)
        self._words = packed.view(np.uint16)
        self._max_hamming = max_hamming
        self._index = _MultiIndex(max_bucket)
        for row, keys in enumerate(_bucket_keys(packed, max_hamming + 1).tolist()):
            self._index.add(row, keys)

    def neighbours(self, packed_hash: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The indexed rows (ascending) within ``max_hamming`` bits of one packed hash, and their distances."""
        packed = np.ascontiguousarray(packed_hash, dtype=np.uint8).reshape(1, HASH_BITS // 8)
        rows = self._index.candidates(_bucket_keys(packed, self._max_hamming + 1)[0].tolist())
        distances = _POPCOUNT16[np.bitwise_xor(self._words[rows], packed.view(np.uint16))].sum(axis=1, dtype=np.int64)
        close = distances <= self._max_hamming
        return rows[close], distances[close]


@dataclass(frozen=True, eq=False)
class _Fingerprints:
    """What duplicate search needs of each image, computed once per set."""

    hashes: np.ndarray  # (n, 16) uint16: the dHash as 16-bit words, for table popcounts
    keys: np.ndarray  # (n, m) int64: one multi-index bucket key per hash substring
    pixels: np.ndarray  # (n, size) thumbnail pixels, flattened
    shape: tuple[int, int]  # (height, width) of one thumbnail
    means: np.ndarray  # (n,) float64 mean pixel
    norms: np.ndarray  # (n,) float64 Euclidean norm of the mean-centred pixels


def _fingerprints(
    sha256s: Sequence[str], thumbnails: np.ndarray, max_hamming: int, sha_name: str, thumb_name: str
) -> _Fingerprints:
    packed = perceptual_hashes(thumbnails, thumb_name)
    thumbs = np.asarray(thumbnails)
    if len(sha256s) != len(thumbs):
        raise ValueError(
            f"Expected one of {sha_name} per image of {thumb_name}. Received: {len(sha256s)} and {len(thumbs)}"
        )
    _check_max_hamming(max_hamming)
    pixels = thumbs.reshape(len(thumbs), thumbs.shape[1] * thumbs.shape[2])
    means, norms = _pixel_statistics(pixels)
    return _Fingerprints(
        hashes=np.ascontiguousarray(packed).view(np.uint16),
        keys=_bucket_keys(packed, max_hamming + 1),
        pixels=pixels,
        shape=(thumbs.shape[1], thumbs.shape[2]),
        means=means,
        norms=norms,
    )


def _bucket_keys(packed: np.ndarray, n_substrings: int) -> np.ndarray:
    """Cut each hash into interleaved substrings (bit s, s+m, s+2m, ...) and key each one.

    Interleaving spreads every substring over the whole image, so no substring is made only of
    the always-dark letterbox border, whose bits are the same for every image.
    """
    bits = np.unpackbits(packed, axis=1)
    keys = np.empty((len(packed), n_substrings), dtype=np.int64)
    for start in range(n_substrings):
        substring = bits[:, start::n_substrings].astype(np.int64)
        weights = np.left_shift(1, np.arange(substring.shape[1], dtype=np.int64))
        keys[:, start] = (substring @ weights) * n_substrings + start
    return keys


def _pixel_statistics(pixels: np.ndarray, chunk: int = 512) -> tuple[np.ndarray, np.ndarray]:
    means = np.empty(len(pixels), dtype=np.float64)
    norms = np.empty(len(pixels), dtype=np.float64)
    for start in range(0, len(pixels), chunk):
        block = pixels[start : start + chunk].astype(np.float64)
        means[start : start + chunk] = block.mean(axis=1)
        centred = block - means[start : start + chunk, np.newaxis]
        norms[start : start + chunk] = np.sqrt(np.einsum("ij,ij->i", centred, centred))
    return means, norms


class _MultiIndex:
    """Buckets of row numbers keyed by hash substring (multi-index hashing), each capped in size."""

    def __init__(self, max_bucket: int) -> None:
        self._buckets: dict[int, list[int]] = {}
        self._max_bucket = max_bucket

    def add(self, row: int, keys: list[int]) -> None:
        for key in keys:
            bucket = self._buckets.setdefault(key, [])
            if len(bucket) < self._max_bucket:
                bucket.append(row)

    def candidates(self, keys: list[int]) -> np.ndarray:
        rows = itertools.chain.from_iterable(self._buckets.get(key, ()) for key in keys)
        return np.unique(np.fromiter(rows, dtype=np.intp))


@dataclass(frozen=True, eq=False)
class _Stars:
    """Outcome of the star pass: each image's kept image, and the evidence for merging stars."""

    kept: np.ndarray  # index of the kept image each image joined (itself for a kept image)
    exact: np.ndarray  # True where the image is byte-identical to its kept image
    shared: Counter[tuple[int, int]]  # (kept a, kept b), a < b: images confirmed as copies of both


def _stars(
    sha256s: Sequence[str], prints: _Fingerprints, max_hamming: int, min_correlation: float, max_bucket: int
) -> _Stars:
    """Visit images in order; each joins its best confirmed kept image or becomes a kept image.

    An image confirmed against several kept images joins the best and counts as shared evidence
    between the best and each other one.
    """
    kept = np.arange(len(sha256s))
    exact = np.zeros(len(sha256s), dtype=bool)
    shared: Counter[tuple[int, int]] = Counter()
    index = _MultiIndex(max_bucket)
    first_of_sha: dict[str, int] = {}
    for row, sha in enumerate(sha256s):
        first = first_of_sha.setdefault(sha, row)
        if first != row:
            kept[row], exact[row] = kept[first], kept[first] == first
            continue
        keys = prints.keys[row].tolist()
        rows, _, correlation = _matches(prints, row, prints, index.candidates(keys), max_hamming, min_correlation)
        if not len(rows):
            index.add(row, keys)
            continue
        best = int(rows[int(np.argmax(correlation))])
        kept[row] = best
        shared.update((min(best, other), max(best, other)) for other in rows.tolist() if other != best)
    return _Stars(kept=kept, exact=exact, shared=shared)


def _merged_stars(stars: _Stars, min_shared: int) -> tuple[np.ndarray, np.ndarray]:
    """Merge stars whose kept images share at least ``min_shared`` confirmed copies.

    A copy too degraded to match its group's kept image becomes a kept image of its own, and later
    copies split between the two stars; copies confirmed against both reunite them. Returns each
    image's kept image (the lowest index of its merged group) and whether it is byte-identical to it.
    """
    root = np.arange(len(stars.kept))
    for (first, second), count in sorted(stars.shared.items()):
        if count >= min_shared:
            low, high = sorted((_root(root, first), _root(root, second)))
            root[high] = low
    kept = np.array([_root(root, centre) for centre in stars.kept.tolist()], dtype=stars.kept.dtype)
    return kept, stars.exact & (kept == stars.kept)


def _root(parent: np.ndarray, node: int) -> int:
    while parent[node] != node:
        parent[node] = parent[parent[node]]
        node = int(parent[node])
    return node


def _matches(
    query: _Fingerprints,
    row: int,
    target: _Fingerprints,
    candidates: np.ndarray,
    max_hamming: int,
    min_correlation: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return the candidate rows of ``target`` confirmed as copies of ``query[row]``.

    Returns the rows (ascending), their dHash distances and their copy scores.
    """
    rows, hamming = _close(query, row, target, candidates, max_hamming)
    if not len(rows):
        return rows, hamming, np.zeros(0, dtype=np.float64)
    correlation = _copy_scores(query, row, target, rows, min_correlation)
    similar = correlation >= min_correlation
    return rows[similar], hamming[similar], correlation[similar]


def _index_of(prints: _Fingerprints, max_bucket: int) -> _MultiIndex:
    index = _MultiIndex(max_bucket)
    for row in range(len(prints.keys)):
        index.add(row, prints.keys[row].tolist())
    return index


def _close(
    query: _Fingerprints, row: int, target: _Fingerprints, candidates: np.ndarray, max_hamming: int
) -> tuple[np.ndarray, np.ndarray]:
    """Return the candidate rows within ``max_hamming`` dHash bits of ``query[row]``, and their distances."""
    hamming = _hamming(query, row, target, candidates)
    close = hamming <= max_hamming
    return candidates[close], hamming[close]


def _hamming(query: _Fingerprints, row: int, target: _Fingerprints, rows: np.ndarray) -> np.ndarray:
    differing = np.bitwise_xor(target.hashes[rows], query.hashes[row])
    return _POPCOUNT16[differing].sum(axis=1, dtype=np.int64)


def _correlations(query: _Fingerprints, row: int, target: _Fingerprints, rows: np.ndarray) -> np.ndarray:
    size = query.pixels.shape[1]
    dots = target.pixels[rows].astype(np.float64) @ query.pixels[row].astype(np.float64)
    covariance = dots - size * target.means[rows] * query.means[row]
    scale = target.norms[rows] * query.norms[row]
    flat_limit = _FLAT_STD * np.sqrt(size)
    flat = (target.norms[rows] < flat_limit) | (query.norms[row] < flat_limit)
    if not flat.any():
        return np.clip(covariance / scale, -1.0, 1.0)
    both_flat = (target.norms[rows] < flat_limit) & (query.norms[row] < flat_limit)
    same_level = np.abs(target.means[rows] - query.means[row]) < _FLAT_LEVEL
    flat_value = np.where(both_flat & same_level, 1.0, 0.0)
    return np.where(flat, flat_value, np.clip(covariance / np.where(flat, 1.0, scale), -1.0, 1.0))


def _copy_scores(
    query: _Fingerprints, row: int, target: _Fingerprints, rows: np.ndarray, min_correlation: float
) -> np.ndarray:
    """Plain correlations, each raised to the aligned one (less a penalty) where short of ``min_correlation``.

    Only candidates at or above ``_ALIGN_FLOOR`` are aligned, at most ``_MAX_ALIGNED`` of them
    (best plain correlation first), so one image costs a bounded number of alignments.
    """
    scores = _correlations(query, row, target, rows)
    short = np.flatnonzero((scores < min_correlation) & (scores >= _ALIGN_FLOOR))
    best_first = short[np.argsort(-scores[short], kind="stable")][:_MAX_ALIGNED]
    template = query.pixels[row].reshape(query.shape)
    for position in best_first:
        aligned = _aligned_correlation(template, target.pixels[rows[position]].reshape(target.shape))
        scores[position] = max(scores[position], aligned - _ALIGNMENT_PENALTY)
    return scores


def _aligned_correlation(template: np.ndarray, moving: np.ndarray) -> float:
    """Pearson correlation of ``template`` and ``moving`` warped onto it by a bounded affine ECC fit.

    Returns -1.0 when the fit fails or needs more than a small warp: copies differ from their
    original by a crop a pixel or two off, different slices by more than any small warp undoes.
    """
    fixed, free = np.asarray(template, np.float32), np.asarray(moving, np.float32)
    if fixed.shape != free.shape:
        return -1.0
    try:
        _, warp = cv2.findTransformECC(fixed, free, np.eye(2, 3, dtype=np.float32), cv2.MOTION_AFFINE,
                                       _ECC_CRITERIA, None, 1)  # fmt: skip
    except cv2.error:  # no convergence, or a degenerate (flat) image
        return -1.0
    deformation = np.abs(warp[:, :2] - np.eye(2)).max()
    if deformation > _MAX_DEFORMATION or np.abs(warp[:, 2]).max() > _MAX_SHIFT * fixed.shape[1]:
        return -1.0
    height, width = fixed.shape
    warped = cv2.warpAffine(free, warp, (width, height), flags=cv2.INTER_LINEAR + cv2.WARP_INVERSE_MAP)
    return _pearson(fixed, warped)


def _pearson(image_a: np.ndarray, image_b: np.ndarray) -> float:
    centred_a = image_a.ravel().astype(np.float64) - image_a.mean(dtype=np.float64)
    centred_b = image_b.ravel().astype(np.float64) - image_b.mean(dtype=np.float64)
    scale = np.linalg.norm(centred_a) * np.linalg.norm(centred_b)
    return float(centred_a @ centred_b / scale) if scale > 0 else 0.0


def _cross_records(
    query: _Fingerprints,
    row: int,
    target: _Fingerprints,
    exact_rows: np.ndarray,
    near: tuple[np.ndarray, np.ndarray, np.ndarray],
) -> list[CrossDuplicate]:
    near_rows, near_hamming, near_correlation = near
    only_near = ~np.isin(near_rows, exact_rows)
    exact_hamming = _hamming(query, row, target, exact_rows)
    exact_correlation = _correlations(query, row, target, exact_rows)  # byte copies need no alignment
    records = _records(row, "exact", exact_rows, exact_hamming, exact_correlation) + _records(
        row, "near", near_rows[only_near], near_hamming[only_near], near_correlation[only_near]
    )
    return sorted(records, key=lambda record: record.index_b)


def _records(
    row: int, kind: str, rows: np.ndarray, hamming: np.ndarray, correlation: np.ndarray
) -> list[CrossDuplicate]:
    return [
        CrossDuplicate(row, int(b), kind, int(h), float(c)) for b, h, c in zip(rows, hamming, correlation, strict=True)
    ]


def _groups_from_kept(kept: np.ndarray, exact: np.ndarray) -> DuplicateGroups:
    indices = np.arange(len(kept))
    _, group_ids, sizes = np.unique(kept, return_inverse=True, return_counts=True)
    in_group = sizes[group_ids] > 1
    kinds = np.where(kept != indices, np.where(exact, "exact", "near"), np.where(in_group, "kept", "unique"))
    return DuplicateGroups(group_ids=group_ids.astype(np.intp), kinds=tuple(kinds.tolist()), kept=kept)


def _check_limits(min_correlation: float, max_bucket: int) -> None:
    if not -1.0 < min_correlation <= 1.0:
        raise ValueError(f"Expected -1 < min_correlation <= 1. Received: min_correlation={min_correlation}")
    if max_bucket < 1:
        raise ValueError(f"Expected max_bucket >= 1. Received: max_bucket={max_bucket}")


def _check_max_hamming(max_hamming: int) -> None:
    if not 0 <= max_hamming < HASH_BITS // 4:
        raise ValueError(f"Expected 0 <= max_hamming < {HASH_BITS // 4}. Received: max_hamming={max_hamming}")
