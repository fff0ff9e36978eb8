"""evaluate on class folders holding volumes: each slice in the head is one labelled image."""

from __future__ import annotations

import numpy as np
from conftest import head_volume, nifti_bytes, write_class_folders

from mriscan.evaluation.evaluate import predict_folders
from mriscan.model.bundle import load_bundle


def test_a_volume_in_a_class_folder_gives_its_head_slices_as_labelled_images(tmp_path, tiny_bundle):
    root = write_class_folders(tmp_path / "data", range(3))
    (root / "no" / "patient.nii.gz").write_bytes(nifti_bytes(head_volume(5), np.diag([0.9, 0.9, 4.0, 1.0]), gz=True))
    predictions = predict_folders(load_bundle(tiny_bundle, keras=False), (root,), workers=1)
    volume = [i for i, path in enumerate(predictions.paths) if path.name == "patient.nii.gz"]
    assert len(volume) == 8  # the two slices of air are left out, as fit leaves them out
    assert set(predictions.labels[volume]) == {0}
    assert len(predictions.paths) == 3 * 2 + 8 and predictions.unreadable == 0
