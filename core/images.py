"""The one image decoder: a file's bytes in, an RGB uint8 array of the model's input size out.

    image, resized = read_image(path, height, width)    # (height, width, 3) uint8, RGB
    image, resized = decode_image(data, height, width)

Whatever OpenCV decodes is accepted: PNG, JPEG, BMP, WebP, TIFF; grayscale, alpha (dropped) and
16-bit (scaled to 8). Colour order is fixed here, once: OpenCV is asked for RGB (its default is
BGR), so every array and tensor in this package is RGB. A file that cannot be used raises ImageError
with a short reason fit for a report row ("empty file", "truncated PNG", "not an image").
"""
from __future__ import annotations

import cv2
import numpy as np

# Magic numbers, to tell "not an image at all" from "an image file that is damaged".
_SIGNATURES = (
    (b"\x89PNG\r\n\x1a\n", "PNG"),
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


class ImageError(ValueError):
    """An input file that cannot be decoded into an image; the message is the reason."""


def read_image(path: str, height: int, width: int) -> tuple[np.ndarray, bool]:
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as exc:
        raise ImageError(f"unreadable: {exc.strerror or exc}") from None
    return decode_image(data, height, width)


def decode_image(data: bytes, height: int, width: int) -> tuple[np.ndarray, bool]:
    """(image, resized): the image as (height, width, 3) RGB uint8, and whether it had another
    size and was resized to fit."""
    if not data:
        raise ImageError("empty file")
    kind = sniff_format(data)
    # libjpeg decodes a cut-off JPEG "successfully", filling the missing part with grey.
    if kind == "JPEG" and _JPEG_END not in data[-64:]:
        raise ImageError("truncated JPEG")
    buffer = np.frombuffer(data, np.uint8)
    # 8-bit RGB straight from the decoder (grey expanded, alpha dropped, 16-bit shifted to 8, the
    # same values as to_rgb8 gives): saves the separate colour conversion, ~8 us of ~340 per
    # captcha. What it refuses (float TIFF, a damaged file) goes the general way.
    image = cv2.imdecode(buffer, _RGB8_FLAGS)
    if image is None or image.size == 0:
        image = cv2.imdecode(buffer, cv2.IMREAD_UNCHANGED)
        if image is None or image.size == 0:
            raise ImageError(f"truncated or corrupt {kind}" if kind else "not an image")
        image = to_rgb8(image)
    resized = image.shape[:2] != (height, width)
    if resized:
        shrinking = image.shape[0] * image.shape[1] > height * width
        image = cv2.resize(image, (width, height),
                           interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)
    return image, resized


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
    ok, buf = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    if not ok:
        raise ImageError(f"could not encode {path} as PNG")
    with open(path, "wb") as f:
        f.write(buf.tobytes())
