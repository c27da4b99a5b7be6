#!/usr/bin/env bash
# bench/core.sh — the orchestration core at 1k/10k/100k synthetic hosts (Sources/bench-core):
# the wave planner, the real Orchestrator (state machine, gate, commit) and the SQLite
# journal, driving in-process hosts (no SSH) with zero boot and soak times.
# One process per size (so its peak RSS is that size's), REPS runs each, medians.
# A run whose rollout does not end with every planned host committed, rebooted once,
# fails the script (bench-core exits 1).
#
#   bench/core.sh [SIZE...]        default 1000 10000 100000; REPS=3
#   CUSTOMERS=100 bench/core.sh    the same with 100 customers told by webhook (maintenance and done
#                                  notices, windows kept before every batch) to a sink on loopback
set -euo pipefail
source "$(dirname "$0")/lib.sh"
need_release_build bench-core

SIZES=${*:-1000 10000 100000}
REPS=${REPS:-3}
OUT=${OUT:-$ROOT/bench/out/core-$(date -u +%Y%m%dT%H%M%SZ)}
JDIR=${JDIR:-/tmp/rollctl-bench-core}
mkdir -p "$OUT" "$JDIR"
CUSTOMERS=${CUSTOMERS:-0}
NOTIFY=()
SINK=
trap 'rm -rf "$JDIR"; [[ -z $SINK ]] || kill "$SINK" 2>/dev/null || true' EXIT
if (( CUSTOMERS > 0 )); then
  rm -f "$JDIR/sink.port"
  python3 "$ROOT/bench/notice-sink.py" "$JDIR/sink.port" 2> "$OUT/sink.log" &
  SINK=$!
  for _ in $(seq 50); do [[ -s $JDIR/sink.port ]] && break; sleep 0.1; done
  NOTIFY=(--customers "$CUSTOMERS" --webhook "http://127.0.0.1:$(cat "$JDIR/sink.port")/notice")
fi
: > "$OUT/core.jsonl"
for n in $SIZES; do
  for ((r = 1; r <= REPS; r++)); do
    ld=$(load1)
    /usr/bin/time -f '%e %M' -o "$OUT/time-$n-$r" "$BIN/bench-core" --hosts "$n" --journal "$JDIR/journal-$n.sqlite" "${NOTIFY[@]}" > "$OUT/run-$n-$r.json"
    python3 - "$OUT/run-$n-$r.json" "$ld" "$OUT/time-$n-$r" >> "$OUT/core.jsonl" <<'PY'
import json, sys
r = json.load(open(sys.argv[1])); r["load1"] = float(sys.argv[2])
wall, maxrss = open(sys.argv[3]).read().split()[-2:]
r["time_wall_s"] = float(wall); r["time_maxrss_kib"] = int(maxrss)
print(json.dumps(r))
PY
    say "$n hosts run $r: $(tail -1 "$OUT/core.jsonl")"
    rm -f "$JDIR"/journal-$n.sqlite*
  done
done
python3 "$ROOT/bench/summarize.py" core "$OUT" | tee "$OUT/summary.md"
