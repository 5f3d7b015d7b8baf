#!/usr/bin/env python3
"""A batch-invariant way to batch the dynamically quantized int8 graph, measured
in Python onnxruntime: groups of N pairs of the same length, where every int8
product still runs per pair.

    crossflow-bench export-pairs --profiles short,medium,long --limit 5000 --out target/pairs-5k.json
    .venv-st/bin/python benches/pair_groups.py --pairs target/pairs-5k.json --profile short --groups 4,8,16

The graph: the unmasked int8 STS graph (benches/one_pair_graph.py, exact for a
batch without padding). Before each `DynamicQuantizeLinear` the activations are
split into the N pairs (`Split` on the batch axis); each pair gets its own
quantizer and its own copy of the products reading it (`MatMulInteger`, the
cast, the scale and the bias), which ONNX Runtime fuses into the same
`DynamicQuantizeMatMul` a one-pair run uses; the products' outputs are
concatenated back. Everything else (layer norms, attention, GELU) runs batched.
Each pair therefore gets bit for bit what it gets alone (checked here), while
consecutive pairs reuse each weight matrix from the core's cache.

Reported: whether every group's logits equal the one-pair logits bit for bit,
and pairs/s (3 rounds, each system once per round; `--threads 2`: two threads
on one session, as crossflow's two CPU sessions sharing one copy of the
weights) of one pair per run, each group size, and the graph batched as it is
(not invariant), over the profile's pairs grouped by length (lengths with
fewer than 16 pairs left out).
"""
import argparse
import collections
import json
import statistics

import numpy as np
import onnx
from onnx import helper

from one_pair_graph import GRAPH, NOSKIP, STS, cpu, feed, session, tokenizer, unmasked
from shared_weights import seconds_split


def grouped(model_bytes, size):
    """The graph with every int8 product run per pair, for batches of exactly `size` pairs."""
    model = onnx.load_from_string(model_bytes)
    graph = model.graph
    constants = {i.name for i in graph.initializer}
    readers = collections.defaultdict(list)
    for node in graph.node:
        for name in node.input:
            readers[name].append(node)
    ones = helper.make_tensor("pair_groups_ones", onnx.TensorProto.INT64, [size], [1] * size)
    graph.initializer.append(ones)
    replaced, removed = {}, set()
    for node in graph.node:
        if node.op_type != "DynamicQuantizeLinear":
            continue
        x, (y, scale, zero) = node.input[0], node.output
        new = [helper.make_node("Split", [x, ones.name], [f"{x}_pg{i}" for i in range(size)], axis=0)]
        new += [helper.make_node("DynamicQuantizeLinear", [f"{x}_pg{i}"],
                                 [f"{y}_pg{i}", f"{scale}_pg{i}", f"{zero}_pg{i}"]) for i in range(size)]
        removed.add(id(node))
        for product in readers[y]:
            (cast,) = readers[product.output[0]]
            (mul,) = readers[cast.output[0]]
            scale_mul = next(n for n in readers[scale] if n.output[0] in mul.input)
            (add,) = readers[mul.output[0]]
            chain = [scale_mul, product, cast, mul]
            if add.op_type == "Add" and any(i in constants for i in add.input):
                chain.append(add)
            removed.update(id(n) for n in chain)
            inner = {y, scale, zero} | {o for n in chain for o in n.output}
            for i in range(size):
                rename = lambda v: f"{v}_pg{i}" if v in inner else v  # noqa: E731
                new += [helper.make_node(n.op_type, [rename(v) for v in n.input], [rename(v) for v in n.output],
                                         name=f"{n.name}_pg{i}",
                                         **{a.name: helper.get_attribute_value(a) for a in n.attribute})
                        for n in chain]
            last = chain[-1].output[0]
            new.append(helper.make_node("Concat", [f"{last}_pg{i}" for i in range(size)], [last], axis=0))
        replaced[id(node)] = new
    nodes = []
    for node in graph.node:
        nodes.extend(replaced.get(id(node), [] if id(node) in removed else [node]))
    del graph.node[:]
    graph.node.extend(nodes)
    return model.SerializeToString()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", required=True, help="JSON from crossflow-bench export-pairs")
    ap.add_argument("--profile", default="short")
    ap.add_argument("--groups", default="4,8,16", help="group sizes, dividing 16")
    ap.add_argument("--limit", type=int, default=2400)
    ap.add_argument("--threads", type=int, default=1, help="threads running each system (one session)")
    args = ap.parse_args()
    tok = tokenizer(STS)
    by_length = collections.defaultdict(list)
    for a, b, *_ in json.load(open(args.pairs))[args.profile][:args.limit]:
        f = feed(tok, a, b)
        by_length[f["input_ids"].shape[1]].append(f)
    blocks = [fs[k:k + 16] for fs in by_length.values() for k in range(0, len(fs) - 15, 16)]
    pairs = sum(len(b) for b in blocks)

    def batches(size):
        return [{k: np.concatenate([f[k] for f in block[j:j + size]]) for k in block[0]}
                for block in blocks for j in range(0, 16, size)]

    base = unmasked(STS / GRAPH)
    one = session(base, NOSKIP)
    alone = np.concatenate([one.run(None, b)[0] for b in batches(1)])
    systems = {"one pair per run": (one, batches(1))}
    for size in map(int, args.groups.split(",")):
        s = session(grouped(base, size), NOSKIP)
        got = np.concatenate([s.run(None, b)[0] for b in batches(size)])
        same = np.array_equal(got.view(np.uint32), alone.view(np.uint32))
        print(f"groups of {size}: bit for bit equal to one pair per run: {same}")
        systems[f"groups of {size}"] = (s, batches(size))
    systems["batched as it is, 16 (not invariant)"] = (one, batches(16))
    rates = collections.defaultdict(list)
    for _ in range(3):
        for name, (s, feeds) in systems.items():
            # One session for all threads: one copy of the weights, as crossflow's CPU sessions share.
            rates[name].append(pairs / seconds_split([s] * args.threads, feeds))
    print(f"CPU: {cpu()}; {args.profile}: {pairs} pairs in length groups of 16; "
          f"{args.threads} thread(s) sharing each system's session")
    print("| system | pairs/s (rounds) | vs one pair per run (median of rounds) |\n|---|---|---:|")
    for name, r in rates.items():
        ratio = statistics.median(x / y for x, y in zip(r, rates["one pair per run"]))
        print(f"| {name} | {' / '.join(f'{x:,.0f}' for x in r)} | {ratio:.2f} |")


if __name__ == "__main__":
    main()
