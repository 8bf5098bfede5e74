"""What a careful reader makes of a set's captchas, blind to their labels: how much of the
labels the images themselves show, beside a target for that set and beside the model.

    python benchmarks/blind_reading.py sheets --input DIR --out OUT [--count 96] [--seed 2026]
    # read OUT/sheet-*.png by eye and write what each captcha says, one "NUMBER TEXT" a line,
    # into a file (a number left out, or "?" as its text, counts as not read); only then open
    # OUT/key.csv
    python run_batch.py --input DIR --model M.pt --output RUNS
    python benchmarks/blind_reading.py score --key OUT/key.csv --readings FILE --run RUNS/latest

`sheets` draws a random sample of the folder's images (the same for a seed), enlarges each to
100 pixels high (squeezed to 560 wide where wider) and lays them out 12 to a sheet under a
number, without their names.
`score` sets the reader's text beside each label and the model's reading (both from the run's
predictions.csv, after the run's case rule) and prints how many each read, also with the
look-alike groups of benchmarks/lookalike_errors.py counted as one character.
"""
from __future__ import annotations

import argparse
import random
import sys
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from core.files import cell, read_cell, read_rows, write_csv  # noqa: E402
from core.data import list_files  # noqa: E402
from core.generator import preview_grid  # noqa: E402
from core.images import ImageError, decode_rgb, read_bytes, write_png  # noqa: E402
from lookalike_errors import GROUPS  # noqa: E402

HEIGHT, WIDTH, PER_SHEET, COLUMNS = 100, 560, 12, 2


def sample(folder: Path, count: int, seed: int) -> list[str]:
    """`count` of the folder's files (as the runner lists them: recursive, '/'-separated)."""
    names = list_files(folder)
    return random.Random(seed).sample(names, min(count, len(names)))


def tile(rgb: np.ndarray) -> np.ndarray:
    """The image at HEIGHT pixels high (squeezed to WIDTH where wider, so that no character is
    cut off), on a white HEIGHT x WIDTH tile: every tile of a sheet the same size."""
    h, w = rgb.shape[:2]
    scaled = cv2.resize(rgb, (min(WIDTH, max(1, round(w * HEIGHT / h))), HEIGHT),
                        interpolation=cv2.INTER_CUBIC)
    out = np.full((HEIGHT, WIDTH, 3), 255, np.uint8)
    out[:, :scaled.shape[1]] = scaled
    return out


def make_sheets(folder: Path, out: Path, count: int, seed: int) -> int:
    """Writes out/sheet-K.png (the tiles under their numbers, jobs.generate's preview grid) and
    out/key.csv (number, file); returns the number of sheets."""
    names = sample(folder, count, seed)
    if not names:
        sys.exit(f"{folder}: no files to sample")
    out.mkdir(parents=True, exist_ok=True)
    tiles = []
    for name in names:
        try:
            rgb = decode_rgb(read_bytes(str(folder / name)))
        except ImageError:      # a blank tile: the reader writes "?" for it, as the run errs
            rgb = np.full((HEIGHT, HEIGHT, 3), 255, np.uint8)
        tiles.append(tile(rgb))
    starts = range(0, len(tiles), PER_SHEET)
    for sheet, start in enumerate(starts):
        numbers = range(start, min(start + PER_SHEET, len(tiles)))
        write_png(str(out / f"sheet-{sheet}.png"),
                  preview_grid([tiles[i] for i in numbers], [f"#{i}" for i in numbers], COLUMNS))
    write_csv(out / "key.csv", ["number", "file"], [(i, cell(n)) for i, n in enumerate(names)])
    return len(starts)


def read_readings(path: Path) -> dict[int, str]:
    """'NUMBER TEXT' lines; blank lines and lines starting with # are skipped."""
    readings = {}
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        number, _, text = line.strip().partition(" ")
        if not number.isdigit():
            sys.exit(f"{path}:{n}: expected 'NUMBER TEXT', got {line!r}")
        readings[int(number)] = text.strip()
    return readings


def fold(text: str, groups: list[str]) -> str:
    """Each character of a look-alike group written as the group's first."""
    return text.translate({ord(c): g[0] for g in groups for c in g})


def score(rows: list[tuple[str, str, str]], groups: list[str]) -> dict[str, int]:
    """rows of (label, reader's text, model's reading): how many each read, as they are and
    with look-alikes counted as one."""
    return {"captchas": len(rows),
            "reader": sum(r == t for t, r, _ in rows),
            "model": sum(m == t for t, _, m in rows),
            "reader_folded": sum(fold(r, groups) == fold(t, groups) for t, r, _ in rows),
            "model_folded": sum(fold(m, groups) == fold(t, groups) for t, _, m in rows)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    s = sub.add_parser("sheets", help="numbered sheets of a random sample, without labels")
    s.add_argument("--input", required=True, type=Path)
    s.add_argument("--out", required=True, type=Path)
    s.add_argument("--count", type=int, default=96)
    s.add_argument("--seed", type=int, default=2026)
    c = sub.add_parser("score", help="the reader's texts against the labels and the model")
    c.add_argument("--key", required=True, type=Path)
    c.add_argument("--readings", required=True, type=Path)
    c.add_argument("--run", required=True, type=Path, help="run_batch.py's run on that folder")
    c.add_argument("--groups", default=GROUPS)
    args = parser.parse_args()
    if args.command == "sheets":
        n = make_sheets(args.input, args.out, args.count, args.seed)
        print(f"{n} sheets in {args.out}; write your readings before opening key.csv")
        return
    key = {int(r["number"]): read_cell(r["file"]) for r in read_rows(args.key)}
    run = {read_cell(r["path"]): r for r in read_rows(args.run / "predictions.csv")}
    missing = [f for f in key.values() if f not in run or not run[f]["label"]]
    if missing:
        sys.exit(f"{args.run}: no labelled prediction for {missing[0]} (and {len(missing) - 1} "
                 f"more): give the run of the folder the sheets were drawn from")
    readings = read_readings(args.readings)
    rows = []
    for number, name in sorted(key.items()):
        label, model = read_cell(run[name]["label"]), read_cell(run[name]["prediction"])
        rows.append((label, readings.get(number, "?"), model))
        print(f"{number:4d}  {label:12s} reader {rows[-1][1]:12s} model {model}")
    r = score(rows, args.groups.split(","))
    print(f"of {r['captchas']}: the reader read {r['reader']}, the model {r['model']}; "
          f"look-alikes ({args.groups}) as one: the reader {r['reader_folded']}, "
          f"the model {r['model_folded']}")


if __name__ == "__main__":
    main()
