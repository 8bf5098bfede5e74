"""report.html from a real run: self-contained, with its images and charts, and checked in a
real headless browser (Debian's chromium) where one is installed."""
import base64
import re
import shutil
import subprocess

import cv2
import numpy as np
import pytest

from core.images import read_image
from core.report import _thumbnail, write_report
from tests.conftest import read_csv, run_batch

pytestmark = pytest.mark.slow   # jobs run end to end, models trained: pytest -m 'not slow' skips it

BROWSER = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def report(tmp_path_factory, captcha_dir):
    tmp = tmp_path_factory.mktemp("report")
    folder = tmp / "in"
    shutil.copytree(captcha_dir, folder)
    first = sorted(folder.iterdir())[0]
    shutil.copy(first, folder / 'WXYZ_<b>"odd".png')  # labelled WXYZ, shows another: misread
    (folder / "empty.png").write_bytes(b"")
    for run_id in ("n1", "n2"):  # two nights: the trend has two points
        proc = run_batch("--input", folder, "--output", tmp / "runs", "--run-id", run_id,
                         "--quiet")
        assert proc.returncode == 0, proc.stderr
    return tmp / "runs" / "n2"


def test_report_is_self_contained_with_images_and_charts(report):
    page = (report / "report.html").read_text(encoding="utf-8")
    suspects = read_csv(report / "suspect_labels.csv")
    summary = read_csv(report / "summary.csv")[0]
    images = re.findall(r"<img [^>]*src='([^']*)'", page)
    assert all(src.startswith("data:image/png;base64,") for src in images)  # nothing fetched
    assert not re.search(r"(src|href)=['\"]?https?:", page)
    # one thumbnail per misread captcha shown, plus the reliability and trend charts
    assert len(images) == min(len(suspects), 48) + 2
    assert "Over time (2 runs)" in page and "Most frequent confusions" in page
    assert f"{100 * float(summary['captcha_accuracy']):.2f} %" in page
    assert 'WXYZ_<b>"odd"' not in page and "WXYZ_&lt;b&gt;&quot;odd&quot;.png" in page


def test_thumbnails_show_the_captcha_in_its_own_colours(captcha_dir):
    path = sorted(captcha_dir.iterdir())[0]
    png = base64.b64decode(_thumbnail(path).removeprefix("data:image/png;base64,"))
    shown = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR_RGB)
    assert np.array_equal(shown, read_image(str(path), *shown.shape[:2])[0])


def test_report_can_be_rebuilt_from_the_run_directory(report):
    before = (report / "report.html").read_text(encoding="utf-8")
    (report / "report.html").unlink()
    write_report(report, report.parent / "history.csv")
    assert (report / "report.html").read_text(encoding="utf-8") == before


@pytest.mark.skipif(BROWSER is None, reason="no chromium on this machine (.ci/run installs "
                                            "Debian's where it runs as root with apt-get)")
def test_report_renders_in_a_headless_browser(report, tmp_path):
    url = (report / "report.html").as_uri()
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars"]
    dom = subprocess.run([BROWSER, *flags, "--dump-dom", url], capture_output=True, text=True,
                         timeout=120).stdout
    decoded = re.search(r'data-images-decoded="(\d+)/(\d+)"', dom)
    assert decoded, "the page's load handler did not run"
    assert decoded.group(1) == decoded.group(2) and int(decoded.group(2)) >= 2  # all decoded
    shot = tmp_path / "report.png"
    subprocess.run([BROWSER, *flags, "--window-size=1200,2400", f"--screenshot={shot}", url],
                   capture_output=True, timeout=120)
    import cv2
    image = cv2.imread(str(shot))
    assert image is not None and image.shape[:2] == (2400, 1200)
    assert image.std() > 20  # text, thumbnails and charts, not a blank page


def test_a_night_without_labels_is_reported_as_not_scored(tmp_path, captcha_dir, cfg):
    folder = tmp_path / "in"
    folder.mkdir()
    for k, path in enumerate(sorted(captcha_dir.iterdir())[:3]):
        shutil.copy(path, folder / f"capture-{k}.png")  # no label in the name
    proc = run_batch("--input", folder, "--output", tmp_path / "runs", "--quiet")
    assert proc.returncode == 0, proc.stderr
    assert "not scored (no labelled image decoded)" in proc.stdout and "nan" not in proc.stdout
    run = next(p for p in (tmp_path / "runs").iterdir() if p.is_dir())
    assert len(read_csv(run / "review.csv")) == sum(
        float(r["confidence"]) < cfg.review.threshold for r in read_csv(run / "predictions.csv"))
    assert read_csv(run / "suspect_labels.csv") == [] and (run / "report.html").exists()


def test_table_cells_are_escaped_and_positions_sort_by_number():
    from core.report import _positions, _table
    table = _table(["label <x>"], [["<b>A&B</b>", 3]])
    assert "<b>" not in table and "&lt;b&gt;A&amp;B&lt;/b&gt;" in table and "<td>3</td>" in table
    assert "label &lt;x&gt;" in table
    summary = {"position10_accuracy": "1", "position2_accuracy": "1", "position1_accuracy": "1",
               "char_accuracy": "1", "position_x_accuracy": "1"}
    assert _positions(summary) == [(1, "position1_accuracy"), (2, "position2_accuracy"),
                                   (10, "position10_accuracy")]
