"""Quality of `crossflow search` on TREC-QA answer selection pooled into one corpus.

Every distinct answer sentence of a split becomes one document and every
question one query; the relevant documents of a question are its answers
labelled 1. The script builds those files with `crossflow sql`, indexes the
corpus, searches with --top-k = --top-n = 100 and --fusion 1 (every
candidate with its bi_score and cross_score), then computes, over the
questions with at least one relevant answer:

- the first stage's recall@k (k = 10, 50, 100): relevant documents among a
  question's k best by cosine, over all its relevant documents;
- MAP and MRR@10 of the top 100 ranked by the bi-encoder alone, by the
  cross-encoder alone, and fused (W × cross + (1 - W) × bi, each min-max
  normalised per query, as --fusion W does) for W = 0, 0.1, ..., 1.

Usage: python3 benches/search_quality.py CROSSFLOW_BINARY SPLIT [SPLIT ...]
(SPLIT: train or dev of ../shared/data/trecqa-wang). Only the standard
library is needed.
"""

import csv
import io
import subprocess
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "trecqa-wang"
WEIGHTS = [w / 10 for w in range(11)]


def crossflow(binary, *args):
    return subprocess.run([binary, *args], check=True, capture_output=True, text=True)


def sql_csv(binary, tables, query):
    args = ["sql", "--format", "csv"]
    for spec in tables:
        args += ["-t", spec]
    out = crossflow(binary, *args, query).stdout
    return list(csv.DictReader(io.StringIO(out)))


def build(binary, split, work):
    source = f"qa={DATA / (split + '.csv')}"
    corpus, queries = work / "corpus.parquet", work / "queries.parquet"
    crossflow(binary, "sql", "-t", source,
              "COPY (SELECT CAST(ROW_NUMBER() OVER (ORDER BY atext) AS BIGINT) AS doc_id, atext AS doc "
              f"FROM (SELECT DISTINCT atext FROM qa)) TO '{corpus}' STORED AS PARQUET",
              "COPY (SELECT CAST(ROW_NUMBER() OVER (ORDER BY qtext) AS BIGINT) AS query_id, qtext AS query "
              f"FROM (SELECT DISTINCT qtext FROM qa)) TO '{queries}' STORED AS PARQUET")
    relevant = defaultdict(set)
    for row in sql_csv(binary, [source, f"c={corpus}", f"q={queries}"],
                       "SELECT q.query_id, c.doc_id FROM qa JOIN q ON qa.qtext = q.query "
                       "JOIN c ON qa.atext = c.doc WHERE qa.label = 1"):
        relevant[row["query_id"]].add(row["doc_id"])
    return corpus, queries, relevant


def average_precision(ranked, relevant):
    hits, total = 0, 0.0
    for i, doc in enumerate(ranked, 1):
        if doc in relevant:
            hits += 1
            total += hits / i
    return total / len(relevant)


def reciprocal_rank(ranked, relevant, cut=10):
    for i, doc in enumerate(ranked[:cut], 1):
        if doc in relevant:
            return 1.0 / i
    return 0.0


def normalised(values):
    low, high = min(values), max(values)
    return [0.5 if high == low else (v - low) / (high - low) for v in values]


def evaluate(rows, relevant):
    by_query = defaultdict(list)
    for row in rows:
        by_query[row["query_id"]].append((row["doc_id"], float(row["bi_score"]), float(row["cross_score"])))
    queries = [q for q in by_query if relevant.get(q)]
    report = {"questions": len(queries)}
    for k in (10, 50, 100):
        recall = 0.0
        for q in queries:
            best = sorted(by_query[q], key=lambda r: (-r[1], int(r[0])))[:k]
            recall += sum(doc in relevant[q] for doc, _, _ in best) / len(relevant[q])
        report[f"recall@{k}"] = recall / len(queries)
    for w in WEIGHTS:
        ap = rr = 0.0
        for q in queries:
            docs = by_query[q]
            bi, cross = normalised([d[1] for d in docs]), normalised([d[2] for d in docs])
            fused = [w * c + (1 - w) * b for b, c in zip(bi, cross)]
            ranked = [d[0] for _, d in sorted(zip(fused, docs), key=lambda x: (-x[0], int(x[1][0])))]
            ap += average_precision(ranked, relevant[q])
            rr += reciprocal_rank(ranked, relevant[q])
        report[f"W={w:.1f}"] = (ap / len(queries), rr / len(queries))
    return report


def main():
    binary, splits = sys.argv[1], sys.argv[2:]
    for split in splits:
        with tempfile.TemporaryDirectory() as tmp:
            work = Path(tmp)
            corpus, queries, relevant = build(binary, split, work)
            crossflow(binary, "index", "--corpus", str(corpus), "--out", str(work / "index"))
            out = work / "all.parquet"
            crossflow(binary, "search", "--queries", str(queries), "--index", str(work / "index"),
                      "--top-k", "100", "--top-n", "100", "--fusion", "1", "--search", "exact",
                      "--output", str(out))
            rows = sql_csv(binary, [f"t={out}"], "SELECT query_id, doc_id, bi_score, cross_score FROM t")
            docs = sql_csv(binary, [f"c={corpus}"], "SELECT COUNT(*) AS n FROM c")[0]["n"]
            report = evaluate(rows, relevant)
            print(f"## {split}: {docs} documents, {report.pop('questions')} questions with a relevant answer")
            print("| measure | value |\n|---|---|")
            for k in (10, 50, 100):
                print(f"| first-stage recall@{k} | {report.pop(f'recall@{k}'):.3f} |")
            print("\n| ranking | MAP | MRR@10 |\n|---|---|---|")
            for key, (ap, rr) in report.items():
                label = {"W=0.0": "bi-encoder only (W=0)", "W=1.0": "cross-encoder only (W=1)"}.get(key, f"fused {key}")
                print(f"| {label} | {ap:.3f} | {rr:.3f} |")
            print()


if __name__ == "__main__":
    main()
