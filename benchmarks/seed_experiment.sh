#!/usr/bin/env bash
# The seed post's experiment, reproduced on generated captchas: 8,000 training images (90/10
# split inside the training job), 23,550 test images, both seed networks trained with the
# seed's settings (Adam, lr 0.001, batch 32, summed cross-entropy, no augmentation), then
# tested; and, for comparison, the training job's defaults on the same images.
#
#   bash benchmarks/seed_experiment.sh [EPOCHS] [OUT]      # defaults: 30, data/seed-experiment
#
# Writes OUT/{seed,seed-gap,default}.log (the tables) and OUT/*.pt (+ .history.csv).
set -euo pipefail
cd "$(dirname "$0")/.."
EPOCHS=${1:-30}
OUT=${2:-data/seed-experiment}
PY=${PYTHON:-python}
mkdir -p "$OUT"
[ -d "$OUT/train" ] || $PY -m jobs.generate --output "$OUT/train" --count 8000 --seed 101 --style classic
[ -d "$OUT/test" ] || $PY -m jobs.generate --output "$OUT/test" --count 23550 --seed 202 --style classic
for run in seed seed-gap default; do
  case $run in
    default) flags=() ;;                           # the job's defaults
    *) flags=(--arch "$run" --no-augment --optimizer adam --weight-decay 0 --clip 0 \
              --lr-schedule constant) ;;            # the seed's procedure
  esac
  start=$(date +%s)
  $PY -m jobs.train --input "$OUT/train" --output "$OUT/$run.pt" "${flags[@]}" \
      --epochs "$EPOCHS" --seed 0 --test "$OUT/test" 2>/dev/null | tee "$OUT/$run.log"
  echo "wall seconds: $(( $(date +%s) - start ))" | tee -a "$OUT/$run.log"
done
