#!/usr/bin/env python3
"""Rebuilds the PyTorch (transformers) checkpoint of an fp32 BERT cross-encoder
from its ONNX export, so that sentence-transformers' CrossEncoder can be
measured on the same weights (the shared models ship ONNX files only).

Named initializers (biases, LayerNorm, embeddings, pooler, classifier) are
copied by name; the export renamed the linear weights to `onnx::MatMul_N`, so
each is identified by the bias that its MatMul's output is added to, and
transposed back. The result is checked against onnxruntime on the same pairs
(max |logit diff| printed; the script fails above --tolerance).

    python benches/onnx_to_torch.py --model-dir ../shared/models/crossflow-sts-minilm-l6 \\
        --out target/st-model
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


def state_dict_from_onnx(path):
    graph = onnx.load(path).graph
    tensors = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    state = {name: t for name, t in tensors.items() if not name.startswith("onnx::")}
    consumers = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    for node in graph.node:
        if node.op_type != "MatMul" or node.input[1] not in tensors:
            continue
        weight = node.input[1]
        if not weight.startswith("onnx::"):
            continue
        adds = [n for n in consumers.get(node.output[0], []) if n.op_type == "Add"]
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
    p.add_argument("--onnx", default="onnx/model.onnx", help="fp32 file inside the model dir")
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
