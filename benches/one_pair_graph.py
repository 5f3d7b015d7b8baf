#!/usr/bin/env python3
"""What crossflow's one-pair graph and CPU session setting change, measured in
Python onnxruntime, independently of crossflow's code.

    crossflow-bench export-pairs --profiles short,long --limit 600 --out target/pairs.json
    python3 benches/one_pair_graph.py kernels
    python3 benches/one_pair_graph.py speed --pairs target/pairs.json
    python3 benches/one_pair_graph.py accuracy

The graphs: `original` (the bundled int8 STS graph), `unmasked` (the same graph
without its attention masking, built here with the onnx package as crossflow
builds it in src/model/unpadded/: each softmax reads the bare attention
scores, the IsNaN guard after it goes, and the nodes that fed only those), each
with ONNX Runtime's default session settings or with SkipLayerNormFusion off
(`noskip`), as crossflow runs every session on the CPU.

`kernels`: microseconds of a residual Add + LayerNormalization at width 384,
fused by ONNX Runtime into SkipLayerNormalization (the default) or not.
`speed`: pairs/s one pair per run, one thread (as each crossflow session),
three interleaved rounds; the largest logit difference against `original`;
`--also GRAPH...` adds other graphs of the same architecture, fed by the STS
tokenizer (e.g. a re-export from benches/export_fused.py, or the NLI model's),
run with SkipLayerNormFusion off.
`accuracy`: STS-B dev Spearman and SNLI validation accuracy (first 3,000 pairs)
of the STS and NLI int8 graphs (and the STS fp32 graph of ../shared/models)
with default settings and with the fusion off, and the largest logit
difference between the two.
Needs onnxruntime, onnx, numpy, scipy and tokenizers (.venv-st from
scripts/setup --sentence-transformers has them).
"""
import argparse
import csv
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper
from scipy.stats import spearmanr
from tokenizers import Tokenizer

ROOT = Path(__file__).resolve().parent.parent
STS = ROOT / "models/crossflow-sts-minilm-l6"
NLI = ROOT / "models/crossflow-nli-minilm-l6"
GRAPH = "onnx/model_qint8_avx2.onnx"
DATA = ROOT.parent / "shared/data"
STS_FP32 = ROOT.parent / "shared/models/crossflow-sts-minilm-l6/onnx/model.onnx"
NOSKIP = {"optimization.disable_specified_optimizers": "SkipLayerNormFusion"}
# SNLI's labels (entailment, neutral, contradiction) in the NLI model's order (config.json).
SNLI_TO_MODEL = {0: 1, 1: 2, 2: 0}


def cpu():
    for line in open("/proc/cpuinfo"):
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor()


def session(graph, config=None):
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    for key, value in (config or {}).items():
        options.add_session_config_entry(key, value)
    source = graph if isinstance(graph, bytes) else str(graph)
    return ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])


def tokenizer(model_dir):
    tok = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    tok.no_padding()
    tok.enable_truncation(128, strategy="longest_first")
    return tok


def feed(tok, a, b):
    e = tok.encode(a, b)
    return {name: np.array([values], dtype=np.int64) for name, values in
            [("input_ids", e.ids), ("attention_mask", e.attention_mask), ("token_type_ids", e.type_ids)]}


def unmasked(path):
    """The graph without its attention masking, as serialized bytes."""
    model = onnx.load(str(path))
    graph = model.graph
    producer = {o: n for n in graph.node for o in n.output}
    consumers = {}
    for n in graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    for softmax in [n for n in graph.node if n.op_type == "Softmax"]:
        add = producer[softmax.input[0]]
        where = [i for i in add.input if i in producer and producer[i].op_type == "Where"]
        if add.op_type != "Add" or len(where) != 1:
            continue
        softmax.input[0] = next(i for i in add.input if i != where[0])
        guards = [u for u in consumers[softmax.output[0]]
                  if u.op_type == "Where" and producer[u.input[0]].op_type == "IsNaN"]
        for guard in guards:
            for reader in consumers.get(guard.output[0], []):
                for k, name in enumerate(reader.input):
                    if name == guard.output[0]:
                        reader.input[k] = softmax.output[0]
    needed = {o.name for o in graph.output}
    live = []
    for n in reversed(list(graph.node)):
        if any(o in needed for o in n.output):
            live.append(n)
            needed.update(n.input)
    del graph.node[:]
    graph.node.extend(reversed(live))
    return model.SerializeToString()


def kernels():
    width = 384
    rng = np.random.default_rng(0)
    inputs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, ["b", "s", width]) for n in "xk"]
    output = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    weights = [numpy_helper.from_array(rng.random(width, dtype=np.float32), n) for n in ("gamma", "beta")]
    nodes = [helper.make_node("Add", ["x", "k"], ["sum"]),
             helper.make_node("LayerNormalization", ["sum", "gamma", "beta"], ["y"], axis=-1, epsilon=1e-12)]
    model = helper.make_model(helper.make_graph(nodes, "residual_layer_norm", inputs, [output], weights),
                              opset_imports=[helper.make_opsetid("", 18)], ir_version=9).SerializeToString()
    print(f"CPU: {cpu()}, onnxruntime {ort.__version__}, one thread")
    print("| tokens | fused SkipLayerNormalization, µs | Add + LayerNormalization, µs | max abs difference |")
    print("|---:|---:|---:|---:|")
    sessions = [session(model), session(model, NOSKIP)]
    for tokens in (32, 128):
        x = {n: rng.standard_normal((1, tokens, width), dtype=np.float32) for n in "xk"}
        times = []
        for s in sessions:
            for _ in range(50):
                s.run(None, x)
            started = time.perf_counter()
            for _ in range(2000):
                s.run(None, x)
            times.append((time.perf_counter() - started) / 2000 * 1e6)
        diff = np.abs(sessions[0].run(None, x)[0] - sessions[1].run(None, x)[0]).max()
        print(f"| {tokens} | {times[0]:.1f} | {times[1]:.1f} | {diff:.1e} |")


def speed(pairs_file, also=()):
    tok = tokenizer(STS)
    pairs = json.load(open(pairs_file))
    graphs = {"original": str(STS / GRAPH), "unmasked": unmasked(STS / GRAPH)}
    systems = {f"{g} {c}": session(graphs[g], config) for g in graphs
               for c, config in (("default", None), ("noskip", NOSKIP))}
    systems |= {f"{path} noskip": session(path, NOSKIP) for path in also}
    print(f"CPU: {cpu()}, onnxruntime {ort.__version__}, one thread, one pair per run, 3 interleaved rounds")
    print("| profile | graph, settings | pairs/s (rounds) | vs original default (median of rounds) | max abs logit difference |")
    print("|---|---|---|---:|---:|")
    for profile, count in (("short", 600), ("long", 200)):
        runs = [feed(tok, p[0], p[1]) for p in pairs[profile][:count]]
        reference = [systems["original default"].run(None, f)[0] for f in runs]
        rates = {name: [] for name in systems}
        for _ in range(3):
            for name, s in systems.items():
                started = time.perf_counter()
                for f in runs:
                    s.run(None, f)
                rates[name].append(len(runs) / (time.perf_counter() - started))
        base = rates["original default"]
        for name, s in systems.items():
            diff = max(float(np.abs(r - s.run(None, f)[0]).max()) for r, f in zip(reference, runs))
            ratio = statistics.median(x / b for x, b in zip(rates[name], base))
            shown = " / ".join(f"{x:.0f}" for x in rates[name])
            print(f"| {profile} | {name} | {shown} | {ratio:.3f} | {diff:.3g} |")


def logits(s, tok, pairs):
    return np.array([s.run(None, feed(tok, a, b))[0][0] for a, b in pairs])


def accuracy():
    print(f"CPU: {cpu()}, onnxruntime {ort.__version__}, one pair per run")
    print("| model | data | default settings | SkipLayerNormFusion off | max abs logit difference | decisions changed |")
    print("|---|---|---:|---:|---:|---:|")
    sts_pairs, gold = [], []
    with open(DATA / "stsbenchmark/sts-dev.csv", encoding="utf-8") as f:
        for row in csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE):
            if len(row) >= 7:
                sts_pairs.append((row[5], row[6]))
                gold.append(float(row[4]))
    tok = tokenizer(STS)
    for name, graph in (("STS int8", STS / GRAPH), ("STS fp32", STS_FP32)):
        if not graph.exists():
            print(f"| {name} | {graph} missing | | | | |")
            continue
        runs = [logits(session(graph, c), tok, sts_pairs)[:, 0] for c in (None, NOSKIP)]
        rho = [spearmanr(r, gold).statistic for r in runs]
        print(f"| {name} | STS-B dev, {len(gold)} pairs, Spearman | {rho[0]:.4f} | {rho[1]:.4f} | "
              f"{np.abs(runs[0] - runs[1]).max():.3g} | – |")
    with open(DATA / "snli/validation.tsv", encoding="utf-8") as f:
        rows = [r for r in csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE) if r["label"] in "012"]
    rows = rows[:3000]
    labels = np.array([SNLI_TO_MODEL[int(r["label"])] for r in rows])
    tok = tokenizer(NLI)
    runs = [logits(session(NLI / GRAPH, c), tok, [(r["premise"], r["hypothesis"]) for r in rows])
            for c in (None, NOSKIP)]
    acc = [(r.argmax(1) == labels).mean() for r in runs]
    changed = int((runs[0].argmax(1) != runs[1].argmax(1)).sum())
    print(f"| NLI int8 | SNLI validation, {len(rows)} pairs, accuracy | {acc[0]:.4f} | {acc[1]:.4f} | "
          f"{np.abs(runs[0] - runs[1]).max():.3f} | {changed} labels |")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("what", choices=["kernels", "speed", "accuracy"])
    ap.add_argument("--pairs", help="JSON from crossflow-bench export-pairs (for speed)")
    ap.add_argument("--also", nargs="*", default=[],
                    help="other graphs of the model's architecture to time (for speed; STS tokenizer), "
                         "with SkipLayerNormFusion off")
    args = ap.parse_args()
    if args.what == "kernels":
        kernels()
    elif args.what == "speed":
        if not args.pairs:
            sys.exit("speed needs --pairs (crossflow-bench export-pairs)")
        speed(args.pairs, args.also)
    else:
        accuracy()


if __name__ == "__main__":
    main()
