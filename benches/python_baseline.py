#!/usr/bin/env python3
"""The hand-written baselines crossflow is measured against, on the same pairs.

By default: a plain Python onnxruntime loop over the same ONNX file, fixed
batches (default 32) in input order, each padded to its longest pair, no
sorting, no de-duplication. With --sentence-transformers DIR: sentence-
transformers' `CrossEncoder.predict` (PyTorch), same batches and order, on the
checkpoint in DIR (rebuilt from the same weights by benches/onnx_to_torch.py).

Prints one JSON object: pairs/s, tokens, peak RSS. Called by crossflow-bench.
"""
import argparse
import json
import resource
import time

import numpy as np
from tokenizers import Tokenizer


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model-dir", required=True)
    p.add_argument("--onnx", required=True)
    p.add_argument("--pairs", required=True, help="JSON list of [a, b]")
    p.add_argument("--max-length", type=int, required=True)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--repeat", type=int, default=3, help="timed runs; the median is reported")
    p.add_argument("--sentence-transformers", metavar="DIR",
                   help="measure sentence-transformers CrossEncoder.predict on this checkpoint")
    args = p.parse_args()

    pairs = [tuple(x) for x in json.load(open(args.pairs, encoding="utf-8"))]
    tokenizer = Tokenizer.from_file(f"{args.model_dir}/tokenizer.json")
    tokenizer.no_padding()
    tokenizer.enable_truncation(args.max_length, strategy="longest_first")
    if args.sentence_transformers:
        system, run = sentence_transformers_loop(args)
    else:
        system, run = onnxruntime_loop(args, tokenizer)
    batches = [pairs[i : i + args.batch_size] for i in range(0, len(pairs), args.batch_size)]
    # Real and padded tokens, counted once outside the timing.
    lengths = [[len(e.ids) for e in tokenizer.encode_batch(b)] for b in batches]
    tokens = sum(sum(l) for l in lengths)
    padded = sum(max(l) * len(l) for l in lengths)

    run(pairs[:64])  # warm-up, as the engine gets
    times = []
    for _ in range(max(1, args.repeat)):
        start = time.perf_counter()
        for batch in batches:
            run(batch)
        times.append(time.perf_counter() - start)
    seconds = sorted(times)[len(times) // 2]
    print(json.dumps({
        "system": system,
        "pairs": len(pairs),
        "seconds": seconds,
        "pairs_per_s": len(pairs) / seconds,
        "tokens": tokens,
        "padded_tokens": padded,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }))


def onnxruntime_loop(args, tokenizer):
    import onnxruntime as ort

    session = ort.InferenceSession(args.onnx, providers=["CPUExecutionProvider"])
    names = {i.name for i in session.get_inputs()}
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

    return f"python onnxruntime {ort.__version__} loop (batch {args.batch_size}, unsorted)", run


def sentence_transformers_loop(args):
    import sentence_transformers
    import torch
    from sentence_transformers import CrossEncoder

    model = CrossEncoder(args.sentence_transformers, max_length=args.max_length, device="cpu")

    def run(chunk):
        model.predict(list(chunk), batch_size=args.batch_size, show_progress_bar=False)

    system = (f"sentence-transformers {sentence_transformers.__version__} CrossEncoder.predict"
              f" (torch {torch.__version__.split('+')[0]} fp32, {torch.get_num_threads()} threads,"
              f" batch {args.batch_size})")
    return system, run


if __name__ == "__main__":
    main()
