#!/usr/bin/env bash
# Speed of `crossflow index` and `crossflow search` on a synthetic corpus:
# DOCS documents made of SNLI validation sentences (each distinct sentence,
# then copies tagged with a number), QUERIES queries from the other column.
# Prints the index build rate and peak memory, then for --search exact and
# ivf (--ivf-probes 32): the time of each stage at --top-k 100 (every
# candidate written: --top-n 100) and ivf's recall of the exact candidates.
# Usage: benches/search-speed.sh [DOCS] [QUERIES]
#   (build first: cargo build --release -p crossflow-pipelines)
set -euo pipefail
cd "$(dirname "$0")/.."
docs=${1:-100000}
queries=${2:-200}
bin=$PWD/target/release/crossflow
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
snli=$work/snli.csv
python3 -c 'import csv, sys
rows = csv.reader(open(sys.argv[1], newline=""), delimiter="\t", quoting=csv.QUOTE_NONE)
out = csv.writer(open(sys.argv[2], "w", newline=""))
for row in rows:
    out.writerow(row[:2])' ../shared/data/snli/validation.tsv "$snli"
echo "CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2-), $(nproc) cores; $docs documents, $queries queries"

"$bin" sql -t "snli=$snli" \
  "COPY (SELECT CAST(n AS BIGINT) AS doc_id,
          CASE WHEN n < s THEN text ELSE concat(text, ' (', CAST(n / s AS VARCHAR), ')') END AS doc
        FROM (SELECT text, CAST(ROW_NUMBER() OVER (ORDER BY text) AS BIGINT) - 1 AS i,
                     COUNT(*) OVER () AS s
              FROM (SELECT DISTINCT premise AS text FROM snli)) AS sentences,
             (SELECT value AS n FROM generate_series(0, $docs - 1)) AS numbers
        WHERE n % s = i) TO '$work/corpus.parquet' STORED AS PARQUET" \
  "COPY (SELECT CAST(ROW_NUMBER() OVER (ORDER BY hypothesis) AS BIGINT) AS query_id, hypothesis AS query
        FROM (SELECT DISTINCT hypothesis FROM snli) LIMIT $queries) TO '$work/queries.parquet' STORED AS PARQUET" \
  > /dev/null

measure() { # LABEL COMMAND...: the command's summary line and peak memory
  local label=$1
  shift
  /usr/bin/time -f "%M" -o "$work/rss" "$@" 2> "$work/err" || { cat "$work/err"; exit 1; }
  echo "$label: $(grep -E '^(index|search):' "$work/err") — peak RSS $(($(cat "$work/rss") / 1024)) MiB"
}

measure "index" "$bin" index --corpus "$work/corpus.parquet" --out "$work/index"
for mode in exact ivf; do
  measure "search $mode" "$bin" search --queries "$work/queries.parquet" --index "$work/index" \
    --top-k 100 --top-n 100 --search "$mode" --ivf-probes 32 --output "$work/$mode.parquet"
done
"$bin" sql -t "e=$work/exact.parquet" -t "i=$work/ivf.parquet" \
  "SELECT COUNT(i.doc_id) AS ivf_found, COUNT(*) AS exact_candidates,
          CAST(COUNT(i.doc_id) AS DOUBLE) / COUNT(*) AS recall
   FROM e LEFT JOIN i ON e.query_id = i.query_id AND e.doc_id = i.doc_id"
