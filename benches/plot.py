#!/usr/bin/env python3
"""Bar chart of crossflow-bench CSV results: pairs/s per profile and system.

    .venv/bin/pip install matplotlib
    .venv/bin/python benches/plot.py target/bench-int8.csv target/bench-fp32.csv -o benches/results/pairs-per-second.png
"""
import argparse
import csv
from collections import defaultdict

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("csv", nargs="+", help="CSV files written by crossflow-bench --csv (label taken from the file name)")
    p.add_argument("-o", "--output", required=True)
    args = p.parse_args()
    series = defaultdict(dict)
    profiles = []
    for path in args.csv:
        label = path.rsplit("/", 1)[-1].removesuffix(".csv").removeprefix("bench-")
        for row in csv.DictReader(open(path, encoding="utf-8")):
            system = row["system"].split(" (")[0].replace("python onnxruntime 1.31.1 loop", "python loop")
            name = f"{system} [{label}]"
            if system.startswith("sentence-transformers"):
                name = f"sentence-transformers, PyTorch fp32 (measured in the {label} run)"
            series[name][row["profile"]] = float(row["pairs_per_s"])
            if row["profile"] not in profiles:
                profiles.append(row["profile"])
    fig, ax = plt.subplots(figsize=(9, 4.5))
    width = 0.8 / max(1, len(series))
    for k, (name, values) in enumerate(series.items()):
        xs = [i + k * width for i in range(len(profiles))]
        ax.bar(xs, [values.get(pr, 0) for pr in profiles], width, label=name)
    ax.set_xticks([i + width * (len(series) - 1) / 2 for i in range(len(profiles))], profiles)
    ax.set_ylabel("pairs / s (2 CPU cores)")
    ax.set_title("crossflow vs a Python onnxruntime loop and sentence-transformers, same weights and pairs")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(args.output, dpi=120)


if __name__ == "__main__":
    main()
