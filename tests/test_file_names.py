"""Whatever the file names, predictions.csv parses back to exactly the files that were read:
unicode, spaces, commas, quotes, newlines, very long names, and names a spreadsheet would run
as formulas (which are neutralised with a leading quote, OWASP's advice, and read back with
core.files.read_cell)."""
import csv
import dataclasses
import os
import shutil

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.batch import run_batch
from core.checkpoint import load_checkpoint
from core.files import cell, read_cell

FORMULA = ["=", "+", "-", "@", "'", "\t", ""]
name_text = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="/\x00"),
                    min_size=1, max_size=120)
names = st.builds(lambda start, rest, ext: start + rest + ext, st.sampled_from(FORMULA),
                  name_text, st.sampled_from([".png", "", ".PNG", ".jpg"])).filter(
    lambda n: n not in (".", "..") and len(n.encode("utf-8")) <= 255)


@settings(deadline=None)   # no time limit per example: a slow or busy machine is not a failure
@given(st.text(max_size=30))
def test_cell_round_trips_and_never_starts_like_a_formula(text):
    written = cell(text)
    assert read_cell(written) == text
    assert not written or written[0] not in "=+-@\t\r"


@pytest.fixture(scope="module")
def runner(tmp_path_factory, captcha_dir, model, cfg):
    ckpt = load_checkpoint(model)
    image = sorted(captcha_dir.iterdir())[0].read_bytes()
    work = tmp_path_factory.mktemp("names")
    runs = iter(range(10**6))
    no_workers = dataclasses.replace(cfg, runtime=dataclasses.replace(cfg.runtime, workers=0))

    def run(file_names):
        folder = work / f"in{next(runs)}"
        folder.mkdir()
        for k, name in enumerate(file_names):
            (folder / name).write_bytes(image if k % 2 == 0 else b"not an image")
        run_dir = work / f"run-{folder.name}"
        run_batch(folder, run_dir, ckpt, no_workers, torch.device("cpu"))
        shutil.rmtree(folder)
        with open(run_dir / "predictions.csv", newline="", encoding="utf-8",
                  errors="surrogateescape") as f:
            return list(csv.DictReader(f))
    return run


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(names, min_size=1, max_size=6, unique=True))
def test_any_file_names_parse_back_from_predictions(runner, file_names):
    rows = runner(file_names)
    assert [read_cell(r["path"]) for r in rows] == sorted(file_names)
    for row in rows:
        assert not row["path"] or row["path"][0] not in "=+-@\t\r"
        assert row["status"] in ("ok", "error")


def test_a_name_that_is_not_utf8_is_read_and_written_back_as_its_bytes(runner, tmp_path):
    if os.uname().sysname == "Darwin":
        pytest.skip("macOS file systems refuse names that are not UTF-8")
    raw = b"ABCD_\xff\xfe.png"
    name = os.fsdecode(raw)
    rows = runner([name])
    assert os.fsencode(read_cell(rows[0]["path"])) == raw
    assert rows[0]["label"] == "ABCD" and rows[0]["status"] == "ok"
