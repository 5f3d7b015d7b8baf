#!/usr/bin/env python3
"""Rebuilds the PyTorch (transformers) checkpoint of a BERT cross-encoder from
its ONNX export (fp32, or dynamically quantized int8), so that sentence-transformers' CrossEncoder can be
measured on the same weights (the shared models ship ONNX files only).

Named initializers (biases, LayerNorm, embeddings, pooler, classifier) are
copied by name; the export renamed the linear weights to `onnx::MatMul_N`, so
each is identified by the bias that its MatMul's output is added to, and
transposed back. The result is checked against onnxruntime on the same pairs
(max |logit diff| printed; the script fails above --tolerance).

A dynamically quantized graph (the NLI model ships only its int8 file) gives
its int8 weights dequantized, `(W - zero point) * scale`: the checkpoint then
holds the int8 model's weights in fp32, and its logits differ from the int8
graph's by the activations' quantization, here with one scale for the check's
padded batch (use a looser --tolerance). A 1-D scale is taken per output column
when its length is the matrix's column count (as `quantize_dynamic` quantizes
MatMul weights), per row otherwise.

    python benches/onnx_to_torch.py --model-dir ../shared/models/crossflow-sts-minilm-l6 \\
        --out target/st-model
    python benches/onnx_to_torch.py --model-dir ../shared/models/crossflow-nli-minilm-l6 \\
        --onnx onnx/model_qint8_avx2.onnx --tolerance 0.25 --out target/nli-model
"""
import argparse
import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
from onnx import numpy_helper
from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

COPIED = [
    "config.json",
    "config_sentence_transformers.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "vocab.txt",
]

CHECK_PAIRS = [
    ("A man is playing a guitar.", "Someone plays an instrument."),
    ("A woman is slicing an onion.", "The stock market fell sharply today."),
    ("Kids are playing in the park.", "Children play outside."),
    ("", "An empty first text."),
    ("The cat sat on the mat. " * 40, "A long text that is truncated."),
]


QUANTIZED = ("_quantized", "_scale", "_zero_point")


def dequantized(tensors):
    """fp32 values of the int8 initializers `X_quantized` (with `X_scale`, `X_zero_point`) as `X`."""
    out = {}
    for name, q in tensors.items():
        base = name[: -len("_quantized")]
        if not name.endswith("_quantized") or base + "_scale" not in tensors:
            continue
        scale, zero = tensors[base + "_scale"], tensors[base + "_zero_point"]
        if scale.ndim == 1 and q.ndim == 2 and scale.shape[0] != q.shape[1]:
            scale, zero = scale.reshape(-1, 1), zero.reshape(-1, 1)  # one scale per row
        out[base] = (q.astype(np.float32) - zero.astype(np.float32)) * scale
    return out


def float_output(node, consumers):
    """The float product of a MatMul, or of a MatMulInteger through its Cast and scale Mul."""
    if node.op_type == "MatMul":
        return node.output[0]
    (cast,) = consumers[node.output[0]]
    (mul,) = consumers[cast.output[0]]
    return mul.output[0]


def state_dict_from_onnx(path):
    graph = onnx.load(path).graph
    tensors = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    tensors |= dequantized(tensors)
    state = {name: t for name, t in tensors.items()
             if not name.startswith("onnx::") and not name.endswith(QUANTIZED)}
    # The quantizer turns a Gemm into a MatMul on its weight transposed, under a new name.
    for name in [n for n in state if n.endswith("_Transposed")]:
        state[name.removesuffix("_Transposed")] = state.pop(name).T
    consumers = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    for node in graph.node:
        if node.op_type not in ("MatMul", "MatMulInteger") or node.input[1] not in tensors:
            continue
        weight = node.input[1].removesuffix("_quantized")
        if not weight.startswith("onnx::"):
            continue
        adds = [n for n in consumers.get(float_output(node, consumers), []) if n.op_type == "Add"]
        biases = [i for n in adds for i in n.input if i.endswith(".bias") and i in tensors]
        if len(biases) != 1:
            raise SystemExit(f"cannot name the weight {weight}: bias candidates {biases}")
        state[biases[0][: -len(".bias")] + ".weight"] = tensors[weight].T
    return {name: torch.from_numpy(np.array(t, copy=True)) for name, t in state.items()}


def onnx_logits(onnx_path, tokenizer, pairs, max_length):
    session = ort.InferenceSession(onnx_path, providers=["CPUExecutionProvider"])
    names = {i.name for i in session.get_inputs()}
    feed = tokenizer([a for a, _ in pairs], [b for _, b in pairs], padding=True,
                     truncation="longest_first", max_length=max_length, return_tensors="np")
    feed = {k: v.astype(np.int64) for k, v in feed.items() if k in names}
    return session.run(None, feed)[0]


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model-dir", required=True, type=Path)
    p.add_argument("--onnx", default="onnx/model.onnx", help="ONNX file inside the model dir (fp32, or dynamically quantized int8)")
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--max-length", type=int, default=128)
    p.add_argument("--tolerance", type=float, default=1e-4)
    args = p.parse_args()

    args.out.mkdir(parents=True, exist_ok=True)
    for name in COPIED:
        if (args.model_dir / name).exists():
            shutil.copy(args.model_dir / name, args.out / name)
    config = AutoConfig.from_pretrained(args.out)
    model = AutoModelForSequenceClassification.from_config(config)
    state = state_dict_from_onnx(str(args.model_dir / args.onnx))
    missing, unexpected = model.load_state_dict(state, strict=False)
    # Position ids are a buffer, tied decoder weights do not exist in a classifier.
    missing = [m for m in missing if not m.endswith("position_ids")]
    if missing or unexpected:
        raise SystemExit(f"weights do not match: missing {missing}, unexpected {unexpected}")
    model.eval()
    model.save_pretrained(args.out)

    tokenizer = AutoTokenizer.from_pretrained(args.out)
    reference = onnx_logits(str(args.model_dir / args.onnx), tokenizer, CHECK_PAIRS, args.max_length)
    batch = tokenizer([a for a, _ in CHECK_PAIRS], [b for _, b in CHECK_PAIRS], padding=True,
                      truncation="longest_first", max_length=args.max_length, return_tensors="pt")
    with torch.no_grad():
        logits = model(**batch).logits.numpy()
    diff = float(np.abs(logits - reference).max())
    print(json.dumps({"out": str(args.out), "pairs": len(CHECK_PAIRS), "max_abs_logit_diff": diff}))
    if diff > args.tolerance:
        raise SystemExit(f"PyTorch logits differ from onnxruntime by {diff} > {args.tolerance}")


if __name__ == "__main__":
    main()
