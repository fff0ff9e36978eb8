"""Tests of mriscan.io.discover: which files are candidate images."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from mriscan.errors import InputFolderError, MriscanError
from mriscan.io.discover import DICOM_EXTENSIONS, IMAGE_EXTENSIONS, find_candidates, relative_posix

DICOM_HEAD = bytes(128) + b"DICM" + b"rest of a data set"


def _touch(path: Path, content: bytes = b"x") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    return path


def _relative(paths: list[Path], root: Path) -> list[str]:
    return [relative_posix(path, root) for path in paths]


def test_extensions_are_lower_case_and_disjoint() -> None:
    assert all(ext == ext.lower() and ext.startswith(".") for ext in IMAGE_EXTENSIONS | DICOM_EXTENSIONS)
    assert not IMAGE_EXTENSIONS & DICOM_EXTENSIONS


def test_nested_folders_any_case_and_odd_names_sorted(tmp_path: Path) -> None:
    for name in ["b.png", "a/deep/er/c.JPG", "a/Scan 1.Jpeg", "ü/ñame é.tif", "z.TIFF", "x.bmp", "s.DCM"]:
        _touch(tmp_path / name)
    _touch(tmp_path / "notes.txt")
    _touch(tmp_path / "a" / "README")

    found = find_candidates(tmp_path)

    assert _relative(found, tmp_path) == sorted(
        ["a/Scan 1.Jpeg", "a/deep/er/c.JPG", "b.png", "s.DCM", "x.bmp", "z.TIFF", "ü/ñame é.tif"]
    )
    assert all(path.is_absolute() for path in found)


def test_extensionless_dicom_found_by_marker(tmp_path: Path) -> None:
    _touch(tmp_path / "series" / "IM0001", DICOM_HEAD)
    _touch(tmp_path / "series" / "IM0002.bin", DICOM_HEAD)
    _touch(tmp_path / "series" / "DICOMDIR_NOTES", b"xDICM" * 40)  # marker, but not at byte 128
    _touch(tmp_path / "series" / "short", b"tiny")

    assert _relative(find_candidates(tmp_path), tmp_path) == ["series/IM0001", "series/IM0002.bin"]


def test_folder_named_like_an_image_is_walked_not_listed(tmp_path: Path) -> None:
    _touch(tmp_path / "x.png" / "inner.png")

    assert _relative(find_candidates(tmp_path), tmp_path) == ["x.png/inner.png"]


def test_symlink_loop_does_not_walk_forever(tmp_path: Path) -> None:
    _touch(tmp_path / "a" / "one.png")
    os.symlink(tmp_path, tmp_path / "a" / "loop", target_is_directory=True)
    os.symlink(tmp_path / "a", tmp_path / "a" / "self", target_is_directory=True)

    assert _relative(find_candidates(tmp_path), tmp_path) == ["a/one.png"]


def test_dangling_symlink_with_image_name_is_a_candidate(tmp_path: Path) -> None:
    os.symlink(tmp_path / "gone.png", tmp_path / "link.png")
    os.symlink(tmp_path / "gone", tmp_path / "link_without_extension")

    assert _relative(find_candidates(tmp_path), tmp_path) == ["link.png"]


def test_symlinked_file_is_listed(tmp_path: Path) -> None:
    target = _touch(tmp_path / "elsewhere" / "IM1", DICOM_HEAD)
    (tmp_path / "in").mkdir()
    os.symlink(target, tmp_path / "in" / "IMLINK")

    assert _relative(find_candidates(tmp_path / "in"), tmp_path / "in") == ["IMLINK"]


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their permissions")
def test_unreadable_files(tmp_path: Path) -> None:
    locked_image = _touch(tmp_path / "locked.png")
    locked_other = _touch(tmp_path / "locked", DICOM_HEAD)
    locked_image.chmod(0)
    locked_other.chmod(0)
    try:
        assert _relative(find_candidates(tmp_path), tmp_path) == ["locked.png"]
    finally:
        locked_image.chmod(0o600)
        locked_other.chmod(0o600)


def test_unreadable_files_simulated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _touch(tmp_path / "locked.png")
    _touch(tmp_path / "locked", DICOM_HEAD)

    def refuse(*_args: object, **_kwargs: object) -> None:
        raise PermissionError(13, "Permission denied")

    # Root ignores file modes, so the refusal is simulated where discover opens files.
    monkeypatch.setattr("mriscan.io.discover.open", refuse, raising=False)

    assert _relative(find_candidates(tmp_path), tmp_path) == ["locked.png"]


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs named pipes")
def test_named_pipe_without_extension_is_not_read(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "pipe")  # opening it for reading would block forever

    assert find_candidates(tmp_path) == []


def test_missing_root_raises(tmp_path: Path) -> None:
    with pytest.raises(InputFolderError, match="not found") as caught:
        find_candidates(tmp_path / "nowhere")
    assert isinstance(caught.value, MriscanError)
    assert str(tmp_path / "nowhere") in str(caught.value)


def test_file_as_root_raises(tmp_path: Path) -> None:
    with pytest.raises(InputFolderError, match="not a folder"):
        find_candidates(_touch(tmp_path / "a.png"))


def test_relative_root_gives_absolute_paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _touch(tmp_path / "in" / "a.png")
    monkeypatch.chdir(tmp_path)

    assert find_candidates(Path("in")) == [Path(os.getcwd()) / "in" / "a.png"]


def test_relative_posix() -> None:
    assert relative_posix(Path("/data/in/sub/a b.png"), Path("/data/in")) == "sub/a b.png"
    with pytest.raises(ValueError):
        relative_posix(Path("/elsewhere/a.png"), Path("/data/in"))
