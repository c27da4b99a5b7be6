#!/usr/bin/env python3
"""For leaky runs of halt-latency.sh: when could a trend check have decided?

The gate judges SUnreclaim growth at the end of the soak, by design. From the
canary's gate report (samples: seconds, SUnreclaim) this prints, per run, the first
sample at which the least-squares slope over the samples so far exceeds the plan's
limit, and the first at which its lower bound (slope - 2 standard errors) does —
i.e. how much earlier an early-stop rule could have failed the canary.

    growth_early.py RUN_DIR...   (each with gate-report.json)"""
import json, math, sys

print("| run | samples | limit MiB/h | slope at end MiB/h | first sample with slope > limit (s) | first with slope − 2·SE > limit (s) | soak s |")
print("| --- | --- | --- | --- | --- | --- | --- |")
for d in sys.argv[1:]:
    r = json.load(open(f"{d}/gate-report.json"))
    pts = [(s["seconds"], s["facts"]["memory"]["sUnreclaim"]) for s in r["samples"] if s.get("facts") and s["facts"]["memory"].get("sUnreclaim")]
    limit = next(f["limit"] for f in r["findings"] if f["check"] == "sunreclaim.growth")
    first = firstci = None
    slope = None
    for k in range(3, len(pts) + 1):
        xs = [p[0] for p in pts[:k]]; ys = [p[1] for p in pts[:k]]
        mx = sum(xs) / k; my = sum(ys) / k
        sxx = sum((x - mx) ** 2 for x in xs)
        slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sxx * 3600
        res = sum((y - my - (slope / 3600) * (x - mx)) ** 2 for x, y in zip(xs, ys))
        se = math.sqrt(res / (k - 2) / sxx) * 3600 if k > 2 else float("inf")
        if first is None and slope > limit: first = xs[-1]
        if firstci is None and slope - 2 * se > limit: firstci = xs[-1]
    f = lambda x: "—" if x is None else f"{x:.1f}"
    print(f"| {d.rstrip('/').split('/')[-1]} | {len(pts)} | {limit / 1048576:.0f} | {slope / 1048576:.0f} | {f(first)} | {f(firstci)} | {pts[-1][0]:.1f} |")
