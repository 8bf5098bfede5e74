"""image.crop: small text in a wide empty frame is cut to its text before the model reads it."""
import subprocess
import sys

import cv2
import numpy as np
import pytest
import torch

from core.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from core.config import ConfigError, ImageConfig, LabelConfig, load_config
from core.data import CaptchaDataset, Item
from core.discover import discover_image
from core.images import content_box, crop_to_content, decode_image, fit_size, write_png
from core.labels import build_codec
from core.models import ModelSpec, build_model
from tests.conftest import ROOT

TEXT = (30, 56, 100, 240)    # rows 30-55, columns 100-239: where the strokes are drawn


def framed_text(height=80, width=400, background=(255, 255, 255), lines=True):
    """Thick coloured strokes inside TEXT on a flat background, with 1-pixel dark lines drawn
    across the whole image, far beyond the text (as real captchas draw them)."""
    image = np.empty((height, width, 3), np.uint8)
    image[:] = background
    top, bottom, left, right = TEXT
    for k, x in enumerate(range(left, right, 30)):
        colour = [(200, 30, 30), (30, 150, 30), (60, 60, 220)][k % 3]
        cv2.rectangle(image, (x, top), (x + 3, bottom - 1), colour, -1)          # a stem
        cv2.rectangle(image, (x, top), (x + 19, top + 3), colour, -1)            # a bar
    if lines:
        cv2.line(image, (2, 8), (width - 3, height - 10), (20, 20, 20), 1)
        cv2.line(image, (5, height - 4), (width - 8, 12), (60, 60, 60), 1)
        cv2.line(image, (0, 66), (width - 1, 70), (0, 0, 0), 1)
    return image


def test_the_box_holds_the_text_and_a_margin_but_not_the_lines_across_the_image():
    box = content_box(framed_text())
    top, bottom, left, right = TEXT
    margin = round(0.25 * (bottom - top))
    assert box is not None
    assert box[0] <= top and box[1] >= bottom and box[2] <= left and box[3] >= right - 1
    assert box[0] >= top - margin - 2 and box[1] <= bottom + margin + 2
    assert box[2] >= left - margin - 2 and box[3] <= right + margin + 2


@pytest.mark.parametrize("line_end, line_colour, line_width, axes, colour, width, reach", [
    # a hairline face: a 1-pixel line's fragment is not text; an O of 1-pixel strokes (the
    # erosion removes it) is
    (-50, (0, 0, 0), 1, (9, 12), (200, 120, 220), 1, 10),
    # a faint character, 17 and 18 levels from the white background (under the 24 of ink): a
    # line's fragment 3 pixels thick (as JPEG smears a 1-pixel line) passes the stroke rule but
    # is not broad; an O of an ordinary weight in a faint colour is text
    (-48, (237, 237, 237), 3, (8, 9), (238, 238, 238), 3, 11),
], ids=["hairline", "faint"])
def test_a_thin_or_faint_character_beside_the_text_is_in_the_box_a_line_fragment_is_not(
        line_end, line_colour, line_width, axes, colour, width, reach):
    image = framed_text(lines=False)   # (a line across a character makes them one long piece)
    top, bottom, left, right = TEXT
    without = content_box(image)
    # a line's fragment of a character's height, left of the text: not text
    cv2.line(image, (left - 60, top + 2), (left + line_end, bottom - 3), line_colour, line_width)
    assert content_box(image) == without
    # an O right of the text: in the box, reaching `reach` columns right of its centre
    centre = (right + 60, (top + bottom) // 2)
    cv2.ellipse(image, centre, axes, 0, 0, 360, colour, width)
    box = content_box(image)
    assert box[:3] == without[:3]
    assert box[3] == min(image.shape[1], centre[0] + reach + round(0.25 * (bottom - top)))
    packed = crop_to_content(image, close_gaps=True)   # kept, and the gap before it closed
    assert colour_count(packed, colour) == colour_count(image, colour) > 0
    assert packed.shape[1] < box[3] - box[2]


def test_no_box_on_a_noisy_background_or_an_empty_image():
    noisy = np.random.default_rng(0).integers(0, 256, (80, 400, 3), dtype=np.uint8)
    assert content_box(noisy) is None
    assert content_box(np.full((80, 400, 3), 255, np.uint8)) is None
    image = np.full((80, 400, 3), 255, np.uint8)
    assert crop_to_content(image) is image     # nothing to cut to: the image itself


def test_a_dark_background_is_found_from_the_border():
    light_text = 255 - framed_text(lines=False)
    box = content_box(light_text)
    assert box is not None and box[0] <= TEXT[0] and box[1] >= TEXT[1] and box[1] < 70


def test_decoding_with_crop_fits_the_cut_image():
    image = framed_text()
    ok, png = cv2.imencode(".png", image[..., ::-1])
    cut, resized = decode_image(png.tobytes(), 48, 320, crop="content")
    top, bottom, left, right = content_box(image)
    assert resized and np.array_equal(cut, fit_size(image[top:bottom, left:right], 48, 320))
    whole, _ = decode_image(png.tobytes(), 48, 320)
    assert np.array_equal(whole, fit_size(image, 48, 320))


def spread_text(hairline=True, at=(100, 250, 420)):
    """Three thick blocks 26 pixels high far apart (gaps of 130, then 150 columns) on white,
    with 1-pixel lines across the image, and a 1-pixel-wide character (a hairline stem, its
    own colour) in the second gap."""
    image = np.full((80, 600, 3), 255, np.uint8)
    for x, colour in zip(at, ((200, 30, 30), (30, 150, 30), (60, 60, 220))):
        cv2.rectangle(image, (x, 30), (x + 19, 55), colour, -1)
    cv2.line(image, (2, 8), (597, 70), (20, 20, 20), 1)
    cv2.line(image, (0, 40), (599, 44), (0, 0, 0), 1)
    if hairline:
        cv2.line(image, (340, 30), (340, 55), (250, 0, 250), 1)
    return image


def colour_count(image, colour):
    return int(np.all(image == colour, axis=2).sum())


def test_packed_closes_wide_gaps_between_characters_but_keeps_thin_ones():
    image = spread_text()
    content = crop_to_content(image)
    packed = crop_to_content(image, close_gaps=True)
    gap = round(0.35 * 26)                    # of the text's height, at most, between pieces
    removed = (130 - gap) + (340 - 270 - gap) + (420 - 341 - gap)
    assert packed.shape == (content.shape[0], content.shape[1] - removed, 3)
    for colour in ((200, 30, 30), (30, 150, 30), (60, 60, 220), (250, 0, 250)):
        assert colour_count(packed, colour) == colour_count(content, colour) > 0
    # without the hairline, the second gap is one run
    plain = crop_to_content(spread_text(hairline=False), close_gaps=True)
    assert plain.shape[1] == content.shape[1] - (130 - gap) - (150 - gap)
    # text already packed (gaps of 8 columns) is left as it is
    packed = spread_text(hairline=False, at=(100, 128, 156))
    assert np.array_equal(crop_to_content(packed, close_gaps=True), crop_to_content(packed))


def write_folder(folder, images):
    folder.mkdir()
    names = []
    for k, image in enumerate(images):
        names.append(f"ABCD_{k}.png")
        write_png(str(folder / names[-1]), image)
    return names


def test_discovery_crops_a_folder_of_small_text_in_wide_frames(tmp_path):
    # auto: cut, gaps closed, and the size found from the cut images
    names = write_folder(tmp_path / "spread", [spread_text()] * 3)
    image, notes = discover_image(tmp_path / "spread", names, ImageConfig(), sequence=True,
                                  max_length=6)
    packed = crop_to_content(spread_text(), close_gaps=True)
    natural = round(48 * packed.shape[1] / packed.shape[0] / 4) * 4
    assert image == ImageConfig(48, natural, "packed")
    assert "image.crop packed" in notes[0]
    # pinned: kept as it is, and the size found from the images as that crop cuts them
    content, notes = discover_image(tmp_path / "spread", names, ImageConfig(crop="content"),
                                    sequence=True, max_length=6)
    top, bottom, left, right = content_box(spread_text())
    natural = round(48 * (right - left) / (bottom - top) / 4) * 4
    assert content == ImageConfig(48, min(natural, 40 * 6), "content")   # at most 40 a character
    assert content.width > image.width
    names = write_folder(tmp_path / "framed", [framed_text()] * 4)
    pinned, notes = discover_image(tmp_path / "framed", names, ImageConfig(crop="none"),
                                   sequence=True, max_length=6)
    assert pinned == ImageConfig(48, 240, "none") and "crop" not in notes[0]


def test_discovery_leaves_images_whole_when_their_text_fills_them(tmp_path):
    filled = [cv2.resize(framed_text(lines=False)[TEXT[0] - 3:TEXT[1] + 3, TEXT[2] - 3:TEXT[3] + 3],
                         (200, 50))] * 3
    names = write_folder(tmp_path / "filled", filled)
    image, _ = discover_image(tmp_path / "filled", names, ImageConfig(), sequence=True,
                              max_length=6)
    assert image.crop == "none"
    noisy = [np.random.default_rng(k).integers(0, 256, (50, 180, 3), dtype=np.uint8)
             for k in range(3)]
    names = write_folder(tmp_path / "noisy", noisy)
    image, _ = discover_image(tmp_path / "noisy", names, ImageConfig(), sequence=True,
                              max_length=6)
    assert image.crop == "none"


def test_the_dataset_reads_cut_images_when_the_model_does(tmp_path):
    names = write_folder(tmp_path / "f", [spread_text()])
    codec = build_codec(LabelConfig("ABCD", 4, "upper", "_"))
    items = [Item(names[0], "ABCD")]
    read = {crop: CaptchaDataset(tmp_path / "f", items, codec, ImageConfig(48, 320, crop))[0]
            for crop in ("content", "packed", "none")}
    for crop in ("content", "packed"):
        expected = fit_size(crop_to_content(spread_text(), crop == "packed"), 48, 320)
        assert torch.equal(read[crop]["image"], torch.from_numpy(expected).permute(2, 0, 1))
    assert not torch.equal(read["content"]["image"], read["none"]["image"])
    assert not torch.equal(read["content"]["image"], read["packed"]["image"])


def test_the_checkpoint_says_whether_its_model_reads_cut_images(tmp_path):
    labels = LabelConfig("ABCD", 4, "upper", "_")
    image = ImageConfig(48, 160, "content")
    model = build_model("crnn", ModelSpec.from_config(image, build_codec(labels, "ctc")))
    save_checkpoint(tmp_path / "m.pt", model, "crnn", labels, image, {})
    assert load_checkpoint(tmp_path / "m.pt").image == image
    with pytest.raises(CheckpointError, match="image crop content \\(config: none\\)"):
        load_checkpoint(tmp_path / "m.pt", image=ImageConfig(crop="none"))
    # a checkpoint written before image.crop existed reads whole images
    payload = torch.load(tmp_path / "m.pt", weights_only=True)
    del payload["image"]["crop"]
    torch.save(payload, tmp_path / "old.pt")
    assert load_checkpoint(tmp_path / "old.pt").image == ImageConfig(48, 160, "none")
    with pytest.raises(ValueError, match="still auto"):
        save_checkpoint(tmp_path / "x.pt", model, "crnn", labels, ImageConfig(48, 160), {})
    # a model trained packed is written with the version that introduced it, so that a
    # program from before refuses it instead of reading its images whole; others as before
    save_checkpoint(tmp_path / "p.pt", model, "crnn", labels, ImageConfig(48, 160, "packed"), {})
    assert torch.load(tmp_path / "p.pt", weights_only=True)["format_version"] == 4
    assert load_checkpoint(tmp_path / "p.pt").image.crop == "packed"
    assert torch.load(tmp_path / "m.pt", weights_only=True)["format_version"] == 3


def test_a_crop_setting_that_does_not_exist_is_named():
    with pytest.raises(ConfigError, match="image.crop.*must be auto, content, packed or none"):
        load_config(None, {"image.crop": "text"})


def test_workers_forked_after_the_parent_cut_images_do_not_hang():
    # OpenCV's thread pool, once started in a parent, deadlocks a forked child that sets its
    # thread count (as every DataLoader worker does); the training job cuts images in the
    # parent (discovery) and then forks the workers that decode them.
    script = (
        "import multiprocessing as mp, numpy as np\n"
        "from core.images import content_box\n"
        "from core.data import _init_worker\n"
        "from tests.test_crop import framed_text\n"
        "big = np.tile(framed_text(), (8, 8, 1))\n"
        "for _ in range(5): content_box(big)\n"
        "def work(k):\n"
        "    return content_box(big)\n"
        "pool = mp.get_context('fork').Pool(2, initializer=_init_worker, initargs=(0,))\n"
        "print(len(pool.map_async(work, range(8)).get(timeout=60)))\n"
        # closed, not terminated: the workers ignore SIGTERM, as DataLoader workers do
        "pool.close()\n"
        "pool.join()\n")
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "8", done.stderr[-500:]
