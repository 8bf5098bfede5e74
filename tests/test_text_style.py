"""generate.style: fonts, printed text of every kind for pretraining (core.text_style):
deterministic for a seed whatever the workers, labels of a range of lengths and both cases,
every character inside the image and standing out from its background."""
import hashlib
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from core import text_style
from core.config import ConfigError, load_config
from core.data import scan_folder
from core.generator import generate_folder
from tests.conftest import ROOT

MIXED = {"generate.alphabet": "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz",
         "generate.length": "3-8", "generate.height": 48, "generate.width": 200,
         "generate.style": "fonts"}


@pytest.fixture(scope="module")
def gen():
    return load_config(None, MIXED).generate


def test_same_seed_gives_same_bytes_whatever_the_workers(tmp_path, gen):
    def digests(folder):
        return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.iterdir()}
    one, two = tmp_path / "one", tmp_path / "two"
    generate_folder(one, 12, 3, gen.labels, gen.image, workers=1, style=gen.style)
    generate_folder(two, 12, 3, gen.labels, gen.image, workers=2, style=gen.style)
    assert digests(one) == digests(two) and len(digests(one)) == 12
    generate_folder(tmp_path / "other", 12, 4, gen.labels, gen.image, workers=1, style=gen.style)
    assert set(digests(one).values()).isdisjoint(digests(tmp_path / "other").values())


def test_labels_of_a_range_of_lengths_in_both_cases_are_named_and_read_back(tmp_path, gen):
    assert gen.labels.case == "none"     # lower case in the alphabet: the names keep it
    generate_folder(tmp_path, 60, 1, gen.labels, gen.image, workers=1, style=gen.style)
    labels = [i.label for i in scan_folder(tmp_path, gen.labels)]
    assert len(labels) == 60 and {len(t) for t in labels} <= set(range(3, 9))
    assert len({len(t) for t in labels}) >= 4
    text = "".join(labels)
    assert any(c.islower() for c in text) and any(c.isupper() for c in text)
    assert load_config(None).generate.labels.case == "upper"   # the seed's alphabet: upper


def test_generate_length_takes_a_range_but_not_auto():
    assert load_config(None, {"generate.length": "4-8"}).generate.labels.max_length == 8
    with pytest.raises(ConfigError, match="'generate.length' must be a number or a range"):
        load_config(None, {"generate.length": "auto"})


def test_every_character_is_inside_the_image_and_leaves_ink(gen):
    for seed in range(150):
        rng = np.random.default_rng(seed)
        text = "".join(rng.choice(list(gen.alphabet), int(rng.integers(3, 9))))
        mask, boxes = text_style._text_mask(text, rng, gen.height, gen.width)
        assert mask.shape == (gen.height, gen.width) and len(boxes) == len(text)
        for left, right in boxes:
            assert 0 <= left < right <= gen.width, (seed, text)
            assert mask[:, left:right].sum() > 0, (seed, text)


def test_the_text_colour_stands_out_from_the_background():
    rng = np.random.default_rng(0)
    for ground in np.linspace(0, 1, 21):
        colour = text_style._contrasting(rng, float(ground))
        assert abs(float(text_style._luminance(colour)) - ground) >= text_style._MIN_CONTRAST


def _matplotlib_font(name):
    import matplotlib
    return Path(matplotlib.get_data_path()) / "fonts" / "ttf" / name


@pytest.fixture(scope="module")
def font_folder(tmp_path_factory):
    """Faces of every kind find_faces meets in a system's font folder, made from matplotlib's
    files (no test may depend on the fonts a machine has installed)."""
    folder = tmp_path_factory.mktemp("fonts")
    (folder / "sub").mkdir()
    for source, name in [("DejaVuSerif-Bold.ttf", "Roman.ttf"),    # usable
                         ("DejaVuSans.ttf", "sub/Roman.ttf"),      # its name again
                         ("cmtt10.ttf", "sub/Typewriter.TTF"),     # usable, in a subfolder
                         ("cmex10.ttf", "Ornaments.ttf"),          # brackets, not letters
                         ("LastResortHE-Regular.ttf", "Boxes.otf"),  # one box for both cases
                         ("DejaVuSansDisplay.ttf", "Partial.ttf")]:  # no letters at all
        shutil.copy(_matplotlib_font(source), folder / name)
    (folder / "Broken.ttf").write_bytes(b"not a font")
    (folder / "README.txt").write_text("not looked at")
    return folder


def test_find_faces_adds_every_usable_face_and_says_why_it_skips_the_others(font_folder):
    faces, skipped = text_style.find_faces(font_folder, MIXED["generate.alphabet"])
    assert faces == text_style.FACES + (str(font_folder / "Roman.ttf"),
                                        str(font_folder / "sub" / "Typewriter.TTF"))
    assert skipped == {"the same file name again": 1, "draws pictures, not letters": 1,
                       "draws both cases alike": 1, "lacks characters": 1, "unreadable": 1}
    # upper case only: the box face's two cases no longer matter
    assert text_style.face_check(str(font_folder / "Boxes.otf"), "ABC") == ""


def test_generated_text_is_drawn_in_the_added_faces_the_same_whatever_the_workers(
        tmp_path, gen, font_folder):
    faces, _ = text_style.find_faces(font_folder, gen.alphabet)
    one, two = tmp_path / "one", tmp_path / "two"
    generate_folder(one, 24, 3, gen.labels, gen.image, workers=1, style=gen.style, faces=faces)
    generate_folder(two, 24, 3, gen.labels, gen.image, workers=2, style=gen.style, faces=faces)
    digests = [{p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in f.iterdir()}
               for f in (one, two)]
    assert digests[0] == digests[1] and len(digests[0]) == 24

    def drawn(face):
        return text_style.render("Kq7Wx", np.random.default_rng(5), gen.height, gen.width,
                                 (face,))
    copy = str(font_folder / "Roman.ttf")      # DejaVuSerif-Bold under another name
    assert np.array_equal(drawn(copy), drawn("DejaVuSerif-Bold.ttf"))
    assert not np.array_equal(drawn(copy), drawn("cmr10.ttf"))


def test_the_generate_job_says_what_it_found_and_refuses_fonts_elsewhere(tmp_path, font_folder):
    def job(*extra):
        return subprocess.run([sys.executable, "-m", "jobs.generate", "--output",
                               str(tmp_path / "out"), "--count", "3", "--workers", "1", *extra],
                              cwd=ROOT, capture_output=True, text=True, timeout=300)
    config = tmp_path / "fonts.yaml"
    config.write_text(yaml.safe_dump({"generate": {**{k.split(".")[1]: v for k, v in MIXED.items()},
                                                   "fonts": str(font_folder)}}))
    done = job("--config", str(config))
    assert done.returncode == 0, done.stderr
    assert (f"fonts: {len(text_style.FACES) + 2} faces, 2 of them from {font_folder} "
            "(skipped 5 files: 1 draws both cases alike;") in done.stdout
    assert len(list((tmp_path / "out").iterdir())) == 3
    flag = job("--config", str(config), "--fonts", str(tmp_path))   # the flag wins: no faces
    assert flag.returncode == 0 and f"0 of them from {tmp_path}" in flag.stdout
    wrong = job("--config", str(config), "--style", "classic")
    assert wrong.returncode == 2 and "'generate.fonts' is drawn only in style fonts" in wrong.stderr
    config.write_text(config.read_text().replace(str(font_folder), str(tmp_path / "nowhere")))
    missing = job("--config", str(config))
    assert missing.returncode == 2 and f"{tmp_path / 'nowhere'} is not a folder" in missing.stderr
    assert len(missing.stderr.strip().splitlines()) == 1
