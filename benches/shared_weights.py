#!/usr/bin/env python3
"""Two cores, one single-threaded ONNX Runtime session each (crossflow's CPU
default), one pair per run: does it matter whether the two sessions read one
copy of the model's weights or a copy each? Measured in Python onnxruntime,
independently of crossflow's code.

    crossflow-bench export-pairs --profiles short,long --limit 600 --out target/pairs.json
    python3 benches/shared_weights.py --pairs target/pairs.json

Two threads run the unmasked int8 STS graph (benches/one_pair_graph.py) with
SkipLayerNormFusion off, as crossflow does, splitting the pairs between them:
- `one session`: both threads call the same session (one copy of everything);
- `a session each`: two sessions, each with its own copy of the weights;
- the same two with ONNX Runtime's weight prepacking off
  (`session.disable_prepacking`), where the kernels read the initializers;
- `a session each, shared initializers`: two sessions given the same
  initializer tensors (`SessionOptions.add_initializer`), prepacking off.
crossflow's sessions share the initializers and the prepacked copies made
from them (ONNX Runtime's prepacked-weights container, which Python does not
expose); `one session` is the Python stand-in for that. The systems take turns
for 12 rounds; reported: the median pairs/s and the median ratio to `a
session each` within a round.
"""
import argparse
import json
import statistics
import threading
import time

import numpy as np
import onnx
import onnxruntime as ort
from onnx import numpy_helper

from one_pair_graph import GRAPH, NOSKIP, STS, cpu, feed, tokenizer, unmasked

NO_PREPACKING = {"session.disable_prepacking": "1"}


def session(graph, config, initializers=()):
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    for key, value in config.items():
        options.add_session_config_entry(key, value)
    for name, value in initializers:
        options.add_initializer(name, value)
    return ort.InferenceSession(graph, options, providers=["CPUExecutionProvider"])


def seconds_split(sessions, runs):
    """Seconds for len(sessions) threads to run `runs`, thread i every i-th run on sessions[i]."""
    def work(s, part):
        for f in part:
            s.run(None, f)
    threads = [threading.Thread(target=work, args=(s, runs[i::len(sessions)]))
               for i, s in enumerate(sessions)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.perf_counter() - started


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", required=True, help="JSON from crossflow-bench export-pairs")
    ap.add_argument("--rounds", type=int, default=12)
    args = ap.parse_args()
    tok = tokenizer(STS)
    graph = unmasked(STS / GRAPH)
    model = onnx.load_from_string(graph)
    shared = [(i.name, ort.OrtValue.ortvalue_from_numpy(numpy_helper.to_array(i)))
              for i in model.graph.initializer if np.prod(i.dims) >= 4096]
    noprepack = NOSKIP | NO_PREPACKING
    one, other = session(graph, NOSKIP), session(graph, NOSKIP)
    one_np, other_np = session(graph, noprepack), session(graph, noprepack)
    init_a, init_b = session(graph, noprepack, shared), session(graph, noprepack, shared)
    systems = {
        "one session": [one, one],
        "a session each": [one, other],
        "one session, prepacking off": [one_np, one_np],
        "a session each, prepacking off": [one_np, other_np],
        "a session each, shared initializers, prepacking off": [init_a, init_b],
    }
    print(f"CPU: {cpu()}, onnxruntime {ort.__version__}, 2 threads, one single-threaded "
          f"session per thread or one for both, one pair per run, {args.rounds} rounds")
    print("| profile | sessions | pairs/s (median) | vs a session each (median of rounds) |")
    print("|---|---|---:|---:|")
    pairs = json.load(open(args.pairs))
    for profile, count in (("short", 600), ("long", 200)):
        runs = [feed(tok, p[0], p[1]) for p in pairs[profile][:count]]
        rates = {name: [] for name in systems}
        for _ in range(args.rounds):
            for name, sessions in systems.items():
                rates[name].append(len(runs) / seconds_split(sessions, runs))
        base = rates["a session each"]
        for name in systems:
            ratio = statistics.median(x / b for x, b in zip(rates[name], base))
            print(f"| {profile} | {name} | {statistics.median(rates[name]):,.0f} | {ratio:.2f} |")


if __name__ == "__main__":
    main()
