"""How much of a run's error is characters that look alike (O and 0, 1 and I, ...): what a
model could gain at most by telling them apart, and how well it reads the rest.

    python run_batch.py --input data/real/SET/test --model data/real/SET/model.pt --output R
    python benchmarks/lookalike_errors.py --run R/latest

Prints, from the run's predictions.csv (rows that were read and have a label): the captchas
read; those misread only in look-alike characters (same length, every wrong character in one
group with the right one); and the accuracy on captchas whose label has no character of any
group against those that have one. Groups are compared as written (after the run's case rule).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from core.files import read_cell, read_rows  # noqa: E402

GROUPS = "O0QD,1IL,S5,B8,2Z"


def lookalike_report(pairs: list[tuple[str, str]], groups: list[str]) -> dict[str, float]:
    """`pairs` of (label, prediction): the counts and accuracies printed by main."""
    def alike(a: str, b: str) -> bool:
        return any(a in g and b in g for g in groups)
    wrong = [(t, p) for t, p in pairs if t != p]
    only_alike = sum(1 for t, p in wrong
                     if len(t) == len(p) and all(a == b or alike(a, b) for a, b in zip(t, p)))
    seen = set("".join(groups))
    plain = [(t, p) for t, p in pairs if not set(t) & seen]
    other = [(t, p) for t, p in pairs if set(t) & seen]

    def accuracy(rows):
        return sum(t == p for t, p in rows) / len(rows) if rows else float("nan")
    return {"captchas": len(pairs), "wrong": len(wrong), "wrong_only_alike": only_alike,
            "plain": len(plain), "plain_accuracy": accuracy(plain),
            "with_alike": len(other), "with_alike_accuracy": accuracy(other)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", required=True, help="a run directory of run_batch.py")
    parser.add_argument("--groups", default=GROUPS,
                        help=f"comma-separated groups of look-alike characters (default {GROUPS})")
    args = parser.parse_args()
    rows = read_rows(Path(args.run) / "predictions.csv")
    if not rows:
        sys.exit(f"{args.run}: no predictions.csv (give a run directory of run_batch.py)")
    pairs = [(read_cell(r["label"]), read_cell(r["prediction"])) for r in rows
             if r["status"] == "ok" and r["label"]]
    r = lookalike_report(pairs, args.groups.split(","))
    print(f"captchas read: {r['captchas']}, misread: {r['wrong']}, of them only in look-alike "
          f"characters ({args.groups}): {r['wrong_only_alike']}")
    print(f"labels without any of them: {r['plain']}, read {r['plain_accuracy']:.2%}; "
          f"with one or more: {r['with_alike']}, read {r['with_alike_accuracy']:.2%}")


if __name__ == "__main__":
    main()
