import pytest

from mriscan.errors import OutputError
from mriscan.scan.results import COLUMNS, ResultsWriter, ScanResult, read_rows


def _row(path, p=0.5, frame=None):
    return ScanResult(path=path, frame=frame, sha256="s" + path, threshold=0.5, review_threshold=0.3, model_id="m",
                      probability=p, prediction="tumor")


def test_rows_are_written_sorted_and_atomically(tmp_path):
    out = tmp_path / "r.csv"
    writer = ResultsWriter(out, COLUMNS, resume=False, overwrite=False)
    writer.start()
    writer.append([_row("b.png"), _row("a.png")])
    assert not out.exists() and writer.partial.exists()
    writer.finish()
    assert [r["path"] for r in read_rows(out)] == ["a.png", "b.png"]
    assert not writer.partial.exists() and not (tmp_path / "r.csv.lock").exists()


def test_existing_output_needs_resume_or_overwrite(tmp_path):
    out = tmp_path / "r.csv"
    out.write_text("path,sha256,model_id\n")
    with pytest.raises(OutputError, match="--resume"):
        ResultsWriter(out, COLUMNS, resume=False, overwrite=False)


def test_a_second_writer_is_refused_while_the_first_runs(tmp_path):
    out = tmp_path / "r.csv"
    first = ResultsWriter(out, COLUMNS, resume=False, overwrite=False)
    with pytest.raises(OutputError, match="another mriscan scan"):
        ResultsWriter(out, COLUMNS, resume=False, overwrite=False)
    first.close()


def test_torn_last_line_is_dropped_on_resume(tmp_path):
    out = tmp_path / "r.csv"
    writer = ResultsWriter(out, COLUMNS, resume=False, overwrite=False)
    writer.start()
    writer.append([_row("a.png"), _row("b.png")])
    writer.close()  # as if killed: partial stays
    with open(writer.partial, "a") as handle:
        handle.write("c.png,,sc")  # a half-written row
    resumed = ResultsWriter(out, COLUMNS, resume=True, overwrite=False)
    assert sorted(path for path, _plane, _frame in resumed.previous) == ["a.png", "b.png"]
    resumed.close()


def test_unwritable_or_folder_output_fails_fast(tmp_path):
    with pytest.raises(OutputError, match="is a folder"):
        ResultsWriter(tmp_path, COLUMNS, resume=False, overwrite=False)
    with pytest.raises(OutputError, match="does not exist"):
        ResultsWriter(tmp_path / "missing" / "r.csv", COLUMNS, resume=False, overwrite=False)


def test_foreign_csv_is_not_resumed(tmp_path):
    out = tmp_path / "r.csv"
    out.write_text("name,age\nx,1\n")
    with pytest.raises(OutputError, match="not a mriscan results CSV"):
        ResultsWriter(out, COLUMNS, resume=True, overwrite=False)


def test_a_lock_on_an_unlinked_lock_file_is_not_trusted(tmp_path):
    from mriscan.scan.results import same_file

    lock = tmp_path / "r.csv.lock"
    with open(lock, "a+", encoding="utf-8") as handle:
        assert same_file(handle, lock)
        lock.unlink()  # what a finishing run does
        assert not same_file(handle, lock)
        lock.write_text("")  # a newer run's lock file
        assert not same_file(handle, lock)


def test_a_scan_result_becomes_a_csv_row_only_at_the_edge():
    readable = _row("a.png", p=0.1234567, frame=2)
    assert readable.readable and readable.row()["probability"] == "0.123457"
    assert (readable.row()["frame"], readable.row()["flagged"], readable.row()["threshold"]) == ("2", "false", "0.5")
    unreadable = ScanResult(path="b.png", frame=None, sha256="", threshold=0.5, review_threshold=0.3, model_id="m",
                            error="not an image")
    row = unreadable.row()
    assert not unreadable.readable and (row["probability"], row["prediction"], row["error"]) == ("", "", "not an image")
