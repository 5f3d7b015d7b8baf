#!/usr/bin/env bash
# `crossflow dedupe` locally, on a cluster of one executor with every core, and
# on a cluster of two 1-vcore executors, one after the other on this machine:
# stage times from crossflow-dedupe-bench (the client), the nodes started as
# `crossflow scheduler` / `crossflow executor` processes of the release build.
# Usage: benches/dedupe-cluster.sh [ROWS] [MORE crossflow-dedupe-bench FLAGS]
#   (build first: cargo build --release -p crossflow-pipelines -p crossflow-benches --features jobs)
set -euo pipefail
cd "$(dirname "$0")/.."
rows=${1:-20000}
shift || true
bin=target/release
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true' EXIT
work=$(mktemp -d)

start_cluster() { # VCORES...: a scheduler and one executor per argument; sets $scheduler
  scheduler=127.0.0.1:$(port)
  local metrics
  metrics=$(port)
  "$bin/crossflow" scheduler --bind "$scheduler" --metrics-addr "127.0.0.1:$metrics" \
    > /dev/null 2> "$work/scheduler.log" &
  pids+=($!)
  local i=0
  for vcores in "$@"; do
    i=$((i + 1))
    mkdir -p "$work/exec-$i"
    "$bin/crossflow" executor --scheduler "$scheduler" --bind "127.0.0.1:$(port)" \
      --vcores "$vcores" --work-dir "$work/exec-$i" > /dev/null 2> "$work/executor-$i.log" &
    pids+=($!)
  done
  until curl -s "127.0.0.1:$metrics/metrics" | grep -q "^crossflow_scheduler_executors $#"; do
    sleep 0.5
  done
}

stop_cluster() {
  kill "${pids[@]}" 2>/dev/null || true
  wait "${pids[@]}" 2>/dev/null || true
  pids=()
}

cores=$(nproc)
echo "## local"
"$bin/crossflow-dedupe-bench" --rows "$rows" --search-recall-rows 0 "$@"
echo "## one executor, $cores vcores (--partitions $cores)"
start_cluster "$cores"
"$bin/crossflow-dedupe-bench" --rows "$rows" --search-recall-rows 0 \
  --job-arg=--scheduler="df://$scheduler" --job-arg=--partitions="$cores" "$@"
stop_cluster
echo "## two executors, 1 vcore each (--partitions 2)"
start_cluster 1 1
"$bin/crossflow-dedupe-bench" --rows "$rows" --search-recall-rows 0 \
  --job-arg=--scheduler="df://$scheduler" --job-arg=--partitions=2 "$@"
stop_cluster
rm -rf "$work"
