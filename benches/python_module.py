#!/usr/bin/env python3
"""crossflow's Python module (`crossflow.CrossEncoder.predict`) against
sentence-transformers' `CrossEncoder.predict` and a plain Python onnxruntime
loop, on the same pairs, in interleaved rounds (each system in a process of its
own per round: loading and a warm-up call are not timed).

- crossflow: the bundled int8 STS model, default settings (batch-invariant,
  one pair per micro-batch on the CPU), score cache off; `predict` on every
  pair at once, and in calls of 1,000 pairs.
- sentence-transformers: the fp32 checkpoint rebuilt from the same weights
  (benches/onnx_to_torch.py), batch 32.
- onnxruntime loop: the bundled int8 graph, batch 32, unsorted (as
  benches/python_baseline.py).
- Python overhead: a call of 1,000 pairs answered from the score cache (the
  list conversion, the cache lookups and the numpy result, no inference)
  against the same call run by the model.

    scripts/setup --sentence-transformers
    target/debug/crossflow-bench export-pairs --profiles short,long --limit 2000 \\
      --out target/bench-pairs.json
    .venv/bin/maturin build --manifest-path python/Cargo.toml --profile release \\
      --out target/wheels/release        # or scripts/build-wheel (dist: slower to build)
    .venv-st/bin/pip install --no-deps target/wheels/release/crossflow_py-*.whl \\
      target/wheels/debug/crossflow_models-*.whl
    .venv-st/bin/python benches/python_module.py --pairs target/bench-pairs.json

Prints a Markdown table of pairs/s (median over the rounds) per system and profile.
"""
import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SYSTEMS = ("crossflow", "crossflow-1000", "sentence-transformers", "onnxruntime-loop", "overhead")


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--pairs", type=Path, required=True, help="crossflow-bench export-pairs JSON")
    p.add_argument("--profiles", default="short,long")
    p.add_argument("--limit", type=int, default=2000)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--systems", default=",".join(SYSTEMS))
    p.add_argument("--st-checkpoint", type=Path, default=ROOT / "target/st-model")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    p.add_argument("--profile", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        pairs = [tuple(x) for x in json.loads(args.pairs.read_text())[args.profile][: args.limit]]
        print(json.dumps(WORKERS[args.worker](args, pairs)))
        return
    results = {}
    for round_ in range(args.rounds):
        for profile in args.profiles.split(","):
            for system in args.systems.split(","):
                out = subprocess.run(
                    [sys.executable, __file__, "--worker", system, "--profile", profile,
                     "--pairs", str(args.pairs), "--limit", str(args.limit),
                     "--st-checkpoint", str(args.st_checkpoint)],
                    capture_output=True, text=True, check=True,
                ).stdout
                result = json.loads(out.strip().splitlines()[-1])
                results.setdefault((profile, system), []).append(result)
                print(f"round {round_ + 1} {profile} {system}: {result}", file=sys.stderr)
    report(results, args)


def model_dir():
    import crossflow_models

    return crossflow_models.path("crossflow-sts-minilm-l6")


def timed(run, pairs):
    """Seconds of `run(pairs)`, after a warm-up call on the first 64 pairs."""
    run(pairs[:64])
    start = time.perf_counter()
    run(pairs)
    return time.perf_counter() - start


def crossflow_all(args, pairs):
    import crossflow

    model = crossflow.CrossEncoder(cache_pairs=0)
    return {"pairs": len(pairs), "seconds": timed(model.predict, pairs)}


def crossflow_1000(args, pairs):
    import crossflow

    model = crossflow.CrossEncoder(cache_pairs=0)
    return {"pairs": len(pairs),
            "seconds": timed(lambda p: model.predict(p, batch_size=1000), pairs)}


def overhead(args, pairs):
    import crossflow

    chunk = pairs[:1000]
    cold = crossflow.CrossEncoder(cache_pairs=0)
    run = timed(cold.predict, chunk)
    cached = crossflow.CrossEncoder()
    cached.predict(chunk)
    answered = timed(cached.predict, chunk)
    assert cached.stats["cache_misses"] == len(set(chunk)), cached.stats
    return {"pairs": len(chunk), "seconds": run, "cached_seconds": answered,
            "share": answered / run}


def sentence_transformers(args, pairs):
    from sentence_transformers import CrossEncoder

    model = CrossEncoder(str(args.st_checkpoint), max_length=128, device="cpu")
    return {"pairs": len(pairs),
            "seconds": timed(lambda p: model.predict(p, batch_size=32, show_progress_bar=False),
                             pairs)}


def onnxruntime_loop(args, pairs):
    import numpy as np
    import onnxruntime as ort
    from tokenizers import Tokenizer

    directory = model_dir()
    tokenizer = Tokenizer.from_file(str(directory / "tokenizer.json"))
    tokenizer.no_padding()
    tokenizer.enable_truncation(128, strategy="longest_first")
    session = ort.InferenceSession(str(directory / "onnx/model_qint8_avx2.onnx"),
                                   providers=["CPUExecutionProvider"])
    names = {i.name for i in session.get_inputs()}

    def run(pairs):
        for start in range(0, len(pairs), 32):
            enc = tokenizer.encode_batch(pairs[start : start + 32])
            width = max(len(e.ids) for e in enc)
            ids = np.zeros((len(enc), width), dtype=np.int64)
            mask, types = np.zeros_like(ids), np.zeros_like(ids)
            for r, e in enumerate(enc):
                ids[r, : len(e.ids)], mask[r, : len(e.ids)] = e.ids, 1
                types[r, : len(e.ids)] = e.type_ids
            feed = {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}
            session.run(None, {k: v for k, v in feed.items() if k in names})

    return {"pairs": len(pairs), "seconds": timed(run, pairs)}


WORKERS = {
    "crossflow": crossflow_all,
    "crossflow-1000": crossflow_1000,
    "sentence-transformers": sentence_transformers,
    "onnxruntime-loop": onnxruntime_loop,
    "overhead": overhead,
}


def cpu():
    """The CPU's model, its int8-relevant instruction sets and cores."""
    info = Path("/proc/cpuinfo").read_text().splitlines()
    model = next((l.split(":", 1)[1].strip() for l in info if l.startswith("model name")),
                 platform.processor())
    flags = next((l.split(":", 1)[1].split() for l in info if l.startswith("flags")), [])
    wanted = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "avx_vnni", "amx_tile", "amx_int8")
    return f"{model} ({' '.join(f for f in wanted if f in flags)}; {os.cpu_count()} cores)"


def report(results, args):
    def rate(profile, system):
        runs = results.get((profile, system), [])
        return statistics.median(r["pairs"] / r["seconds"] for r in runs) if runs else None

    print(f"CPU: {cpu()}; {args.rounds} interleaved rounds, {args.limit} pairs per profile, "
          "median pairs/s\n")
    print("| profile | crossflow predict (all) | crossflow predict (calls of 1,000) "
          "| sentence-transformers (batch 32) | onnxruntime loop (batch 32) "
          "| crossflow / sentence-transformers | crossflow / onnxruntime loop "
          "| Python overhead (1,000 pairs) |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for profile in args.profiles.split(","):
        ours, st, loop = (rate(profile, s) for s in ("crossflow", "sentence-transformers",
                                                      "onnxruntime-loop"))
        shares = [r["share"] for r in results.get((profile, "overhead"), [])]
        cells = [f"{x:.0f}" if x else "-" for x in (ours, rate(profile, "crossflow-1000"), st, loop)]
        cells += [f"{ours / st:.2f}×" if ours and st else "-",
                  f"{ours / loop:.2f}×" if ours and loop else "-",
                  f"{100 * statistics.median(shares):.1f} %" if shares else "-"]
        print(f"| {profile} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
