"""fit from class folders that hold volumes: every slice in the head is an image, one volume is one split."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from conftest import SilentFitProgress, head_volume, nifti_bytes, write_class_folders

from mriscan.data.dataset import find_labelled_files
from mriscan.data.preprocess import PreprocessConfig
from mriscan.data.split import split_by_group
from mriscan.model.fit import FitOptions, load_and_deduplicate


def test_the_slices_of_a_volume_are_images_kept_in_one_group_and_one_split(tmp_path):
    root = write_class_folders(tmp_path / "data", range(12))
    for seed in (1, 2, 3):  # three healthy volumes: 8 head slices between 2 slices of air each
        affine = np.diag([0.9, 0.9, 4.0, 1.0])
        (root / "no" / f"patient{seed}.nii.gz").write_bytes(nifti_bytes(head_volume(seed), affine, gz=True))
    options = FitOptions(data_dirs=(root,), out_dir=Path("unused"), workers=1,
                         preprocessing=PreprocessConfig(image_size=64))
    data = load_and_deduplicate(find_labelled_files((root,)), options, SilentFitProgress())

    slices = [r for r in data.records if r.plane is not None]
    assert len(slices) == 24  # every head slice, none taken for a copy of its neighbours (they share a sha256)
    assert data.counts["slices_outside_the_head"] == 6
    groups_of = {}
    for record, group in zip(data.records, data.group_ids, strict=True):
        groups_of.setdefault(record.path.name, set()).add(int(group))
    volume_groups = [groups_of[f"patient{seed}.nii.gz"] for seed in (1, 2, 3)]
    assert all(len(groups) == 1 for groups in volume_groups)
    assert len(set.union(*volume_groups)) == 3  # three patients, three groups
    split = split_by_group(data.labels, data.group_ids, fractions=(0.6, 0.2, 0.2), seed=1)
    split_of = {int(i): name for name in ("train", "validation", "test") for i in getattr(split, name)}
    for seed in (1, 2, 3):
        members = [i for i, r in enumerate(data.records) if r.path.name == f"patient{seed}.nii.gz"]
        assert len({split_of[i] for i in members}) == 1
