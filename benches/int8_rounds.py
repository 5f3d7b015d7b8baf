"""Medians over the rounds written by benches/int8-rounds.sh (a directory of
rN-dynamic.csv / rN-LABEL.csv, LABEL the candidate's, `static` unless named):
pairs/s, and each ratio taken within a round."""
import collections
import csv
import glob
import statistics as st
import sys

rows = collections.defaultdict(dict)  # (round, model) -> {(profile, system): row}
for f in sorted(glob.glob(f"{sys.argv[1]}/r[0-9]*-*.csv")):
    r, model = f.split("/")[-1][:-4].split("-")
    for row in csv.DictReader(open(f)):
        rows[(r, model)][(row["profile"], row["system"])] = row
rounds = sorted({r for r, _ in rows})
print("rounds:", rounds, "cpu:", next(iter(next(iter(rows.values())).values()))["cpu"])
print("| profile | graph | system | pairs/s (median, rounds) | vs Python loop, same graph | vs Python loop on the dynamic graph | vs crossflow one-pair on the dynamic graph |")
print("|---|---|---|---:|---:|---:|---:|")
py = lambda p, system: system.startswith("python")
for profile in ["short", "medium", "long"]:
    for model in ["dynamic"] + sorted({m for _, m in rows} - {"dynamic"}):
        systems = [s for (p, s) in rows[(rounds[0], model)] if p == profile]
        for s in systems:
            vals, same, vsdyn, vsone = [], [], [], []
            for r in rounds:
                if (r, model) not in rows or (profile, s) not in rows[(r, model)]: continue
                v = float(rows[(r, model)][(profile, s)]["pairs_per_s"]); vals.append(v)
                d = rows[(r, "dynamic")]
                pyd = next(float(x["pairs_per_s"]) for (p, n), x in d.items() if p == profile and py(p, n))
                one = next(float(x["pairs_per_s"]) for (p, n), x in d.items() if p == profile and "one-pair" in n)
                pys = next(float(x["pairs_per_s"]) for (p, n), x in rows[(r, model)].items() if p == profile and py(p, n))
                same.append(v / pys); vsdyn.append(v / pyd); vsone.append(v / one)
            m = lambda a: f"{st.median(a):.2f}"
            print(f"| {profile} | {model} | {s} | {st.median(vals):.1f} ({' / '.join(f'{v:.1f}' for v in vals)}) | {m(same)} | {m(vsdyn)} | {m(vsone)} |")
