#!/usr/bin/env bash
# bench/halt-latency.sh — from the failing gate decision to the halt and to the first
# rollback command, on fleetsim (issue 8.4). Times come from the journal (ISO, ms) and
# from the hosts' sshd.log lines, stamped as they appear (bench/logtail.py, 50 ms poll).
#
# Two cases, REPS times each (default 3), a fresh 4-host fleet every time:
#   leaky  plans/fleetsim-leaky.yaml: the canary's SUnreclaim growth is judged at the
#          end of the soak (by design), so the failure is decided at soak end.
#   oom    plans/fleetsim-fixed.yaml, and `fleetsim set CANARY oom_per_min=30` a few
#          seconds into the canary's soak: an OOM kill ends the soak at the next sample.
#          Also measured: from the injection to the gate's decision.
#
#   bench/halt-latency.sh [leaky] [oom]      BASE=127.0.42.1 PORT=2222 REPS=3
set -euo pipefail
source "$(dirname "$0")/lib.sh"
need_release_build

CASES=${*:-leaky oom}
BASE=${BASE:-127.0.42.1}
PORT=${PORT:-2222}
REPS=${REPS:-3}
OUT=${OUT:-$ROOT/bench/out/halt-$(date -u +%Y%m%dT%H%M%SZ)}
FLEET=${FLEET:-/tmp/rollctl-bench-halt}
mkdir -p "$OUT"
cleanup() { [[ -n ${tailer:-} ]] && kill "$tailer" 2>/dev/null; fleet_down "$FLEET"; }
trap cleanup EXIT
trap 'exit 130' INT TERM

plan_copy() {  # plan_copy SRC DST: this fleet's inventory, no notices
  python3 - "$1" "$FLEET/inventory.yaml" > "$2" <<'EOF'
import re, sys
text = open(sys.argv[1]).read()
text = re.sub(r"(?m)^inventory: .*$", f"inventory: {sys.argv[2]}", text)
text = re.sub(r"(?ms)^notify:\n(?:[ \t]+.*\n)*", "", text)
text = re.sub(r"(?m)^\s+separate_customers: .*\n", "", text)
sys.stdout.write(text)
EOF
}

printf 'case\trep\tload1\tsoak_start\tinjected\tgate_failed\thalt\trollback_intent\trollback_conn\tgate_reason\n' > "$OUT/halt.tsv"
for case in $CASES; do
  for ((r = 1; r <= REPS; r++)); do
    w=$OUT/$case-$r; mkdir -p "$w"
    fleet_up "$FLEET" 4 2 "$BASE" "$PORT"
    case $case in
      leaky) plan_copy "$ROOT/plans/fleetsim-leaky.yaml" "$w/plan.yaml" ;;
      oom)   plan_copy "$ROOT/plans/fleetsim-fixed.yaml" "$w/plan.yaml" ;;
    esac
    rm -f "$w/tail.stop"
    python3 "$ROOT/bench/logtail.py" "$FLEET" "$w/sshd.tsv" "$w/tail.stop" & tailer=$!
    ld=$(load1)
    say "$case $r/$REPS: load1 $ld"
    "$BIN/rollctl" plan apply "$w/plan.yaml" --journal "$w/journal.sqlite" --json > "$w/apply.jsonl" 2> "$w/apply.err" &
    apply=$!
    injected=""
    if [[ $case == oom ]]; then
      # Wait for the canary's soak, let two samples pass, then make it OOM-kill.
      canary=""
      for i in $(seq 1 600); do
        canary=$(sqlite3 "$w/journal.sqlite" "select host from event where message like '%→ soaking%' limit 1" 2>/dev/null || true)
        [[ -n $canary ]] && break
        sleep 0.1
      done
      sleep 4.5
      injected=$(date -u +%FT%T.%3NZ)
      "$BIN/fleetsim" set "$canary" oom_per_min=30 --dir "$FLEET" >/dev/null 2>&1 || "$BIN/fleetsim" set --dir "$FLEET" "$canary" oom_per_min=30 >/dev/null
      say "  oom_per_min=30 on $canary at $injected"
    fi
    wait "$apply" || true
    sleep 1; touch "$w/tail.stop"; wait "$tailer" || true; tailer=""
    sqlite3 -separator $'\t' "$w/journal.sqlite" "select at, coalesce(host,''), kind, message from event order by id" > "$w/events.tsv"
    sqlite3 "$w/journal.sqlite" "select report from gate_report limit 1" > "$w/gate-report.json" 2>/dev/null || true
    python3 - "$w" "$case" "$r" "$ld" "$injected" >> "$OUT/halt.tsv" <<'EOF'
import sys
w, case, rep, ld, injected = sys.argv[1:6]
ev = [l.rstrip("\n").split("\t", 3) for l in open(f"{w}/events.tsv") if l.strip()]
def first(pred):
    return next((e for e in ev if pred(e)), None)
soak = first(lambda e: "→ soaking" in e[3])
failed = first(lambda e: "soaking → failed" in e[3])
halt = first(lambda e: e[2] == "halt")
rb = first(lambda e: "rolling_back" in e[3])
conn = None
if halt:
    for l in open(f"{w}/sshd.tsv"):
        at, host, text = l.rstrip("\n").split("\t", 2)
        if "Accepted publickey" in text and at >= halt[0] and (rb is None or host == rb[1]):
            conn = at; break
g = lambda e: e[0] if e else ""
print("\t".join([case, rep, ld, g(soak), injected, g(failed), g(halt), g(rb), conn or "", (failed[3][:160] if failed else "")]))
EOF
    tail -1 "$OUT/halt.tsv" >&2
    fleet_down "$FLEET"
  done
done

python3 - "$OUT/halt.tsv" <<'EOF' | tee "$OUT/summary.md"
import csv, statistics as st, sys
from datetime import datetime
rows = list(csv.DictReader(open(sys.argv[1]), delimiter="\t"))
t = lambda s: datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp() if s else None
def d(a, b):
    return (t(b) - t(a)) * 1000 if a and b else None
print("| case | rep | load1 | soak start → gate failed s | injection → gate failed ms | gate failed → halt ms | halt → rollback intent ms | gate failed → first rollback connection ms |")
print("| --- | --- | --- | --- | --- | --- | --- | --- |")
agg = {}
for r in rows:
    v = [d(r["soak_start"], r["gate_failed"]), d(r["injected"], r["gate_failed"]), d(r["gate_failed"], r["halt"]),
         d(r["halt"], r["rollback_intent"]), d(r["gate_failed"], r["rollback_conn"])]
    agg.setdefault(r["case"], []).append(v)
    f = lambda x, k=0: "—" if x is None else (f"{x/1000:.1f}" if k else f"{x:.0f}")
    print(f"| {r['case']} | {r['rep']} | {r['load1']} | {f(v[0], 1)} | {f(v[1])} | {f(v[2])} | {f(v[3])} | {f(v[4])} |")
for c, vs in agg.items():
    m = [st.median([x[i] for x in vs if x[i] is not None]) if any(x[i] is not None for x in vs) else None for i in range(5)]
    f = lambda x, k=0: "—" if x is None else (f"{x/1000:.1f}" if k else f"{x:.0f}")
    print(f"| **{c} median** | {len(vs)} | | {f(m[0], 1)} | {f(m[1])} | {f(m[2])} | {f(m[3])} | {f(m[4])} |")
EOF

# How early a trend rule could have failed the leaky canary (the gate waits for the soak's end).
leaky_dirs=("$OUT"/leaky-*)
[[ -e ${leaky_dirs[0]} ]] && python3 "$ROOT/bench/growth_early.py" "${leaky_dirs[@]}" | tee "$OUT/growth-early.md"
exit 0
