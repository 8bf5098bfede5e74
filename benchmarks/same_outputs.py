"""Do two checkouts write the same nightly outputs? For refactors that must not change
behaviour: runs a night, then an --only-new night after one file changed and one went, then a
--resume of the finished run, with each tree's run_batch.py on the same copy of a folder and
the same model, and compares every output file byte for byte (summary.csv and history.csv
without their timing columns; run.log, report.html, manifest.json and .lock hold times).

    python benchmarks/same_outputs.py --old /tmp/oldtree --new . --input DIR [--model M]

Exit 0 when everything is the same, 1 otherwise (each difference named).
"""
from __future__ import annotations

import argparse
import csv
import filecmp
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

TIMING = {"run_id", "started_at", "finished_at", "images_per_second", "wall_seconds"}
VOLATILE = {".lock", "run.log", "report.html", "manifest.json"}


def night(tree: Path, folder: Path, out: Path, model: Path) -> None:
    def run(*flags: str) -> None:
        subprocess.run([sys.executable, "run_batch.py", "--input", str(folder), "--output",
                        str(out), "--model", str(model), "--quiet", "--workers", "0", *flags],
                       cwd=tree, check=False)
    run("--run-id", "night1")
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    os.utime(files[len(files) // 3], (1767225600, 1767225600))   # 2026-01-01: changed
    files[2 * len(files) // 3].unlink()                           # gone
    run("--run-id", "night2", "--only-new")
    run("--run-id", "night2", "--resume")


def _rows(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8", errors="surrogateescape") as f:
        return [{k: v for k, v in row.items() if k not in TIMING} for row in csv.DictReader(f)]


def compare(old: Path, new: Path) -> list[str]:
    problems = []
    for a in sorted(old.rglob("*")):
        if a.is_dir() or a.is_symlink() or a.name in VOLATILE:
            continue
        b = new / a.relative_to(old)
        if not b.exists():
            problems.append(f"missing in new: {a.relative_to(old)}")
        elif not (_rows(a) == _rows(b) if a.name in ("summary.csv", "history.csv")
                  else filecmp.cmp(a, b, shallow=False)):
            problems.append(f"differs: {a.relative_to(old)}")
    extra = {p.relative_to(new) for p in new.rglob("*")} - {p.relative_to(old) for p in old.rglob("*")}
    return problems + [f"only in new: {p}" for p in sorted(extra)]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--old", required=True, type=Path, help="checkout before the change")
    p.add_argument("--new", default=".", type=Path, help="checkout after it (default: .)")
    p.add_argument("--input", required=True, type=Path, help="folder to read (copied, not changed)")
    p.add_argument("--model", type=Path, default=None,
                   help="checkpoint both use (default: the new tree's models/default.pt)")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        model = work / "model.pt"    # one path for both: the summary names it
        shutil.copyfile(args.model or args.new / "models" / "default.pt", model)
        for name, tree in (("old", args.old), ("new", args.new)):
            shutil.copytree(args.input, work / f"{name}-in", copy_function=shutil.copy2)
            os.rename(work / f"{name}-in", work / "in")     # one input path for both
            night(tree.resolve(), work / "in", work / name, model)
            shutil.rmtree(work / "in")
        problems = compare(work / "old", work / "new")
        files = sum(1 for p in (work / "old").rglob("*") if p.is_file())
    print("\n".join(problems) or f"same outputs: {files} files")
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
