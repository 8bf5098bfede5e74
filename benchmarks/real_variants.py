"""Real sets in the forms of the sets we do not have: the real suite's command on copies of its
sets re-encoded as JPEG, relabelled in another alphabet, cut to a few hundred training images
or drawn at other sizes.

    python benchmarks/real_variants.py --root ../shared/realsets [--variants a,b]
                                       [--out data/variants] [--train-args "--arch X"]

The training job is judged on real sets of other sites, alphabets, sizes and formats that are
not in shared/. These variants ask of the same command what those would, on captchas whose
plain reading `benchmarks/real_suite.py` measures: each keeps its set's split (a file stays in
the test split of its original name), so a variant's test split holds the same captchas as the
suite's, changed the same way as its training split. Nothing is tuned to them; they are copies
under --out (never committed), made again on every run.
"""
from __future__ import annotations

import argparse
import hashlib
import shlex
import sys
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from core.images import decode_rgb  # noqa: E402
from real_suite import in_test_split, link, split, table, train_and_read  # noqa: E402

# captcha_images_v2's letters (2345678bcdefgmnpwxy) as Cyrillic lower-case letters, no two alike
CYRILLIC = str.maketrans("bcdefgmnpwxy", "бцдефгмнпшжу")

VARIANTS = {
    # name: (set, change, parameter)
    "captcha_images_v2.jpeg": ("captcha_images_v2", "jpeg", 75),
    "captcha_images_v2.cyrillic": ("captcha_images_v2", "relabel", CYRILLIC),
    "captcha_images_v2.300": ("captcha_images_v2", "fewer", 300),
    "captcha_images_v2.sizes": ("captcha_images_v2", "sizes", (0.7, 1.0, 1.4)),
    "really_simple_captcha_4char.x2.5": ("really_simple_captcha_4char", "scale", 2.5),
    "really_simple_captcha_4char.jpeg": ("really_simple_captcha_4char", "jpeg", 60),
    "rfb_receita_br.500": ("rfb_receita_br", "fewer", 500),
    "rfb_receita_br.jpeg": ("rfb_receita_br", "jpeg", 75),
    "inefficacy_upper.jpeg": ("inefficacy_upper", "jpeg", 75),
}


def _rank(name: str) -> int:
    return int(hashlib.sha256(b"variant:" + name.encode()).hexdigest(), 16)


def _write(path: Path, rgb: np.ndarray, jpeg_quality: int = 0) -> None:
    """A grey image (three equal channels) is written grey, as its set's files are."""
    grey = bool((rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 1] == rgb[..., 2]).all())
    pixels = rgb[..., 0] if grey else cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
    params = [cv2.IMWRITE_JPEG_QUALITY, jpeg_quality] if jpeg_quality else []
    if not cv2.imwrite(str(path), pixels, params):
        raise SystemExit(f"could not write {path}")


def build(source: Path, target: Path, change: str, parameter) -> tuple[int, int]:
    """The variant's train and test folders under target; returns their counts."""
    def fewer(names: list[str]) -> list[str]:
        train = sorted((n for n in names if not in_test_split(n)), key=_rank)[:parameter]
        return sorted(set(train) | {n for n in names if in_test_split(n)})

    def put(file: Path, folder: Path) -> None:
        if change == "relabel":
            link(file, folder, file.stem.translate(parameter) + file.suffix)
        elif change == "jpeg":
            _write(folder / (file.stem + ".jpg"), decode_rgb(file.read_bytes()), parameter)
        elif change in ("scale", "sizes"):
            factor = (parameter if change == "scale"
                      else parameter[_rank(file.name) % len(parameter)])
            _write(folder / file.name, cv2.resize(
                decode_rgb(file.read_bytes()), None, fx=factor, fy=factor,
                interpolation=cv2.INTER_AREA if factor < 1 else cv2.INTER_CUBIC))
        else:
            link(file, folder)

    return split(source, target, put, fewer if change == "fewer" else None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", required=True, help="folder of the real sets, one per folder")
    parser.add_argument("--variants", default=None,
                        help=f"comma-separated, of: {', '.join(VARIANTS)} (default: all)")
    parser.add_argument("--out", default=str(ROOT / "data" / "variants"),
                        help="where the variants, models and runs go (default: data/variants)")
    parser.add_argument("--train-args", default="", metavar="FLAGS",
                        help="flags added to every variant's jobs.train command")
    args = parser.parse_args()
    names = args.variants.split(",") if args.variants else list(VARIANTS)
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        raise SystemExit(f"unknown variant {unknown[0]!r}; known: {', '.join(VARIANTS)}")
    rows = []
    for name in names:
        set_name, change, parameter = VARIANTS[name]
        target = Path(args.out) / name
        train, test = build(Path(args.root) / set_name, target, change, parameter)
        row = train_and_read(name, target, train, test, shlex.split(args.train_args))
        rows.append(row)
        print(table([row]).splitlines()[-1], flush=True)
    print("\n" + table(rows))


if __name__ == "__main__":
    main()
