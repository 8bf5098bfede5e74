"""How a captcha looks, measured: the character boxes as the seed's 2016 post measured them, and
a few statistics of the background, so that two folders of captchas (real and generated) can be
compared by numbers rather than by eye.

    boxes = character_boxes(image)            # (N, 6): x, y, width, height, area, white pixels
    stats = background_stats(image)           # {"colourfulness": ..., ...}
    summary(values)                           # mean, std. dev., min, quartiles, max
    ks_distance(a, b)                         # two-sample Kolmogorov-Smirnov statistic

The 2016 post ("Quebrando outro captcha com OpenCV e Python") cropped columns 30 to 180 of its
284x46 captchas (all the text lies there), converted them to grey, thresholded with Otsu's
method (the letters are always white), took connected components and dropped outliers; it
reports the boxes' x, y, width, height, area and white pixels over 1,000 captchas. It does not
say how it told an outlier; here a box is kept when its width, height and area lie within the
ranges the post reports for the boxes it kept (POST_BOUNDS): the closest reading of its table.
"""
from __future__ import annotations

import cv2
import numpy as np

POST_CROP = (30, 180)     # the columns the 2016 post measured (it loses no character there)
BOX_MEASURES = ("x", "y", "width", "height", "area", "white")
# The post's table, over 2,692 boxes kept of 3,755 components in 1,000 captchas:
# measure: (mean, std. dev., min, max), pixels of the 150-column crop.
POST_TABLE = {
    "x": (42.2, 31.4, 1, 129),
    "y": (10.1, 4.2, 1, 19),
    "width": (25.7, 5.7, 8, 45),
    "height": (28.2, 4.8, 10, 44),
    "area": (732, 237, 80, 1716),
    "white": (262, 103, 36, 721),
}
POST_BOUNDS = {m: POST_TABLE[m][2:] for m in ("width", "height", "area")}
BACKGROUND_MEASURES = ("colourfulness", "saturation", "brightness", "edges", "hue_spread")


def text_mask(image: np.ndarray, crop: tuple[int, int] = POST_CROP) -> np.ndarray:
    """The white-text mask of the crop's columns of an RGB uint8 image (grey, then Otsu)."""
    grey = cv2.cvtColor(np.ascontiguousarray(image[:, crop[0]:crop[1]]), cv2.COLOR_RGB2GRAY)
    _, mask = cv2.threshold(grey, 0, 255, cv2.THRESH_BINARY | cv2.THRESH_OTSU)
    return mask > 0


def character_boxes(image: np.ndarray, crop: tuple[int, int] = POST_CROP,
                    bounds: dict[str, tuple[float, float]] | None = POST_BOUNDS) -> np.ndarray:
    """The boxes of the connected white components of the crop, one row each, columns
    BOX_MEASURES (x and y of the top-left corner in the crop, width, height, width x height,
    white pixels inside the box), those outside `bounds` dropped (None keeps all)."""
    mask = text_mask(image, crop)
    count, _, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    integral = mask.astype(np.int64).cumsum(0).cumsum(1)
    integral = np.pad(integral, ((1, 0), (1, 0)))
    rows = []
    for x, y, w, h, _ in stats[1:count]:        # component 0 is the background
        white = (integral[y + h, x + w] - integral[y, x + w] - integral[y + h, x]
                 + integral[y, x])
        rows.append((x, y, w, h, w * h, white))
    boxes = np.array(rows, dtype=np.float64).reshape(-1, len(BOX_MEASURES))
    for measure, (low, high) in (bounds or {}).items():
        column = boxes[:, BOX_MEASURES.index(measure)]
        boxes = boxes[(column >= low) & (column <= high)]
    return boxes


def background_stats(image: np.ndarray, crop: tuple[int, int] = POST_CROP) -> dict[str, float]:
    """Colour and texture of the pixels that are not white text (the text mask of the crop,
    grown by a pixel; the whole image outside the crop counts as background):

    - colourfulness: Hasler & Suesstrunk's (2003) measure, sqrt(std(rg)^2 + std(yb)^2) +
      0.3 sqrt(mean(rg)^2 + mean(yb)^2) with rg = R - G, yb = (R + G) / 2 - B: vivid,
      varied colour scores high, grey and pastel low;
    - saturation and brightness: mean HSV S and V, 0-255;
    - edges: mean Sobel gradient magnitude of the grey image, the amount of fine texture and
      thin streaks;
    - hue_spread: 1 - the mean resultant length of the hues of saturated pixels (S > 64), 0
      where one hue dominates, near 1 where all hues occur."""
    mask = np.zeros(image.shape[:2], dtype=np.uint8)
    mask[:, crop[0]:crop[1]] = text_mask(image, crop)
    background = cv2.dilate(mask, np.ones((3, 3), np.uint8)) == 0
    rgb = image.astype(np.float64)[background]
    rg = rgb[:, 0] - rgb[:, 1]
    yb = (rgb[:, 0] + rgb[:, 1]) / 2 - rgb[:, 2]
    colourfulness = (np.hypot(rg.std(), yb.std()) + 0.3 * np.hypot(rg.mean(), yb.mean()))
    hsv = cv2.cvtColor(image, cv2.COLOR_RGB2HSV)[background].astype(np.float64)
    grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).astype(np.float64)
    edges = np.hypot(cv2.Sobel(grey, cv2.CV_64F, 1, 0), cv2.Sobel(grey, cv2.CV_64F, 0, 1))
    saturated = hsv[hsv[:, 1] > 64, 0] * (np.pi / 90)    # OpenCV's hue is 0-179 for 0-358 deg
    spread = (1 - np.hypot(np.cos(saturated).mean(), np.sin(saturated).mean())
              if len(saturated) else 0.0)
    return {"colourfulness": float(colourfulness), "saturation": float(hsv[:, 1].mean()),
            "brightness": float(hsv[:, 2].mean()), "edges": float(edges[background].mean()),
            "hue_spread": float(spread)}


def summary(values) -> dict[str, float]:
    """mean, std (sample), min, q1, median, q3, max of `values` (NaN for each if empty)."""
    v = np.asarray(values, dtype=np.float64)
    if not len(v):
        return dict.fromkeys(("mean", "std", "min", "q1", "median", "q3", "max"), float("nan"))
    q1, median, q3 = np.percentile(v, [25, 50, 75])
    return {"mean": float(v.mean()), "std": float(v.std(ddof=1)) if len(v) > 1 else 0.0,
            "min": float(v.min()), "q1": float(q1), "median": float(median), "q3": float(q3),
            "max": float(v.max())}


def ks_distance(a, b) -> float:
    """The two-sample Kolmogorov-Smirnov statistic: the largest gap between the empirical
    distribution functions of `a` and `b` (0: the same, 1: no overlap); NaN if one is empty."""
    a, b = np.sort(np.asarray(a, np.float64)), np.sort(np.asarray(b, np.float64))
    if not len(a) or not len(b):
        return float("nan")
    points = np.concatenate([a, b])
    cdf_a = np.searchsorted(a, points, side="right") / len(a)
    cdf_b = np.searchsorted(b, points, side="right") / len(b)
    return float(np.abs(cdf_a - cdf_b).max())
