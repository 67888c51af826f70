#!/bin/bash
# Every model, both precisions, a few input sizes / passes: `edgepose eval` on the
# COCO dev photos, `edgepose bench --model-only` and `edgepose bench` (pipeline, demo
# photos), one JSON line per configuration, PoseNet's default first and last as the
# baseline of the same run. Usage: tools/measure_models.sh [OUT.jsonl] [DEV_DIR]
# (docs/benchmarks.md). Runs the edgepose on PYTHONPATH with `python3`
# unless PYTHON is set.
set -eu
cd "$(dirname "$0")/.."
OUT=${1:-measure_models.jsonl}
DEV=${2:-../shared/data/coco-kp-dev}
PY=${PYTHON:-python3}
: > "$OUT"
run() {  # label, then model flags
  label=$1; shift
  load=$(cut -d' ' -f1 /proc/loadavg)
  ev=$($PY -m edgepose eval --gt "$DEV/person_keypoints.json" --images "$DEV/images" --json-summary "$@" 2>/dev/null)
  mo=$($PY -m edgepose bench --model-only --runs 100 --warmup 10 --json-summary "$@" 2>/dev/null)
  pl=$($PY -m edgepose bench --runs 50 --warmup 5 --json-summary "$@" 2>/dev/null)
  load2=$(cut -d' ' -f1 /proc/loadavg)
  echo "{\"label\": \"$label\", \"load_before\": $load, \"load_after\": $load2, \"eval\": $ev, \"model_only\": $mo, \"pipeline\": $pl}" >> "$OUT"
}
run "posenet int8 481x353 (baseline)" --model posenet-mnv1-075
run "posenet float32 481x353" --model posenet-mnv1-075 --no-quantized
run "posenet int8 353x257" --model posenet-mnv1-075 --input-size 353x257
run "posenet int8 641x481" --model posenet-mnv1-075 --input-size 641x481
for q in --quantized --no-quantized; do
  for p in 1 2 3; do
    run "lightning $q passes $p" --model movenet-lightning $q --still-passes $p
    run "thunder $q passes $p" --model movenet-thunder $q --still-passes $p
  done
  for L in 256 320 384 448 512; do
    run "multipose $q long $L" --model movenet-multipose $q --multipose-long-side $L
  done
done
run "posenet int8 481x353 (baseline, again)" --model posenet-mnv1-075
