import csv

import pytest

from core.files import append_csv_row, atomic_csv, write_csv


def test_atomic_csv_appears_only_when_complete(tmp_path):
    path = tmp_path / "out.csv"
    with pytest.raises(RuntimeError):
        with atomic_csv(path, ["a", "b"]) as writer:
            writer.writerow([1, 2])
            raise RuntimeError("crash mid-write")
    assert not path.exists() and list(tmp_path.iterdir()) == []
    with atomic_csv(path, ["a", "b"]) as writer:
        writer.writerow([1, 2])
        assert not path.exists()
    assert path.read_bytes() == b"a,b\r\n1,2\r\n"


def test_awkward_cells_round_trip(tmp_path):
    cells = ['a,b', 'say "hi"', "two\nlines", "ünïcødé", "=1+1", ""]
    write_csv(tmp_path / "x.csv", [f"c{i}" for i in range(len(cells))], [cells])
    with open(tmp_path / "x.csv", newline="", encoding="utf-8") as f:
        assert list(csv.reader(f))[1] == cells


def test_append_keeps_old_rows_under_a_newer_header(tmp_path):
    path = tmp_path / "history.csv"
    append_csv_row(path, ["run", "acc"], ["r1", "0.5"])
    append_csv_row(path, ["run", "acc", "speed"], ["r2", "0.6", "100"])
    with open(path, newline="") as f:
        assert list(csv.reader(f)) == [["run", "acc", "speed"], ["r1", "0.5", ""],
                                       ["r2", "0.6", "100"]]


def test_append_keeps_columns_a_newer_header_lacks(tmp_path):
    # e.g. review.coverage changed between two nightly runs: nothing already written is lost
    path = tmp_path / "history.csv"
    append_csv_row(path, ["run", "accuracy_at_0.5", "n"], ["r1", "0.9", 0])
    append_csv_row(path, ["run", "accuracy_at_0.8", "n"], ["r2", "0.95", 7])
    with open(path, newline="") as f:
        assert list(csv.reader(f)) == [["run", "accuracy_at_0.5", "n", "accuracy_at_0.8"],
                                       ["r1", "0.9", "0", ""], ["r2", "", "7", "0.95"]]
