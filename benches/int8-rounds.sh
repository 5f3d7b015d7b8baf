#!/bin/bash
# Interleaved rounds of crossflow-bench on two int8 graphs of one model (issue 15):
# the bundled dynamic int8 graph (one pair per run, and batched as it is) and a
# candidate graph (the engine's default for it), each with its own Python loop,
# then a table of medians (benches/int8_rounds.py).
#
#   benches/int8-rounds.sh CANDIDATE_MODEL_DIR ONNX_FILE [ROUNDS] [OUT_DIR] [LABEL]
#
# LABEL names the candidate in the file names and the table (default: static).
# CANDIDATE_MODEL_DIR holds the model's tokenizer and configs and ONNX_FILE
# (relative to it). Needs target/release/crossflow-bench and .venv (scripts/setup --python).
set -euo pipefail
cd "$(dirname "$0")/.."
candidate=${1:?candidate model directory}
onnx=${2:?ONNX file inside it}
rounds=${3:-3}
out=${4:-target/int8-rounds}
label=${5:-static}
mkdir -p "$out"
bench=target/release/crossflow-bench
for r in $(seq 1 "$rounds"); do
  echo "round $r: dynamic" >&2
  "$bench" --profiles short,medium,long --limit 5000 --repeat 1 --configs one-pair,batched \
    --csv "$out/r$r-dynamic.csv" > "$out/r$r-dynamic.log" 2>&1
  echo "round $r: candidate" >&2
  "$bench" --model "$candidate" --onnx-file "$onnx" --profiles short,medium,long --limit 5000 \
    --repeat 1 --configs default --csv "$out/r$r-$label.csv" > "$out/r$r-$label.log" 2>&1
done
python3 benches/int8_rounds.py "$out"
