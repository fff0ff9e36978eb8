"""Tests of mriscan.data.loader: one record per file or frame, errors as records, fingerprints of the bytes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from conftest import brain_like

from mriscan.data import loader
from mriscan.data.loader import VOLUME_IMAGES, chunk_files, iter_loaded_chunks, load_chunk, load_file
from mriscan.data.preprocess import PreprocessConfig, preprocess
from mriscan.execution.local import LOOK_AHEAD_PER_WORKER
from mriscan.io.hashing import file_sha256

CONFIG = PreprocessConfig(image_size=64)


def test_record_holds_the_model_input_and_the_files_sha256(tmp_path: Path, write_png) -> None:
    path = write_png(tmp_path / "slice.png", brain_like(4))

    [record] = load_file(path, CONFIG)

    assert record.ok and record.error == ""
    assert record.sha256 == file_sha256(path)
    np.testing.assert_array_equal(record.model_input, preprocess(brain_like(4), CONFIG))
    assert record.statistics["aspect_ratio"] > 1 and not record.had_colour


def test_version_3_decodes_a_large_jpeg_reduced_and_version_2_at_full_size(tmp_path: Path) -> None:
    import cv2

    from mriscan.io.reader import decode_bytes

    path = tmp_path / "large.jpg"
    cv2.imwrite(str(path), cv2.resize(brain_like(4), (520, 400)).astype(np.uint8))
    data = path.read_bytes()

    for version, least_side in ((3, 150), (2, None)):
        config = PreprocessConfig(version=version)
        [record] = load_file(path, config)
        expected = preprocess(decode_bytes(data, least_side=least_side)[0].pixels, config)
        np.testing.assert_array_equal(record.model_input, expected)
    assert decode_bytes(data, least_side=150)[0].pixels.shape == (200, 260)


def test_unreadable_files_become_records(tmp_path: Path) -> None:
    damaged = tmp_path / "damaged.png"
    damaged.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)

    [record] = load_file(damaged, CONFIG)
    [missing] = load_file(tmp_path / "missing.png", CONFIG)

    assert not record.ok and "damaged.png" in record.error and record.sha256 == file_sha256(damaged)
    assert not missing.ok and missing.sha256 == ""


def test_a_file_too_large_for_the_limit_is_refused_but_fingerprinted(tmp_path: Path) -> None:
    big = tmp_path / "big.png"
    with open(big, "wb") as handle:  # sparse: larger than the 64 MiB any image may take beyond its pixels
        handle.truncate(65 * 2**20)

    [record] = load_file(big, CONFIG, max_pixels=1)

    assert not record.ok and "--max-pixels" in record.error and record.sha256 == file_sha256(big)


def test_a_chunk_is_decoded_in_bounded_runs_into_the_records_of_its_files(tmp_path: Path, write_png,
                                                                          monkeypatch) -> None:
    paths = [write_png(tmp_path / f"{index}.png", brain_like(index)) for index in range(5)]
    paths.insert(2, tmp_path / "missing.png")
    events: list[str] = []
    decode_file, preprocess_image = loader.decode_file, loader.preprocess
    monkeypatch.setattr(loader, "decode_file", lambda *args: events.append("decode") or decode_file(*args))
    monkeypatch.setattr(loader, "preprocess", lambda *args: events.append("preprocess") or preprocess_image(*args))
    monkeypatch.setattr(loader, "STAGED_PIXELS", 2 * brain_like(0).size)  # a run ends after two images

    records = load_chunk(paths, CONFIG, max_pixels=10**8)
    runs = "".join("d" if event == "decode" else "p" for event in events)

    expected = [record for path in paths for record in load_file(path, CONFIG)]
    assert [(r.path, r.sha256, r.error, r.statistics) for r in records] == [
        (r.path, r.sha256, r.error, r.statistics) for r in expected]
    for record, single in zip(records, expected, strict=True):
        assert record.ok == single.ok
        if record.ok:
            np.testing.assert_array_equal(record.model_input, single.model_input)
    assert runs == "ddppdddppdp"  # two images; the missing file (no pixels) and two more; the last one


def test_chunks_keep_the_input_order_in_and_out_of_process(tmp_path: Path, write_png) -> None:
    paths = [write_png(tmp_path / f"{index:02d}.png", brain_like(index)) for index in range(7)]

    for workers in (1, 2):
        chunks = list(iter_loaded_chunks(paths, CONFIG, workers=workers, chunk_size=3))
        assert [len(chunk) for chunk in chunks] == [3, 3, 1]
        assert [record.path for chunk in chunks for record in chunk] == paths


def test_workers_load_only_a_few_chunks_ahead_of_the_consumer(tmp_path: Path, write_png) -> None:
    """Memory stays bounded when prediction is slower than loading: later chunks wait for the consumer."""
    ahead = 2 * LOOK_AHEAD_PER_WORKER
    paths = [tmp_path / f"{index:02d}.png" for index in range(ahead + 3)]
    for path in paths[:ahead]:
        write_png(path, brain_like(0))
    chunks = iter_loaded_chunks(paths, CONFIG, workers=2, chunk_size=1)

    first = next(chunks)
    for path in paths[ahead:]:  # only now do these exist: a worker that ran ahead would miss them
        write_png(path, brain_like(1))

    records = first + [record for chunk in chunks for record in chunk]
    assert [record.path for record in records] == paths
    assert all(record.ok for record in records), [record.error for record in records if not record.ok]


def test_a_volume_counts_as_many_images_when_files_are_cut_into_chunks():
    volumes = [Path(f"p{i}/t1.nii.gz") for i in range(6)] + [Path("x.NII")]
    assert [len(chunk) for chunk in chunk_files(volumes, 2 * VOLUME_IMAGES)] == [2, 2, 2, 1]
    mixed = [Path("a.png"), Path("v.nii"), Path("b.png"), Path("c.png")]
    assert chunk_files(mixed, VOLUME_IMAGES + 1) == [[Path("a.png"), Path("v.nii")], [Path("b.png"), Path("c.png")]]
    assert chunk_files([], 64) == []
