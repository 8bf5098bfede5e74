"""The one image decoder: a file's bytes in, an RGB uint8 array of the model's input size out.

    image, resized = read_image(path, height, width)    # (height, width, 3) uint8, RGB
    image, resized = decode_image(data, height, width)

Whatever OpenCV decodes is accepted: PNG, JPEG, BMP, WebP, TIFF; grayscale, alpha (dropped) and
16-bit (scaled to 8). An image of another size is fitted to the model's (fit_size): scaled to its
height with its aspect ratio kept, then padded on the right with its last column where it is
narrower, squeezed where it is wider; with `crop`, the image is first cut to its text
(content_box: captchas that draw small text in a wide empty frame). Colour order is fixed here,
once: OpenCV is asked for RGB (its default is BGR), so every array and tensor in this package is
RGB. A file that cannot be used raises ImageError with a short reason fit for a report row
("empty file", "truncated PNG", "not an image").
"""
from __future__ import annotations

import os
import struct
import zlib

import cv2
import numpy as np
from isal import isal_zlib

# The most pixels an input image may have (64 Mi, e.g. 8192x8192): set for OpenCV in
# core/__init__.py, before cv2 loads; a header that says more is refused, never allocated.
MAX_PIXELS = int(os.environ.get("OPENCV_IO_MAX_IMAGE_PIXELS", 1 << 26))
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# Magic numbers, to tell "not an image at all" from "an image file that is damaged".
_SIGNATURES = (
    (_PNG_SIGNATURE, "PNG"),
    (b"\xff\xd8\xff", "JPEG"),
    (b"BM", "BMP"),
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
)
_JPEG_END = b"\xff\xd9"
# EXIF orientation is ignored, as IMREAD_UNCHANGED ignores it: pixels are taken as stored.
_RGB8_FLAGS = cv2.IMREAD_COLOR_RGB | cv2.IMREAD_IGNORE_ORIENTATION

# A damaged file is reported once, in its row; OpenCV's own warnings about it would only
# clutter the job's log (cron mails it).
cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)
# OpenCV's own thread pool stays off in every process of ours: a process that has used it (the
# training job cuts images to their text while it looks at a folder) and then forks DataLoader
# workers hands them a pool that deadlocks the first worker that sets its thread count
# (_init_worker does). Our images are small; the parallelism is the workers'.
cv2.setNumThreads(1)


class ImageError(ValueError):
    """An input file that cannot be decoded into an image; the message is the reason."""


def read_image(path: str, height: int, width: int, fast_png: bool = True,
               crop: str = "none") -> tuple[np.ndarray, bool]:
    return decode_image(read_bytes(path), height, width, fast_png, crop)


def read_bytes(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as exc:
        if os.path.islink(path) and not os.path.exists(path):
            raise ImageError("a link to a file that is not there") from None
        raise ImageError(f"unreadable: {exc.strerror or exc}") from None


def decode_image(data: bytes, height: int, width: int, fast_png: bool = True,
                 crop: str = "none") -> tuple[np.ndarray, bool]:
    """(image, resized): the image as (height, width, 3) RGB uint8, and whether it had another
    size (or was cropped) and was resized to fit. fast_png (runtime.fast_png): a PNG's image
    data is inflated by _png_inflated first; False leaves every byte to OpenCV. crop
    (image.crop, resolved): content cuts the image to its content_box first, packed also
    closes the wide gaps in it (crop_to_content)."""
    image = decode_rgb(data, fast_png)
    if crop != "none":
        image = crop_to_content(image, close_gaps=crop == "packed")
    resized = image.shape[:2] != (height, width)
    if resized:
        image = fit_size(image, height, width)
    return image, resized


def decode_rgb(data: bytes, fast_png: bool = True) -> np.ndarray:
    """The image in `data` as it is stored, as (rows, columns, 3) RGB uint8."""
    if not data:
        raise ImageError("empty file")
    kind = sniff_format(data)
    # libjpeg decodes a cut-off JPEG "successfully", filling the missing part with grey.
    if kind == "JPEG" and _JPEG_END not in data[-64:]:
        raise ImageError("truncated JPEG")
    if kind == "PNG" and fast_png:
        data = _png_inflated(data) or data
    buffer = np.frombuffer(data, np.uint8)
    # 8-bit RGB straight from the decoder (grey expanded, alpha dropped, 16-bit shifted to 8, the
    # same values as to_rgb8 gives): saves the separate colour conversion. What it refuses
    # (float TIFF, a damaged file) goes the general way.
    image = _imdecode(buffer, _RGB8_FLAGS, kind)
    if image is None or image.size == 0:
        image = _imdecode(buffer, cv2.IMREAD_UNCHANGED, kind)
        if image is None or image.size == 0:
            raise ImageError(f"truncated or corrupt {kind}" if kind else "not an image")
        image = to_rgb8(image)
    return image


def _imdecode(buffer: np.ndarray, flags: int, kind: str) -> np.ndarray | None:
    """cv2.imdecode, with what it raises (rather than returns None for) made an ImageError: a
    header claiming more than MAX_PIXELS, and whatever else a damaged file makes it assert."""
    try:
        return cv2.imdecode(buffer, flags)
    except cv2.error as exc:
        if "CV_IO_MAX_IMAGE_PIXELS" in str(exc):
            raise ImageError(f"image too large (its header says more than {MAX_PIXELS:,} "
                             "pixels)") from None
        raise ImageError(f"truncated or corrupt {kind}" if kind else "not an image") from None


def fit_size(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """`image` at (height, width): scaled to the height keeping its aspect ratio, then padded on
    the right by repeating its last column if that leaves it narrower, or squeezed to the
    width if it leaves it wider.

    Keeping the aspect keeps each character's shape (an O and a 0 differ by their width); the
    padding continues the background where a reader expects no text, and a squeeze, unlike a
    crop, loses no character of a long label."""
    h, w = image.shape[:2]
    scaled = max(1, min(width, round(w * height / h)))
    shrinking = scaled * height < w * h
    image = cv2.resize(image, (scaled, height),
                       interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)
    if scaled < width:
        image = cv2.copyMakeBorder(image, 0, 0, 0, width - scaled, cv2.BORDER_REPLICATE)
    return image


# content_box's rules, in 8-bit levels and shares of the image (docs/accuracy.md, 2026-12-02,
# fifth session: what the crop gives).
_INK_LEVEL = 24          # a pixel this far from the background colour (in any channel) is ink
_FLAT_BORDER = 0.8       # the background is flat when this share of the border is within it
_SPECK = 0.02            # a piece of thick ink smaller than this share of all of it is left out
_MARGIN = 0.25           # kept around the ink box, as a share of its height, on every side:
                         # thin strokes (a hairline font) can lie outside the thick ink's box
_GAP = 0.35              # image.crop packed: the widest run of empty columns kept between
                         # pieces of text, as a share of the text's height (printed text's
                         # spaces between letters are a tenth to a fifth of it)
_THIN_INK = 0.2          # image.crop packed: a column with this share of the text's height in
                         # ink (thin strokes included) is not empty
_THIN_CHARACTER = (0.4, 1.5)  # a piece of thin ink (the erosion removes it) beside the thick
                         # text is a character of a hairline face when its height is within
                         # these shares of the text's, it is no wider than the larger one, and
_STROKE = 1.5            # it holds at least this many pixels of ink per pixel of its length:
                         # thicker than a 1-pixel line (the fragments of lines drawn across
                         # a captcha hold one)
_FAINT_LEVEL = 12        # a character drawn fainter than _INK_LEVEL (a light colour of several)
                         # is looked for as well in the ink this far from the background, when
_BREADTH = 0.25          # the smallest rotated rectangle around it is at least this share of
                         # the text's height across: at this level a line's fragment can be
                         # thick (JPEG, anti-aliasing), but it stays narrow across its length


def content_box(image: np.ndarray) -> tuple[int, int, int, int] | None:
    """(top, bottom, left, right), bottom and right exclusive: where an RGB uint8 image's text
    is, or None where it cannot tell (then the whole image is the text).

    The background is the median colour of the image's border; it must be flat (most of the
    border within _INK_LEVEL of it), else None: a textured or noisy background fills the frame,
    and so, for this purpose, does the text. Ink is every pixel further from it than that. Thin
    clutter (1-pixel lines drawn across the captcha, often far beyond the text) is removed by an
    erosion with a 2x2 square, which keeps any stroke 2 pixels thick; of what remains, the
    pieces (8-connected) smaller than _SPECK of it are left out too (where two lines cross or
    run side by side, and specks). The box holds the rest, with a margin of _MARGIN of its
    height on every side, within the image."""
    found = _text_pieces(image)
    return None if found is None else _box(found[0], *image.shape[:2])


def _text_pieces(image: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """The connected pieces of thick ink that content_box keeps (rows of OpenCV's component
    statistics: left, top, width, height, area) and the ink (a 0/1 mask), or None."""
    border = np.concatenate((image[0], image[-1], image[:, 0], image[:, -1])).astype(np.int16)
    background = np.round(np.median(border, axis=0))
    if (np.abs(border - background).max(axis=1) <= _INK_LEVEL).mean() < _FLAT_BORDER:
        return None
    # OpenCV's saturating difference from a scalar, then the largest of the three channels by
    # two elementwise maxima: 30 times faster than the same in int16 numpy with max(axis=2)
    channels = cv2.absdiff(image, (*background.tolist(), 0.0))
    distance = np.maximum(np.maximum(channels[..., 0], channels[..., 1]), channels[..., 2])
    ink = (distance > _INK_LEVEL).astype(np.uint8)
    stats, _ = _components(cv2.erode(ink, np.ones((2, 2), np.uint8)))
    pieces = stats[stats[:, cv2.CC_STAT_AREA] >= _SPECK * stats[:, cv2.CC_STAT_AREA].sum()]
    if not len(pieces):
        return None
    faint = (distance > _FAINT_LEVEL).astype(np.uint8)
    return np.concatenate((pieces, _thin_characters(pieces, ink),
                           _thin_characters(pieces, faint, broad=True))), ink


def _components(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """OpenCV's statistics of the 8-connected pieces of a 0/1 mask, less the background's row,
    and the label image (piece i labelled i + 1). 16-bit labels where they cannot overflow, in
    half the time of 32-bit ones: 8-connected pieces never touch, so each 2x2 block of the
    mask holds pixels of one piece at most."""
    h, w = mask.shape
    ltype = cv2.CV_16U if ((h + 1) // 2) * ((w + 1) // 2) < 65535 else cv2.CV_32S
    _, label_image, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8,
                                                                ltype=ltype)
    return stats[1:], label_image


def _thin_characters(pieces: np.ndarray, ink: np.ndarray, broad: bool = False) -> np.ndarray:
    """The pieces of all `ink` (statistics rows as in _text_pieces) that are characters of a
    hairline face beside the thick text `pieces`: within its rows, clear of its columns, of a
    character's size (_THIN_CHARACTER) and thicker than a line (_STROKE); with `broad` (ink
    at _FAINT_LEVEL, for characters fainter than the rest), also broad across (_BREADTH).
    Without them a thin or faint character at either end of the text fell outside the box
    (docs/accuracy.md)."""
    top, bottom = _rows(pieces)
    height = bottom - top
    stats, label_image = _components(ink)
    h, w = stats[:, cv2.CC_STAT_HEIGHT], stats[:, cv2.CC_STAT_WIDTH]
    left, middle = stats[:, cv2.CC_STAT_LEFT], stats[:, cv2.CC_STAT_TOP] + h / 2
    low, high = _THIN_CHARACTER
    sized = ((h >= low * height) & (h <= high * height) & (w <= high * height)
             & (middle >= top) & (middle <= bottom)
             & (stats[:, cv2.CC_STAT_AREA] >= _STROKE * np.maximum(h, w)))
    piece_left = pieces[:, cv2.CC_STAT_LEFT]
    piece_right = piece_left + pieces[:, cv2.CC_STAT_WIDTH]
    overlaps = ((left[:, None] < piece_right[None, :])
                & (left[:, None] + w[:, None] > piece_left[None, :])).any(axis=1)
    found = np.flatnonzero(sized & ~overlaps)
    if broad:
        found = [i for i in found if _breadth(label_image, stats[i], i + 1) >= _BREADTH * height]
    return stats[found]


def _breadth(label_image: np.ndarray, stat: np.ndarray, label: int) -> float:
    """The shorter side of the smallest rotated rectangle around the piece `label`."""
    x, y, w, h = stat[:4]
    ys, xs = np.nonzero(label_image[y:y + h, x:x + w] == label)
    return min(cv2.minAreaRect(np.stack((xs, ys), axis=1).astype(np.float32))[1])


def _rows(pieces: np.ndarray) -> tuple[int, int]:
    """The first row of the text `pieces` and the row past their last."""
    return (pieces[:, cv2.CC_STAT_TOP].min(),
            (pieces[:, cv2.CC_STAT_TOP] + pieces[:, cv2.CC_STAT_HEIGHT]).max())


def _box(pieces: np.ndarray, h: int, w: int) -> tuple[int, int, int, int]:
    (top, bottom), left = _rows(pieces), pieces[:, cv2.CC_STAT_LEFT].min()
    right = (pieces[:, cv2.CC_STAT_LEFT] + pieces[:, cv2.CC_STAT_WIDTH]).max()
    margin = round(_MARGIN * (bottom - top))
    return (max(0, int(top) - margin), min(h, int(bottom) + margin),
            max(0, int(left) - margin), min(w, int(right) + margin))


def crop_to_content(image: np.ndarray, close_gaps: bool = False) -> np.ndarray:
    """The image cut to its content_box (a view), or the image itself where it has none. With
    `close_gaps` (image.crop: packed), every run of empty columns between the first piece of
    text and the last is also narrowed to at most _GAP of the text's height (a copy): text
    spread over a wide frame, its characters far apart, is read packed as printed text is,
    each character the same share of the width however far apart they were drawn. A column is
    empty where no piece of thick ink reaches it and its ink (thin strokes and lines too) in
    the box is under _THIN_INK of the text's height: a hairline character is more than the
    one or two pixels that each line across it leaves in a column."""
    found = _text_pieces(image)
    if found is None:
        return image
    pieces, ink = found
    top, bottom, left, right = _box(pieces, *image.shape[:2])
    cut = image[top:bottom, left:right]
    return _close_gaps(cut, pieces, ink, (top, bottom, left, right)) if close_gaps else cut


def _close_gaps(cut: np.ndarray, pieces: np.ndarray, ink: np.ndarray,
                box: tuple[int, int, int, int]) -> np.ndarray:
    """`cut` (the image's `box`) less the columns of its wide gaps (crop_to_content)."""
    top, bottom, left, right = box
    starts = pieces[:, cv2.CC_STAT_LEFT] - left
    ends = starts + pieces[:, cv2.CC_STAT_WIDTH]
    reached = np.zeros(right - left + 1, np.int32)       # +1 where a piece starts, -1 past it
    np.add.at(reached, starts, 1)
    np.add.at(reached, ends, -1)
    text_top, text_bottom = _rows(pieces)
    height = int(text_bottom - text_top)
    thin = ink[top:bottom, left:right].sum(axis=0, dtype=np.int32) >= _THIN_INK * height
    empty = (np.cumsum(reached[:-1]) == 0) & ~thin
    first, last = int(starts.min()), int(ends.max())
    gap = max(1, round(_GAP * height))
    keep = np.ones(len(empty), bool)
    edges = np.flatnonzero(np.diff(np.concatenate(([0], empty[first:last].astype(np.int8),
                                                   [0]))))
    for start, end in zip(edges[::2] + first, edges[1::2] + first):   # each empty run
        if end - start > gap:
            keep[start + gap // 2:end - (gap - gap // 2)] = False
    return cut if keep.all() else cut[:, keep]


_PNG_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}   # by IHDR colour type
_STORED_BLOCK = 65535                             # the most one uncompressed deflate block holds


def _png_inflated(data: bytes) -> bytes | None:
    """The same PNG with its image data inflated by ISA-L and stored uncompressed, or None
    where the file is anything but a complete, intact, non-interlaced PNG (it then goes to
    OpenCV as it is, which names what is wrong).

    Inflating is most of what decoding a PNG costs, and ISA-L inflates about 2.5 times as fast
    as the zlib inside libpng (docs/performance.md). libpng is still the
    one that reads the file: it gets the same chunks, with the image data in stored deflate
    blocks (a copy for zlib), and does the unfiltering, colour types and bit depths itself, so
    every encoder's files decode to the same pixels as before (tested). The chunks replaced
    are checked here the way libpng would: each IDAT's CRC, the zlib stream's checksum, and
    its inflated size against what IHDR says (no decompression bomb gets past that), and that
    size against MAX_PIXELS."""
    end = len(data)
    if end < 33 or data[12:16] != b"IHDR":
        return None
    width, height, depth, colour, _, _, interlace = struct.unpack_from(">IIBBBBB", data, 16)
    channels = _PNG_CHANNELS.get(colour)
    if interlace or channels is None or not 0 < width * height <= MAX_PIXELS:
        return None
    expected = height * (1 + (width * channels * depth + 7) // 8)
    idat_start = idat_end = 0
    compressed = []
    pos = 8
    while pos < end:
        if pos + 12 > end:
            return None
        length, kind = struct.unpack_from(">I4s", data, pos)
        stop = pos + 12 + length
        if stop > end:
            return None
        if kind == b"IDAT":
            if idat_end and idat_end != pos:  # IDAT chunks must follow one another
                return None
            if not idat_end:
                idat_start = pos
            chunk = data[pos + 4:stop - 4]
            if isal_zlib.crc32(chunk) != struct.unpack_from(">I", data, stop - 4)[0]:
                return None
            compressed.append(chunk[4:])
            idat_end = stop
        pos = stop
        if kind == b"IEND":
            break
    if not compressed:
        return None
    try:
        inflater = isal_zlib.decompressobj()
        raw = inflater.decompress(b"".join(compressed), expected + 1)
    except isal_zlib.error:
        return None
    if len(raw) != expected or not inflater.eof:
        return None
    view = memoryview(raw)
    blocks = [b"\x78\x01"]                            # zlib header: deflate, no dictionary
    for start in range(0, expected, _STORED_BLOCK):
        block = view[start:start + _STORED_BLOCK]
        last = start + _STORED_BLOCK >= expected
        blocks += [struct.pack("<BHH", last, len(block), len(block) ^ 0xFFFF), block]
    blocks.append(struct.pack(">I", zlib.adler32(raw)))
    return b"".join((data[:idat_start], *_png_chunk(b"IDAT", b"".join(blocks)), data[idat_end:]))


def sniff_format(data: bytes) -> str:
    for magic, name in _SIGNATURES:
        if data.startswith(magic):
            return name
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WebP"
    return ""


def to_rgb8(image: np.ndarray) -> np.ndarray:
    """Any OpenCV-decoded array (gray, BGR, BGRA; 8/16-bit or float) as RGB uint8."""
    if image.dtype == np.uint16:
        image = (image >> 8).astype(np.uint8)
    elif image.dtype in (np.float32, np.float64):
        image = (np.clip(image, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    elif image.dtype != np.uint8:
        raise ImageError(f"unsupported pixel type {image.dtype}")
    if image.ndim == 2 or image.shape[2] == 1:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
    if image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2RGB)
    if image.shape[2] == 3:
        return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    raise ImageError(f"unsupported channel count {image.shape[2]}")


def write_png(path: str, rgb: np.ndarray) -> None:
    """Save an RGB array as PNG (the inverse of read_image's colour conversion)."""
    data = encode_png(rgb)
    with open(path, "wb") as f:
        f.write(data)


def encode_png(rgb: np.ndarray) -> bytes:
    """An RGB uint8 array of (height, width, 3) as the bytes of an 8-bit truecolour PNG.

    The mirror of _png_inflated: what costs time in writing a PNG is deflating its image data.
    Here every scanline gets PNG's Sub filter (each byte minus the same channel of the pixel to
    its left: one numpy subtraction) and ISA-L deflates them at its level 1, several times
    faster than libpng's zlib (cv2.imencode) and to files of about the same size
    (docs/performance.md). Any PNG reader decodes them to the same pixels (tested with libpng
    alone)."""
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3 or 0 in rgb.shape:
        raise ValueError(f"encode_png takes a non-empty (height, width, 3) uint8 array, "
                         f"not {rgb.dtype} of shape {rgb.shape}")
    height, width, channels = rgb.shape
    pixels = np.ascontiguousarray(rgb).reshape(height, width * channels)
    scanlines = np.empty((height, 1 + width * channels), np.uint8)
    scanlines[:, 0] = 1                                   # filter type 1: Sub
    scanlines[:, 1:1 + channels] = pixels[:, :channels]
    np.subtract(pixels[:, channels:], pixels[:, :-channels], out=scanlines[:, 1 + channels:])
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)   # 8-bit RGB, no interlace
    return b"".join((_PNG_SIGNATURE, *_png_chunk(b"IHDR", header),
                     *_png_chunk(b"IDAT", isal_zlib.compress(scanlines.tobytes(), 1)),
                     *_png_chunk(b"IEND", b"")))


def _png_chunk(kind: bytes, body: bytes) -> tuple[bytes, ...]:
    """One PNG chunk's parts: length, kind, body, and the CRC of kind and body (joined once, with
    the rest of the file, by the caller: the image data is not copied one more time)."""
    return (struct.pack(">I", len(body)), kind, body,
            struct.pack(">I", isal_zlib.crc32(body, isal_zlib.crc32(kind))))
