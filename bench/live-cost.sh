#!/usr/bin/env bash
# bench/live-cost.sh — what watching a rollout costs (issue 20): a 200-host fleetsim rollout
# (waves [1, 10%, 100%], max_parallel 50, 10 s soaks) run twice on a fresh fleet each time:
#   A. plan apply alone, output to a file (no live view);
#   B. plan apply on a terminal (tmux: the live view redrawn every second), `rollout watch` in a
#      second terminal, and `rollctl serve` with a client fetching the live page and /metrics
#      every 5 s (a browser on the page).
# Reports each run's wall time and the CPU seconds (user+sys) of every rollctl process.
#
#   bench/live-cost.sh            BIN=.build/debug (or the release build) HOSTS=200
set -euo pipefail
source "$(dirname "$0")/lib.sh"
need_release_build

HOSTS=${HOSTS:-200}
BASE=${BASE:-127.62.0.1}
PORT=${PORT:-2262}
WEB=${WEB:-127.0.0.1:8097}
FLEET=${FLEET:-/tmp/rollctl-bench-live}
OUT=${OUT:-$ROOT/bench/out/live-cost-$(date -u +%Y%m%dT%H%M%SZ)}
mkdir -p "$OUT"
cleanup() { tmux -S "$OUT/tmux.sock" kill-server 2>/dev/null || true; [ -n "${SERVE:-}" ] && kill "$SERVE" 2>/dev/null; fleet_down "$FLEET"; }
trap cleanup EXIT
trap 'exit 130' INT TERM

plan() {
  cat > "$OUT/plan.yaml" <<YML
name: live-cost
kernel: {release: 6.1.0-19-hosting}
inventory: $FLEET/inventory.yaml
waves: {sizes: [1, 10%, 100%], max_parallel: 50}
reboot: {command: systemctl reboot, timeout: 120s, settle: 1s}
gate: {soak: 10s, interval: 2s, probe_timeout: 2s, sunreclaim_growth_max: null, min_slope_points: 2, test_site: none}
YML
}

# CPU seconds (user+sys) of a running process, from /proc.
cpu_of() { awk -v hz="$(getconf CLK_TCK)" '{ printf "%.2f", ($14 + $15) / hz }' "/proc/$1/stat" 2>/dev/null || echo "?"; }

say "run A: $HOSTS hosts, plan apply alone"
fleet_up "$FLEET" "$HOSTS" 10 "$BASE" "$PORT"
plan
start=$(date +%s.%N)
/usr/bin/time -f "%e %U %S" -o "$OUT/a.time" "$BIN/rollctl" plan apply "$OUT/plan.yaml" --journal "$OUT/a.sqlite" >"$OUT/a.log" 2>&1
read -r a_wall a_user a_sys < "$OUT/a.time"
say "run A: wall ${a_wall}s, rollctl CPU $(echo "$a_user + $a_sys" | bc) s"
fleet_down "$FLEET"

say "run B: $HOSTS hosts, the live view, rollout watch and rollctl serve with a client"
fleet_up "$FLEET" "$HOSTS" 10 "$BASE" "$PORT"
"$BIN/rollctl" serve --journal "$OUT/b.sqlite" --listen "$WEB" >"$OUT/serve.log" 2>&1 &
SERVE=$!
tmux -S "$OUT/tmux.sock" new-session -d -s apply -x 160 -y 50 -e TERM=xterm-256color \
  "/usr/bin/time -f '%e %U %S' -o $OUT/b.time $BIN/rollctl plan apply $OUT/plan.yaml --journal $OUT/b.sqlite; sleep 3600"
for _ in $(seq 1 100); do ID=$("$BIN/rollctl" rollout list --journal "$OUT/b.sqlite" --json 2>/dev/null | head -n 1 | sed -E 's/.*"id":"([^"]+)".*/\1/'); [ -n "$ID" ] && break; sleep 0.2; done
tmux -S "$OUT/tmux.sock" new-session -d -s watch -x 120 -y 40 -e TERM=xterm-256color \
  "/usr/bin/time -f '%e %U %S' -o $OUT/watch.time $BIN/rollctl rollout watch $ID --journal $OUT/b.sqlite; sleep 3600"
fetches=0
while [ ! -s "$OUT/b.time" ]; do
  curl -fsS "http://$WEB/rollouts/$ID" -o /dev/null && curl -fsS "http://$WEB/metrics" -o /dev/null && fetches=$((fetches + 1)) || true
  sleep 5
done
serve_cpu=$(cpu_of "$SERVE")
for _ in $(seq 1 50); do [ -s "$OUT/watch.time" ] && break; sleep 0.2; done
tmux -S "$OUT/tmux.sock" capture-pane -p -t apply > "$OUT/apply-pane.txt"
read -r b_wall b_user b_sys < "$OUT/b.time"
read -r w_wall w_user w_sys < "$OUT/watch.time"
say "run B: wall ${b_wall}s, rollctl CPU $(echo "$b_user + $b_sys" | bc) s; watch $(echo "$w_user + $w_sys" | bc) s over ${w_wall}s; serve ${serve_cpu} s for $fetches page+metrics fetches"
{
  echo "hosts=$HOSTS"
  echo "A apply alone: wall ${a_wall}s, CPU user ${a_user}s sys ${a_sys}s"
  echo "B apply with the live view: wall ${b_wall}s, CPU user ${b_user}s sys ${b_sys}s"
  echo "B rollout watch: wall ${w_wall}s, CPU user ${w_user}s sys ${w_sys}s"
  echo "B rollctl serve: CPU ${serve_cpu}s for $fetches fetches of the live page and /metrics (every 5 s)"
} | tee "$OUT/summary.txt"
