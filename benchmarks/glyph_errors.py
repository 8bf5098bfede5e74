"""Which glyphs of generated `seed2016` captchas a model misreads: by how they were drawn.

    python -m jobs.generate --style seed2016 --output data/s16t-fresh --count 5000 --seed 150000
    python run_batch.py --input data/s16t-fresh --model MODEL.pt --output runs --run-id fresh
    python benchmarks/glyph_errors.py --run runs/fresh --seed 150000

Each file of the run's predictions.csv named as jobs.generate names them (LABEL_index.png) is
drawn again from its seed and index, noting how each of its glyphs was drawn
(core.seed_style.render's `drawn`: the face, and full size, smaller and lower, lower case or
lower-case italic); a glyph is misread where the prediction has another character at its
position. Prints, as Markdown for docs/style.md, the glyphs and misread share per form and per
face, and the commonest misreadings. Uses the config's generate settings (alphabet, length,
size): give the --config the captchas were drawn with.
"""
from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core import seed_style  # noqa: E402
from core.config import load_config  # noqa: E402
from core.files import read_cell, read_rows  # noqa: E402
from core.generator import label_and_rng  # noqa: E402


def drawn_glyphs(label: str, index: int, seed: int, gen) -> list[tuple[str, str]]:
    """How jobs.generate drew captcha `index` of `seed`: (face, form) per character. Checks that
    the label drawn again is the file's."""
    text, rng = label_and_rng(index, seed, gen.labels)
    if text != label:
        raise ValueError(f"captcha {index} of seed {seed} is {text}, the file says {label}: "
                         f"another seed or config")
    drawn: list[tuple[str, str]] = []
    seed_style.render(text, rng, gen.height, gen.width, drawn)
    return drawn


def tally(rows, seed: int, gen) -> tuple[Counter, Counter, Counter]:
    """(glyphs, misread) counted by form and by face (keys ("form", f) and ("face", f)), and
    the misreadings (character, read as, form)."""
    seen, wrong, pairs = Counter(), Counter(), Counter()
    for row in rows:
        path = read_cell(row["path"])
        label, _, index = Path(path).stem.rpartition(gen.labels.separator)
        if not index.isdigit() or row["status"] != "ok":
            print(f"skipped {path}: not a generated file or not read", file=sys.stderr)
            continue
        read = read_cell(row["prediction"])
        for k, (face, form) in enumerate(drawn_glyphs(label, int(index), seed, gen)):
            keys = (("form", form), ("face", face))
            seen.update(keys)
            got = read[k] if k < len(read) else "-"
            if got != label[k]:
                wrong.update(keys)
                pairs[(label[k], got, form)] += 1
    return seen, wrong, pairs


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", required=True, help="a run_batch.py run folder")
    parser.add_argument("--seed", type=int, required=True, help="jobs.generate's --seed")
    parser.add_argument("--config", default=None, help="the config they were drawn with")
    parser.add_argument("--top", type=int, default=12, help="misreadings listed")
    args = parser.parse_args(argv)
    gen = (load_config(args.config) if args.config else load_config()).generate
    rows = read_rows(Path(args.run) / "predictions.csv")
    if not rows:
        sys.exit(f"{args.run}: no predictions.csv (give a run directory of run_batch.py)")
    seen, wrong, pairs = tally(rows, args.seed, gen)
    print("| drawn | glyphs | misread | share misread |\n|---|---:|---:|---:|")
    for key in sorted(seen):
        print(f"| {key[0]}: {key[1]} | {seen[key]:,} | {wrong[key]:,} | "
              f"{100 * wrong[key] / seen[key]:.2f} % |")
    print("\n| character | read as | drawn | times |\n|---|---|---|---:|")
    for (char, got, form), n in pairs.most_common(args.top):
        print(f"| `{char}` | `{got}` | {form} | {n} |")


if __name__ == "__main__":
    main()
