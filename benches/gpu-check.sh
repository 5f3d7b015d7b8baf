#!/usr/bin/env bash
# GPU check of crossflow's engine through ONNX Runtime's CUDA execution provider, made to fit
# the GPU machines lent here: nothing can be downloaded there, and one call carries at most
# 64 MiB including the working tree. So everything is built here and travels in parts.
#
#   benches/gpu-check.sh --prepare      # here (reaches PyPI): build the stage, pack it in parts
#   benches/gpu-check.sh --sequence     # print the device calls that carry the parts and run
#   benches/gpu-check.sh                # there: unpack the parts into .gpu/run and run the check
#   benches/gpu-check.sh --unpack DIR   # join and unpack the parts into DIR
#   benches/gpu-check.sh --run DIR [--cpu]   # the check from an unpacked stage; --cpu: the
#                                       # CPU part only (tests the stage on a machine without GPU)
#
# The stage (.gpu/stage/, packed as .gpu/parts/part-NN, ≤ 55 MiB each, tar | xz):
#   bin/crossflow-bench   stripped release build of the engine-only bench binary
#   ort/                  libonnxruntime.so.1.31.1, libonnxruntime_providers_shared.so,
#                         libonnxruntime_providers_cuda.so (from the onnxruntime-gpu==1.31.1 wheel)
#   model/                the STS cross-encoder in fp16 (scripts/export_fp16.py from the fp32
#                         model in ../shared/models), onnx/model_fp16.onnx
#   pairs.json            5,000 real pairs per profile (short, medium, long)
#   reference.json        fp32 CPU logits of the first 500 pairs per profile, computed here
#
# The check prints the GPU's name, the largest |logit GPU fp16 - logit CPU fp32| per profile
# (fails over 5e-2), and pairs/s per profile (fp16, default batching: 16,384-token budget).
set -euo pipefail
cd "$(dirname "$0")/.."
GPU=.gpu
STAGE=$GPU/stage
PARTS=$GPU/parts
PART_SIZE=55M
PROFILES=${PROFILES:-short,medium,long}
LIMIT=${LIMIT:-5000}
SOURCE_MODEL=${SOURCE_MODEL:-../shared/models/crossflow-sts-minilm-l6}

fail() { echo "gpu-check: $*" >&2; exit 2; }

ort_gpu_files() {
  mkdir -p "$STAGE/ort"
  [ -f "$STAGE/ort/libonnxruntime_providers_cuda.so" ] && return
  local tmp
  tmp=$(mktemp -d)
  python3 -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.11 \
    --platform manylinux_2_28_x86_64 onnxruntime-gpu==1.31.1 -d "$tmp"
  (cd "$tmp" && python3 -m zipfile -e onnxruntime_gpu-*.whl x)
  mv "$tmp"/x/onnxruntime/capi/libonnxruntime.so.1.31.1 \
    "$tmp"/x/onnxruntime/capi/libonnxruntime_providers_*.so "$STAGE/ort/"
  rm -f "$STAGE/ort/libonnxruntime_providers_tensorrt.so"
  rm -rf "$tmp"
}

prepare() {
  rm -rf "$STAGE/bin" "$STAGE/model" "$PARTS"
  mkdir -p "$STAGE/bin" "$PARTS"
  cargo build --release --locked -p crossflow-benches --bin crossflow-bench
  strip -o "$STAGE/bin/crossflow-bench" target/release/crossflow-bench
  ort_gpu_files
  scripts/setup --python >/dev/null
  .venv/bin/pip install --quiet onnx onnxconverter-common
  .venv/bin/python scripts/export_fp16.py "$SOURCE_MODEL" "$STAGE/model"
  "$STAGE/bin/crossflow-bench" export-pairs --profiles "$PROFILES" --limit "$LIMIT" \
    --out "$STAGE/pairs.json"
  "$STAGE/bin/crossflow-bench" reference --model "$SOURCE_MODEL" --onnx-file onnx/model.onnx \
    --data "$STAGE/pairs.json" --profiles "$PROFILES" --limit 500 --out "$STAGE/reference.json"
  tar -C "$STAGE" -cf - . | xz -T0 -6 | split -b "$PART_SIZE" -d -a 2 - "$PARTS/part-"
  (cd "$PARTS" && sha256sum part-* > SHA256SUMS)
  ls -l "$PARTS"
  sequence
}

sequence() {
  local parts last
  parts=$(cd "$PARTS" && ls part-* | sort)
  last=$(echo "$parts" | tail -n 1)
  cat <<EOF
Device calls (each carries one part; parts stay on the warm machine between calls).
Before: git rm -r -q --cached models && echo /models >> .git/info/exclude
EOF
  for part in $parts; do
    if [ "$part" = "$last" ]; then
      echo "  run carry=[\"$PARTS/$part\", \"$PARTS/SHA256SUMS\"] command=\"benches/gpu-check.sh\" timeout_s=420"
    else
      echo "  run carry=[\"$PARTS/$part\"] command=\"ls -l $PARTS\" timeout_s=120"
    fi
  done
  echo "After: git reset -q models && sed -i '\\#^/models\$#d' .git/info/exclude"
}

unpack() {
  local into=$1
  [ -f "$PARTS/SHA256SUMS" ] || fail "$PARTS/SHA256SUMS missing: run --prepare (or carry it)"
  (cd "$PARTS" && sha256sum --quiet -c SHA256SUMS) || fail "a part is missing or damaged"
  rm -rf "$into" && mkdir -p "$into"
  cat "$PARTS"/part-* | xz -d | tar -x -C "$into"
}

run() {
  local stage device=cuda
  stage=$(cd "$1" && pwd) || fail "no stage at $1"
  [ "${2:-}" = "--cpu" ] && device=cpu
  local bench=$stage/bin/crossflow-bench
  [ -x "$bench" ] || fail "$bench missing: unpack a prepared stage first"
  if [ "$device" = cuda ]; then
    command -v nvidia-smi >/dev/null 2>&1 || fail "no NVIDIA GPU here (nvidia-smi not found)"
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
    # CUDA libraries from the machine's Python packages (nvidia-*-cu13), read at process start.
    local nvidia_libs
    nvidia_libs=$(python3 -c 'import nvidia, os, glob; print(":".join(glob.glob(os.path.join(nvidia.__path__[0], "*", "lib"))))' 2>/dev/null || true)
    export LD_LIBRARY_PATH="$stage/ort${nvidia_libs:+:$nvidia_libs}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    export ORT_DYLIB_PATH="$stage/ort/libonnxruntime.so.1.31.1"
  fi
  local limit=$LIMIT
  [ "$device" = cpu ] && limit=${CPU_LIMIT:-100}
  echo "== scores: $device fp16 vs CPU fp32 reference (tolerance 5e-2)"
  "$bench" compare --model "$stage/model" --onnx-file onnx/model_fp16.onnx --device "$device" \
    --reference "$stage/reference.json" --data "$stage/pairs.json" --profiles "$PROFILES" \
    --limit 500 --tolerance 5e-2
  echo "== throughput, $device, fp16 (pairs/s)"
  "$bench" --model "$stage/model" --onnx-file onnx/model_fp16.onnx --device "$device" \
    --python "" --data "$stage/pairs.json" --profiles "$PROFILES" --limit "$limit" \
    --repeat 3 --configs default
}

case "${1:-}" in
  --prepare) prepare ;;
  --sequence) sequence ;;
  --unpack) unpack "${2:?--unpack DIR}" ;;
  --run) run "${2:?--run DIR [--cpu]}" "${3:-}" ;;
  "") unpack "$GPU/run" && run "$GPU/run" ;;
  *) fail "unknown argument $1 (see the header of $0)" ;;
esac
