#!/usr/bin/env bash
# bench/connections.sh — SSH handshakes per host during a rollout (issue 8.2).
#
# A 12-host fleetsim fleet (3 racks), the fixed kernel (plans/fleetsim-fixed.yaml,
# copied with this fleet's inventory, without `notify:` and `separate_customers`),
# `rollctl plan apply`; then, per host, the `Accepted publickey` lines of its sshd.log
# (each is one SSH handshake + auth) against the minimum: one connection per boot the
# rollout touches (the old boot: check, stage, reboot; the new boot: verify, soak, commit).
# Each connection is attributed to the rollout step the journal shows for that host at
# that moment.
#
#   bench/connections.sh           BASE=127.0.41.1 PORT=2222
set -euo pipefail
source "$(dirname "$0")/lib.sh"
need_release_build

BASE=${BASE:-127.0.41.1}
PORT=${PORT:-2222}
HOSTS=${HOSTS:-12}
OUT=${OUT:-$ROOT/bench/out/connections-$(date -u +%Y%m%dT%H%M%SZ)}
FLEET=${FLEET:-/tmp/rollctl-bench-conn}
mkdir -p "$OUT"
cleanup() { fleet_down "$FLEET"; }
trap cleanup EXIT
trap 'exit 130' INT TERM

say "fleet of $HOSTS hosts at $BASE:$PORT in $FLEET"
fleet_up "$FLEET" "$HOSTS" 3 "$BASE" "$PORT"

# The plan: fleetsim-fixed with this fleet's inventory; no notices (no SMTP sink here).
python3 - "$ROOT/plans/fleetsim-fixed.yaml" "$FLEET/inventory.yaml" > "$OUT/plan.yaml" <<'EOF'
import re, sys
text = open(sys.argv[1]).read()
text = re.sub(r"(?m)^inventory: .*$", f"inventory: {sys.argv[2]}", text)
text = re.sub(r"(?ms)^notify:\n(?:[ \t]+.*\n)*", "", text)
text = re.sub(r"(?m)^\s+separate_customers: .*\n", "", text)
sys.stdout.write(text)
EOF

declare -A before
for d in "$FLEET"/hosts/*/; do h=$(basename "$d"); before[$h]=$(grep -c 'Accepted publickey' "$d/sshd.log" 2>/dev/null || true); done

rm -f "$OUT/tail.stop" "$OUT/sshd-accepted.tsv"
python3 "$ROOT/bench/logtail.py" "$FLEET" "$OUT/sshd-accepted.tsv" "$OUT/tail.stop" &
tailer=$!
sleep 0.5
say "load1 $(load1) before the rollout; applying $OUT/plan.yaml"
start=$(date -u +%FT%T)
t0=$(date +%s.%N)
set +e
"$BIN/rollctl" plan apply "$OUT/plan.yaml" --journal "$OUT/journal.sqlite" --json > "$OUT/apply.jsonl" 2> "$OUT/apply.err"
rc=$?
set -e
t1=$(date +%s.%N)
say "plan apply exit $rc after $(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.1f", b-a}') s, load1 $(load1)"

sleep 0.5; touch "$OUT/tail.stop"; wait "$tailer" || true
# Copy the logs before `down` removes them.
for d in "$FLEET"/hosts/*/; do h=$(basename "$d"); mkdir -p "$OUT/hosts/$h"; cp "$d/sshd.log" "$d/boots.log" "$OUT/hosts/$h/" 2>/dev/null || true; echo "${before[$h]}" > "$OUT/hosts/$h/accepted-before"; done
sqlite3 -separator $'\t' "$OUT/journal.sqlite" "select at, coalesce(host,''), kind, message from event order by id" > "$OUT/events.tsv"
sqlite3 -separator $'\t' "$OUT/journal.sqlite" "select name, wave, batch, state, reboots from host order by wave, batch, name" > "$OUT/hosts.tsv"

python3 "$ROOT/bench/conn_report.py" "$OUT" "$PORT" | tee "$OUT/summary.md"
