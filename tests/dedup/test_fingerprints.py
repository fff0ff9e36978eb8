"""The fingerprints a bundle keeps of its training images: exact and near copies recognised, others not."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import brain_like, fingerprints_of

from mriscan.data.loader import load_all
from mriscan.data.preprocess import PreprocessConfig
from mriscan.dedup.fingerprints import EXACT, NEAR, ImageFingerprints
from mriscan.dedup.index import DEFAULT_MAX_HAMMING, hamming_distance, perceptual_hash, thumbnails


def _seen_and_unseen(folder: Path, write_png) -> tuple[list[Path], list[Path]]:
    seen = [write_png(folder / "seen" / f"s{i}.png", brain_like(i, lesion=i % 2 == 0)) for i in range(12)]
    unseen = [write_png(folder / "unseen" / f"u{i}.png", brain_like(500 + i, lesion=i % 2 == 0)) for i in range(24)]
    return seen, unseen


def _kinds(prints: ImageFingerprints, paths: list[Path], image_size: int = 150) -> list[str]:
    records = load_all(paths, PreprocessConfig(image_size=image_size), workers=1)
    return list(prints.copies([r.image_key for r in records], thumbnails(r.model_input for r in records)))


def test_exact_copies_and_re_encoded_or_resized_copies_are_recognised(tmp_path, write_png) -> None:
    """At the default model's input size (at 64 px, re-encoding moves these textured fakes' sketches too much)."""
    seen, _ = _seen_and_unseen(tmp_path, write_png)
    prints = fingerprints_of(seen, 150)
    copies = tmp_path / "copies"
    copies.mkdir()
    near = []
    for i, path in enumerate(seen):
        pixels = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
        if i % 2:
            pixels = cv2.resize(pixels, None, fx=0.7, fy=0.7, interpolation=cv2.INTER_AREA)
        near.append(copies / f"c{i}.jpg")
        assert cv2.imwrite(str(near[-1]), pixels, [cv2.IMWRITE_JPEG_QUALITY, 75])
    assert _kinds(prints, seen) == [EXACT] * len(seen)
    assert _kinds(prints, near) == [NEAR] * len(near)


def test_other_images_are_not_taken_for_copies(tmp_path, write_png) -> None:
    seen, unseen = _seen_and_unseen(tmp_path, write_png)
    assert _kinds(fingerprints_of(seen, 150), unseen) == [""] * len(unseen)
    assert _kinds(fingerprints_of(seen, 64), unseen, 64) == [""] * len(unseen)


def test_an_image_close_in_hash_but_not_in_its_sketch_is_no_copy() -> None:
    """The hash only proposes: brain slices look alike at its resolution, so the sketch must confirm."""
    rng = np.random.default_rng(3)
    base, other = (cv2.GaussianBlur(rng.random((64, 64), dtype=np.float32), (0, 0), 4) for _ in range(2))
    neighbour = 0.85 * base + 0.15 * other
    assert hamming_distance(perceptual_hash(base), perceptual_hash(neighbour)) <= DEFAULT_MAX_HAMMING
    prints = ImageFingerprints.of_images(["a" * 64], base[np.newaxis])
    assert prints.copies(["b" * 64, "c" * 64], np.stack([neighbour, 0.9 * base + 0.05])) == ("", NEAR)


def test_a_slice_is_an_exact_copy_only_of_the_same_slice_of_the_same_file() -> None:
    rng = np.random.default_rng(1)
    slices = np.stack([cv2.GaussianBlur(rng.random((64, 64), dtype=np.float32), (0, 0), 4) for _ in range(3)])
    sha = "ab" * 32
    prints = ImageFingerprints.of_images([f"{sha}:axial:3"], slices[:1])
    assert prints.copies([f"{sha}:axial:3", f"{sha}:axial:4", f"{sha}:coronal:3"], slices) == (EXACT, "", "")


def test_the_file_holds_the_same_fingerprints_as_the_same_bytes(tmp_path, write_png) -> None:
    seen, unseen = _seen_and_unseen(tmp_path, write_png)
    prints = fingerprints_of(seen)
    data = prints.to_bytes()
    again = ImageFingerprints.from_bytes(data)
    assert again.keys == prints.keys and len(again) == len(seen)
    np.testing.assert_array_equal(again.hashes, prints.hashes)
    np.testing.assert_array_equal(again.sketches, prints.sketches)
    assert fingerprints_of(seen).to_bytes() == data  # no time stamp: the same images give the same file
    joined = prints.joined(fingerprints_of(unseen[:2]))
    assert len(joined) == len(seen) + 2 and _kinds(joined, unseen[:3], 64) == [EXACT, EXACT, ""]


def test_a_damaged_file_is_refused_saying_what_is_wrong(tmp_path, write_png) -> None:
    data = fingerprints_of(_seen_and_unseen(tmp_path, write_png)[0]).to_bytes()
    with pytest.raises(ValueError, match="not a fingerprints file"):
        ImageFingerprints.from_bytes(data[: len(data) // 2])
    content = json.loads(gzip.decompress(data))
    with pytest.raises(ValueError, match="format"):
        ImageFingerprints.from_bytes(gzip.compress(json.dumps({**content, "format": "other"}).encode()))
    with pytest.raises(ValueError, match="one hash and one sketch per key"):
        ImageFingerprints.from_bytes(gzip.compress(json.dumps({**content, "keys": content["keys"][1:]}).encode()))
    with pytest.raises(ValueError, match="start with a sha256"):
        ImageFingerprints.from_bytes(gzip.compress(json.dumps({**content, "keys": ["x"] * 12}).encode()))
