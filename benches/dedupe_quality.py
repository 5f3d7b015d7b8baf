#!/usr/bin/env python3
"""Quality of `crossflow dedupe` clusters on labelled dev pairs.

Every distinct sentence of a dev split becomes one row; `crossflow dedupe`
clusters them; the split's labelled pairs then say how good the clusters are:

* recall: labelled duplicate pairs (STS-B score >= 4.0, MSRP label 1) whose two
  sentences end in one cluster;
* false merges: labelled non-duplicate pairs (STS-B score < 4.0, MSRP label 0)
  whose two sentences end in one cluster;
* direct: duplicates whose `duplicate_of` row they were verified against (a
  verified candidate pair in --pairs-output, or an exact copy);
* the largest cluster.

With --distractors, every sentence of the STS-B train split is added as a row
too (unlabelled): denser data, where chains through unlabelled rows appear.

    .venv/bin/python benches/dedupe_quality.py --crossflow target/debug/crossflow
"""
import argparse
import csv
import re
import subprocess
import tempfile
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq



def sts(data, split):
    pairs = []
    with open(data / f"stsbenchmark/sts-{split}.csv", encoding="utf-8") as f:
        for line in f:
            cols = line.rstrip("\n").split("\t")
            pairs.append((cols[5], cols[6], float(cols[4]) >= 4.0))
    return pairs


def msrp_val(data):
    with open(data / "msrp/msr-para-val.tsv", encoding="utf-8-sig", newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    return [(r["#1 String"], r["#2 String"], r["Quality"] == "1") for r in rows]


def run(crossflow, pairs, distractors, extra):
    sentences = list(dict.fromkeys([s for a, b, _ in pairs for s in (a, b)] + distractors))
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        pq.write_table(pa.table({"id": list(range(len(sentences))), "text": sentences}),
                       tmp / "in.parquet")
        done = subprocess.run([crossflow, "dedupe", "--input", str(tmp / "in.parquet"),
                               "--text-column", "text", "--id-column", "id",
                               "--output", str(tmp / "out.parquet"),
                               "--pairs-output", str(tmp / "pairs.parquet"), *extra],
                              check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                              text=True)
        summary = next(l for l in done.stderr.splitlines() if l.startswith("dedupe: "))
        scored = int(re.search(r"(\d+) scored", summary).group(1))
        verify_s = float(re.search(r"verify ([\d.]+)s", summary).group(1))
        out = pq.read_table(tmp / "out.parquet").to_pylist()
        verified = {frozenset((p["id_a"], p["id_b"]))
                    for p in pq.read_table(tmp / "pairs.parquet").to_pylist() if p["verified"]}
    index = {s: i for i, s in enumerate(sentences)}
    cluster = {r["id"]: r["cluster_id"] for r in out}
    score = {r["id"]: r["match_score"] for r in out}
    same = lambda a, b: cluster[index[a]] == cluster[index[b]]
    positives = [(a, b) for a, b, y in pairs if y]
    negatives = [(a, b) for a, b, y in pairs if not y]
    duplicates = [r for r in out if r["is_duplicate"]]
    direct = sum(1 for r in duplicates
                 if frozenset((str(r["id"]), r["duplicate_of"])) in verified or score[r["id"]] == 1.0)
    sizes = Counter(cluster.values())
    return {
        "rows": len(sentences),
        "duplicates": len(duplicates),
        "recall": sum(same(a, b) for a, b in positives) / len(positives),
        "positives": len(positives),
        "false_merges": sum(same(a, b) for a, b in negatives) / len(negatives),
        "negatives": len(negatives),
        "direct": direct / max(len(duplicates), 1),
        "largest": max(sizes.values()),
        "scored": scored,
        "verify_s": verify_s,
    }


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--crossflow", action="append", required=True,
                   help="crossflow binary (repeat to compare builds)")
    p.add_argument("--data", type=Path, default=Path("../shared/data"))
    p.add_argument("--distractors", action="store_true",
                   help="add the STS-B train sentences as unlabelled rows")
    p.add_argument("extra", nargs="*", help="more dedupe flags, after --")
    args = p.parse_args()
    distractors = ([s for a, b, _ in sts(args.data, "train") for s in (a, b)]
                   if args.distractors else [])
    print("| data | build | rows | duplicates | recall of duplicate pairs | false merges "
          "| duplicates matching duplicate_of directly | largest cluster | pairs scored | verify s |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name, pairs in [("STS-B dev", sts(args.data, "dev")), ("MSRP validation", msrp_val(args.data))]:
        if distractors:
            name += " + STS-B train sentences"
        for binary in args.crossflow:
            m = run(binary, pairs, distractors, args.extra)
            print(f"| {name} | {binary} | {m['rows']} | {m['duplicates']} "
                  f"| {m['recall']:.3f} (of {m['positives']}) | {m['false_merges']:.3f} (of {m['negatives']}) "
                  f"| {m['direct']:.3f} | {m['largest']} | {m['scored']} | {m['verify_s']:.1f} |",
                  flush=True)


if __name__ == "__main__":
    main()
