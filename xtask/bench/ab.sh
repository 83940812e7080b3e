#!/usr/bin/env bash
# A/B of two `glaze` binaries on this machine, for a change that must not move the speed
# (a refactor): decode and prefill (`glaze bench`) and the Time-LLM training step
# (`glaze timeseries bench-step`), the two binaries alternated in each round, their order
# swapped every other round. One JSON line per run; `ab_summary.py` gives medians and ranges.
#
#   bash xtask/bench/ab.sh OLD_BINARY NEW_BINARY [ROUNDS] > ab.jsonl
#   python3 xtask/bench/ab_summary.py ab.jsonl
#
# Nothing else may run meanwhile (two cores). The peers of `cargo xtask bench` are not
# rerun: a ratio to a peer moves only if the Glaze side moves.
set -euo pipefail
old=$1
new=$2
rounds=${3:-3}
here=$(cd "$(dirname "$0")" && pwd)
shared=${GLAZE_SHARED:-$here/../../../shared}
cache=${GLAZE_CACHE:-$HOME/.cache/glaze}/features
export RAYON_NUM_THREADS=${RAYON_NUM_THREADS:-2}
run() {
  local label=$1 bin=$2 r=$3
  printf '{"round":%d,"binary":"%s","bench":%s}\n' "$r" "$label" "$("$bin" bench --reps 3)"
  printf '{"round":%d,"binary":"%s","bench":%s}\n' "$r" "$label" \
    "$("$bin" timeseries bench-step --data "$shared/data/ett/ETTh1.csv" --steps 24 --batch 32 \
       --layers 2 --prototypes 100 --train-stride 16 --cache "$cache")"
}
for r in $(seq "$rounds"); do
  if (( r % 2 )); then
    run old "$old" "$r"; run new "$new" "$r"
  else
    run new "$new" "$r"; run old "$old" "$r"
  fi
done
