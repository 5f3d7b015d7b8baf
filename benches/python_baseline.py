#!/usr/bin/env python3
"""The hand-written baseline crossflow is measured against: a plain Python
onnxruntime loop over the same ONNX file and pairs, fixed batches (default 32)
in input order, each padded to its longest pair, no sorting, no de-duplication.

Prints one JSON object: pairs/s, tokens, peak RSS. Called by crossflow-bench.
"""
import argparse
import json
import resource
import time

import numpy as np
import onnxruntime as ort
from tokenizers import Tokenizer


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model-dir", required=True)
    p.add_argument("--onnx", required=True)
    p.add_argument("--pairs", required=True, help="JSON list of [a, b]")
    p.add_argument("--max-length", type=int, required=True)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--repeat", type=int, default=3, help="timed runs; the median is reported")
    args = p.parse_args()

    pairs = [tuple(x) for x in json.load(open(args.pairs, encoding="utf-8"))]
    session = ort.InferenceSession(args.onnx, providers=["CPUExecutionProvider"])
    names = {i.name for i in session.get_inputs()}
    tokenizer = Tokenizer.from_file(f"{args.model_dir}/tokenizer.json")
    tokenizer.no_padding()
    tokenizer.enable_truncation(args.max_length, strategy="longest_first")
    pad = tokenizer.token_to_id("[PAD]") or 0

    def run(chunk):
        enc = tokenizer.encode_batch(chunk)
        width = max(len(e.ids) for e in enc)
        ids = np.full((len(chunk), width), pad, dtype=np.int64)
        mask = np.zeros_like(ids)
        types = np.zeros_like(ids)
        for r, e in enumerate(enc):
            ids[r, : len(e.ids)] = e.ids
            mask[r, : len(e.ids)] = 1
            types[r, : len(e.ids)] = e.type_ids
        feed = {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}
        session.run(None, {k: v for k, v in feed.items() if k in names})
        return int(mask.sum()), ids.size

    run(pairs[:64])  # warm-up, as the engine gets
    times = []
    for _ in range(max(1, args.repeat)):
        tokens = padded = 0
        start = time.perf_counter()
        for i in range(0, len(pairs), args.batch_size):
            t, pt = run(pairs[i : i + args.batch_size])
            tokens += t
            padded += pt
        times.append(time.perf_counter() - start)
    seconds = sorted(times)[len(times) // 2]
    print(json.dumps({
        "system": f"python onnxruntime {ort.__version__} loop (batch {args.batch_size}, unsorted)",
        "pairs": len(pairs),
        "seconds": seconds,
        "pairs_per_s": len(pairs) / seconds,
        "tokens": tokens,
        "padded_tokens": padded,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }))


if __name__ == "__main__":
    main()
