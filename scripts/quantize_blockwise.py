#!/usr/bin/env python3
"""Block-wise int8 weights with per-row int8 activations (ONNX Runtime's
`MatMulNBits`, issue 15, exploratory): each MatMul's activations are quantized
per row (per token) in blocks along K, so a pair's score cannot depend on its
batch neighbours, unlike `quantize_dynamic`'s one scale per batch.

    /tmp/qvenv/bin/pip install onnx onnx_ir onnxruntime==1.31.1 numpy tokenizers==0.23.3
    /tmp/qvenv/bin/python scripts/quantize_blockwise.py \
        --model-dir ../shared/models/crossflow-sts-minilm-l6 --out target/blockwise-int8.onnx

The word embeddings become an int8 `Gather` (as in the dynamic export). Reports
the same table as quantize_static.py: STS-B dev Spearman, pairs/s (batches of
32 and one pair per run, ONNX Runtime's default threads), and the largest
change of a logit between a pair run alone and inside a batch.
"""

import argparse
import os
import tempfile
import time

from onnxruntime.quantization import QuantType, quantize_dynamic
from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer
from tokenizers import Tokenizer

from quantize_static import DATA, pairs, report


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model-dir", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--bits", type=int, choices=[4, 8], default=8)
    ap.add_argument("--block-size", type=int, default=32)
    ap.add_argument("--symmetric", action="store_true")
    ap.add_argument("--accuracy-level", type=int, default=4,
                    help="4: int8 activations (per row, per block); 1: float activations")
    args = ap.parse_args()
    fp32 = os.path.join(args.model_dir, "onnx", "model.onnx")
    started = time.perf_counter()
    quantizer = MatMulNBitsQuantizer(fp32, bits=args.bits, block_size=args.block_size,
                                     is_symmetric=args.symmetric,
                                     accuracy_level=args.accuracy_level)
    quantizer.process()
    with tempfile.TemporaryDirectory() as tmp:
        weights_only = os.path.join(tmp, "matmul_nbits.onnx")
        quantizer.model.save_model_to_file(weights_only, use_external_data_format=False)
        quantize_dynamic(weights_only, args.out, op_types_to_quantize=["Gather"],
                         weight_type=QuantType.QInt8,
                         extra_options={"DefaultTensorType": 1})
    print(f"quantized in {time.perf_counter() - started:.0f}s: {args.bits}-bit weights, "
          f"blocks of {args.block_size}, accuracy level {args.accuracy_level}\n")
    tokenizer = Tokenizer.from_file(os.path.join(args.model_dir, "tokenizer.json"))
    tokenizer.enable_truncation(128)
    tokenizer.no_padding()
    dev = pairs(os.path.join(DATA, "sts-dev.csv"))
    print("| model | STS-B dev Spearman | pairs/s, batches of 32 | pairs/s, one pair per run | max logit change alone vs in a batch (300 pairs) | size |")
    print("|---|---:|---:|---:|---:|---:|")
    report("fp32", fp32, tokenizer, dev)
    report("dynamic int8", os.path.join(args.model_dir, "onnx", "model_qint8_avx2.onnx"), tokenizer, dev)
    report(f"MatMulNBits ({args.bits}-bit, block {args.block_size}, level {args.accuracy_level})",
           args.out, tokenizer, dev)


if __name__ == "__main__":
    main()
