"""fit from class folders that hold volumes: every slice in the head is an image, one patient is one split."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from conftest import SilentFitProgress, head_volume, nifti_bytes, write_class_folders

from mriscan.data.dataset import find_labelled_files
from mriscan.data.preprocess import PreprocessConfig
from mriscan.data.split import split_by_group
from mriscan.model.fit import FitOptions, load_and_deduplicate


def test_the_slices_of_a_volume_and_a_patients_volumes_are_kept_in_one_group_and_one_split(tmp_path):
    root = write_class_folders(tmp_path / "data", range(12))
    affine = np.diag([0.9, 0.9, 4.0, 1.0])
    for seed in (1, 2, 3):  # three healthy volumes: 8 head slices between 2 slices of air each
        (root / "no" / f"patient{seed}.nii.gz").write_bytes(nifti_bytes(head_volume(seed), affine, gz=True))
    alike = np.repeat(head_volume(4, slices=1)[:, :, 1:2], 10, axis=2)  # slices that pass for near copies
    alike[:, :, [0, 9]] = 0
    (root / "no" / "patient4.nii.gz").write_bytes(nifti_bytes(alike, affine, gz=True))
    (root / "no" / "patient9").mkdir()  # one patient's two volumes (two contrasts) in one folder
    for seed, contrast in ((7, "t1"), (8, "flair")):
        (root / "no" / "patient9" / f"{contrast}.nii").write_bytes(nifti_bytes(head_volume(seed), affine))
    options = FitOptions(data_dirs=(root,), out_dir=Path("unused"), workers=1,
                         preprocessing=PreprocessConfig(image_size=64))
    data = load_and_deduplicate(find_labelled_files((root,)), options, SilentFitProgress())

    slices = [r for r in data.records if r.plane is not None]
    # Every head slice: none is taken for a copy of its neighbours (they share a sha256, they may look alike).
    assert len(slices) == 48
    assert sum(r.path.name == "patient4.nii.gz" for r in slices) == 8
    assert data.counts["slices_outside_the_head"] == 12
    groups_of = {}
    for record, group in zip(data.records, data.group_ids, strict=True):
        groups_of.setdefault(record.path.name, set()).add(int(group))
    volume_groups = [groups_of[f"patient{seed}.nii.gz"] for seed in (1, 2, 3)]
    assert all(len(groups) == 1 for groups in volume_groups)
    assert len(set.union(*volume_groups)) == 3  # three patients, three groups
    assert groups_of["t1.nii"] == groups_of["flair.nii"] and len(groups_of["t1.nii"]) == 1
    split = split_by_group(data.labels, data.group_ids, fractions=(0.6, 0.2, 0.2), seed=1)
    split_of = {int(i): name for name in ("train", "validation", "test") for i in getattr(split, name)}
    for patient in ("patient1.nii.gz", "patient2.nii.gz", "patient3.nii.gz", "patient9"):
        members = [i for i, r in enumerate(data.records) if patient in (r.path.name, r.path.parent.name)]
        assert len({split_of[i] for i in members}) == 1
