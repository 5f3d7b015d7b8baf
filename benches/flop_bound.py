#!/usr/bin/env python3
"""FLOP-bound estimate: model FLOPs per token x measured tokens/s, against the
measured peak of a large fp32 matrix multiply on this machine (numpy/OpenBLAS).

    .venv/bin/python benches/flop_bound.py models/crossflow-sts-minilm-l6/config.json benches/results/bench-*.csv
"""
import csv
import json
import sys
import time

import numpy as np


def peak_gflops(n=2048, repeats=5):
    a = np.random.rand(n, n).astype(np.float32)
    b = np.random.rand(n, n).astype(np.float32)
    a @ b
    best = min(timeit(lambda: a @ b) for _ in range(repeats))
    return 2 * n**3 / best / 1e9


def timeit(f):
    t = time.perf_counter()
    f()
    return time.perf_counter() - t


def flops_per_token(config, seq):
    d, ff, layers = config["hidden_size"], config["intermediate_size"], config["num_hidden_layers"]
    dense = 2 * layers * (4 * d * d + 2 * d * ff)  # QKV + output projections, feed-forward
    attention = 2 * layers * 2 * seq * d  # scores and weighted sum
    return dense + attention


def main():
    config = json.load(open(sys.argv[1]))
    peak = peak_gflops()
    print(f"peak fp32 matmul (2048^3, numpy): {peak:.0f} GFLOP/s")
    print("| file | profile | system | tokens/s | GFLOP/s | of fp32 peak |\n|---|---|---|---:|---:|---:|")
    for path in sys.argv[2:]:
        for row in csv.DictReader(open(path)):
            tokens = float(row["tokens_per_s"])
            seq = tokens / float(row["pairs_per_s"])
            gflops = tokens * flops_per_token(config, seq) / 1e9
            name = path.rsplit("/", 1)[-1]
            print(f"| {name} | {row['profile']} | {row['system'].split(' (')[0]} | {tokens:.0f} | {gflops:.0f} | {100 * gflops / peak:.0f} % |")


if __name__ == "__main__":
    main()
