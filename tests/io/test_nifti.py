"""The NIfTI reader: content sniffing, orientation, per-volume scaling, scl_slope/scl_inter, 4-D, gzip, truncation."""

from __future__ import annotations

import gzip

import numpy as np
import pytest
from conftest import nifti_bytes

from mriscan.errors import UnreadableImageError
from mriscan.io.discover import find_candidates
from mriscan.io.image import Refusal
from mriscan.io.nifti import (
    acquisition_plane,
    intensity_window,
    nifti_version,
    read_volume,
    volume_slices,
)
from mriscan.io.reader import decode_bytes

BUDGET = 50_000_000


def marked_head(shape: tuple[int, int, int] = (24, 28, 20)) -> np.ndarray:
    """A float volume in RAS+ order: a box of 'head' and one bright block at its right-anterior-superior corner."""
    volume = np.zeros(shape, np.float32)
    x, y, z = shape
    volume[2:x - 2, 2:y - 2, 2:z - 2] = 100.0
    volume[x - 6:x - 2, y - 6:y - 2, z - 6:z - 2] = 400.0  # patient's right, anterior, superior
    return volume


def slices_of(data: bytes, planes: str = "acquisition") -> dict[tuple[str, int], np.ndarray]:
    return {(s.plane, s.frame): s.pixels for s in volume_slices(read_volume(data, BUDGET), planes)}


def bright_corner(pixels: np.ndarray) -> tuple[str, str]:
    """Which quarter of a slice holds its brightest pixels: ('top'|'bottom', 'left'|'right')."""
    rows, columns = np.nonzero(pixels == pixels.max())
    vertical = "top" if rows.mean() < pixels.shape[0] / 2 else "bottom"
    horizontal = "left" if columns.mean() < pixels.shape[1] / 2 else "right"
    return vertical, horizontal


def test_nifti_is_recognised_by_content_plain_gzip_and_version_2():
    volume = marked_head()
    assert nifti_version(nifti_bytes(volume)) == 1
    assert nifti_version(nifti_bytes(volume, gz=True)) == 1
    assert nifti_version(nifti_bytes(volume, version=2)) == 2
    assert nifti_version(gzip.compress(b"not a volume" * 100)) is None
    assert nifti_version(b"\x89PNG\r\n\x1a\n" + bytes(600)) is None
    assert nifti_version(b"\x1f\x8b damaged gzip") is None


@pytest.mark.parametrize("plane, centre_index", [("axial", 10), ("coronal", 14), ("sagittal", 12)])
def test_slices_are_shown_as_a_radiological_viewer_shows_them(plane, centre_index):
    # The marker is at the patient's right, anterior and superior. A viewer shows anterior (axial) or
    # superior (coronal, sagittal) at the top, and the patient's right (axial, coronal) or anterior
    # (sagittal) on the left.
    volume = marked_head()
    near_marker = {"axial": 16, "coronal": 24, "sagittal": 20}[plane]
    slices = slices_of(nifti_bytes(volume, np.diag([2.0, 2.0, 2.0, 1.0])), plane)
    assert bright_corner(slices[(plane, near_marker)]) == ("top", "left")
    assert (plane, centre_index) in slices


def test_a_volume_stored_in_another_orientation_gives_the_same_slices():
    # The same anatomy stored left-posterior-inferior first and with its axes permuted (z, x, y),
    # as scanners write it: as_closest_canonical must undo both.
    ras = marked_head()
    stored = np.ascontiguousarray(np.transpose(ras[::-1, ::-1, ::-1], (2, 0, 1)))
    x, y, z = ras.shape
    # stored[k, i, j] = ras[x-1-i, y-1-j, z-1-k]: voxel (k, i, j) lies at RAS (x-1-i, y-1-j, z-1-k).
    affine = np.array([[0, -1, 0, x - 1], [0, 0, -1, y - 1], [-1, 0, 0, z - 1], [0, 0, 0, 1]], float)
    canonical = slices_of(nifti_bytes(ras), "all")
    reoriented = slices_of(nifti_bytes(stored, affine), "all")
    assert canonical.keys() == reoriented.keys()
    for key, pixels in canonical.items():
        np.testing.assert_array_equal(reoriented[key], pixels, err_msg=str(key))


def test_the_default_plane_is_the_acquisition_plane_and_reformats_get_square_pixels():
    volume = np.zeros((40, 40, 6), np.float32)
    volume[4:36, 4:36, 1:5] = 100.0
    coronal_acquisition = np.ascontiguousarray(np.transpose(volume, (0, 2, 1)))  # thick slices along y
    affine = np.diag([0.5, 0.5, 4.0, 1.0])
    assert {plane for plane, _ in slices_of(nifti_bytes(volume, affine))} == {"axial"}
    assert len(slices_of(nifti_bytes(volume, affine))) == 6
    coronal_affine = np.diag([0.5, 4.0, 0.5, 1.0])
    assert {plane for plane, _ in slices_of(nifti_bytes(coronal_acquisition, coronal_affine))} == {"coronal"}
    # A coronal reformat of the axial acquisition: 6 slices of 4 mm become 48 rows of 0.5 mm.
    assert slices_of(nifti_bytes(volume, affine), "coronal")[("coronal", 20)].shape == (48, 40)
    assert acquisition_plane((1.0, 1.0, 1.0)) == "axial"


def test_intensity_is_scaled_per_volume_not_per_slice():
    volume = marked_head()
    volume[:, :, 4] *= 0.1  # one faint slice: it must stay faint, not be stretched to full range
    slices = slices_of(nifti_bytes(volume))
    bright = max(int(pixels.max()) for pixels in slices.values())
    faint = int(slices[("axial", 4)].max())
    assert bright == 255
    assert 0 < faint < 0.15 * 255
    # The same volume in other units (a scanner's gain and offset) looks the same.
    rescaled = slices_of(nifti_bytes(volume * 37.0 + 1000.0))
    for key, pixels in slices.items():
        assert np.abs(rescaled[key].astype(int) - pixels).max() <= 1, key


def test_white_is_set_by_the_head_not_by_the_air_around_it():
    # A head of 1,000 values 1..1000 in 20,000 voxels of air: white is the head's 99.5th percentile (~995),
    # where the 99.5th percentile of all voxels would be ~900.
    volume = np.zeros((20, 20, 50), np.float32)
    volume[:10, :10, :10] = np.arange(1, 1001, dtype=np.float32).reshape(10, 10, 10)
    low, high = intensity_window(volume)
    assert low == 0.0
    assert 990.0 <= high <= 1000.0


def test_scl_slope_and_inter_give_real_world_values():
    stored = np.arange(4 * 5 * 6, dtype=np.int16).reshape(4, 5, 6)
    volume = read_volume(nifti_bytes(stored, slope=2.0, inter=10.0), BUDGET)
    np.testing.assert_allclose(volume.data, stored * 2.0 + 10.0)
    plain = read_volume(nifti_bytes(stored), BUDGET)
    np.testing.assert_allclose(plain.data, stored)


def test_a_negative_slope_inverts_the_display():
    head = marked_head()
    as_stored = (1000 - head).astype(np.int16)  # real value = -1 * stored + 1000 = head
    direct = slices_of(nifti_bytes(head))
    scaled = slices_of(nifti_bytes(as_stored, slope=-1.0, inter=1000.0))
    for key, pixels in direct.items():
        assert np.abs(scaled[key].astype(int) - pixels).max() <= 1, key


def test_gzip_and_plain_files_give_identical_slices_and_nifti2_is_read():
    volume = marked_head()
    plain = slices_of(nifti_bytes(volume))
    for other in (nifti_bytes(volume, gz=True), nifti_bytes(volume, version=2)):
        slices = slices_of(other)
        assert slices.keys() == plain.keys()
        for key, pixels in plain.items():
            np.testing.assert_array_equal(slices[key], pixels)


def test_a_4d_series_is_refused_naming_its_shape_and_a_trailing_axis_of_one_is_3d():
    series = np.zeros((8, 9, 10, 3), np.float32)
    with pytest.raises(Refusal, match=r"4-D volume \(8 x 9 x 10 x 3"):
        read_volume(nifti_bytes(series), BUDGET)
    single = np.zeros((8, 9, 10, 1), np.float32)
    assert read_volume(nifti_bytes(single), BUDGET).data.shape == (8, 9, 10)


@pytest.mark.parametrize("gz", [False, True])
def test_a_truncated_file_is_refused(gz):
    data = nifti_bytes(marked_head(), gz=gz)
    with pytest.raises(Refusal, match="truncated"):
        read_volume(data[: len(data) * 2 // 3], BUDGET)


def test_a_volume_declaring_more_voxels_than_the_budget_is_refused_before_decompressing():
    data = nifti_bytes(np.zeros((64, 64, 64), np.uint8), gz=True)
    with pytest.raises(Refusal, match="decompression bombs") as refusal:
        read_volume(data, max_pixels=64 * 64 * 63)
    assert refusal.value.too_large


def test_colour_voxels_are_refused():
    rgb = np.zeros((4, 4, 4), dtype=[("R", "u1"), ("G", "u1"), ("B", "u1")])
    with pytest.raises(Refusal, match="not grey"):
        read_volume(nifti_bytes(rgb), BUDGET)


def test_slices_outside_the_head_are_named_and_the_others_are_not():
    volume = np.zeros((30, 30, 12), np.float32)
    volume[5:25, 5:25, 3:9] = 100.0
    volume[14:16, 14:16, 9] = 100.0  # a sliver of scalp: 1% of the largest section
    noise = np.random.default_rng(0).normal(0, 2, volume.shape).astype(np.float32)
    reasons = {s.frame: s.outside_head for s in volume_slices(read_volume(nifti_bytes(volume + noise), BUDGET))}
    assert all(reasons[index] == "" for index in range(3, 9))
    assert all(reasons[index].startswith("outside the head") for index in (0, 1, 2, 9, 10, 11))
    assert "1% of the largest axial" in reasons[9]


def test_decode_bytes_reads_a_volume_by_content_into_slices_and_names_the_file_when_it_cannot(tmp_path):
    data = nifti_bytes(marked_head(), np.diag([1.0, 1.0, 3.0, 1.0]), gz=True)
    slices = decode_bytes(data, name="t1.nii.gz")
    assert [(s.kind, s.plane, s.frame) for s in slices] == [("nifti", "axial", k) for k in range(20)]
    assert all(s.pixels.dtype == np.uint8 for s in slices)
    assert {s.plane for s in decode_bytes(data, planes="all")} == {"axial", "coronal", "sagittal"}
    with pytest.raises(UnreadableImageError, match=r"Cannot read t1.nii.gz: the file is truncated"):
        decode_bytes(data[:-200], name="t1.nii.gz")
    with pytest.raises(UnreadableImageError, match=r"4-D volume .* fslroi"):
        decode_bytes(nifti_bytes(np.zeros((4, 4, 4, 2), np.int16)), name="bold.nii")


def test_volumes_are_found_by_name_in_any_case_and_by_content_without_one(tmp_path):
    volume = nifti_bytes(marked_head())
    for name, content in [("a.nii", volume), ("b.NII.GZ", gzip.compress(volume)), ("c", volume),
                          ("d", gzip.compress(volume)), ("e.gz", gzip.compress(b"a log file" * 50)),
                          ("f.txt", b"not an image")]:
        (tmp_path / name).write_bytes(content)
    assert [path.name for path in find_candidates(tmp_path)] == ["a.nii", "b.NII.GZ", "c", "d"]
