"""Write synthetic captchas in the seed post's style, named LABEL_index.png.

    python -m jobs.generate --output data/train --count 8000 --seed 1
"""
from __future__ import annotations

import argparse
import os
import time

from core.config import CAPTCHA_STYLES
from core.generator import generate_folder, generate_one, preview_grid
from core.images import write_png
from core.text_style import FACES, find_faces
from core.logs import setup_logging
from jobs.common import add_config_arg, fail, job_config


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", required=True, help="folder to write into (created)")
    parser.add_argument("--count", type=int, required=True, help="number of captchas")
    parser.add_argument("--seed", type=int, default=0,
                        help="the same seed gives the same files (default: 0)")
    parser.add_argument("--workers", type=int, default=None,
                        help="processes, -1: one per core (default: generate.workers)")
    parser.add_argument("--style", choices=CAPTCHA_STYLES, default=None,
                        help="the captchas' look: classic, seed2016 (the seed's real "
                             "captchas as they look) or fonts (printed text of every kind, for pretraining); default: generate.style")
    parser.add_argument("--fonts", default=None, metavar="FOLDER",
                        help="style fonts: also draw in the usable faces of this folder "
                             "(default: generate.fonts)")
    add_config_arg(parser)
    parser.add_argument("--preview", default=None, metavar="PNG",
                        help="also write a grid of the first 24 captchas to this PNG")
    args = parser.parse_args(argv)
    setup_logging()
    if args.count < 1:
        fail(f"--count must be at least 1, got {args.count}")
    cfg = job_config(args, {"generate.workers": args.workers, "generate.style": args.style,
                           "generate.fonts": args.fonts})
    start = time.monotonic()
    gen = cfg.generate
    faces = _faces(gen.fonts, gen.alphabet) if gen.fonts else ()
    written = generate_folder(args.output, args.count, args.seed, gen.labels, gen.image,
                              gen.workers, gen.style, faces)
    seconds = time.monotonic() - start
    if args.preview:
        shown = [generate_one(i, args.seed, gen.labels, gen.image, gen.style, faces)
                 for i in range(min(24, args.count))]
        write_png(args.preview, preview_grid([s[1] for s in shown], [s[0] for s in shown]))
    print(f"wrote {written} captchas to {args.output} in {seconds:.1f} s "
          f"({written / seconds:.0f} images/s)")


def _faces(folder: str, alphabet: str) -> tuple[str, ...]:
    """generate.fonts' usable faces, with matplotlib's, and a line on what was skipped."""
    if not os.path.isdir(folder):
        fail(f"generate.fonts: {folder} is not a folder")
    faces, skipped = find_faces(folder, alphabet)
    why = "; ".join(f"{n} {reason}" for reason, n in sorted(skipped.items()))
    print(f"fonts: {len(faces)} faces, {len(faces) - len(FACES)} of them from {folder}"
          + (f" (skipped {sum(skipped.values())} files: {why})" if skipped else ""))
    return faces


if __name__ == "__main__":
    main()
