#!/usr/bin/env python3
"""Reference logits for crossflow's parity test, computed with Python onnxruntime.

Independent of crossflow's code: HF `tokenizers` (Python) with longest-first
truncation to the model's max length, onnxruntime CPU with default settings
except the one crossflow changes on the CPU: ONNX Runtime's SkipLayerNormFusion
is off (its fused kernel is slower there; docs/performance.md). On fp32 graphs
that gives the same logits; on the int8 graphs the different float rounding of
the layer norms moves some activations to the next int8 step (up to 0.11
logits on the STS model against default settings, the same Spearman).

Two kinds of reference, because onnxruntime's int8 kernels give different
logits on different instruction sets (AVX2, AVX-512, VNNI, AMX) while fp32
agrees across machines:

* fp32 (`sts-fp32`, the STS model from ../shared, not bundled) is machine-
  independent and stored in tests/data/parity_reference.json. It is run in
  fixed batches of 32 in input order, padded to the batch maximum, so the
  parity test also covers crossflow's sorted, padded batching.
* int8 (`sts-int8`, `nli-int8`, the bundled models) is computed where the
  test runs: tests/parity.rs calls this script with `--pairs-from` the stored
  file and compares against its output. Their dynamic quantization makes a
  pair's logits depend on the rest of its batch, so they are run one pair at
  a time; crossflow must give exactly these logits.

Regenerate the stored file (needs `scripts/setup --python`):

    .venv/bin/python scripts/reference_scores.py \
        --snli ../shared/data/snli/validation.tsv \
        --out tests/data/parity_reference.json
    .venv-st/bin/python scripts/st_reference.py   # sentence-transformers, also stored

Compute the int8 references on this machine (what the test does):

    .venv/bin/python scripts/reference_scores.py \
        --pairs-from tests/data/parity_reference.json --models sts-int8,nli-int8 \
        --out /tmp/int8.json
"""
import argparse
import csv
import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
from tokenizers import Tokenizer

ROOT = Path(__file__).resolve().parent.parent
# name -> (model directory, ONNX file, batch size)
MODELS = {
    "sts-int8": ("models/crossflow-sts-minilm-l6", "onnx/model_qint8_avx2.onnx", 1),
    "nli-int8": ("models/crossflow-nli-minilm-l6", "onnx/model_qint8_avx2.onnx", 1),
    "sts-fp32": ("../shared/models/crossflow-sts-minilm-l6", "onnx/model.onnx", 32),
}
# Machine-independent references, the ones stored in tests/data.
STORED = ["sts-fp32"]
# CPU flags that select onnxruntime's int8 kernels.
CPU_FEATURES = ["avx2", "avx512f", "avx512_vnni", "avx512_bf16", "avx_vnni", "amx_tile", "amx_int8"]
EDGE_CASES = [
    ("", ""),
    ("", "A text against an empty one."),
    ("Ünïcödé façade — naïve café ☕ 東京", "emoji 🚀🚀 and accents àéîõü"),
    ("word " * 400, "A short hypothesis."),
    ("A short premise.", "token " * 300),
    ("long " * 200, "other " * 200),
    ("A man is playing a guitar.", "A man is playing a guitar."),
    ("   leading and trailing spaces   ", "\ttabs\nand newlines\n"),
]


def cpu():
    """The CPU's model name and the int8-relevant features, from /proc/cpuinfo."""
    model, flags = "unknown", set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and model == "unknown":
                model = value.strip()
            elif key.strip() == "flags" and not flags:
                flags = set(value.split())
    except OSError:
        pass
    return {"model": model, "features": [f for f in CPU_FEATURES if f in flags]}


def snli_pairs(path, limit, step):
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    if not rows or set(rows[0]) != {"premise", "hypothesis", "label"}:
        raise SystemExit(f"{path}: expected columns premise, hypothesis, label")
    return [(r["premise"], r["hypothesis"]) for r in rows[::step][:limit]]


def max_length(model_dir):
    tok = json.loads((model_dir / "tokenizer_config.json").read_text())
    cfg = json.loads((model_dir / "config.json").read_text())
    return min(int(tok.get("model_max_length", 512)), cfg.get("max_position_embeddings", 512))


def reference_logits(model_dir, onnx, pairs, batch_size):
    options = ort.SessionOptions()
    options.add_session_config_entry("optimization.disable_specified_optimizers", "SkipLayerNormFusion")
    session = ort.InferenceSession(str(onnx), options, providers=["CPUExecutionProvider"])
    tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    tokenizer.no_padding()
    tokenizer.enable_truncation(max_length(model_dir), strategy="longest_first")
    pad_id = tokenizer.token_to_id("[PAD]")
    names = {i.name for i in session.get_inputs()}
    out = []
    for start in range(0, len(pairs), batch_size):
        chunk = pairs[start : start + batch_size]
        encodings = tokenizer.encode_batch(chunk)
        width = max(len(e.ids) for e in encodings)
        ids = np.full((len(chunk), width), pad_id, dtype=np.int64)
        types = np.zeros((len(chunk), width), dtype=np.int64)
        mask = np.zeros((len(chunk), width), dtype=np.int64)
        for row, e in enumerate(encodings):
            ids[row, : len(e.ids)] = e.ids
            types[row, : len(e.ids)] = e.type_ids
            mask[row, : len(e.ids)] = 1
        feed = {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}
        (logits,) = session.run(["logits"], {k: v for k, v in feed.items() if k in names})
        out.extend(logits.tolist())
    return out


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--snli", help="SNLI validation.tsv (pairs of a new stored file)")
    source.add_argument("--pairs-from", type=Path, help="take the pairs of this reference file")
    parser.add_argument("--models", default=",".join(STORED),
                        help=f"comma-separated, of {', '.join(MODELS)} (default: {','.join(STORED)})")
    parser.add_argument("--limit", type=int, default=240)
    parser.add_argument("--step", type=int, default=37)
    parser.add_argument("--out", default="tests/data/parity_reference.json")
    args = parser.parse_args()
    args.models = [m for m in args.models.split(",") if m]
    unknown = [m for m in args.models if m not in MODELS]
    if unknown or not args.models:
        parser.error(f"--models: unknown {unknown}; choose from {', '.join(MODELS)}")
    return args


def main():
    args = parse_args()
    if args.pairs_from:
        pairs = [tuple(p) for p in json.loads(args.pairs_from.read_text(encoding="utf-8"))["pairs"]]
    else:
        pairs = snli_pairs(args.snli, args.limit, args.step) + EDGE_CASES
    models = {}
    for name in args.models:
        rel, onnx, batch_size = MODELS[name]
        model_dir = (ROOT / rel).resolve()
        logits = reference_logits(model_dir, model_dir / onnx, pairs, batch_size)
        models[name] = {"dir": rel, "onnx": onnx, "batch_size": batch_size, "logits": logits}
    doc = {
        "generator": "scripts/reference_scores.py",
        "onnxruntime": ort.__version__,
        "cpu": cpu(),
        "pairs": [list(p) for p in pairs],
        "models": models,
    }
    Path(args.out).write_text(json.dumps(doc, ensure_ascii=False, indent=0) + "\n", encoding="utf-8")
    print(f"wrote {len(pairs)} pairs x {len(models)} models to {args.out}")


if __name__ == "__main__":
    main()
