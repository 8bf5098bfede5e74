import struct
import subprocess
import sys
import tracemalloc
import zlib

import cv2
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.images import (MAX_PIXELS, ImageError, _png_inflated, decode_image, encode_png, read_image,
                         to_rgb8, write_png)
from tests.conftest import ROOT

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


@pytest.mark.parametrize("shape", [(H, W, 3), (1, 1, 3), (7, 13, 3), (300, 5, 3)])
def test_encode_png_gives_the_same_pixels_to_libpng_alone_and_to_decode_image(shape):
    rng = np.random.default_rng(sum(shape))
    noise = rng.integers(0, 256, shape, dtype=np.uint8)
    # and a smooth image, where Sub-filtered bytes are small and a wrong filter would show
    ramp = np.broadcast_to(np.arange(shape[1], dtype=np.uint8)[None, :, None] * 3, shape)
    for rgb in (noise, np.ascontiguousarray(ramp), noise[:, ::-1]):   # also a non-contiguous view
        data = encode_png(rgb)
        assert np.array_equal(opencv_alone(data), rgb)
        assert np.array_equal(decode_image(data, *shape[:2])[0], rgb)


@pytest.mark.parametrize("array", [np.zeros((H, W, 3), np.float32), np.zeros((H, W), np.uint8),
                                   np.zeros((H, W, 4), np.uint8), np.zeros((0, W, 3), np.uint8)])
def test_encode_png_refuses_what_is_not_rgb8(array):
    with pytest.raises(ValueError, match="uint8 array"):
        encode_png(array)


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


# --- PNG image data inflated by ISA-L, unfiltered by libpng: same pixels, same errors -----------

def png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def handmade_png(width, height, colour, depth, scanlines, before=(), after=(), interlace=0):
    """A PNG put together by hand (filter byte included in scanlines): what cv2.imencode
    cannot write, such as palettes, and damage placed exactly."""
    ihdr = struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, interlace)
    return b"".join([b"\x89PNG\r\n\x1a\n", png_chunk(b"IHDR", ihdr), *before,
                     png_chunk(b"IDAT", zlib.compress(scanlines)), *after,
                     png_chunk(b"IEND", b"")])


def chunk_kinds(data: bytes) -> list[bytes]:
    kinds, pos = [], 8
    while pos < len(data):
        length, kind = struct.unpack_from(">I4s", data, pos)
        kinds.append(kind)
        pos += 12 + length
    return kinds


def opencv_alone(data: bytes):
    return cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR_RGB)


def assert_decodes_as_opencv_alone(data: bytes):
    image = opencv_alone(data)
    assert image is not None
    ours, _ = decode_image(data, *image.shape[:2])
    assert np.array_equal(ours, image)


def assert_handled_as_opencv_alone(data: bytes):
    """A file libpng refuses is named as damaged; one it lets through gives the same pixels."""
    if opencv_alone(data) is None:
        with pytest.raises(ImageError, match="truncated or corrupt PNG"):
            decode_image(data, H, W)
    else:
        assert_decodes_as_opencv_alone(data)


_RNG = np.random.default_rng(5)
_SMOOTH = (np.add.outer(np.arange(H), np.arange(W))[..., None] * [1, 2, 3] % 256).astype(np.uint8)
_PALETTE = _RNG.integers(0, 256, (16, 3), dtype=np.uint8)
_INDICES = _RNG.integers(0, 16, (H, W), dtype=np.uint8)


@pytest.mark.parametrize("pixels, params", [
    *[(image, (cv2.IMWRITE_PNG_FILTER, f)) for image in (_NOISE[..., :3], _SMOOTH)
      for f in (cv2.IMWRITE_PNG_FILTER_NONE, cv2.IMWRITE_PNG_FILTER_SUB,
                cv2.IMWRITE_PNG_FILTER_UP, cv2.IMWRITE_PNG_FILTER_AVG,
                cv2.IMWRITE_PNG_FILTER_PAETH, cv2.IMWRITE_PNG_ALL_FILTERS)],
    (_SMOOTH, (cv2.IMWRITE_PNG_COMPRESSION, 9)),
    (_NOISE[..., 0], ()), (_NOISE, ()), (_NOISE[..., 0].astype(np.uint16) * 250, ()),
    (_NOISE[..., :3].astype(np.uint16) * 257 + 3, ()),
    (_NOISE[..., 0], (cv2.IMWRITE_PNG_BILEVEL, 1)),
    (_NOISE[..., :3], (cv2.IMWRITE_PNG_ZLIBBUFFER_SIZE, 1024)),     # many IDAT chunks
    (np.tile(_SMOOTH, (7, 2, 1)), ()),                                # > one stored block
])
def test_png_fast_path_gives_the_pixels_opencv_gives(pixels, params):
    data = encode(pixels, ".png", params)
    assert _png_inflated(data) is not None
    assert_decodes_as_opencv_alone(data)


def test_png_fast_path_keeps_palettes_transparency_and_text_chunks():
    scanlines = b"".join(b"\x00" + row.tobytes() for row in _INDICES)
    data = handmade_png(W, H, 3, 8, scanlines,
                        before=[png_chunk(b"PLTE", _PALETTE.tobytes()),
                                png_chunk(b"tRNS", bytes(range(16)))],
                        after=[png_chunk(b"tEXt", b"Comment\x00made by hand")])
    # libpng is handed the same chunks, in the same order, with the image data replaced
    assert chunk_kinds(_png_inflated(data)) == chunk_kinds(data)
    assert_decodes_as_opencv_alone(data)
    image, _ = decode_image(data, H, W)
    assert np.array_equal(image, _PALETTE[_INDICES])


def _rows(width=W, height=H):
    return b"".join(b"\x00" + bytes(width * 3) for _ in range(height))


def _with_zlib_stream_changed(data: bytes, change) -> bytes:
    """data with its (single) IDAT's zlib stream passed through change, CRC made right again."""
    start = data.index(b"IDAT") - 4
    length = struct.unpack_from(">I", data, start)[0]
    stream = change(data[start + 8:start + 8 + length])
    return data[:start] + png_chunk(b"IDAT", stream) + data[start + 12 + length:]


@pytest.mark.parametrize("damage", [
    lambda d: d[:-13] + bytes([d[-13] ^ 1]) + d[-12:],                    # IDAT CRC wrong
    lambda d: _with_zlib_stream_changed(d, lambda z: z[:-1] + bytes([z[-1] ^ 1])),  # Adler-32
    lambda d: _with_zlib_stream_changed(d, lambda z: z[:len(z) // 2]),    # stream cut short
    lambda d: d[:len(d) // 2],                                            # file cut short
])
def test_damaged_png_is_left_to_opencv_and_named(damage):
    data = damage(encode(_NOISE[..., :3]))
    assert _png_inflated(data) is None
    assert_handled_as_opencv_alone(data)


def test_png_with_more_image_data_than_its_header_says_is_left_to_opencv():
    # IHDR says 46 rows, the data holds 4,600: no inflating past what the header promises.
    data = handmade_png(W, H, 2, 8, _rows(height=H * 100))
    assert _png_inflated(data) is None
    assert_decodes_as_opencv_alone(data)


def test_image_data_split_by_another_chunk_is_left_to_opencv():
    stream = zlib.compress(_rows())
    data = handmade_png(W, H, 2, 8, b"")
    start = data.index(b"IDAT") - 4
    end = start + 12 + struct.unpack_from(">I", data, start)[0]
    data = data[:start] + b"".join([png_chunk(b"IDAT", stream[:100]),
                                    png_chunk(b"tEXt", b"Comment\x00in the way"),
                                    png_chunk(b"IDAT", stream[100:])]) + data[end:]
    assert _png_inflated(data) is None
    assert_handled_as_opencv_alone(data)


def test_inflating_stops_at_the_size_the_header_gives():
    # A 10x10 header over 64 MB of zeros (64 KB compressed): at most the 10 rows are inflated.
    bomb = handmade_png(10, 10, 2, 8, bytes(64 << 20))
    tracemalloc.start()
    try:
        assert _png_inflated(bomb) is None
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 4 << 20


def test_interlaced_and_unknown_colour_types_are_left_to_opencv():
    assert _png_inflated(handmade_png(W, H, 2, 8, _rows(), interlace=1)) is None
    assert _png_inflated(handmade_png(W, H, 5, 8, _rows())) is None


# --- The fast path on untrusted bytes: mutated PNG files -------------------------------------

def _chunk_spans(data: bytes) -> list[tuple[int, int, bytes]]:
    """(start, body length, kind) of each whole chunk, up to the first that is not."""
    spans, pos = [], 8
    while pos + 12 <= len(data):
        length, kind = struct.unpack_from(">I4s", data, pos)
        if pos + 12 + length > len(data):
            break
        spans.append((pos, length, kind))
        pos += 12 + length
    return spans


def _fix_crc(data: bytearray, start: int) -> None:
    length = struct.unpack_from(">I", data, start)[0]
    end = start + 8 + length
    if end + 4 <= len(data):
        data[end:end + 4] = struct.pack(">I", zlib.crc32(bytes(data[start + 4:end])))


_VALID_PNGS = [
    encode(_NOISE[..., :3]),                                           # 8-bit RGB
    encode(_SMOOTH, ".png", (cv2.IMWRITE_PNG_ZLIBBUFFER_SIZE, 1024)),  # many IDAT chunks
    encode(_NOISE[..., 0]),                                            # grey
    encode(_NOISE[..., :3].astype(np.uint16) * 257),                  # 16-bit
    encode(_NOISE),                                                    # RGBA
    encode_png(_NOISE[..., :3]),                                       # our own encoder
    handmade_png(W, H, 3, 8, b"".join(b"\x00" + row.tobytes() for row in _INDICES),
                 before=[png_chunk(b"PLTE", _PALETTE.tobytes())]),    # palette
]
# Sizes a header may claim: around the real ones, and huge (past MAX_PIXELS: refused before
# any allocation). Sizes just under the bound are left to the test of the bound below: OpenCV
# would allocate and fill up to MAX_PIXELS for each, and the examples would take minutes.
_U32 = st.one_of(st.integers(0, 2**32 - 1),
                 st.sampled_from([0, 1, 2, 45, 46, 47, 283, 285, 1000, 2**26 + 1, 2**31 - 1,
                                  2**31, 2**32 - 1]))


@st.composite
def mutated_pngs(draw) -> bytes:
    data = bytearray(draw(st.sampled_from(_VALID_PNGS)))
    for _ in range(draw(st.integers(1, 3))):
        spans = [span for span in _chunk_spans(bytes(data)) if span[1]] or [(8, 0, b"")]
        how = draw(st.sampled_from(["flip", "flip in a chunk, CRC kept right", "truncate",
                                    "chunk length", "IHDR size", "IHDR size, CRC kept right"]))
        if len(data) < 34:
            break
        if how == "flip":
            for _ in range(draw(st.integers(1, 8))):
                data[draw(st.integers(0, len(data) - 1))] ^= 1 << draw(st.integers(0, 7))
        elif how == "flip in a chunk, CRC kept right":
            start, length, _ = draw(st.sampled_from(spans))
            if length:
                data[start + 8 + draw(st.integers(0, length - 1))] ^= 1 << draw(st.integers(0, 7))
                _fix_crc(data, start)
        elif how == "truncate":
            del data[draw(st.integers(1, len(data) - 1)):]
        elif how == "chunk length":
            start = draw(st.sampled_from(spans))[0]
            data[start:start + 4] = struct.pack(">I", draw(_U32))
        else:
            data[16:24] = struct.pack(">II", draw(_U32), draw(_U32))
            if how.endswith("kept right"):
                _fix_crc(data, 8)
    return bytes(data)


def _outcome(data: bytes, fast_png: bool):
    try:
        return decode_image(data, H, W, fast_png=fast_png)
    except ImageError as exc:
        return str(exc)


@pytest.mark.slow   # about half a minute
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_pngs())
def test_mutated_pngs_decode_as_with_opencv_alone_or_fail_cleanly(data):
    # Bit flips, truncation, lying chunk lengths and image sizes (huge ones included): the fast
    # path gives the pixels OpenCV alone gives, or both name the file as unusable; never
    # another image, an exception of another kind, or an allocation the data cannot back.
    fast, alone = _outcome(data, True), _outcome(data, False)
    if isinstance(alone, str):
        assert fast == alone
    else:
        assert not isinstance(fast, str), fast
        assert fast[1] == alone[1] and np.array_equal(fast[0], alone[0])


@settings(max_examples=200, deadline=None)
@given(mutated_pngs())
def test_the_fast_path_inflates_no_more_than_the_header_allows(data):
    tracemalloc.start()
    try:
        result = _png_inflated(data)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    # inflated: exactly the image data of a size that fits the bound, stored (plus headers)
    assert peak < 4 * (1 << 20) + 4 * len(data) + (0 if result is None else 3 * len(result))
    if result is not None:
        width, height = struct.unpack_from(">II", data, 16)
        assert 0 < width * height <= MAX_PIXELS


def test_runtime_fast_png_false_leaves_every_byte_to_opencv(monkeypatch):
    calls = []
    monkeypatch.setattr("core.images._png_inflated", lambda data: calls.append(data))
    data = encode(_NOISE[..., :3])
    decode_image(data, H, W)
    assert calls == [data]
    decode_image(data, H, W, fast_png=False)
    assert len(calls) == 1


def test_a_header_claiming_more_than_max_pixels_is_refused_not_allocated():
    # 9000 x 9000 RGB (243 MB once decoded) from a file of a few hundred bytes; in a fresh
    # process, as a night's run imports the package, so the bound reaches OpenCV.
    data = handmade_png(9000, 9000, 2, 8, b"\x00" * 27001 * 3)
    code = ("import sys; from core.images import decode_image, ImageError\n"
            "try: decode_image(sys.stdin.buffer.read(), 46, 284)\n"
            "except ImageError as e: print(e)")
    out = subprocess.run([sys.executable, "-c", code], input=data, capture_output=True,
                         cwd=ROOT, check=True).stdout.decode()
    assert out.startswith("image too large") and f"{MAX_PIXELS:,}" in out
    assert 9000 * 9000 > MAX_PIXELS
