#!/usr/bin/env python3
"""Per-host SSH handshakes of one rollout (bench/connections.sh's OUT dir).

Each `Accepted publickey` line (stamped by logtail.py) is one handshake. It is
attributed to the step the journal records next for that host (the connection
serves that step), or to the survey when it precedes the rollout's creation."""
import sys
from collections import Counter, defaultdict

out = sys.argv[1]
events = [l.rstrip("\n").split("\t", 3) for l in open(f"{out}/events.tsv") if l.strip()]
created = next(e[0] for e in events if e[2] == "info" and e[3].startswith("rollout created"))
per_host = defaultdict(list)
for at, host, kind, msg in events:
    if host:
        per_host[host].append((at, kind, msg))

def label(msg, kind):
    m = msg
    if "→ checked" in m or m.startswith("checked"): return "pre-check"
    if kind == "intent" and m.startswith("install"): return "install+stage"
    if "→ staged" in m: return "install+stage"
    if "→ rebooting" in m: return "reboot command"
    if "reboot command sent" in m: return "reboot command"
    if "→ up" in m: return "wait for new boot"
    if "→ verified" in m: return "verify"
    if "→ soaking" in m: return "gate (soak)"
    if "→ healthy" in m or "→ failed" in m: return "gate (soak)"
    if "make" in m and "default" in m: return "commit"
    if "→ committed" in m: return "commit"
    if "rolling_back" in m or "rolled_back" in m: return "rollback"
    return kind + ": " + m[:40]

acc = defaultdict(list)
for line in open(f"{out}/sshd-accepted.tsv"):
    at, host, text = line.rstrip("\n").split("\t", 2)
    if "Accepted publickey" in text:
        acc[host].append(at)

hosts = [l.rstrip("\n").split("\t") for l in open(f"{out}/hosts.tsv") if l.strip()]
order = ["survey", "pre-check", "install+stage", "reboot command", "wait for new boot", "verify", "gate (soak)", "commit", "rollback", "after the last event"]
rows = []
total = Counter()
for name, wave, batch, state, reboots in hosts:
    boots = sum(1 for l in open(f"{out}/hosts/{name}/boots.log") if l.rstrip().endswith(" up")) - 1
    c = Counter()
    for t in acc.get(name, []):
        if t < created:
            c["survey"] += 1
            continue
        nxt = next(((k, m) for a, k, m in per_host[name] if a >= t), None)
        c[label(nxt[1], nxt[0]) if nxt else "after the last event"] += 1
    n = sum(c.values())
    minimum = boots + 1  # one per boot the rollout saw: the old one, and each new one
    rows.append((name, wave, state, boots, n, minimum, c))
    total.update(c)

cols = [o for o in order if total[o]] + sorted(k for k in total if k not in order)
print(f"| host | wave | final state | reboots | handshakes | minimum (boots seen) | extra | " + " | ".join(cols) + " |")
print("| --- " * (7 + len(cols)) + "|")
for name, wave, state, boots, n, minimum, c in rows:
    print(f"| {name} | {wave} | {state} | {boots} | {n} | {minimum} | {n - minimum} | " + " | ".join(str(c[k]) for k in cols) + " |")
N = sum(r[4] for r in rows); M = sum(r[5] for r in rows)
print(f"| **all {len(rows)}** | | | {sum(r[3] for r in rows)} | **{N}** | {M} | {N - M} | " + " | ".join(str(total[k]) for k in cols) + " |")
print()
print(f"{N} handshakes for {len(rows)} hosts, {N / len(rows):.2f} per host; minimum {M} ({M / len(rows):.2f} per host): {N / M:.2f}× the minimum.")
