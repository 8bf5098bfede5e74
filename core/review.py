"""What a person should look at after a run, from its predictions.csv (read once, streamed):

- review.csv: every prediction whose confidence is below review.threshold, unlabelled ones
  included, in input order, with an empty `corrected` column for the person to fill in;
- suspect_labels.csv: labelled images the model reads differently from their file name, most
  suspicious first: ranked by the probability the model gives the file name's label (near 0:
  the model is sure the name is wrong, as with a mistyped label), then by confidence;
- coverage.csv: at each confidence in review.coverage, the share of the labelled images
  predicted at least that confidently and the accuracy among them (accuracy at coverage);
- calibration.csv: the reliability table behind the expected calibration error.

    result = review_run(run_dir, cfg.review)   # result.summary() goes into summary.csv

and back from the person: read_corrections() reads the `corrected` cells they filled in, for
the training job (--corrections) to fine-tune on.
"""
from __future__ import annotations

import csv
import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path

from .calibration import CalibrationBins
from .config import LabelConfig, ReviewConfig
from .data import Item
from .files import atomic_csv, open_csv, read_cell, read_number, write_csv
from .labels import LabelError, check_label, label_form

REVIEW_COLUMNS = ["path", "label", "prediction", "confidence", "corrected"]
SUSPECT_COLUMNS = ["rank", "path", "label", "prediction", "confidence", "label_probability",
                   "corrected"]
COVERAGE_COLUMNS = ["threshold", "images", "coverage", "accuracy"]
CALIBRATION_COLUMNS = ["low", "high", "images", "mean_confidence", "accuracy"]


def coverage_columns(thresholds: tuple[float, ...]) -> list[str]:
    """Summary columns for accuracy at coverage, e.g. coverage_at_0.9, accuracy_at_0.9."""
    return [f"{what}_at_{t:g}" for t in thresholds for what in ("coverage", "accuracy")]


def _ratio(a: int, b: int) -> float:
    return a / b if b else math.nan


@dataclass
class ReviewResult:
    thresholds: tuple[float, ...]
    review: int = 0
    labelled: int = 0
    suspects: int = 0
    above: list[int] = field(default_factory=list)
    above_correct: list[int] = field(default_factory=list)
    calibration: CalibrationBins | None = None

    def coverage(self) -> list[list]:
        return [[t, n, _ratio(n, self.labelled), _ratio(c, n)]
                for t, n, c in zip(self.thresholds, self.above, self.above_correct)]

    def summary(self) -> dict:
        out = {"ece": self.calibration.ece, "review": self.review, "suspects": self.suspects}
        for t, _, share, accuracy in self.coverage():
            out[f"coverage_at_{t:g}"] = share
            out[f"accuracy_at_{t:g}"] = accuracy
        return out


def review_run(run_dir: Path, cfg: ReviewConfig) -> ReviewResult:
    thresholds = tuple(cfg.coverage)
    result = ReviewResult(thresholds, above=[0] * len(thresholds),
                          above_correct=[0] * len(thresholds),
                          calibration=CalibrationBins(cfg.calibration_bins))
    suspects: list[tuple] = []  # (label probability, -confidence, input order, row)

    def prune() -> None:
        suspects.sort(key=lambda s: s[:3])
        del suspects[cfg.max_suspects:]

    with open_csv(run_dir / "predictions.csv") as f, \
            atomic_csv(run_dir / "review.csv", REVIEW_COLUMNS) as review:
        for order, row in enumerate(csv.DictReader(f)):
            if row["status"] != "ok":
                continue
            confidence = read_number(row["confidence"])
            if confidence < cfg.threshold:
                review.writerow([row["path"], row["label"], row["prediction"], row["confidence"],
                                 ""])
                result.review += 1
            if row["correct"] == "":
                continue
            correct = row["correct"] == "1"
            result.labelled += 1
            result.calibration.add([confidence], [correct])
            for k, t in enumerate(thresholds):
                if confidence >= t:
                    result.above[k] += 1
                    result.above_correct[k] += correct
            if not correct:
                result.suspects += 1
                p = read_number(row.get("label_probability", ""))
                suspects.append((p if p == p else math.inf, -confidence, order,
                                 [row["path"], row["label"], row["prediction"], row["confidence"],
                                  row.get("label_probability", "")]))
                if len(suspects) > 2 * max(cfg.max_suspects, 1):
                    prune()
    prune()
    write_csv(run_dir / "suspect_labels.csv", SUSPECT_COLUMNS,
              ([rank] + s[3] + [""] for rank, s in enumerate(suspects, 1)))
    write_csv(run_dir / "coverage.csv", COVERAGE_COLUMNS,
              ([f"{t:g}", n, f"{share:.6f}", f"{acc:.6f}"] for t, n, share, acc in
               result.coverage()))
    write_csv(run_dir / "calibration.csv", CALIBRATION_COLUMNS,
              ([f"{lo:.4f}", f"{hi:.4f}", n, f"{conf:.6f}", f"{acc:.6f}"]
               for lo, hi, n, conf, acc in result.calibration.rows()))
    return result


class CorrectionsError(ValueError):
    """A corrections file that cannot be used; the message names the file and the row."""


def read_corrections(path: str | Path, labels: LabelConfig) -> dict[str, str]:
    """{relative path: corrected label} from a CSV with `path` and `corrected` columns (review.csv
    or suspect_labels.csv after a person filled some `corrected` cells in). Rows left empty are
    skipped; a corrected label is case-folded like file names and must fit the alphabet and
    length."""
    path = Path(path)
    try:
        f = open_csv(path)
    except OSError as exc:
        raise CorrectionsError(f"cannot read corrections {path}: {exc.strerror or exc}") from None
    corrections: dict[str, str] = {}
    with f:
        reader = csv.DictReader(f)
        missing = {"path", "corrected"} - set(reader.fieldnames or [])
        if missing:
            raise CorrectionsError(f"corrections {path} lacks the column(s) "
                                   f"{', '.join(sorted(missing))}")
        for line, row in enumerate(reader, 2):
            text = label_form(read_cell(row["corrected"] or "").strip(), labels.case)
            if not text:
                continue
            try:
                check_label(text, labels)
            except LabelError as exc:
                raise CorrectionsError(f"corrections {path}, line {line}: corrected label "
                                       f"{exc}") from None
            corrections[read_cell(row["path"])] = text
    return corrections


def apply_corrections(items: list[Item], corrections: dict[str, str],
                      source: str) -> list[Item]:
    """The items with the corrected labels; every corrected path must be among them."""
    known = {item.path for item in items}
    unknown = [p for p in corrections if p not in known]
    if unknown:
        raise CorrectionsError(f"{len(unknown)} of the {len(corrections)} corrected files in "
                               f"{source} are not in the input folder (first: {unknown[0]!r})")
    return [dataclasses.replace(item, label=corrections[item.path], unlabelled_why="")
            if item.path in corrections else item for item in items]
