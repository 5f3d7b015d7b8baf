#!/usr/bin/env python3
"""Adds sentence-transformers' logits to crossflow's parity reference.

Runs `CrossEncoder.predict` (PyTorch, batch 32, no activation) on the pairs of
tests/data/parity_reference.json with the checkpoint that benches/onnx_to_torch.py
rebuilt from the fp32 STS model's weights, and stores them as the model
"sts-fp32-sentence-transformers" (scored by crossflow from the same fp32 ONNX
file in tests/parity.rs and python/tests/). Also stores one `CrossEncoder.rank`
call (the first pair's first text against the second texts of the first
RANK_DOCUMENTS pairs) as "rank", which the Python module's `rank` must order
the same way.

    scripts/setup --sentence-transformers
    .venv-st/bin/python scripts/st_reference.py   # after any scripts/reference_scores.py run
"""
import argparse
import json
from pathlib import Path

import sentence_transformers
import torch
from sentence_transformers import CrossEncoder

ROOT = Path(__file__).resolve().parent.parent
NAME = "sts-fp32-sentence-transformers"
RANK_DOCUMENTS = 24


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--reference", type=Path, default=ROOT / "tests/data/parity_reference.json")
    p.add_argument("--checkpoint", type=Path, default=ROOT / "target/st-model")
    p.add_argument("--max-length", type=int, default=128)
    args = p.parse_args()

    reference = json.loads(args.reference.read_text(encoding="utf-8"))
    pairs = [tuple(pair) for pair in reference["pairs"]]
    model = CrossEncoder(str(args.checkpoint), max_length=args.max_length, device="cpu")
    logits = model.predict(pairs, batch_size=32, activation_fn=torch.nn.Identity(),
                           show_progress_bar=False, convert_to_numpy=True)
    reference["models"][NAME] = {
        "dir": reference["models"]["sts-fp32"]["dir"],
        "onnx": reference["models"]["sts-fp32"]["onnx"],
        "batch_size": 32,
        "made_with": f"sentence-transformers {sentence_transformers.__version__}, "
                     f"torch {torch.__version__}, CrossEncoder.predict batch 32",
        "logits": [[float(x)] for x in logits.reshape(len(pairs), -1)[:, 0]],
    }
    query = pairs[0][0]
    documents = [b for _, b in pairs[:RANK_DOCUMENTS]]
    ranked = model.rank(query, documents, batch_size=32, show_progress_bar=False)
    reference["rank"] = {
        "made_with": f"sentence-transformers {sentence_transformers.__version__}, "
                     f"torch {torch.__version__}, CrossEncoder.rank (default activation)",
        "query": query,
        "documents": documents,
        "results": [{"corpus_id": int(r["corpus_id"]), "score": float(r["score"])}
                    for r in ranked],
    }
    args.reference.write_text(json.dumps(reference, ensure_ascii=False, indent=0) + "\n",
                              encoding="utf-8")
    print(f"{NAME}: {len(pairs)} pairs written to {args.reference}")


if __name__ == "__main__":
    main()
