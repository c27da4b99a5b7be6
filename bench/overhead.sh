#!/usr/bin/env bash
# bench/overhead.sh — rollctl's overhead on a 200-host fleetsim rollout (issue 19.5): waves
# [1, 10%, 100%], max_parallel 50, 10 racks (one host per rack at a time), settle 1 s, 10 s soaks.
#
# The bound is what the plan makes anyone wait for, read from the fleet and the journal:
#   per batch (they run one after another): the slowest of its hosts' boots, from fleetsim's
#   "reboot requested" to "up, sshd listening" (supervisor.log), plus the settle;
#   per wave: the soak.
# Everything else — survey, pre-checks, staging, SSH handshakes, noticing a host is back,
# verification, the gate's reads, commits, journal writes — is rollctl's overhead.
# Reports the wall time, the bound, their ratio (target <= 1.05) and rollctl's CPU per host.
#
#   bench/overhead.sh            BIN=.build-bench/release (or BIN=.build/debug) HOSTS=200
set -euo pipefail
source "$(dirname "$0")/lib.sh"
need_release_build

HOSTS=${HOSTS:-200}
BASE=${BASE:-127.63.0.1}
PORT=${PORT:-2263}
FLEET=${FLEET:-/tmp/rollctl-bench-overhead}
OUT=${OUT:-$ROOT/bench/out/overhead-$(date -u +%Y%m%dT%H%M%SZ)}
mkdir -p "$OUT"
trap 'fleet_down "$FLEET"' EXIT
trap 'exit 130' INT TERM

cat > "$OUT/plan.yaml" <<YML
name: overhead
kernel: {release: 6.1.0-19-hosting}
inventory: $FLEET/inventory.yaml
waves: {sizes: [1, 10%, 100%], max_parallel: 50}
reboot: {command: systemctl reboot, timeout: 120s, settle: 1s}
gate: {soak: 10s, interval: 2s, probe_timeout: 2s, sunreclaim_growth_max: null, min_slope_points: 2, test_site: none}
YML

fleet_up "$FLEET" "$HOSTS" 10 "$BASE" "$PORT"
mark=$(wc -l < "$FLEET/supervisor.log")
ld=$(load1)
/usr/bin/time -f "%e %U %S" -o "$OUT/time" "$BIN/rollctl" plan apply "$OUT/plan.yaml" --journal "$OUT/journal.sqlite" > "$OUT/apply.log" 2>&1
tail -n +"$((mark + 1))" "$FLEET/supervisor.log" > "$OUT/supervisor.log"
ID=$("$BIN/rollctl" rollout list --journal "$OUT/journal.sqlite" --json | head -n 1 | sed -E 's/.*"id":"([^"]+)".*/\1/')
"$BIN/rollctl" rollout show "$ID" --journal "$OUT/journal.sqlite" --json > "$OUT/show.json"
python3 - "$OUT" "$HOSTS" "$ld" <<'PY' | tee "$OUT/summary.md"
import json, sys, re
from datetime import datetime
out, hosts, load = sys.argv[1], int(sys.argv[2]), sys.argv[3]
wall, user, sys_ = map(float, open(f"{out}/time").read().split()[-3:])
show = json.load(open(f"{out}/show.json"))
rows = show["hosts"] if isinstance(show, dict) else show
asked, up = {}, {}
for line in open(f"{out}/supervisor.log"):
    m = re.match(r"(\S+) (\S+): (reboot requested|up, sshd listening)$", line.strip())
    if not m: continue
    t = datetime.fromisoformat(m.group(1).replace("Z", "+00:00")).timestamp()
    if m.group(3).startswith("reboot"): asked.setdefault(m.group(2), t)
    else: up[m.group(2)] = t
batches = {}
for h in rows:
    if h.get("wave") is None or h.get("batch") is None: continue
    n = h["name"]
    if n not in asked or n not in up: continue
    batches.setdefault((h["wave"], h["batch"]), []).append(up[n] - asked[n])
settle, soak = 1.0, 10.0
waves = sorted({w for w, _ in batches})
bound = sum(max(v) + settle for v in batches.values()) + soak * len(waves)
boots = [d for v in batches.values() for d in v]
print(f"| hosts | load1 | waves / batches | boots (median / max s) | bound s | wall s | ratio | overhead s | rollctl CPU s | CPU ms/host |")
print(f"| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
boots.sort()
print(f"| {hosts} | {load} | {len(waves)} / {len(batches)} | {boots[len(boots)//2]:.2f} / {boots[-1]:.2f} | {bound:.1f} | {wall:.1f} | "
      f"{wall / bound:.3f} | {wall - bound:.1f} | {user + sys_:.1f} | {(user + sys_) / hosts * 1000:.0f} |")
print(f"\n{len(boots)} of {hosts} hosts timed (reboot asked -> sshd listening).")
PY
