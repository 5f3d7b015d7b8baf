#!/usr/bin/env bash
# GPU check of crossflow's engine through ONNX Runtime's CUDA execution provider.
#
# On a machine with an NVIDIA GPU and CUDA 13 libraries (cuBLAS, cuDNN 9, ... e.g. the
# nvidia-*-cu13 PyPI packages), from the repository root:
#
#   benches/gpu-check.sh            # prepares what it can, then checks and measures
#
# It needs, under .gpu/ (prepared by `benches/gpu-check.sh --prepare` on a machine that
# reaches PyPI; the GPU machines lent here reach nothing):
#   .gpu/ort/   libonnxruntime.so.1.31.1, libonnxruntime_providers_shared.so,
#               libonnxruntime_providers_cuda.so   (from the onnxruntime-gpu==1.31.1 wheel)
#   .gpu/model/ the fp32 STS cross-encoder directory (onnx/model.onnx) and its fp16
#               export onnx/model_fp16.onnx
#   target/release/crossflow-bench (cargo build --release -p crossflow-benches)
# Then it prints the GPU's name, the largest logit difference GPU fp32 vs CPU fp32
# (tolerance 1e-3) and GPU fp16 vs CPU fp32 (tolerance 5e-2), and pairs/s per profile.
# Without a GPU it stops with exit code 2 and says why.
set -euo pipefail
cd "$(dirname "$0")/.."
GPU=.gpu
BENCH=target/release/crossflow-bench
PROFILES=${PROFILES:-short,medium,long}
LIMIT=${LIMIT:-5000}

fail() { echo "gpu-check: $*" >&2; exit 2; }

prepare() {
  mkdir -p "$GPU/ort" "$GPU/model/onnx"
  if [ ! -f "$GPU/ort/libonnxruntime_providers_cuda.so" ]; then
    tmp=$(mktemp -d)
    python3 -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.11 \
      --platform manylinux_2_28_x86_64 onnxruntime-gpu==1.31.1 -d "$tmp"
    (cd "$GPU/ort" && python3 -m zipfile -e "$tmp"/onnxruntime_gpu-*.whl x \
      && mv x/onnxruntime/capi/libonnxruntime.so.1.31.1 x/onnxruntime/capi/libonnxruntime_providers_*.so . \
      && rm -rf x)
    rm -rf "$tmp"
  fi
  src=../shared/models/crossflow-sts-minilm-l6
  cp -n "$src"/*.json "$GPU/model/" 2>/dev/null || true
  cp -n "$src/onnx/model.onnx" "$GPU/model/onnx/" 2>/dev/null || true
  if [ ! -f "$GPU/model/onnx/model_fp16.onnx" ]; then
    .venv/bin/pip install --quiet onnx onnxconverter-common
    .venv/bin/python - "$GPU/model/onnx/model.onnx" "$GPU/model/onnx/model_fp16.onnx" <<'PY'
import sys, onnx
from onnxconverter_common import float16
model = float16.convert_float_to_float16(onnx.load(sys.argv[1]), keep_io_types=True)
onnx.save(model, sys.argv[2])
PY
  fi
  [ -x "$BENCH" ] || cargo build --release -p crossflow-benches
}

if [ "${1:-}" = "--prepare" ]; then prepare; exit 0; fi

command -v nvidia-smi >/dev/null 2>&1 || fail "no NVIDIA GPU here (nvidia-smi not found); nothing to check"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || fail "nvidia-smi failed"
[ -x "$BENCH" ] || fail "$BENCH missing: build it with cargo build --release -p crossflow-benches"
[ -f "$GPU/ort/libonnxruntime_providers_cuda.so" ] || fail "$GPU/ort lacks the CUDA provider: run benches/gpu-check.sh --prepare where PyPI is reachable"
[ -f "$GPU/model/onnx/model_fp16.onnx" ] || fail "$GPU/model lacks the fp16 export: run benches/gpu-check.sh --prepare"

# CUDA libraries from the machine's Python packages (nvidia-*-cu13), read at process start.
nvidia_libs=$(python3 -c 'import nvidia, os, glob; print(":".join(glob.glob(os.path.join(nvidia.__path__[0], "*", "lib"))))' 2>/dev/null || true)
export LD_LIBRARY_PATH="$PWD/$GPU/ort${nvidia_libs:+:$nvidia_libs}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export ORT_DYLIB_PATH="$PWD/$GPU/ort/libonnxruntime.so.1.31.1"

echo "== scores: GPU fp32 vs CPU fp32 (tolerance 1e-3), GPU fp16 vs CPU fp32 (tolerance 5e-2)"
"$BENCH" compare --model "$GPU/model" --onnx-file onnx/model.onnx --device cuda --profiles "$PROFILES" \
  --limit 500 --tolerance 1e-3
"$BENCH" compare --model "$GPU/model" --onnx-file onnx/model_fp16.onnx --against-onnx-file onnx/model.onnx \
  --device cuda --profiles "$PROFILES" --limit 500 --tolerance 5e-2
echo "== throughput on the GPU (pairs/s)"
for file in onnx/model.onnx onnx/model_fp16.onnx; do
  "$BENCH" --model "$GPU/model" --onnx-file "$file" --device cuda --python "" \
    --profiles "$PROFILES" --limit "$LIMIT" --repeat 3 --configs default
done
