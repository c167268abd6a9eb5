#!/usr/bin/python3
"""bench/predict.py - the cost model against measurement.

    predict.py CSV --fusec build/fusec --target TARGET [--md OUT.md]

For every workload and thread count in a results CSV of bench/bench.c,
measures the machine once per thread count (`fusec tune --threads N`),
asks `fusec --emit=report --tune=...` for the predicted time of the fused
schedule and of the unfused (-O0) one, and prints them beside the measured
medians of "fusec TARGET" and "fusec TARGET -O0" with their ratio
(docs/fusion.md, "The cost model").  bench/run.sh runs it after the suite.
"""
import argparse
import csv
import os
import re
import subprocess
import sys
import tempfile

BLOCKS = {"W1": "llama_1b", "W2": "llama_1b", "W3": "attention_1b", "W4": "gpt2_medium",
          "W5a": "mlp_1b", "W5b": "mlp_1b"}


def predicted(fusec, target, tune, block, T, P):
    cmd = [fusec, "--emit=report", "--target=" + target, "--tune=" + tune, "bench/blocks/%s.fdl" % block,
           "--dim", "T=%d" % T]
    if P:
        cmd += ["--dim", "P=%d" % P]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    got = {}
    for line in out.splitlines():
        m = re.match(r"^(fused|unfused)\s.*\s([0-9.]+) ms$", line)
        if m:
            got[m.group(1)] = float(m.group(2)) / 1e3
    return got.get("fused"), got.get("unfused")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("csv")
    ap.add_argument("--fusec", default="build/fusec")
    ap.add_argument("--target", required=True)
    ap.add_argument("--md")
    a = ap.parse_args()
    rows = list(csv.DictReader(open(a.csv)))
    meas = {}
    for r in rows:
        if r["kind"] == "limit" or not r["median_s"]:
            continue
        for label, key in (("fusec %s" % a.target, "fused"), ("fusec %s -O0" % a.target, "unfused")):
            if r["contender"] == label:
                meas[(r["workload"], int(r["threads"]), key)] = (float(r["median_s"]), float(r["min_s"]),
                                                                 float(r["max_s"]), int(r["T"]), int(r["P"] or 0))
    tunes = {}
    tmp = tempfile.mkdtemp(prefix="fusec-predict.")
    lines = ["| workload | thr | schedule | measured (min..max) | predicted | predicted / measured |",
             "| --- | ---: | --- | ---: | ---: | ---: |"]
    for (w, th, key) in sorted(meas):
        med, lo, hi, T, P = meas[(w, th, key)]
        if w not in BLOCKS:
            continue
        if th not in tunes:
            tunes[th] = os.path.join(tmp, "t%d.tune" % th)
            # --no-tiles: the measured binaries use the row's tiles, so the model must too
            subprocess.run([a.fusec, "tune", "--target=" + a.target, "--threads=%d" % th, "--no-tiles", "-o", tunes[th]],
                           check=True)
        f, u = predicted(a.fusec, a.target, tunes[th], BLOCKS[w], T, P)
        p = f if key == "fused" else u
        if p is None:
            continue
        lines.append("| %s T=%d%s | %d | %s | %.2f ms (%.2f..%.2f) | %.2f ms | %.2f |" % (
            w, T, " P=%d" % P if P else "", th, "default" if key == "fused" else "-O0", med * 1e3, lo * 1e3,
            hi * 1e3, p * 1e3, p / med))
    text = "\n".join(lines) + "\n"
    sys.stdout.write("\nThe cost model's predictions (fusec tune on this machine, then --emit=report):\n\n" + text)
    if a.md:
        with open(a.md, "w") as f:
            f.write(text)


if __name__ == "__main__":
    main()
