"""Export an fp16 copy of an fp32 ONNX cross-encoder for GPUs, and check it.

    .venv/bin/python scripts/export_fp16.py MODEL_DIR OUT_DIR [--pairs N]

MODEL_DIR holds the fp32 model (`onnx/model.onnx`, tokenizer and config files, e.g.
../shared/models/crossflow-sts-minilm-l6). OUT_DIR gets the same files with the graph
converted to fp16 (`onnx/model_fp16.onnx`, inputs and outputs kept as they were:
int64 ids in, fp32 logits out). The conversion keeps in fp32 the operators that lose
accuracy or have no fp16 kernel on the CPU (onnxconverter-common's defaults).

The check scores N real-looking pairs (STS-B dev if ../shared/data has it, else a
built-in list) with both graphs on the CPU through onnxruntime and prints the largest
logit difference; it fails above --tolerance (default 5e-2 logits). fp16 kernels are
mostly missing on the CPU, so this checks the export, not GPU speed.

Needs: onnx, onnxconverter-common, onnxruntime, tokenizers, numpy.
"""

import argparse
import csv
import shutil
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnxconverter_common import float16
from tokenizers import Tokenizer

FALLBACK_PAIRS = [
    ("A man is playing a guitar.", "Someone plays music."),
    ("The cat sleeps on the sofa.", "A dog runs in the park."),
    ("How do I reset my password?", "Steps to change a forgotten password"),
    ("Two dogs run through the snow.", "Two dogs are running outside in winter."),
]


def pairs(data: Path, count: int):
    dev = data / "stsbenchmark" / "sts-dev.csv"
    if not dev.is_file():
        return FALLBACK_PAIRS[:count]
    with dev.open(newline="", encoding="utf-8") as f:
        rows = [r for r in csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE) if len(r) >= 7]
    return [(r[5], r[6]) for r in rows[:count]]


def logits(session, tokenizer, batch):
    encoded = tokenizer.encode_batch(batch)
    width = max(len(e.ids) for e in encoded)
    pad = lambda seq: [list(s) + [0] * (width - len(s)) for s in seq]
    feeds = {
        "input_ids": np.array(pad([e.ids for e in encoded]), dtype=np.int64),
        "attention_mask": np.array(pad([e.attention_mask for e in encoded]), dtype=np.int64),
    }
    names = {i.name for i in session.get_inputs()}
    if "token_type_ids" in names:
        feeds["token_type_ids"] = np.array(pad([e.type_ids for e in encoded]), dtype=np.int64)
    return session.run(None, feeds)[0].astype(np.float32)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model_dir", type=Path)
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--pairs", type=int, default=256)
    parser.add_argument("--tolerance", type=float, default=5e-2)
    parser.add_argument("--data", type=Path, default=Path("../shared/data"))
    args = parser.parse_args()

    source = args.model_dir / "onnx" / "model.onnx"
    target = args.out_dir / "onnx" / "model_fp16.onnx"
    target.parent.mkdir(parents=True, exist_ok=True)
    for item in args.model_dir.iterdir():
        if item.is_file():
            shutil.copy2(item, args.out_dir / item.name)
    model = float16.convert_float_to_float16(onnx.load(str(source)), keep_io_types=True)
    onnx.save(model, str(target))

    tokenizer = Tokenizer.from_file(str(args.model_dir / "tokenizer.json"))
    tokenizer.no_padding()
    options = ort.SessionOptions()
    fp32 = ort.InferenceSession(str(source), options, providers=["CPUExecutionProvider"])
    fp16 = ort.InferenceSession(str(target), options, providers=["CPUExecutionProvider"])
    batch = pairs(args.data, args.pairs)
    worst = 0.0
    for start in range(0, len(batch), 32):
        chunk = batch[start : start + 32]
        diff = np.abs(logits(fp32, tokenizer, chunk) - logits(fp16, tokenizer, chunk))
        worst = max(worst, float(diff.max()))
    size = target.stat().st_size / 2**20
    print(f"{target}: {size:.1f} MiB; {len(batch)} pairs, max |logit fp16 - logit fp32| = {worst:.2e} (CPU)")
    if worst > args.tolerance:
        sys.exit(f"fp16 export differs by {worst:.2e}, over the tolerance {args.tolerance:.0e}")


if __name__ == "__main__":
    main()
