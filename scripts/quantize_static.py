#!/usr/bin/env python3
"""Static int8 quantization of a cross-encoder's fp32 ONNX export (issue 15,
exploratory): activation scales fixed at export time from calibration pairs,
so a pair's score cannot depend on its batch neighbours.

    python3 -m venv /tmp/qvenv && /tmp/qvenv/bin/pip install onnx onnxruntime==1.31.1 numpy tokenizers==0.23.3
    /tmp/qvenv/bin/python scripts/quantize_static.py \
        --model-dir ../shared/models/crossflow-sts-minilm-l6 --out target/static-int8.onnx

Calibrates on STS-B train pairs, then reports STS-B dev Spearman and pairs/s
(batches of 32, and one pair per run, ONNX Runtime's default threads) for fp32, the dynamic int8 export and
the static one, and the largest change of a logit between a pair run alone
and inside a batch.
"""

import argparse
import os
import time

import numpy as np
import onnxruntime as ort
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quantize_dynamic,
    quantize_static,
)
from tokenizers import Tokenizer

DATA = "../shared/data/stsbenchmark"


def pairs(path):
    out = []
    with open(path, encoding="utf-8-sig") as f:
        for line in f:
            cols = line.rstrip("\n").split("\t")
            if len(cols) >= 7:
                out.append((cols[5], cols[6], float(cols[4])))
    return out


def encode(tokenizer, batch, width=None):
    """Padded to the batch's longest pair, or to `width` (histogram
    calibration needs one shape)."""
    enc = tokenizer.encode_batch([(a, b) for a, b, *_ in batch])
    width = width or max(len(e.ids) for e in enc)
    feed = {name: np.zeros((len(enc), width), dtype=np.int64)
            for name in ("input_ids", "attention_mask", "token_type_ids")}
    for i, e in enumerate(enc):
        n = len(e.ids)
        feed["input_ids"][i, :n] = e.ids
        feed["attention_mask"][i, :n] = e.attention_mask
        feed["token_type_ids"][i, :n] = e.type_ids
    return feed


class Reader(CalibrationDataReader):
    def __init__(self, tokenizer, batch):
        self.items = iter([encode(tokenizer, [p], width=128) for p in batch])

    def get_next(self):
        return next(self.items, None)


def spearman(x, y):
    rank = lambda v: np.argsort(np.argsort(v))
    return float(np.corrcoef(rank(x), rank(y))[0, 1])


def logits(session, tokenizer, data, batch=32):
    out = []
    for i in range(0, len(data), batch):
        out.append(session.run(["logits"], encode(tokenizer, data[i:i + batch]))[0][:, 0])
    return np.concatenate(out)


def report(name, path, tokenizer, dev):
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    started = time.perf_counter()
    scores = logits(session, tokenizer, dev)
    batched = len(dev) / (time.perf_counter() - started)
    started = time.perf_counter()
    alone = logits(session, tokenizer, dev[:300], batch=1)
    one = 300 / (time.perf_counter() - started)
    drift = float(np.max(np.abs(alone - scores[:300])))
    rho = spearman(scores, np.array([g for *_, g in dev]))
    print(f"| {name} | {rho:.4f} | {batched:.0f} | {one:.0f} | {drift:.2e} | {os.path.getsize(path) / 1e6:.1f} MB |")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model-dir", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--calibration-pairs", type=int, default=512)
    ap.add_argument("--method", choices=["minmax", "percentile", "entropy"], default="minmax")
    ap.add_argument("--format", choices=["qdq", "qoperator"], default="qdq")
    ap.add_argument("--activation-matmuls", action="store_true",
                    help="also quantize the attention's activation x activation MatMuls "
                         "(QK^T, probabilities x V); the dynamic export leaves them in float")
    ap.add_argument("--exclude", default="",
                    help="keep in float the MatMuls whose node name contains one of these "
                         "comma-separated texts (e.g. /output/dense/ for every layer's FFN "
                         "down-projection and attention output)")
    ap.add_argument("--float-embeddings", dest="int8_embeddings", action="store_false",
                    help="keep the embedding tables in float (default: int8 weights)")
    args = ap.parse_args()
    tokenizer = Tokenizer.from_file(os.path.join(args.model_dir, "tokenizer.json"))
    tokenizer.enable_truncation(128)
    tokenizer.no_padding()
    train = pairs(os.path.join(DATA, "sts-train.csv"))
    step = max(1, len(train) // args.calibration_pairs)
    calibration = train[::step][: args.calibration_pairs]
    fp32 = os.path.join(args.model_dir, "onnx", "model.onnx")
    import onnx

    patterns = [x for x in args.exclude.split(",") if x]
    excluded = [n.name for n in onnx.load(fp32).graph.node
                if n.op_type == "MatMul" and any(x in n.name for x in patterns)]
    started = time.perf_counter()
    matmuls = args.out + ".matmuls.onnx" if args.int8_embeddings else args.out
    quantize_static(
        fp32,
        matmuls,
        Reader(tokenizer, calibration),
        quant_format=QuantFormat.QDQ if args.format == "qdq" else QuantFormat.QOperator,
        op_types_to_quantize=["MatMul"],
        nodes_to_exclude=excluded,
        per_channel=True,
        reduce_range=True,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
        extra_options={"MatMulConstBOnly": not args.activation_matmuls},
        calibrate_method={
            "minmax": CalibrationMethod.MinMax,
            "percentile": CalibrationMethod.Percentile,
            "entropy": CalibrationMethod.Entropy,
        }[args.method],
    )
    if args.int8_embeddings:
        # int8 weights of the embedding tables (a Gather then a fixed-scale
        # DequantizeLinear, per row: batch-invariant), as in the dynamic export.
        quantize_dynamic(matmuls, args.out, op_types_to_quantize=["Gather"],
                         weight_type=QuantType.QInt8,
                         extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
        os.remove(matmuls)
    print(f"quantized in {time.perf_counter() - started:.0f}s: {len(calibration)} calibration pairs, "
          f"{args.method}, {args.format}, activation MatMuls {'int8' if args.activation_matmuls else 'float'}, "
          f"{len(excluded)} MatMuls excluded\n")
    dev = pairs(os.path.join(DATA, "sts-dev.csv"))
    print("| model | STS-B dev Spearman | pairs/s, batches of 32 | pairs/s, one pair per run | max logit change alone vs in a batch (300 pairs) | size |")
    print("|---|---:|---:|---:|---:|---:|")
    report("fp32", fp32, tokenizer, dev)
    report("dynamic int8", os.path.join(args.model_dir, "onnx", "model_qint8_avx2.onnx"), tokenizer, dev)
    report(f"static int8 ({args.method}, {args.format})", args.out, tokenizer, dev)


if __name__ == "__main__":
    main()
