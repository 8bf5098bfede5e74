"""The real suite: for each set of real labelled captchas, the training job's defaults trained on
its training split and `run_batch.py` on its test split, with nothing tuned per set.

    python benchmarks/real_suite.py --root ../shared/realsets [--sets a,b] [--out data/real]
                                    [--markdown docs/accuracy.md] [--train-args "--arch X"]

The split is the sets' README's: a file is in the test split when
int(sha256(file_name).hexdigest(), 16) % 10 == 0. Each split is a folder of hard links (copies
where the file system refuses links) under --out. For each set it runs, as a user would,

    python -m jobs.train --input OUT/SET/train --output OUT/SET/model.pt
    python run_batch.py --input OUT/SET/test --model OUT/SET/model.pt --output OUT/SET/runs

(--train-args adds the same flags to every set's training, for comparing one change with the
defaults) and prints a Markdown table (and writes it to --markdown): images, whole captchas and characters
read on the test split, the character error rate, training wall time, epochs. The sets are not
ours to ship: they stay where --root says, and nothing of them is written under docs/.
"""
from __future__ import annotations

import argparse
import csv
import datetime
import hashlib
import os
import platform
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from core.runtime import available_cores, cpu_name  # noqa: E402


def in_test_split(name: str) -> bool:
    return int(hashlib.sha256(name.encode()).hexdigest(), 16) % 10 == 0


def split(source: Path, target: Path, put=None, keep=None) -> tuple[int, int]:
    """The set's files into target/train and target/test by in_test_split; returns their counts.
    put(file, folder) puts one file into a folder (default: link); keep(names) chooses which
    of the set's sorted file names are put (default: all)."""
    counts = {"train": 0, "test": 0}
    for part in counts:
        shutil.rmtree(target / part, ignore_errors=True)
        (target / part).mkdir(parents=True)
    names = sorted(e.name for e in os.scandir(source) if e.is_file())
    for name in keep(names) if keep else names:
        part = "test" if in_test_split(name) else "train"
        (put or link)(source / name, target / part)
        counts[part] += 1
    return counts["train"], counts["test"]


def link(file: Path, folder: Path, name: str | None = None) -> None:
    """A hard link to `file` in `folder`, under its own name or `name` (a copy where the two
    cannot share it)."""
    try:
        os.link(file, folder / (name or file.name))
    except OSError:
        shutil.copy2(file, folder / (name or file.name))


def run(command: list[str], log: Path) -> float:
    """Run a job as a user would, its output to `log`; returns its wall seconds."""
    start = time.monotonic()
    with open(log, "w", encoding="utf-8") as out:
        code = subprocess.run(command, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT).returncode
    if code != 0:
        raise SystemExit(f"{' '.join(command)} exited {code}; see {log}")
    return time.monotonic() - start


def epochs_trained(model: Path) -> str:
    history = model.with_suffix(".history.csv")
    if not history.exists():
        return ""
    with open(history, newline="", encoding="utf-8") as f:
        return str(sum(1 for _ in csv.DictReader(f)))


def measure(name: str, source: Path, out: Path, train_args: list[str]) -> dict:
    target = out / name
    train, test = split(source, target)
    return train_and_read(name, target, train, test, train_args)


def train_and_read(name: str, target: Path, train: int, test: int,
                   train_args: list[str]) -> dict:
    """Train on target/train and read target/test as a user would; returns the table's row."""
    model = target / "model.pt"
    seconds = run([sys.executable, "-m", "jobs.train", "--input", str(target / "train"),
                   "--output", str(model), *train_args], target / "train.log")
    runs = target / "runs"
    shutil.rmtree(runs, ignore_errors=True)
    run([sys.executable, str(ROOT / "run_batch.py"), "--input", str(target / "test"),
         "--model", str(model), "--output", str(runs), "--run-id", "test", "--quiet"],
        target / "test.log")
    with open(runs / "test" / "summary.csv", newline="", encoding="utf-8") as f:
        summary = next(csv.DictReader(f))
    return {"set": name, "train": train, "test": test,
            "captchas": float(summary["captcha_accuracy"]),
            "chars": float(summary["char_accuracy"]),
            "cer": float(summary["char_error_rate"]),
            "minutes": seconds / 60, "epochs": epochs_trained(model)}


def table(rows: list[dict]) -> str:
    lines = ["| set | train images | test images | captchas read | characters read | CER | "
             "training | epochs |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| `{r['set']}` | {r['train']:,} | {r['test']:,} | "
                     f"{100 * r['captchas']:.2f} % | {100 * r['chars']:.2f} % | "
                     f"{100 * r['cer']:.2f} % | {r['minutes']:.1f} min | {r['epochs']} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", required=True, help="folder of the real sets, one per folder")
    parser.add_argument("--sets", default=None, help="comma-separated set names (default: all)")
    parser.add_argument("--out", default=str(ROOT / "data" / "real"),
                        help="where the splits, models and runs go (default: data/real)")
    parser.add_argument("--markdown", default=None, metavar="MD",
                        help="also write the table, machine and command to this file")
    parser.add_argument("--train-args", default="", metavar="FLAGS",
                        help="flags added to every set's jobs.train command, e.g. \"--arch X\"")
    args = parser.parse_args()
    root = Path(args.root)
    names = args.sets.split(",") if args.sets else sorted(
        p.name for p in root.iterdir() if p.is_dir())
    rows = []
    for name in names:
        row = measure(name, root / name, Path(args.out), shlex.split(args.train_args))
        rows.append(row)
        print(table([row]).splitlines()[-1], flush=True)
    machine = (f"{cpu_name()}, {available_cores()} cores, Python "
               f"{platform.python_version()}, "
               f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d}")
    text = (f"{table(rows)}\n\nMachine: {machine}. Command: `python benchmarks/real_suite.py "
            f"--root {args.root}" + (f" --sets {args.sets}" if args.sets else "")
            + (f" --train-args {shlex.quote(args.train_args)}" if args.train_args else "")
            + "`\n")
    print("\n" + text)
    if args.markdown:
        Path(args.markdown).write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
