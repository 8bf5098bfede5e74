"""report.html: one self-contained page a person reads after a run (images and charts
embedded, nothing fetched), built only from what the run directory and ROOT/history.csv hold,
so any past report can be rebuilt:

    write_report(run_dir, history=root / "history.csv")

Headline figures, accuracy per position, accuracy at coverage, calibration, the most frequent
character confusions, a gallery of misread captchas (suspect_labels.csv's order: the file names
most likely wrong first) and captcha accuracy and throughput over the runs in history.csv.
Charts are drawn by matplotlib (Agg backend, no display needed).
"""
from __future__ import annotations

import base64
import html
import io
import math
import re
from pathlib import Path

import cv2
import numpy as np

from .config import load_config
from .files import atomic_write, read_cell, read_number, read_rows
from .images import encode_png

CONFUSIONS_SHOWN = 15


def _pct(text) -> str:
    x = read_number(text)
    return "–" if math.isnan(x) else f"{100 * x:.2f} %"


def _png(figure) -> str:
    buf = io.BytesIO()
    figure.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _figures():
    import matplotlib
    matplotlib.use("Agg")  # no display on a server
    from matplotlib.figure import Figure  # a Figure of its own: no global pyplot state
    return Figure


def trend_chart(history: list[dict]) -> str:
    """Captcha accuracy and images/s over the runs, oldest first, as a data: URI."""
    Figure = _figures()
    fig = Figure(figsize=(9, 4.2))
    top, bottom = fig.subplots(2, 1, sharex=True)
    x = list(range(1, len(history) + 1))
    accuracy = [100 * read_number(r.get("captcha_accuracy")) for r in history]
    speed = [read_number(r.get("images_per_second")) for r in history]
    top.plot(x, accuracy, marker="o", color="#1f6feb")
    top.set_ylabel("captchas read (%)")
    top.grid(alpha=0.3)
    bottom.plot(x, speed, marker="o", color="#d97706")
    bottom.set_ylabel("images / s")
    bottom.grid(alpha=0.3)
    step = max(1, len(history) // 10)
    bottom.set_xticks(x[::step], [r.get("run_id", "")[:15] for r in history][::step],
                      rotation=30, ha="right", fontsize=8)
    bottom.set_xlabel("run")
    top.set_title("Every completed run in history.csv")
    return _png(fig)


def reliability_chart(calibration: list[dict]) -> str:
    """Accuracy against confidence per bin; a calibrated model sits on the diagonal."""
    Figure = _figures()
    fig = Figure(figsize=(4.2, 4.2))
    ax = fig.subplots()
    ax.plot([0, 1], [0, 1], color="#888", linestyle="--", linewidth=1, label="calibrated")
    lows = [read_number(r["low"]) for r in calibration]
    widths = [read_number(r["high"]) - read_number(r["low"]) for r in calibration]
    ax.bar(lows, [read_number(r["accuracy"]) for r in calibration], width=widths, align="edge",
           edgecolor="#1f6feb", color="#1f6feb55", label="accuracy")
    ax.plot([read_number(r["mean_confidence"]) for r in calibration],
            [read_number(r["accuracy"]) for r in calibration], "o", color="#d97706", markersize=3,
            label="mean confidence")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("confidence")
    ax.set_ylabel("share read right")
    ax.legend(loc="upper left", fontsize=8)
    return _png(fig)


def _thumbnail(path: Path) -> str | None:
    """The image as an embedded PNG, or None if it cannot be read now."""
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except OSError:
        return None
    image = cv2.imdecode(data, cv2.IMREAD_COLOR_RGB) if data.size else None
    if image is None:
        return None
    return "data:image/png;base64," + base64.b64encode(encode_png(image)).decode("ascii")


def _marked(prediction: str, label: str) -> str:
    """The prediction with the characters that differ from the label highlighted."""
    return "".join(f"<b class=bad>{html.escape(p)}</b>" if p != e else html.escape(p)
                   for p, e in zip(prediction.ljust(len(label)), label.ljust(len(prediction))))


def _positions(summary: dict[str, str]) -> list[tuple[int, str]]:
    """summary.csv's per-position columns (position1_accuracy, ...) as (position, column), in
    position order (position10 after position9)."""
    return sorted((int(m[1]), k) for k in summary
                  if (m := re.fullmatch(r"position(\d+)_accuracy", k)))


def _table(header: list[str], rows: list[list[str]], cls: str = "") -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>"
                   for row in rows)
    return f"<table class='{cls}'><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


CSS = """
body{font:15px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px auto;
max-width:1100px;padding:0 16px;color:#1b1f24}
h1{font-size:22px;margin-bottom:2px} h2{font-size:17px;margin-top:28px;border-bottom:1px solid #ddd}
.sub{color:#57606a;font-size:13px} .cards{display:flex;flex-wrap:wrap;gap:10px;margin-top:14px}
.card{border:1px solid #d0d7de;border-radius:8px;padding:8px 12px;min-width:120px}
.card .v{font-size:21px;font-weight:600} .card .k{color:#57606a;font-size:12px}
table{border-collapse:collapse;margin:8px 0} td,th{border:1px solid #d0d7de;padding:3px 9px;
text-align:right} th{background:#f6f8fa} td:first-child{text-align:left}
.row{display:flex;flex-wrap:wrap;gap:28px;align-items:flex-start}
.gallery{display:grid;grid-template-columns:repeat(auto-fill,minmax(300px,1fr));gap:10px}
.g{border:1px solid #d0d7de;border-radius:6px;padding:6px;font-size:13px}
.g img{width:284px;max-width:100%;image-rendering:pixelated;display:block}
.g .path{color:#57606a;word-break:break-all} .bad{color:#cf222e} code{font-size:13px}
img.chart{max-width:100%}
"""

# Lets a headless browser (and a person with devtools) check that every embedded image decoded.
SCRIPT = """window.addEventListener('load',function(){var i=document.images,n=0;
for(var k=0;k<i.length;k++){if(i[k].complete&&i[k].naturalWidth>0)n++;}
document.documentElement.setAttribute('data-images-decoded',n+'/'+i.length);});"""


def build_report(run_dir: Path, history: Path) -> str:
    summary = (read_rows(run_dir / "summary.csv") or [{}])[0]
    review = load_config(run_dir / "config.yaml").review  # the settings the run used
    input_dir = Path(read_cell(summary.get("input", "")))
    position = _positions(summary)
    cards = [("images", summary.get("images")), ("captchas read", _pct(summary.get("captcha_accuracy"))),
             ("characters read", _pct(summary.get("char_accuracy"))),
             ("unreadable files", summary.get("errors")), ("labelled", summary.get("labelled")),
             ("to review", summary.get("review")), ("suspect labels", summary.get("suspects")),
             ("mean confidence", f"{read_number(summary.get('mean_confidence')):.3f}"),
             ("calibration error", _pct(summary.get("ece"))),
             ("images / s", summary.get("images_per_second"))]
    parts = [
        "<!doctype html><html lang=en><head><meta charset=utf-8>",
        f"<title>Captcha run {html.escape(summary.get('run_id', ''))}</title>",
        f"<style>{CSS}</style><script>{SCRIPT}</script></head><body>",
        f"<h1>Captcha run {html.escape(summary.get('run_id', ''))}</h1>",
        f"<div class=sub>{html.escape(str(input_dir))} · {html.escape(summary.get('started_at', ''))}"
        f" → {html.escape(summary.get('finished_at', ''))} · model "
        f"<code>{html.escape(read_cell(summary.get('model', '')))}</code> ({html.escape(summary.get('arch', ''))},"
        f" sha256 {html.escape(summary.get('model_sha256', '')[:12])}) · {html.escape(summary.get('device', ''))}"
        f" · {html.escape(summary.get('wall_seconds', ''))} s</div>",
        "<div class=cards>" + "".join(
            f"<div class=card><div class=v>{html.escape(str(v))}</div><div class=k>{k}</div></div>"
            for k, v in cards) + "</div>",
    ]
    coverage = read_rows(run_dir / "coverage.csv")
    parts.append("<h2>Accuracy</h2><div class=row><div>")
    parts.append(_table(["position", "characters read"],
                        [[str(n), _pct(summary[k])] for n, k in position]))
    parts.append(_table(["confidence at least", "share of labelled", "captchas read"],
                        [[r["threshold"], _pct(r["coverage"]), _pct(r["accuracy"])]
                         for r in coverage]))
    parts.append(f"<p class=sub>{html.escape(str(summary.get('review', '')))} predictions with a "
                 f"confidence below {review.threshold:g} are in <a href=review.csv>review.csv</a>"
                 " for a person to check.</p></div>")
    calibration = read_rows(run_dir / "calibration.csv")
    if calibration:
        parts.append(f"<div><img class=chart alt='reliability diagram' src='{reliability_chart(calibration)}'>"
                     f"<div class=sub>Expected calibration error {_pct(summary.get('ece'))}, "
                     f"temperature {html.escape(summary.get('temperature', ''))}</div></div>")
    parts.append("</div>")
    confusions = read_rows(run_dir / "confusion.csv", CONFUSIONS_SHOWN)
    parts.append("<h2>Most frequent confusions</h2>")
    parts.append(_table(["expected", "read as", "count"],
                        [[read_cell(r["expected"]), read_cell(r["predicted"]), r["count"]]
                         for r in confusions]) if confusions else "<p>None.</p>")
    suspects = read_rows(run_dir / "suspect_labels.csv", review.gallery)
    parts.append(f"<h2>Misread captchas ({html.escape(str(summary.get('suspects', 0)))} in all; "
                 "the file names most likely wrong first — "
                 "<a href=suspect_labels.csv>suspect_labels.csv</a>)</h2><div class=gallery>")
    for r in suspects:
        label, prediction = read_cell(r["label"]), read_cell(r["prediction"])
        src = _thumbnail(input_dir / read_cell(r["path"]))
        image = (f"<img alt='{html.escape(label)}' src='{src}'>" if src
                 else "<div class=bad>(image no longer readable)</div>")
        parts.append(f"<div class=g>{image}<div>label <b>{html.escape(label)}</b> · read "
                     f"<b>{_marked(prediction, label)}</b> · confidence "
                     f"{read_number(r['confidence']):.3f}</div>"
                     f"<div class=path>{html.escape(read_cell(r['path']))}</div></div>")
    parts.append("</div>" if suspects else "<p>None.</p></div>")
    runs = read_rows(history)
    if runs:
        parts.append(f"<h2>Over time ({len(runs)} runs)</h2>"
                     f"<img class=chart alt='accuracy and throughput over the runs' src='{trend_chart(runs)}'>")
    parts.append("<p class=sub>Files: <a href=predictions.csv>predictions.csv</a> · "
                 "<a href=summary.csv>summary.csv</a> · <a href=confusion.csv>confusion.csv</a> · "
                 "<a href=coverage.csv>coverage.csv</a> · <a href=calibration.csv>calibration.csv</a>"
                 " · <a href=run.log>run.log</a></p></body></html>")
    return "\n".join(parts)


def write_report(run_dir: Path, history: Path) -> Path:
    path = run_dir / "report.html"
    with atomic_write(path, "w") as f:
        f.write(build_report(run_dir, history))
    return path
