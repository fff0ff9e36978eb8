"""Tests of mriscan.dedup.index on synthetic brain-like slices made here.

Copies are made the way they occur in collected data, at the level of the decoded image (JPEG
re-encoding, downscaling and upscaling, a shift inside the black frame), and pass through the one
preprocessing path before thumbnails are taken, as ``fit`` and ``mriscan dedup`` do.
"""

from __future__ import annotations

from collections import Counter

import cv2
import numpy as np
import pytest

from mriscan.data.preprocess import preprocess
from mriscan.dedup.index import (
    DEFAULT_MAX_HAMMING,
    DEFAULT_MIN_CORRELATION,
    THUMBNAIL_SIZE,
    DuplicateGroups,
    find_cross_duplicates,
    find_duplicate_groups,
    hamming_distance,
    hash_neighbours,
    perceptual_hash,
    pixel_correlation,
    thumbnail,
)


def _texture(rng: np.random.Generator, shape: tuple[int, int], sigma: float) -> np.ndarray:
    noise = cv2.GaussianBlur(rng.random(shape, dtype=np.float32), (0, 0), sigma)
    return (noise - noise.mean()) / noise.std()


def _head(rng: np.random.Generator) -> dict:
    """The anatomy shared by the slices of one synthetic head: outline, coarse texture, blobs."""
    height, width = int(rng.integers(190, 250)), int(rng.integers(190, 250))
    blobs = [
        (rng.uniform(-0.5, 0.5), rng.uniform(-0.5, 0.5), int(rng.integers(3, 10)), int(rng.integers(4, 12)),
         float(rng.uniform(0, 180)), float(rng.uniform(0.1, 0.9)))
        for _ in range(int(rng.integers(2, 5)))
    ]  # fmt: skip
    return {
        "shape": (height, width),
        "center": (width // 2 + int(rng.integers(-8, 9)), height // 2 + int(rng.integers(-8, 9))),
        "axes": (int(width * rng.uniform(0.32, 0.4)), int(height * rng.uniform(0.36, 0.42))),
        "angle": float(rng.uniform(-15, 15)),
        "coarse": _texture(rng, (height, width), 7.0),
        "blobs": blobs,
    }


def _slice(head: dict, rng: np.random.Generator) -> np.ndarray:
    """One uint8 slice of ``head`` in a black frame; slices of one head differ in mid-scale texture."""
    shape, (cx, cy), (a, b), angle = head["shape"], head["center"], head["axes"], head["angle"]
    skull, brain = np.zeros(shape, np.float32), np.zeros(shape, np.float32)
    cv2.ellipse(skull, (cx, cy), (a, b), angle, 0, 360, 1.0, -1)
    cv2.ellipse(brain, (cx, cy), (a - 7, b - 7), angle, 0, 360, 1.0, -1)
    inner = 0.45 + 0.15 * head["coarse"] + 0.15 * _texture(rng, shape, 2.5)
    image = np.where(brain > 0, inner, 0.8 + 0.08 * _texture(rng, shape, 2.0)).astype(np.float32)
    for dx, dy, ra, rb, blob_angle, level in head["blobs"]:
        cv2.ellipse(image, (cx + int(dx * a), cy + int(dy * b)), (ra, rb), blob_angle, 0, 360, level, -1)
    image = cv2.GaussianBlur(image * skull, (0, 0), 1.0) + skull * rng.normal(0, 0.02, shape).astype(np.float32)
    return (np.clip(image, 0, 1) * 255).round().astype(np.uint8)


def _jpeg(image: np.ndarray, quality: int = 70) -> np.ndarray:
    _, encoded = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    return cv2.imdecode(encoded, cv2.IMREAD_GRAYSCALE)


def _resized(image: np.ndarray, factor: float = 0.6) -> np.ndarray:
    height, width = image.shape
    small = cv2.resize(image, (int(width * factor), int(height * factor)), interpolation=cv2.INTER_AREA)
    return cv2.resize(small, (width, height), interpolation=cv2.INTER_LINEAR)


def _shifted(image: np.ndarray, dx: int, dy: int) -> np.ndarray:
    matrix = np.float32([[1, 0, dx], [0, 1, dy]])
    return cv2.warpAffine(image, matrix, (image.shape[1], image.shape[0]))


def _thumb(image: np.ndarray) -> np.ndarray:
    return thumbnail(preprocess(image))


COPY_MAKERS = {
    "jpeg": _jpeg,
    "resized": _resized,
    "shifted": lambda image: _shifted(image, 2, -1),
}


@pytest.fixture(scope="module")
def planted() -> tuple[list[str], np.ndarray, np.ndarray, list[str]]:
    """Distinct originals, each followed by copies; returns sha256s, thumbnails, original of each, kinds."""
    rng = np.random.default_rng(7)
    shas, thumbs, origin, kinds = [], [], [], []

    def add(sha: str, image: np.ndarray, original_row: int, kind: str) -> None:
        shas.append(sha)
        thumbs.append(_thumb(image))
        origin.append(original_row)
        kinds.append(kind)

    for number in range(12):
        original, original_row = _slice(_head(rng), rng), len(shas)
        add(f"original-{number}", original, original_row, "kept")
        if number % 2:
            add(f"original-{number}", original, original_row, "exact")
        maker = list(COPY_MAKERS)[number % len(COPY_MAKERS)]
        add(f"copy-{number}-{maker}", COPY_MAKERS[maker](original), original_row, "near")
    return shas, np.stack(thumbs), np.array(origin), kinds


def _grouping_reference(shas: list[str], thumbs: np.ndarray, max_hamming: int, min_correlation: float) -> np.ndarray:
    """All-pairs version of the grouping rule.

    Each image joins its best-correlated earlier kept image; an image confirmed against several
    kept images links its best to each other one, and kept images linked twice merge their groups.
    """
    hashes = [perceptual_hash(t) for t in thumbs]
    kept, links = np.arange(len(shas)), Counter()
    for row in range(len(shas)):
        earlier_same_sha = [i for i in range(row) if shas[i] == shas[row]]
        if earlier_same_sha:
            kept[row] = kept[earlier_same_sha[0]]
            continue
        leaders = [i for i in range(row) if kept[i] == i]
        scores = {
            i: pixel_correlation(thumbs[row], thumbs[i])
            for i in leaders
            if hamming_distance(hashes[row], hashes[i]) <= max_hamming
        }
        confirmed = {i: c for i, c in scores.items() if c >= min_correlation}
        if confirmed:
            kept[row] = max(confirmed, key=lambda i: (confirmed[i], -i))
            links.update(tuple(sorted((kept[row], i))) for i in confirmed if i != kept[row])
    return _merged_reference(kept, [pair for pair, count in links.items() if count >= 2])


def _merged_reference(kept: np.ndarray, links: list[tuple[int, int]]) -> np.ndarray:
    """Relabel kept images joined by links (transitively) with their group's lowest kept image."""
    group = {int(i): {int(i)} for i in np.unique(kept)}
    for a, b in links:
        joined = group[a] | group[b]
        for member in joined:
            group[member] = joined
    return np.array([min(group[int(i)]) for i in kept])


def test_thumbnail_accepts_model_input_shapes() -> None:
    model_input = np.random.default_rng(0).random((150, 150, 1), dtype=np.float32)
    thumb = thumbnail(model_input)
    assert thumb.shape == (THUMBNAIL_SIZE, THUMBNAIL_SIZE) and thumb.dtype == np.float32
    np.testing.assert_array_equal(thumb, thumbnail(model_input[..., 0]))
    with pytest.raises(ValueError, match="Received: shape"):
        thumbnail(np.zeros((4, 4, 3)))


def test_perceptual_hash_is_256_bits_and_ignores_brightness() -> None:
    thumb = _thumb(_slice(_head(np.random.default_rng(1)), np.random.default_rng(2)))
    hashed = perceptual_hash(thumb)
    assert hashed.shape == (32,) and hashed.dtype == np.uint8
    np.testing.assert_array_equal(hashed, perceptual_hash(thumb + 0.2))
    assert hamming_distance(hashed, perceptual_hash(0.8 * thumb)) <= 8
    assert not perceptual_hash(np.full((64, 64), 0.3, np.float32)).any()
    assert hamming_distance(hashed, ~hashed) == 256


def test_each_copy_joins_its_original(planted) -> None:
    shas, thumbs, origin, kinds = planted
    groups = find_duplicate_groups(shas, thumbs)
    np.testing.assert_array_equal(groups.kept, origin)
    assert groups.kinds == tuple(kinds)
    assert int(groups.removed().sum()) == len(shas) - len(np.unique(origin))


def test_group_ids_kept_and_removed_are_consistent(planted) -> None:
    shas, thumbs, _, _ = planted
    groups = find_duplicate_groups(shas, thumbs)
    indices = np.arange(len(shas))
    for group in np.unique(groups.group_ids):
        members = indices[groups.group_ids == group]
        assert set(groups.kept[members]) == {members.min()}, "kept image is the group's lowest index"
    assert np.array_equal(groups.removed(), groups.kept != indices)
    assert groups.group_ids.max() + 1 == int((~groups.removed()).sum())
    for row in np.flatnonzero(groups.removed()):
        assert pixel_correlation(thumbs[row], thumbs[groups.kept[row]]) >= DEFAULT_MIN_CORRELATION


def test_multi_index_matches_all_pairs_reference(planted) -> None:
    shas, thumbs, _, _ = planted
    rng = np.random.default_rng(3)
    heads = [_head(rng) for _ in range(6)]
    extra = np.stack([_thumb(_slice(heads[i % 6], rng)) for i in range(30)])
    all_shas, all_thumbs = shas + [f"slice-{i}" for i in range(30)], np.concatenate([thumbs, extra])
    for max_hamming in (8, DEFAULT_MAX_HAMMING, 40):
        groups = find_duplicate_groups(all_shas, all_thumbs, max_hamming=max_hamming)
        reference = _grouping_reference(all_shas, all_thumbs, max_hamming, DEFAULT_MIN_CORRELATION)
        np.testing.assert_array_equal(groups.kept, reference)


def test_neighbouring_slices_are_not_merged_even_when_their_hashes_match() -> None:
    rng = np.random.default_rng(4)
    heads = [_head(rng) for _ in range(8)]
    thumbs = np.stack([_thumb(_slice(head, rng)) for head in heads for _ in range(3)])
    hashes = [perceptual_hash(t) for t in thumbs]
    same_head_distances = [hamming_distance(hashes[i], hashes[i + k]) for i in range(0, 24, 3) for k in (1, 2)]
    assert max(same_head_distances) <= 60, "with max_hamming=60 every same-head pair is a candidate"
    groups = find_duplicate_groups([str(i) for i in range(len(thumbs))], thumbs, max_hamming=60)
    assert groups.kinds == ("unique",) * len(thumbs)


def test_hash_twins_with_different_pixels_are_not_merged() -> None:
    rng = np.random.default_rng(5)
    base = _thumb(_slice(_head(rng), rng))
    checker = np.indices(base.shape).sum(axis=0) % 2 * 0.6 - 0.3  # averages out at hash resolution
    twin = base + checker.astype(np.float32)
    assert hamming_distance(perceptual_hash(base), perceptual_hash(twin)) <= 4
    groups = find_duplicate_groups(["a", "b"], np.stack([base, twin]))
    assert groups.kinds == ("unique", "unique")


def test_chain_of_links_does_not_join_its_ends() -> None:
    rng = np.random.default_rng(6)
    head = _head(rng)
    first, last = (_thumb(_slice(head, rng)) for _ in range(2))
    middle = (first + last) / 2
    assert pixel_correlation(first, last) < DEFAULT_MIN_CORRELATION
    assert min(pixel_correlation(first, middle), pixel_correlation(middle, last)) >= DEFAULT_MIN_CORRELATION
    groups = find_duplicate_groups(["a", "b", "c"], np.stack([first, middle, last]), max_hamming=60)
    assert groups.kinds == ("kept", "near", "unique")
    assert groups.group_ids[0] != groups.group_ids[2]


def test_byte_copy_of_a_near_copy_is_near() -> None:
    rng = np.random.default_rng(8)
    original = _slice(_head(rng), rng)
    copy = _thumb(_jpeg(original))
    groups = find_duplicate_groups(["a", "b", "b"], np.stack([_thumb(original), copy, copy]))
    assert groups.kinds == ("kept", "near", "near")
    np.testing.assert_array_equal(groups.kept, [0, 0, 0])


def test_blank_and_hash_alike_images_stay_cheap_and_correct() -> None:
    rng = np.random.default_rng(9)
    blank = np.zeros((400, THUMBNAIL_SIZE, THUMBNAIL_SIZE), np.float32)
    ramp = np.linspace(0.2, 0.8, THUMBNAIL_SIZE, dtype=np.float32)[np.newaxis, np.newaxis, :]
    noisy_ramps = ramp + rng.normal(0, 0.2, (400, THUMBNAIL_SIZE, THUMBNAIL_SIZE)).astype(np.float32)
    thumbs = np.concatenate([blank, noisy_ramps])
    shas = [str(i) for i in range(len(thumbs))]
    for max_bucket in (8, 10_000):
        groups = find_duplicate_groups(shas, thumbs, max_bucket=max_bucket)
        assert set(groups.kept[:400]) == {0}, "blank slices are one picture"
        assert set(groups.kinds[400:]) == {"unique"}, "independent noise is not a copy"


def test_same_input_gives_same_groups(planted) -> None:
    shas, thumbs, _, _ = planted
    first, second = find_duplicate_groups(shas, thumbs), find_duplicate_groups(shas, thumbs)
    np.testing.assert_array_equal(first.group_ids, second.group_ids)
    assert first.kinds == second.kinds


def test_empty_input() -> None:
    groups = find_duplicate_groups([], np.zeros((0, THUMBNAIL_SIZE, THUMBNAIL_SIZE), np.float32))
    assert isinstance(groups, DuplicateGroups) and len(groups.kept) == 0 and groups.kinds == ()
    assert find_cross_duplicates([], np.zeros((0, 64, 64)), ["a"], np.zeros((1, 64, 64))) == []


def test_argument_errors_say_what_was_received() -> None:
    thumbs = np.zeros((2, THUMBNAIL_SIZE, THUMBNAIL_SIZE), np.float32)
    with pytest.raises(ValueError, match="Received: 1 and 2"):
        find_duplicate_groups(["a"], thumbs)
    with pytest.raises(ValueError, match="max_hamming=64"):
        find_duplicate_groups(["a", "b"], thumbs, max_hamming=64)
    with pytest.raises(ValueError, match="min_correlation=1.5"):
        find_duplicate_groups(["a", "b"], thumbs, min_correlation=1.5)
    with pytest.raises(ValueError, match="shape"):
        find_duplicate_groups(["a", "b"], thumbs[:, 0])


def test_cross_duplicates_find_planted_copies() -> None:
    rng = np.random.default_rng(10)
    set_a = [_slice(_head(rng), rng) for _ in range(20)]
    set_b = [_slice(_head(rng), rng) for _ in range(10)] + [_jpeg(set_a[3]), set_a[7], _resized(set_a[11])]
    shas_a = [f"a{i}" for i in range(20)]
    shas_b = [f"b{i}" for i in range(10)] + ["b-jpeg", "a7", "b-resized"]
    found = find_cross_duplicates(
        shas_a, np.stack([_thumb(x) for x in set_a]), shas_b, np.stack([_thumb(x) for x in set_b])
    )
    assert [(d.index_a, d.index_b, d.kind) for d in found] == [(3, 10, "near"), (7, 11, "exact"), (11, 12, "near")]
    exact = found[1]
    assert exact.hamming == 0 and exact.correlation == pytest.approx(1.0)
    assert all(d.correlation >= DEFAULT_MIN_CORRELATION for d in found)


def _warped(thumb: np.ndarray, scale: float, dx: float, dy: float) -> np.ndarray:
    """The thumbnail rescaled about its centre and shifted, as a crop a pixel or two off does."""
    centre = (thumb.shape[1] - 1) / 2
    matrix = np.float32([[scale, 0, (1 - scale) * centre + dx], [0, scale, (1 - scale) * centre + dy]])
    return cv2.warpAffine(thumb, matrix, thumb.shape[::-1], flags=cv2.INTER_LINEAR)


@pytest.fixture(scope="module")
def misaligned() -> tuple[np.ndarray, np.ndarray]:
    """A slice's thumbnail and the same thumbnail 2% larger and 0.7 px off: plain correlation < 0.96."""
    rng = np.random.default_rng(11)
    original = _thumb(_slice(_head(rng), rng))
    return original, _warped(original, 1.02, 0.7, -0.6)


def test_copy_with_a_shifted_crop_is_confirmed_by_alignment(misaligned) -> None:
    original, copy = misaligned
    plain = float(np.corrcoef(original.ravel(), copy.ravel())[0, 1])
    assert plain < DEFAULT_MIN_CORRELATION, "the case alignment exists for"
    assert pixel_correlation(original, copy) >= DEFAULT_MIN_CORRELATION
    groups = find_duplicate_groups(["a", "b"], np.stack([original, copy]))
    assert groups.kinds == ("kept", "near")


def test_shifted_resized_reencoded_copy_is_found() -> None:
    rng = np.random.default_rng(12)
    originals = [_slice(_head(rng), rng) for _ in range(6)]
    copies = [_jpeg(_resized(_shifted(image, 3, -2), 0.55), 55) for image in originals]
    thumbs = np.stack([_thumb(image) for image in originals + copies])
    groups = find_duplicate_groups([f"f{i}" for i in range(12)], thumbs)
    np.testing.assert_array_equal(groups.kept, [0, 1, 2, 3, 4, 5, 0, 1, 2, 3, 4, 5])
    found = find_cross_duplicates([f"a{i}" for i in range(6)], thumbs[:6], [f"b{i}" for i in range(6)], thumbs[6:])
    assert [(d.index_a, d.index_b) for d in found] == [(i, i) for i in range(6)]


def test_different_slices_of_one_head_stay_apart_after_alignment() -> None:
    rng = np.random.default_rng(13)
    head = _head(rng)
    slices = [_thumb(_jpeg(_shifted(_slice(head, rng), int(dx), 0))) for dx in (0, 2, -2, 1)]
    scores = [pixel_correlation(slices[0], other) for other in slices[1:]]
    assert max(scores) < DEFAULT_MIN_CORRELATION
    groups = find_duplicate_groups([str(i) for i in range(4)], np.stack(slices), max_hamming=60)
    assert groups.kinds == ("unique",) * 4


def test_alignment_is_bounded_to_small_warps(misaligned) -> None:
    original, _ = misaligned
    far = _warped(original, 1.0, 6.0, 0.0)
    assert pixel_correlation(original, far) < DEFAULT_MIN_CORRELATION
    assert find_duplicate_groups(["a", "b"], np.stack([original, far]), max_hamming=60).kinds == ("unique", "unique")


def test_groups_with_aligned_copies_are_deterministic(misaligned) -> None:
    original, copy = misaligned
    rng = np.random.default_rng(14)
    others = [_thumb(_slice(_head(rng), rng)) for _ in range(5)]
    thumbs = np.stack([copy, *others, original, _warped(copy, 0.99, -0.4, 0.5)])
    shas = [str(i) for i in range(len(thumbs))]
    runs = [find_duplicate_groups(shas, thumbs) for _ in range(3)]
    assert runs[0].kinds[-2:] == ("near", "near") and list(runs[0].kept[-2:]) == [0, 0]
    for later in runs[1:]:
        np.testing.assert_array_equal(later.kept, runs[0].kept)
        assert later.kinds == runs[0].kinds


@pytest.fixture(scope="module")
def bridged() -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
    """Two images too different to confirm each other, and copies between them that confirm both.

    The case of a copy too degraded to match its group's kept image: it becomes a kept image of
    its own, and later, milder copies are confirmed against both.
    """
    rng = np.random.default_rng(15)
    head = _head(rng)
    first, last = (_thumb(_slice(head, rng)) for _ in range(2))
    between = [weight * first + (1 - weight) * last for weight in (0.5, 0.52)]
    assert pixel_correlation(first, last) < DEFAULT_MIN_CORRELATION
    for image in between:
        assert min(pixel_correlation(image, first), pixel_correlation(image, last)) >= DEFAULT_MIN_CORRELATION
    return first, last, between


def test_groups_sharing_two_confirmed_copies_merge(bridged) -> None:
    first, last, between = bridged
    groups = find_duplicate_groups(list("abcd"), np.stack([first, last, *between]), max_hamming=60)
    np.testing.assert_array_equal(groups.kept, [0, 0, 0, 0])
    assert groups.kinds == ("kept", "near", "near", "near")


def test_one_shared_copy_does_not_merge_groups(bridged) -> None:
    first, last, between = bridged
    groups = find_duplicate_groups(list("abc"), np.stack([first, last, between[0]]), max_hamming=60)
    assert groups.group_ids[0] != groups.group_ids[1]
    assert groups.kinds[2] == "near"


def test_byte_copy_of_a_merged_kept_image_is_near(bridged) -> None:
    first, last, between = bridged
    groups = find_duplicate_groups(list("abbcd"), np.stack([first, last, last, *between]), max_hamming=60)
    np.testing.assert_array_equal(groups.kept, [0, 0, 0, 0, 0])
    assert groups.kinds == ("kept", "near", "near", "near", "near")


def test_merged_groups_match_the_all_pairs_reference(bridged) -> None:
    first, last, between = bridged
    rng = np.random.default_rng(16)
    others = [_thumb(_slice(_head(rng), rng)) for _ in range(4)]
    thumbs = np.stack([others[0], first, others[1], last, between[0], others[2], between[1], others[3]])
    shas = [str(i) for i in range(len(thumbs))]
    reference = _grouping_reference(shas, thumbs, 60, DEFAULT_MIN_CORRELATION)
    np.testing.assert_array_equal(find_duplicate_groups(shas, thumbs, max_hamming=60).kept, reference)
    assert len(set(reference[[1, 3, 4, 6]])) == 1


def test_hash_neighbours_returns_the_indexed_rows_within_max_hamming(planted) -> None:
    _, thumbs, _, _ = planted
    hashes = [perceptual_hash(t) for t in thumbs]
    query, indexed = thumbs[::2], thumbs[1::2]
    for max_hamming in (0, DEFAULT_MAX_HAMMING, 40):
        found = hash_neighbours(query, indexed, max_hamming=max_hamming)
        expected = [
            [j for j in range(len(indexed)) if hamming_distance(hashes[2 * i], hashes[2 * j + 1]) <= max_hamming]
            for i in range(len(query))
        ]
        assert [rows.tolist() for rows in found] == expected


def test_hash_neighbours_argument_errors_say_what_was_received() -> None:
    with pytest.raises(ValueError, match="Received: shape=\\(4, 4\\)"):
        hash_neighbours(np.zeros((4, 4)), np.zeros((1, 64, 64)))
    with pytest.raises(ValueError, match="max_hamming=64"):
        hash_neighbours(np.zeros((1, 64, 64)), np.zeros((1, 64, 64)), max_hamming=64)
