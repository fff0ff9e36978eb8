"""What a model bundle keeps of the images it was trained and validated on, to recognise them later.

A model scores the images it has seen far better than new ones, so ``evaluate``, ``compare`` and
``promote`` must know which of their images it has seen. A bundle cannot carry those images; it
carries three fingerprints of each, made from the model input (the model's own preprocessing):

* its key (the file's sha256, with the plane and frame of a slice): an equal key is an exact copy;
* dedup's 256-bit dHash of its thumbnail: a near-copy candidate lies within ``DEFAULT_MAX_HAMMING`` bits;
* an 8x8 sketch of its thumbnail (8-bit grey levels): a candidate is a near copy when the Pearson
  correlation of the two sketches reaches ``SKETCH_MIN_CORRELATION``.

Why a sketch: dedup confirms a candidate on 64x64 thumbnails (4 KB each even in 8 bits: 57 MB for
14,000 images, too much to ship), and the hash alone is no test: brain slices look alike at its
resolution (a quarter of Br35H's distinct slices lie within 24 bits of another). On Br35H
(docs/research.md, "Copies of a model's training images"), the sketch test finds 91% of planted copies
(dedup's own test: 93%) and takes 1.5% of new slices for copies (0.4%), at about 130 bytes an image.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property

import cv2
import numpy as np

from mriscan.dedup.index import DEFAULT_MAX_HAMMING, HASH_BITS, HashIndex, perceptual_hashes

FINGERPRINTS_FILE = "fingerprints.json.gz"
FORMAT = "mriscan image fingerprints 1"
SKETCH_SIDE = 8
SKETCH_MIN_CORRELATION = 0.993
EXACT, NEAR = "exact", "near"
NEAR_COPY_RULE = (f"dHash within {DEFAULT_MAX_HAMMING} of {HASH_BITS} bits and {SKETCH_SIDE}x{SKETCH_SIDE} "
                  f"sketch correlation >= {SKETCH_MIN_CORRELATION}")
_SHA256_HEX = 64


def sketch(thumb: np.ndarray) -> np.ndarray:
    """An 8x8 area-averaged copy of a thumbnail, in 8-bit grey levels: what confirms a near copy.

    Examples
    --------
    >>> sketch(np.full((64, 64), 0.5, np.float32))[0, :3].tolist()
    [128, 128, 128]
    """
    small = cv2.resize(np.asarray(thumb, np.float32), (SKETCH_SIDE, SKETCH_SIDE), interpolation=cv2.INTER_AREA)
    return np.round(np.clip(small, 0.0, 1.0) * 255).astype(np.uint8)


@dataclass(frozen=True, eq=False)
class ImageFingerprints:
    """The fingerprints of a set of images (a model's training and validation images), one row each.

    ``keys`` are the images' ``LoadedImage.image_key`` (sha256, or sha256:plane:frame for a slice),
    ``hashes`` their (n, 32) packed dHashes, ``sketches`` their (n, 8, 8) :func:`sketch` es.
    """

    keys: tuple[str, ...]
    hashes: np.ndarray
    sketches: np.ndarray

    def __post_init__(self) -> None:
        if not len(self.keys) == len(self.hashes) == len(self.sketches):
            raise ValueError(f"Expected one hash and one sketch per key. Received: {len(self.keys)} keys, "
                             f"{len(self.hashes)} hashes and {len(self.sketches)} sketches")
        malformed = [key for key in self.keys if len(key) < _SHA256_HEX or not _is_hex(key[:_SHA256_HEX])]
        if malformed:
            raise ValueError(f"Expected keys that start with a sha256 in hex. Received: {malformed[0]!r}")

    @classmethod
    def of_images(cls, keys: Sequence[str], thumbnails: np.ndarray) -> ImageFingerprints:
        """The fingerprints of images given by their keys and dedup thumbnails (``(n, 64, 64)``)."""
        hashes = perceptual_hashes(thumbnails)
        sketches = np.stack([sketch(thumb) for thumb in thumbnails]) if len(hashes) else _no_sketches()
        return cls(tuple(keys), hashes, sketches)

    def __len__(self) -> int:
        return len(self.keys)

    def joined(self, other: ImageFingerprints) -> ImageFingerprints:
        """These images and ``other``'s in one set (an image in both counts twice; matching does not mind)."""
        return ImageFingerprints(self.keys + other.keys, np.concatenate([self.hashes, other.hashes]),
                                 np.concatenate([self.sketches, other.sketches]))

    def copies(self, keys: Sequence[str], thumbnails: np.ndarray) -> tuple[str, ...]:
        """For each image (its key and thumbnail): ``EXACT`` or ``NEAR`` when it copies one of these images, else "".

        Examples
        --------
        >>> rng = np.random.default_rng(0)
        >>> seen = cv2.GaussianBlur(rng.random((64, 64), dtype=np.float32), (0, 0), 4)
        >>> unseen = cv2.GaussianBlur(rng.random((64, 64), dtype=np.float32), (0, 0), 4)
        >>> prints = ImageFingerprints.of_images(["a" * 64], seen[np.newaxis])
        >>> prints.copies(["a" * 64, "b" * 64, "c" * 64], np.stack([seen, seen * 0.9 + 0.05, unseen]))
        ('exact', 'near', '')
        """
        hashes = perceptual_hashes(thumbnails)
        drawn = _standardised(np.stack([sketch(thumb) for thumb in thumbnails]) if len(hashes) else _no_sketches())
        return tuple(EXACT if key in self._key_set else NEAR if self._near(packed, row) else ""
                     for key, packed, row in zip(keys, hashes, drawn, strict=True))

    def _near(self, packed_hash: np.ndarray, standardised_sketch: np.ndarray) -> bool:
        rows, _ = self._index.neighbours(packed_hash)
        return bool(len(rows)) and float((self._standardised[rows] @ standardised_sketch).max()) >= \
            SKETCH_MIN_CORRELATION

    @cached_property
    def _key_set(self) -> frozenset[str]:
        return frozenset(self.keys)

    @cached_property
    def _index(self) -> HashIndex:
        return HashIndex(self.hashes, max_hamming=DEFAULT_MAX_HAMMING)

    @cached_property
    def _standardised(self) -> np.ndarray:
        return _standardised(self.sketches)

    def to_bytes(self) -> bytes:
        """The bundle's file: gzip'd JSON, one hex string per image in each column; the same bytes for the same set."""
        content = {"format": FORMAT, "near_copy_rule": NEAR_COPY_RULE, "keys": list(self.keys),
                   "dhash": [row.tobytes().hex() for row in self.hashes],
                   "sketch": [row.tobytes().hex() for row in self.sketches]}
        return gzip.compress(json.dumps(content, separators=(",", ":")).encode("utf-8"), mtime=0)

    @classmethod
    def from_bytes(cls, data: bytes) -> ImageFingerprints:
        """Read :meth:`to_bytes`' output; ValueError says what is wrong with other bytes."""
        try:
            content = json.loads(gzip.decompress(data))
            if content.get("format") != FORMAT:
                raise ValueError(f"format {content.get('format')!r}, not {FORMAT!r}")
            hashes = _rows_of_hex(content["dhash"], HASH_BITS // 8).reshape(-1, HASH_BITS // 8)
            sketches = _rows_of_hex(content["sketch"], SKETCH_SIDE**2).reshape(-1, SKETCH_SIDE, SKETCH_SIDE)
            return cls(tuple(str(key) for key in content["keys"]), hashes, sketches)
        except (OSError, EOFError, UnicodeDecodeError, KeyError, TypeError, AttributeError) as error:
            raise ValueError(f"not a fingerprints file ({type(error).__name__}: {error})") from error


def _rows_of_hex(rows: list[str], width: int) -> np.ndarray:
    data = bytes.fromhex("".join(rows))
    if len(data) != width * len(rows):
        raise ValueError(f"Expected {width} bytes per row. Received: {len(data)} bytes in {len(rows)} rows")
    return np.frombuffer(data, np.uint8)


def _standardised(sketches: np.ndarray) -> np.ndarray:
    """Each sketch as a mean-centred unit vector (a flat sketch as zeros: it confirms nothing)."""
    flat = sketches.reshape(len(sketches), -1).astype(np.float64)
    flat -= flat.mean(axis=1, keepdims=True)
    norms = np.linalg.norm(flat, axis=1, keepdims=True)
    return np.divide(flat, norms, out=np.zeros_like(flat), where=norms > 1e-9)


def _no_sketches() -> np.ndarray:
    return np.zeros((0, SKETCH_SIDE, SKETCH_SIDE), np.uint8)


def _is_hex(text: str) -> bool:
    return all(character in "0123456789abcdef" for character in text)
