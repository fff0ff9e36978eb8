"""``--scheduler``: scan and dedup on a Dask cluster write what a local run writes (mriscan/execution/cluster.py).

One two-process LocalCluster serves the whole module. Its workers load TensorFlow and the model
once each, so the scan tests share that cost.
"""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner
from conftest import REPO, brain_like, dicom_bytes, save_seed_bundle

from mriscan.cli import EXIT_FATAL, EXIT_OK, EXIT_UNREADABLE, cli

pytestmark = pytest.mark.slow  # a two-process Dask cluster

distributed = pytest.importorskip("distributed")


@pytest.fixture(scope="module")
def scheduler() -> str:
    """The address of a LocalCluster of two single-threaded worker processes."""
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0",
                                  silence_logs=logging.ERROR) as cluster:
        yield cluster.scheduler_address


@pytest.fixture(scope="module")
def mixed_folder(tmp_path_factory) -> Path:
    """PNG and JPEG slices (one a byte copy, one a re-encoded copy), a 2-frame DICOM and a broken file."""
    root = tmp_path_factory.mktemp("mixed") / "in"
    (root / "sub").mkdir(parents=True)
    for i in range(4):
        assert cv2.imwrite(str(root / f"slice{i}.png"), brain_like(i, lesion=i % 2 == 1))
        assert cv2.imwrite(str(root / "sub" / f"slice{i}.jpg"), brain_like(10 + i), [cv2.IMWRITE_JPEG_QUALITY, 90])
    (root / "sub" / "copy.png").write_bytes((root / "slice0.png").read_bytes())
    assert cv2.imwrite(str(root / "reencoded.jpg"), brain_like(1, lesion=True), [cv2.IMWRITE_JPEG_QUALITY, 70])
    frames = np.stack([brain_like(20), brain_like(21, lesion=True)])
    (root / "multi.dcm").write_bytes(dicom_bytes(frames, bits_stored=8, NumberOfFrames=2))
    (root / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    return root


def _invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, [str(a) for a in args])
    return result.exit_code, result.output


def test_scan_on_a_cluster_writes_the_local_csv(scheduler, mixed_folder, tiny_bundle, tmp_path):
    local_code, _ = _invoke("scan", mixed_folder, "--out", tmp_path / "local.csv", "--model", tiny_bundle,
                            "--workers", "1", "--quiet", "--dicom-uids")
    cluster_code, output = _invoke("scan", mixed_folder, "--out", tmp_path / "cluster.csv", "--model", tiny_bundle,
                                   "--scheduler", scheduler, "--quiet", "--dicom-uids")
    assert local_code == cluster_code == EXIT_UNREADABLE, output
    local = (tmp_path / "local.csv").read_text()
    assert (tmp_path / "cluster.csv").read_text() == local
    assert local.count("\n") == 1 + 13 and "broken.png" in local and "multi.dcm" in local


def test_resume_on_a_cluster_rescans_only_changed_files(scheduler, mixed_folder, tiny_bundle, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    for name in ("a.png", "b.png"):
        (folder / name).write_bytes((mixed_folder / "slice1.png").read_bytes())
    out = tmp_path / "r.csv"
    assert _invoke("scan", folder, "--out", out, "--model", tiny_bundle, "--scheduler", scheduler)[0] == EXIT_OK
    assert cv2.imwrite(str(folder / "b.png"), brain_like(30))
    code, output = _invoke("scan", folder, "--out", out, "--model", tiny_bundle, "--scheduler", scheduler, "--resume")
    assert code == EXIT_OK and "skipped (resume) 1 " in output, output
    assert not out.with_name("r.csv.partial").exists() and not out.with_name("r.csv.lock").exists()


def test_the_model_is_shipped_and_loaded_once_per_worker(scheduler, mixed_folder, tmp_path):
    from mriscan.execution.shipping import opens
    from mriscan.model.bundle import load_bundle
    from mriscan.model.portable import PortableModel
    from mriscan.scan.pipeline import ScanOptions, prepare_output, run_scan

    bundle = load_bundle(save_seed_bundle(tmp_path / "fresh", zero_weights=True))  # a model no worker has seen
    for run in range(2):
        options = ScanOptions(input_dir=mixed_folder, out=tmp_path / f"r{run}.csv", chunk_size=1, scheduler=scheduler)
        assert run_scan(options, bundle, prepare_output(options)).scanned == 12
    with distributed.Client(scheduler, set_as_default=False) as client:
        loads = client.run(opens, PortableModel.from_bundle(bundle).key)
    assert sorted(loads.values()) == [1, 1]  # 2 x 12 one-file tasks, two workers, one load each


def test_dedup_on_a_cluster_writes_the_local_reports(scheduler, mixed_folder, tmp_path):
    against = tmp_path / "against"
    against.mkdir()
    (against / "leaked.png").write_bytes((mixed_folder / "slice1.png").read_bytes())
    for name, extra in (("groups", ()), ("cross", ("--against", against))):
        local = _invoke("dedup", mixed_folder, "--out", tmp_path / f"{name}-local.csv", "--workers", "1", *extra)
        on_cluster = _invoke("dedup", mixed_folder, "--out", tmp_path / f"{name}-cluster.csv",
                             "--scheduler", scheduler, *extra)
        assert local[0] == on_cluster[0] == EXIT_OK, on_cluster[1]
        assert local[1].replace("-local", "-cluster") == on_cluster[1]
        assert (tmp_path / f"{name}-cluster.csv").read_text() == (tmp_path / f"{name}-local.csv").read_text()
    groups = (tmp_path / "groups-local.csv").read_text()
    assert "sub/copy.png,3,exact,slice0.png" in groups
    assert "multi.dcm#frame1,1,unique" in groups  # two frames of one file are two images, not copies
    cross = (tmp_path / "cross-local.csv").read_text()
    assert "reencoded.jpg,leaked.png,near" in cross and "slice1.png,leaked.png,exact" in cross


def test_without_dask_the_scheduler_option_says_how_to_install_it(mixed_folder, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "distributed", None)  # makes "import distributed" fail
    monkeypatch.delitem(sys.modules, "mriscan.execution.cluster", raising=False)
    code, output = _invoke("dedup", mixed_folder, "--out", tmp_path / "d.csv", "--scheduler", "tcp://127.0.0.1:1")
    assert code == EXIT_FATAL and "pip install 'mriscan[dask]'" in output
    assert not (tmp_path / "d.csv").exists()


def test_an_unreachable_scheduler_is_a_clear_error(mixed_folder, tmp_path, monkeypatch):
    from mriscan.execution import cluster

    monkeypatch.setattr(cluster, "CONNECT_SECONDS", 1.0)
    code, output = _invoke("dedup", mixed_folder, "--out", tmp_path / "d.csv", "--scheduler", "tcp://127.0.0.1:9")
    assert code == EXIT_FATAL and "could not reach a Dask scheduler at tcp://127.0.0.1:9" in output


def test_local_runs_do_not_import_dask(mixed_folder, tmp_path):
    code = (
        "import sys; from click.testing import CliRunner; from mriscan.cli import cli; import mriscan.scan.pipeline; "
        f"r = CliRunner().invoke(cli, ['dedup', {str(mixed_folder)!r}, '--out', {str(tmp_path / 'd.csv')!r}, "
        "'--workers', '1']); assert r.exit_code == 0, r.output; "
        "assert not {'dask', 'distributed'} & set(sys.modules), 'dask was imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)
