"""benchmarks/blind_reading.py: the sheets hide the labels and show every sampled image whole;
the score counts the reader's and the model's readings against the labels (on drawn images;
tests never read ../shared)."""
import cv2
import numpy as np

from benchmarks import blind_reading as br
from core.data import list_files
from core.files import read_rows, write_csv
from core.generator import preview_grid
from core.images import write_png


def _folder(tmp_path, count=30):
    folder = tmp_path / "set"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(count):
        width = 40 if i % 3 else 400            # every third one wider than a sheet's column
        write_png(str(folder / f"L{i:03d}.png"), rng.integers(0, 256, (20, width, 3), np.uint8))
    return folder


def test_sheets_hold_the_sample_numbered_and_the_key_names_it(tmp_path):
    folder = _folder(tmp_path)
    (folder / "sub").mkdir()                                   # listed as the runner lists
    write_png(str(folder / "sub" / "L999.png"), np.zeros((20, 40, 3), np.uint8))
    (folder / "L998.png").write_bytes(b"not an image")         # a blank tile, not a crash
    assert br.make_sheets(folder, tmp_path / "out", count=25, seed=7) == 3   # 12 + 12 + 1
    key = read_rows(tmp_path / "out" / "key.csv")
    assert [int(r["number"]) for r in key] == list(range(25))
    assert len({r["file"] for r in key}) == 25
    everything = br.sample(folder, 100, 7)                   # more than there are: all 32
    assert sorted(everything) == list_files(folder) and "sub/L999.png" in everything
    assert br.make_sheets(folder, tmp_path / "all", count=100, seed=7) == 3     # 12, 12, 8
    assert [r["file"] for r in key] == br.sample(folder, 25, 7)
    assert br.sample(folder, 25, 7) != br.sample(folder, 25, 8)
    blank = np.full((br.HEIGHT, br.WIDTH, 3), 255, np.uint8)

    def grid_shape(tiles):      # the preview grid's size for that many tiles, two a row
        return preview_grid([blank] * tiles, ["#0"] * tiles, 2).shape
    sheet = cv2.imread(str(tmp_path / "out" / "sheet-0.png"))
    assert sheet.shape == grid_shape(12) and grid_shape(12)[0] > 5 * grid_shape(1)[0]
    last = cv2.imread(str(tmp_path / "out" / "sheet-2.png"))
    assert last.shape == grid_shape(1) == grid_shape(2)              # one tile and a blank


def test_a_wide_image_is_squeezed_whole_into_its_tile():
    wide = np.zeros((20, 400, 3), np.uint8)      # 2,000 pixels wide at the sheet's height
    wide[:, -10:] = 255                          # its last columns white
    out = br.tile(wide)
    assert out.shape == (br.HEIGHT, br.WIDTH, 3)
    assert out[:br.HEIGHT, br.WIDTH - 5:].min() > 200   # the end of the image is in the tile
    assert out[:br.HEIGHT, :br.WIDTH - 40].max() < 60


def test_score_counts_exact_and_look_alike_readings(tmp_path):
    groups = ["O0Q", "1I"]
    rows = [("AB10", "AB10", "AB1O"),    # reader right; model wrong by a look-alike
            ("ZZ9", "ZZ8", "ZZ9"),       # reader wrong (not a look-alike); model right
            ("O1X", "01X", "OIY")]       # reader right as look-alike; model wrong
    assert br.score(rows, groups) == {"captchas": 3, "reader": 1, "model": 1,
                                      "reader_folded": 2, "model_folded": 2}
    readings = tmp_path / "readings.txt"
    readings.write_text("# sheet 0\n0 AB10\n\n2 01X\n", encoding="utf-8")
    assert br.read_readings(readings) == {0: "AB10", 2: "01X"}


def test_score_command_reads_the_run(tmp_path, capsys, monkeypatch):
    write_csv(tmp_path / "key.csv", ["number", "file"], [(0, "AB10.png"), (1, "ZZ9.png")])
    run = tmp_path / "run"
    run.mkdir()
    write_csv(run / "predictions.csv", ["path", "label", "prediction"],
              [("AB10.png", "AB10", "AB1O"), ("ZZ9.png", "ZZ9", "ZZ9"), ("X.png", "X", "X")])
    (tmp_path / "r.txt").write_text("0 AB10\n", encoding="utf-8")     # 1 left unread
    monkeypatch.setattr("sys.argv", ["blind_reading.py", "score", "--key", str(tmp_path / "key.csv"),
                                     "--readings", str(tmp_path / "r.txt"), "--run", str(run),
                                     "--groups", "O0Q,1I"])
    br.main()
    assert capsys.readouterr().out.splitlines()[-1] == (
        "of 2: the reader read 1, the model 1; look-alikes (O0Q,1I) as one: the reader 1, "
        "the model 2")
