import cv2
import numpy as np
import pytest

from core.images import ImageError, decode_image, read_image, to_rgb8, write_png

H, W = 46, 284


def encode(array, ext=".png", params=()):
    ok, buf = cv2.imencode(ext, array, list(params))
    assert ok
    return buf.tobytes()


def test_colour_order_is_rgb():
    bgr_red = np.zeros((H, W, 3), np.uint8)
    bgr_red[..., 2] = 255                      # red, as OpenCV stores it
    image, resized = decode_image(encode(bgr_red), H, W)
    assert not resized
    assert image.shape == (H, W, 3) and image.dtype == np.uint8
    assert image[0, 0].tolist() == [255, 0, 0]


def test_write_png_and_read_image_round_trip(tmp_path):
    rgb = np.random.default_rng(0).integers(0, 256, (H, W, 3), dtype=np.uint8)
    write_png(str(tmp_path / "x.png"), rgb)
    image, _ = read_image(str(tmp_path / "x.png"), H, W)
    assert np.array_equal(image, rgb)


def test_grayscale_becomes_three_channels():
    image, _ = decode_image(encode(np.full((H, W), 77, np.uint8)), H, W)
    assert image.shape == (H, W, 3) and (image == 77).all()


def test_alpha_is_dropped():
    bgra = np.zeros((H, W, 4), np.uint8)
    bgra[..., 1], bgra[..., 3] = 200, 10
    image, _ = decode_image(encode(bgra), H, W)
    assert image.shape == (H, W, 3) and image[0, 0].tolist() == [0, 200, 0]


def test_sixteen_bit_is_scaled_to_eight():
    image, _ = decode_image(encode(np.full((H, W, 3), 65535, np.uint16)), H, W)
    assert image.dtype == np.uint8 and (image == 255).all()


_NOISE = np.random.default_rng(2).integers(0, 256, (H, W, 4), dtype=np.uint8)


@pytest.mark.parametrize("ext, pixels", [
    (".png", _NOISE[..., :3]), (".png", _NOISE[..., 0]), (".png", _NOISE),
    (".png", _NOISE[..., :3].astype(np.uint16) * 257 + 3), (".png", _NOISE.astype(np.uint16) * 256),
    (".png", _NOISE[..., 0].astype(np.uint16) * 250),
    (".jpg", _NOISE[..., :3]), (".jpg", _NOISE[..., 0]), (".bmp", _NOISE[..., :3]),
    (".webp", _NOISE), (".tiff", _NOISE[..., :3].astype(np.uint16) * 257),
    (".tiff", _NOISE[..., :3].astype(np.float32) / 255),
])
def test_decoding_straight_to_rgb_gives_what_the_general_way_gives(ext, pixels):
    # decode_image asks OpenCV for 8-bit RGB directly; it must agree, value for value, with
    # decoding the file as stored and converting it with to_rgb8 (float TIFF takes that way).
    data = encode(pixels, ext)
    general = to_rgb8(cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED))
    image, _ = decode_image(data, H, W)
    assert image.dtype == np.uint8 and np.array_equal(image, general)


def test_other_sizes_are_resized_and_flagged():
    image, resized = decode_image(encode(np.zeros((92, 568, 3), np.uint8)), H, W)
    assert resized and image.shape == (H, W, 3)
    image, resized = decode_image(encode(np.zeros((20, 100, 3), np.uint8), ".jpg"), H, W)
    assert resized and image.shape == (H, W, 3)


def test_jpeg_and_bmp_decode():
    for ext in (".jpg", ".bmp", ".webp"):
        image, _ = decode_image(encode(np.full((H, W, 3), 128, np.uint8), ext), H, W)
        assert abs(int(image.mean()) - 128) <= 2


@pytest.mark.parametrize("data, reason", [
    (b"", "empty file"),
    (b"this is text, not a picture\n", "not an image"),
])
def test_unusable_bytes_give_a_reason(data, reason):
    with pytest.raises(ImageError, match=reason):
        decode_image(data, H, W)


def test_truncated_png_and_jpeg_are_named():
    noisy = np.random.default_rng(1).integers(0, 256, (H, W, 3), dtype=np.uint8)
    with pytest.raises(ImageError, match="truncated or corrupt PNG"):
        decode_image(encode(noisy)[:500], H, W)
    with pytest.raises(ImageError, match="truncated JPEG"):
        decode_image(encode(noisy, ".jpg")[:500], H, W)


def test_missing_file_is_an_image_error(tmp_path):
    with pytest.raises(ImageError, match="unreadable"):
        read_image(str(tmp_path / "nope.png"), H, W)
