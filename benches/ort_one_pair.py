#!/usr/bin/env python3
"""Where one ONNX Runtime thread spends a one-pair run (issue 15).

    crossflow-bench export-pairs --profiles short,long --limit 600 --out target/pairs.json
    python3 benches/ort_one_pair.py profile GRAPH.onnx --pairs target/pairs.json --profile long
    python3 benches/ort_one_pair.py options GRAPH.onnx --pairs target/pairs.json --profile short

`profile`: ONNX Runtime's profiler over 60 runs of one pair each (or `--batch N`
pairs of the profile's order, padded to the longest), one intra-op thread, as
each crossflow session on the CPU: the share of kernel time per operator type
with its microseconds per pair, and the time spent outside kernels.
`options`: pairs/s one pair per run, one thread, for session options the issue
names (memory pattern, arena, spinning, denormals), three interleaved rounds.
`batches`: pairs/s of each graph given, one thread, pairs sorted by length in
batches of 1, 4 and 16 (as crossflow's sessions run them), and the Python loop's
way (two threads, batches of 32 in input order).
Needs onnxruntime, numpy, tokenizers and onnx (it pads batches with
scripts/quantize_static.py, which imports onnxruntime.quantization): e.g.
.venv-st from scripts/setup --sentence-transformers, not .venv.
"""
import argparse
import collections
import json
import os
import tempfile
import sys
import time

import onnxruntime as ort
from tokenizers import Tokenizer

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "scripts"))
from quantize_static import encode  # noqa: E402  (padding to the batch's longest pair)

MODEL_DIR = "models/crossflow-sts-minilm-l6"
OPTIONS = {
    "default": {},
    "no_mem_pattern": {"enable_mem_pattern": False},
    "no_arena": {"enable_cpu_mem_arena": False},
    "no_spinning": {"config:session.intra_op.allow_spinning": "0"},
    "denormal_as_zero": {"config:session.set_denormal_as_zero": "1"},
}


def feeds(pairs, tokenizer, batch=1):
    """One input feed per `batch` pairs (one: unpadded, as crossflow's one-pair runs)."""
    return [encode(tokenizer, pairs[i:i + batch]) for i in range(0, len(pairs), batch)]


def session(graph, settings=None, profile_dir=None):
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    for key, value in (settings or {}).items():
        if key.startswith("config:"):
            options.add_session_config_entry(key[len("config:"):], value)
        else:
            setattr(options, key, value)
    if profile_dir:
        options.enable_profiling = True
        options.profile_file_prefix = os.path.join(profile_dir, "ort")
    return ort.InferenceSession(graph, options, providers=["CPUExecutionProvider"])


def profile(graph, runs, batch=1):
    with tempfile.TemporaryDirectory() as tmp:
        s = session(graph, profile_dir=tmp)
        for feed in runs[:60]:
            s.run(None, feed)
        events = json.load(open(s.end_profiling()))
    pairs = len(runs[:60]) * batch
    per_op, kernels = collections.Counter(), 0
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
            per_op[e["args"]["op_name"]] += e["dur"]
            kernels += e["dur"]
    total = sum(e["dur"] for e in events if e.get("name") == "model_run")
    print(f"{len(runs[:60])} runs: {total / 1e3:.0f} ms in Run, {kernels / 1e3:.0f} ms in kernels "
          f"({100 * (total - kernels) / total:.0f} % outside kernels)")
    print(f"{pairs} pairs, {batch} per run: {total / pairs:.0f} µs per pair in Run")
    for op, us in per_op.most_common(14):
        print(f"| {op} | {100 * us / kernels:.1f} % | {us / pairs:.0f} µs per pair |")


def options(graph, runs, rounds=3):
    sessions = {name: session(graph, settings) for name, settings in OPTIONS.items()}
    rates = {name: [] for name in sessions}
    for _ in range(rounds):
        for name, s in sessions.items():
            s.run(None, runs[0])
            started = time.perf_counter()
            for feed in runs:
                s.run(None, feed)
            rates[name].append(len(runs) / (time.perf_counter() - started))
    for name, r in rates.items():
        print(f"| {name} | {' / '.join(f'{x:.0f}' for x in r)} |")


def batches(graph, pairs, tokenizer):
    by_length = sorted(pairs, key=lambda p: len(p[0]) + len(p[1]))
    rates = []
    for threads, size, order in [(1, 1, by_length), (1, 4, by_length), (1, 16, by_length),
                                 (2, 32, pairs)]:
        s = session(graph, {"intra_op_num_threads": threads})
        runs = [encode(tokenizer, order[i:i + size]) for i in range(0, len(order), size)]
        s.run(None, runs[0])
        started = time.perf_counter()
        for feed in runs:
            s.run(None, feed)
        rates.append(f"{len(order) / (time.perf_counter() - started):.0f}")
    print(f"| {os.path.basename(graph)} | {' | '.join(rates)} |")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("what", choices=["profile", "options", "batches"])
    ap.add_argument("graph", nargs="+")
    ap.add_argument("--pairs", required=True, help="JSON from crossflow-bench export-pairs")
    ap.add_argument("--profile", default="short")
    ap.add_argument("--model-dir", default=MODEL_DIR, help="for tokenizer.json")
    ap.add_argument("--max-length", type=int, default=128)
    ap.add_argument("--batch", type=int, default=1, help="pairs per run for `profile`")
    args = ap.parse_args()
    tokenizer = Tokenizer.from_file(os.path.join(args.model_dir, "tokenizer.json"))
    tokenizer.no_padding()
    tokenizer.enable_truncation(args.max_length, strategy="longest_first")
    pairs = [tuple(p[:2]) for p in json.load(open(args.pairs))[args.profile]]
    if args.what == "batches":
        for graph in args.graph:
            batches(graph, pairs, tokenizer)
        return
    runs = feeds(pairs, tokenizer, args.batch if args.what == "profile" else 1)
    for graph in args.graph:
        print(os.path.basename(graph))
        if args.what == "profile":
            profile(graph, runs, args.batch)
        else:
            options(graph, runs)


if __name__ == "__main__":
    main()
