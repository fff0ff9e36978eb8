"""Tests of the synthetic brain MRI generator (mriscan/synth/)."""

from __future__ import annotations

import csv
import hashlib
import importlib.util
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from mriscan.errors import OutputError, SynthError
from mriscan.synth import CONTRASTS, MASS_LABEL, OEDEMA_LABEL, PLANES, generate_dataset, insert_lesion
from mriscan.synth.anatomy import cut_slice, load_template, open_sulci, slice_positions
from mriscan.synth.contrast import render_contrast
from mriscan.synth.head import build_head
from mriscan.synth.lesion import draw_lesion
from mriscan.synth.sample import make_sample_data
from mriscan.synth.scanner import apply_framing, random_framing

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("nibabel") is None or importlib.util.find_spec("nilearn") is None,
    reason="needs the optional extra mriscan[synth] (nilearn, nibabel)",
)

SMALL = (96, 128)


@pytest.fixture(scope="module")
def volumes():
    return load_template()


@pytest.fixture(scope="module")
def small_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Twelve images: with 3 planes and 4 contrasts cycling, every combination appears once."""
    out = tmp_path_factory.mktemp("synth") / "set"
    generate_dataset(out, 12, seed=5, size_range=SMALL, workers=1)
    return out


def _manifest(folder: Path) -> list[dict[str, str]]:
    with (folder / "manifest.csv").open(encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def _hashes(folder: Path) -> dict[str, str]:
    return {
        path.relative_to(folder).as_posix(): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


def _framed_slice(volumes, plane: str, contrast: str, seed: int):
    """A framed healthy float image with its brain and white-matter maps."""
    rng = np.random.default_rng(seed)
    tissues = open_sulci(cut_slice(volumes, plane, slice_positions(volumes, plane)[40]), 1.0)
    head = build_head(tissues, rng)
    framing = random_framing(head.outline_box, rng, (192, 192))
    image = apply_framing(render_contrast(head, contrast, rng), framing)
    brain = apply_framing(head.brain.brain, framing, smooth=False)
    return image, brain, apply_framing(head.brain.wm, framing, smooth=False)


# --- lesions ------------------------------------------------------------------------------------


@pytest.mark.parametrize("contrast", CONTRASTS)
def test_lesion_changes_only_its_zone_and_stays_in_the_brain(volumes, contrast: str) -> None:
    for seed in range(3):
        image, brain, white_matter = _framed_slice(volumes, PLANES[seed], contrast, seed)
        inserted = draw_lesion(image, brain, np.random.default_rng(seed), contrast, white_matter=white_matter)
        mass = inserted.labels == MASS_LABEL
        assert mass.sum() >= 12
        assert not (inserted.labels > 0)[brain <= 0.5].any()
        assert np.array_equal(inserted.image[~inserted.changed], image[~inserted.changed])
        assert inserted.changed[inserted.labels > 0].all()
        assert np.abs(inserted.image - image)[mass].mean() > 0.05 * float(image[brain > 0.5].mean())


def test_insert_lesion_keeps_dtype_and_labels_mass_and_oedema() -> None:
    image = np.full((160, 160), 90, dtype=np.uint8)
    brain = cv2.circle(np.zeros((160, 160), np.uint8), (80, 80), 60, 1, -1)
    labels_seen = set()
    for seed in range(6):
        lesioned, mask = insert_lesion(image, brain, np.random.default_rng(seed), "flair")
        assert lesioned.dtype == np.uint8 and lesioned.shape == image.shape
        assert (mask == MASS_LABEL).any() and not mask[brain == 0].any()
        labels_seen |= set(np.unique(mask).tolist())
    assert {0, MASS_LABEL, OEDEMA_LABEL} <= labels_seen


def test_lesion_refuses_a_tiny_brain_with_advice() -> None:
    brain = np.zeros((64, 64), np.uint8)
    brain[30:34, 30:34] = 1
    with pytest.raises(SynthError, match="brain mask covers 16 pixels"):
        insert_lesion(np.zeros((64, 64), np.uint8), brain, np.random.default_rng(0), "t2")


# --- contrasts ----------------------------------------------------------------------------------


def test_contrasts_order_tissues_as_mri_does(volumes) -> None:
    tissues = cut_slice(volumes, "axial", 100)
    head = build_head(tissues, np.random.default_rng(0))
    mean = {}
    for contrast in CONTRASTS:
        image = render_contrast(head, contrast, np.random.default_rng(1))
        mean[contrast] = {
            name: float(image[getattr(head.brain, name) > 0.9].mean()) for name in ("csf", "gm", "wm")
        }
    assert mean["t2"]["csf"] > mean["t2"]["gm"] > mean["t2"]["wm"]
    assert mean["t1"]["wm"] > mean["t1"]["gm"] > mean["t1"]["csf"]
    assert mean["flair"]["gm"] > mean["flair"]["wm"] > mean["flair"]["csf"]
    t1, t1ce = (render_contrast(head, c, np.random.default_rng(1)) for c in ("t1", "t1ce"))
    assert (t1ce > t1.max()).sum() > 20  # enhancing dura, vessels and choroid plexus


def test_unknown_plane_or_contrast_is_refused_with_the_choices(tmp_path: Path) -> None:
    with pytest.raises(SynthError, match="axial, coronal, sagittal"):
        generate_dataset(tmp_path / "a", 4, 0, planes=("oblique",))
    with pytest.raises(SynthError, match="t1, t1ce, t2, flair"):
        generate_dataset(tmp_path / "b", 4, 0, contrasts=("dwi",))
    with pytest.raises(SynthError, match="even"):
        generate_dataset(tmp_path / "c", 5, 0, paired=True)


# --- datasets -----------------------------------------------------------------------------------


def test_dataset_has_class_folders_masks_and_a_complete_manifest(small_dataset: Path) -> None:
    rows = _manifest(small_dataset)
    assert len(rows) == 12
    assert {row["plane"] for row in rows} == set(PLANES)
    assert {row["contrast"] for row in rows} == set(CONTRASTS)
    assert {(row["plane"], row["contrast"]) for row in rows} == {(p, c) for p in PLANES for c in CONTRASTS}
    for row in rows:
        image = cv2.imread(str(small_dataset / row["file"]), cv2.IMREAD_UNCHANGED)
        assert image is not None and image.ndim == 2 and image.dtype == np.uint8
        assert SMALL[0] <= min(image.shape) and max(image.shape) <= SMALL[1]
        assert row["file"].startswith(row["label"] + "/") and row["origin"] == "template"
        mask_path = small_dataset / "masks" / Path(row["file"]).with_suffix(".png").name
        if row["label"] == "no":
            assert not mask_path.exists() and row["x0"] == ""
            continue
        mask = cv2.imread(str(mask_path), cv2.IMREAD_UNCHANGED)
        x0, y0, x1, y1 = (int(row[k]) for k in ("x0", "y0", "x1", "y1"))
        assert mask.shape == image.shape and set(np.unique(mask)) == {0, 255}
        assert mask[y0:y1, x0:x1].sum() == mask.sum()
    on_disk = {p.relative_to(small_dataset).as_posix() for p in small_dataset.glob("*/*") if p.parent.name != "masks"}
    assert on_disk == {row["file"] for row in rows}


def test_same_seed_same_bytes_whatever_the_workers(small_dataset: Path, tmp_path: Path) -> None:
    again = tmp_path / "again"
    generate_dataset(again, 12, seed=5, size_range=SMALL, workers=2)
    assert _hashes(again) == _hashes(small_dataset)
    other = tmp_path / "other"
    generate_dataset(other, 12, seed=6, size_range=SMALL, workers=1)
    differing = [name for name, digest in _hashes(other).items() if _hashes(small_dataset).get(name) != digest]
    assert len(differing) >= 10


def test_paired_twins_share_everything_but_the_lesion(tmp_path: Path) -> None:
    out = tmp_path / "pairs"
    summary = generate_dataset(out, 8, seed=3, size_range=(128, 160), paired=True, workers=1)
    assert (summary.images, summary.pairs, summary.tumour) == (8, 4, 4)
    by_pair: dict[str, list[dict[str, str]]] = {}
    for row in _manifest(out):
        by_pair.setdefault(row["pair_id"], []).append(row)
    assert len(by_pair) == 4 and "" not in by_pair
    for twins in by_pair.values():
        healthy, tumour = sorted(twins, key=lambda row: row["label"])
        assert (healthy["label"], tumour["label"]) == ("no", "yes")
        for key in ("seed", "plane", "contrast", "slice_index", "origin"):
            assert healthy[key] == tumour[key]
        _assert_difference_near_mask(out, healthy["file"], tumour["file"])


def _assert_difference_near_mask(out: Path, healthy_file: str, tumour_file: str) -> None:
    """The twins differ most inside the mask, and nowhere far from it (oedema, mass effect, blur)."""
    healthy = cv2.imread(str(out / healthy_file), cv2.IMREAD_GRAYSCALE).astype(int)
    tumour = cv2.imread(str(out / tumour_file), cv2.IMREAD_GRAYSCALE).astype(int)
    mask = cv2.imread(str(out / "masks" / Path(tumour_file).name), cv2.IMREAD_GRAYSCALE) > 0
    difference = np.abs(tumour - healthy)
    assert healthy.shape == tumour.shape and mask.any()
    assert difference[mask].mean() > 3 * difference[~mask].mean()
    rows, columns = np.nonzero(mask)
    reach = 3.0 * max(np.ptp(rows), np.ptp(columns)) + 12  # oedema and mass effect reach ~3.5 mass radii
    near = np.zeros_like(mask)
    near[max(rows.min() - int(reach), 0):rows.max() + int(reach) + 1,
         max(columns.min() - int(reach), 0):columns.max() + int(reach) + 1] = True
    assert not difference[~near].any()


def test_refuses_a_non_empty_output_unless_overwrite(tmp_path: Path) -> None:
    out = tmp_path / "taken"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(OutputError, match="not empty.*overwrite"):
        generate_dataset(out, 2, seed=0, size_range=SMALL, workers=1)
    assert (out / "keep.txt").read_text() == "mine"
    generate_dataset(out, 2, seed=0, size_range=SMALL, workers=1, overwrite=True)
    assert not (out / "keep.txt").exists() and (out / "manifest.csv").exists()
    kept = [p for p in tmp_path.iterdir() if p.name != "taken"]  # the old dataset is kept, nothing else is left
    assert [p.name.startswith("taken.replaced-") for p in kept] == [True]
    assert (kept[0] / "keep.txt").read_text() == "mine"


def test_a_failed_run_leaves_nothing_behind(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(SynthError, match="no decodable"):
        generate_dataset(tmp_path / "out", 2, seed=0, from_healthy=empty)
    assert [p.name for p in tmp_path.iterdir()] == ["empty"]


def test_from_healthy_draws_lesions_into_real_slices(tmp_path: Path) -> None:
    healthy = tmp_path / "healthy"
    generate_dataset(healthy, 4, seed=1, planes=("axial",), contrasts=("t2",), lesion_fraction=0.0,
                     size_range=(160, 192), workers=1)
    out = tmp_path / "lesioned"
    summary = generate_dataset(out, 6, seed=2, from_healthy=healthy / "no", contrasts=("t2",), paired=True,
                               workers=1)
    assert summary.pairs == 3
    sources = {p.name for p in (healthy / "no").iterdir()}
    for row in _manifest(out):
        assert row["origin"] in sources and row["plane"] == "" and row["contrast"] == "t2"
        if row["label"] == "no":
            original = cv2.imread(str(healthy / "no" / row["origin"]), cv2.IMREAD_GRAYSCALE)
            assert np.array_equal(cv2.imread(str(out / row["file"]), cv2.IMREAD_GRAYSCALE), original)
    for twins in _pairs(out).values():
        _assert_difference_near_mask(out, twins["no"], twins["yes"])


def _pairs(out: Path) -> dict[str, dict[str, str]]:
    pairs: dict[str, dict[str, str]] = {}
    for row in _manifest(out):
        pairs.setdefault(row["pair_id"], {})[row["label"]] = row["file"]
    return pairs


def test_missing_optional_extra_is_explained(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "nibabel", None)
    with pytest.raises(SynthError, match=r"pip install 'mriscan\[synth\]'"):
        generate_dataset(tmp_path / "out", 2, seed=0)
    assert not (tmp_path / "out").exists()


def test_sample_data_layout(tmp_path: Path) -> None:
    out = make_sample_data(tmp_path / "sample_data", seed=7)
    assert len(list((out / "train" / "yes").iterdir())) == len(list((out / "train" / "no").iterdir())) == 24
    assert len(list((out / "train" / "masks").iterdir())) == 24
    with (out / "incoming_truth.csv").open(encoding="utf-8") as handle:
        truth = list(csv.DictReader(handle))
    assert {row["label"] for row in truth} == {"yes", "no"}
    assert any(row["file"].startswith("nested/") for row in truth)
    for row in truth:
        assert cv2.imread(str(out / "incoming" / row["file"]), cv2.IMREAD_GRAYSCALE) is not None
    assert "synthetic" in (out / "README.md").read_text(encoding="utf-8")
