#!/usr/bin/env python3
"""Re-exports a cross-encoder (the STS model; the NLI model with `--task nli`) with eager attention so that ONNX Runtime's
transformer optimizer fuses it (Attention, SkipLayerNormalization, BiasGelu),
quantizes the fused graph dynamically with signed int8 weights, and measures
STS-B dev Spearman (`--task nli`: accuracy on SICK trial, the NLI model's dev
split, and on SNLI validation, part of its training data) of it and of the shipped int8 graph with the same
tokenizer and the same one-pair runs (one thread).

    .venv-st/bin/python benches/onnx_to_torch.py --model-dir ../shared/models/crossflow-sts-minilm-l6 \\
        --out target/st-model
    .venv-st/bin/python benches/export_fused.py --checkpoint target/st-model --out target/fused \\
        [--per-channel] [--reduce-range] [--no-skip-layer-norm]
    .venv-st/bin/python benches/onnx_to_torch.py --model-dir ../shared/models/crossflow-nli-minilm-l6 \\
        --onnx onnx/model_qint8_avx2.onnx --tolerance 0.25 --out target/nli-model
    .venv-st/bin/python benches/export_fused.py --task nli --checkpoint target/nli-model \\
        --out target/fused-nli --per-channel --reduce-range --no-skip-layer-norm
"""
import argparse
import collections
import csv
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
from onnxruntime.quantization import QuantType, quantize_dynamic
from onnxruntime.transformers.fusion_options import FusionOptions
from onnxruntime.transformers.optimizer import optimize_model
from scipy.stats import spearmanr
from tokenizers import Tokenizer
from transformers import AutoModelForSequenceClassification

SHIPPED = {
    "sts": "models/crossflow-sts-minilm-l6/onnx/model_qint8_avx2.onnx",
    "nli": "models/crossflow-nli-minilm-l6/onnx/model_qint8_avx2.onnx",
}
STS_DEV = "../shared/data/stsbenchmark/sts-dev.csv"
SICK = "../shared/data/sick2014/SICK_trial.txt"
SNLI = "../shared/data/snli/validation.tsv"


def export(checkpoint, path):
    model = AutoModelForSequenceClassification.from_pretrained(
        checkpoint, attn_implementation="eager").eval()
    ids = torch.ones((1, 8), dtype=torch.int64)
    names = ["input_ids", "attention_mask", "token_type_ids"]
    axes = {n: {0: "batch", 1: "sequence"} for n in names} | {"logits": {0: "batch"}}
    torch.onnx.export(model, (ids, ids, torch.zeros_like(ids)), str(path), input_names=names,
                      output_names=["logits"], dynamic_axes=axes, opset_version=17, dynamo=False)
    return model.config


def fuse(path, out, config, skip_layer_norm=True):
    options = FusionOptions("bert")
    options.enable_skip_layer_norm = skip_layer_norm
    options.enable_bias_skip_layer_norm = skip_layer_norm
    fused = optimize_model(str(path), model_type="bert", num_heads=config.num_attention_heads,
                           hidden_size=config.hidden_size, optimization_options=options)
    fused.save_model_to_file(str(out))
    ops = collections.Counter(n.op_type for n in onnx.load(str(out)).graph.node)
    return {k: ops[k] for k in ("Attention", "SkipLayerNormalization", "BiasGelu", "Gelu", "FastGelu")}


def dev_pairs():
    pairs, gold = [], []
    with open(STS_DEV, encoding="utf-8") as f:
        for row in csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE):
            if len(row) >= 7:
                pairs.append((row[5], row[6]))
                gold.append(float(row[4]))
    return pairs, gold


def sick_trial():
    """SICK trial pairs and their entailment labels (lower case)."""
    pairs, gold = [], []
    with open(SICK, encoding="utf-8") as f:
        for row in csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE):
            pairs.append((row["sentence_A"], row["sentence_B"]))
            gold.append(row["entailment_judgment"].lower())
    return pairs, gold


def logits(graph, tokenizer, pairs):
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(str(graph), options, providers=["CPUExecutionProvider"])
    wanted = {i.name for i in session.get_inputs()}
    out = []
    for a, b in pairs:
        e = tokenizer.encode(a, b)
        feed = {"input_ids": [e.ids], "attention_mask": [e.attention_mask], "token_type_ids": [e.type_ids]}
        feed = {k: np.array(v, dtype=np.int64) for k, v in feed.items() if k in wanted}
        out.append(session.run(None, feed)[0].reshape(-1))
    return np.array(out)


def snli_validation(count=3000):
    """The first `count` labelled SNLI validation pairs and their labels (lower case)."""
    names = ["entailment", "neutral", "contradiction"]
    with open(SNLI, encoding="utf-8") as f:
        rows = [r for r in csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE) if r["label"] in ("0", "1", "2")]
    rows = rows[:count]
    return [(r["premise"], r["hypothesis"]) for r in rows], [names[int(r["label"])] for r in rows]


def qualities(task, config):
    """The task's dev sets: (measure, pairs, score of a graph's logits on them)."""
    if task == "sts":
        pairs, gold = dev_pairs()
        return [("STS-B dev Spearman", pairs, lambda x: spearmanr(x[:, 0], gold).statistic)]
    labels = [config.id2label[i].lower() for i in range(config.num_labels)]
    if sorted(labels) != ["contradiction", "entailment", "neutral"]:
        raise SystemExit(f"--task nli needs an NLI checkpoint; its labels are {labels}")

    def accuracy(gold):
        return lambda x: np.mean([labels[i] == g for i, g in zip(x.argmax(1), gold)])
    return [(f"{name} accuracy", pairs, accuracy(gold))
            for name, (pairs, gold) in (("SICK trial", sick_trial()), ("SNLI validation", snli_validation()))]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--task", choices=sorted(SHIPPED), default="sts")
    ap.add_argument("--checkpoint", help="default: target/st-model (sts), target/nli-model (nli)")
    ap.add_argument("--out", default="target/fused")
    ap.add_argument("--per-channel", action="store_true",
                    help="one int8 scale per output column of each weight (the shipped graphs' way)")
    ap.add_argument("--reduce-range", action="store_true",
                    help="7-bit weights (the shipped graphs' way; safe on AVX2 without VNNI)")
    ap.add_argument("--no-skip-layer-norm", action="store_true",
                    help="keep residual Add + LayerNormalization unfused (ONNX Runtime's fused "
                         "SkipLayerNormalization CPU kernel is the slower one)")
    args = ap.parse_args()
    args.checkpoint = args.checkpoint or {"sts": "target/st-model", "nli": "target/nli-model"}[args.task]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    config = export(args.checkpoint, out / "model.onnx")
    fused_ops = fuse(out / "model.onnx", out / "model_fused.onnx", config, not args.no_skip_layer_norm)
    print(f"fused operators: {fused_ops}")
    quantize_dynamic(out / "model_fused.onnx", out / "model_fused_qint8.onnx", weight_type=QuantType.QInt8,
                     per_channel=args.per_channel, reduce_range=args.reduce_range,
                     extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
    tokenizer = Tokenizer.from_file(str(Path(args.checkpoint) / "tokenizer.json"))
    tokenizer.enable_truncation(512)
    for measure, pairs, score in qualities(args.task, config):
        print(f"{measure}: {len(pairs)} pairs")
        for name, graph in [("shipped int8", SHIPPED[args.task]), ("fused fp32", out / "model_fused.onnx"),
                            ("fused int8", out / "model_fused_qint8.onnx")]:
            print(f"| {name} | {score(logits(graph, tokenizer, pairs)):.4f} |")


if __name__ == "__main__":
    main()
