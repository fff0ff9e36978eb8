import pytest

from mriscan.data.dataset import NO_TUMOR, TUMOR, find_labelled_files, folder_label
from mriscan.errors import DataLayoutError


def test_folder_names_map_to_labels():
    assert folder_label("YES") == TUMOR and folder_label("meningioma_tumor") == TUMOR
    assert folder_label("normal") == NO_TUMOR and folder_label("no_tumor") == NO_TUMOR
    assert folder_label("scans") is None
    assert folder_label("scans", positive=["Scans"]) == TUMOR


def test_labelled_files_from_several_folders(labelled_folder, tmp_path, write_png):
    from conftest import brain_like

    other = tmp_path / "other"
    write_png(other / "glioma" / "a.png", brain_like(1, lesion=True))
    write_png(other / "masks" / "a.png", brain_like(2))  # synth masks are not a class
    files = find_labelled_files([labelled_folder, other])
    assert len(files) == 61
    assert {f.source for f in files} == {"data", "other"}


def test_unknown_folder_lists_what_was_found(tmp_path, write_png):
    from conftest import brain_like

    write_png(tmp_path / "d" / "yes" / "a.png", brain_like(1))
    write_png(tmp_path / "d" / "maybe" / "b.png", brain_like(2))
    with pytest.raises(DataLayoutError, match="maybe") as info:
        find_labelled_files([tmp_path / "d"])
    assert "--positive" in str(info.value)

