#!/usr/bin/env python3
"""Turns bench/out/<run>/ raw rows into markdown tables (medians and ratios).

    summarize.py survey DIR     DIR/runs.tsv (+ DIR/rss-sum.tsv)
    summarize.py core DIR       DIR/core.jsonl
"""
import csv, json, statistics as st, sys
from collections import defaultdict


def med(xs):
    xs = [x for x in xs if x is not None]
    return st.median(xs) if xs else None


def num(s):
    try:
        return float(s)
    except (TypeError, ValueError):
        return None


def fmt(x, d=2):
    return "—" if x is None else f"{x:.{d}f}"


def survey(d):
    rows = list(csv.DictReader(open(f"{d}/runs.tsv"), delimiter="\t"))
    by = defaultdict(list)
    for r in rows:
        by[(int(r["size"]), r["tool"])].append(r)
    rss = {}
    try:
        for line in open(f"{d}/rss-sum.tsv"):
            n, tool, peak, procs, pss = line.split()
            rss[(int(n), tool)] = (num(peak), procs, num(pss))
    except FileNotFoundError:
        pass
    sizes = sorted({k[0] for k in by})
    tools = []
    for r in rows:
        if r["tool"] not in tools:
            tools.append(r["tool"])

    def cpu(r):
        u, s = num(r["cg_user_s"]), num(r["cg_sys_s"])
        return u + s if u is not None and s is not None else None

    def tcpu(r):
        return num(r["time_user_s"]) + num(r["time_sys_s"])

    out = []
    for n in sizes:
        runs = by[(n, tools[0])]
        loads = [num(r["load1"]) for rs in (by[(n, t)] for t in tools) for r in rs]
        busy = sorted({int(r["busy_pct"]) for rs in (by[(n, t)] for t in tools) for r in rs})
        out.append(f"### {n} hosts — median of {len(runs)} runs")
        out.append("")
        out.append(f"load1 before each measured command: {min(loads):.2f}–{max(loads):.2f} (median {st.median(loads):.2f}); "
                   f"machine busy in the 2 s idle window before each run set: {busy[0]}–{busy[-1]}% of both cores")
        out.append("")
        out.append("| tool | ok hosts | wall s | CPU s (tree, cgroup) | CPU s (/usr/bin/time) | CPU ms/host | machine CPU s (all processes) | peak RSS of one process MiB | peak summed RSS MiB | peak summed PSS MiB | max procs |")
        out.append("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
        meds = {}
        for t in tools:
            rs = by[(n, t)]
            w = med([num(r["wall_s"]) for r in rs])
            c = med([cpu(r) for r in rs])
            tc = med([tcpu(r) for r in rs])
            m = med([num(r["time_maxrss_kib"]) for r in rs])
            mc = med([num(r.get("machine_cpu_s")) for r in rs])
            meds[t] = (w, c)
            oks = sorted({r["ok"] for r in rs})
            pk, procs, pss = rss.get((n, t), (None, "—", None))
            out.append(f"| {t} | {'/'.join(oks)} of {n} | {fmt(w)} | {fmt(c)} | {fmt(tc)} | {fmt(c and c / n * 1000, 1)} | {fmt(mc)} | "
                       f"{fmt(m and m / 1024, 1)} | {fmt(pk and pk / 1024, 1)} | {fmt(pss and pss / 1024, 1)} | {procs} |")
        out.append("")
        out.append("| rollctl / … | wall (ratio of medians) | wall (median of per-run ratios) | CPU (ratio of medians) |")
        out.append("| --- | --- | --- | --- |")
        base = {int(r["run"]): r for r in by[(n, "rollctl")]}
        for t in tools:
            if t == "rollctl" or meds[t][0] is None:
                continue
            per = [num(base[int(r["run"])]["wall_s"]) / num(r["wall_s"]) for r in by[(n, t)] if int(r["run"]) in base and num(r["wall_s"])]
            cr = meds["rollctl"][1] / meds[t][1] if meds[t][1] and meds["rollctl"][1] else None
            out.append(f"| {t} | {fmt(meds['rollctl'][0] / meds[t][0])} | {fmt(med(per))} | {fmt(cr)} |")
        out.append("")
    print("\n".join(out))


def core(d):
    rows = [json.loads(l) for l in open(f"{d}/core.jsonl") if l.strip().startswith("{")]
    by = defaultdict(list)
    for r in rows:
        by[r["hosts"]].append(r)
    out = ["| hosts | runs | load1 | planned / skipped | waves / batches | outcome | committed | reboots | plan s | create s | run s | µs/host | total s | CPU s | peak RSS MiB after plan | peak RSS MiB | journal MiB |",
           "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for n in sorted(by):
        rs = by[n]
        m = lambda k: st.median([r[k] for r in rs])
        r0 = rs[0]
        out.append(f"| {n} | {len(rs)} | {min(r['load1'] for r in rs):.2f}–{max(r['load1'] for r in rs):.2f} | {r0['planned']} / {r0['skipped']} | {r0['waves']} / {r0['batches']} | "
                   f"{'/'.join(sorted({r['outcome'] for r in rs}))} | {r0['committed']} | {r0['reboots']} | "
                   f"{m('plan_s'):.3f} | {m('create_s'):.3f} | {m('run_s'):.2f} | {m('run_s') / r0['planned'] * 1e6:.0f} | {m('total_s'):.2f} | {m('cpu_s'):.2f} | "
                   f"{m('peak_rss_after_plan_kib') / 1024:.1f} | {m('peak_rss_kib') / 1024:.1f} | {st.median([(r['journal_bytes'] + r['wal_bytes']) for r in rs]) / 1048576:.1f} |")
    customers = sorted({r.get("customers", 0) for r in rows})
    if customers != [0]:
        out.append(f"\ncustomers told by webhook: {', '.join(map(str, customers))}")
    print("\n".join(out))


if __name__ == "__main__":
    {"survey": survey, "core": core}[sys.argv[1]](sys.argv[2])
