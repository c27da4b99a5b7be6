#!/usr/bin/env bash
# make demo: the seed story end to end against a simulated fleet (fleetsim).
set -uo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" != 0 ]; then echo "make demo needs root: fleetsim uses namespaces, sshd and iptables" >&2; exit 2; fi
export PATH=/opt/swift/usr/bin:$PATH

bold() { if [ -t 1 ]; then printf '\n\033[1m%s\033[0m\n' "$*"; else printf '\n%s\n' "$*"; fi; }
run() { printf '$ %s\n' "$*"; "$@"; }

echo "Building rollctl and fleetsim ..."
swift build -q 2>&1 | grep -v "^$" || true
BIN=$(swift build --show-bin-path)
[ -x "$BIN/rollctl" ] && [ -x "$BIN/fleetsim" ] || { echo "build failed" >&2; exit 1; }
STATE=$(mktemp -d /tmp/rollctl-demo.XXXXXX)
export ROLLCTL_JOURNAL=$STATE/journal.sqlite

cleanup() {
  [ -n "${SMTP_PID:-}" ] && kill "$SMTP_PID" 2>/dev/null
  [ -n "${PROM_PID:-}" ] && kill "$PROM_PID" 2>/dev/null
  [ -n "${SERVE_PID:-}" ] && kill "$SERVE_PID" 2>/dev/null
  bold "6. Tearing the fleet down"
  "$BIN/fleetsim" down --dir .fleetsim >/dev/null 2>&1 && echo "fleet removed (namespaces, processes, mounts, rules)"
  rm -rf "$STATE"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# A local SMTP sink (Debian's python3-aiosmtpd) receives the customer notices.
mkdir -p "$STATE/mail"
/usr/bin/python3 -m aiosmtpd -n -l 127.0.0.1:2525 -c aiosmtpd.handlers.Mailbox "$STATE/mail/box" >"$STATE/smtp.log" 2>&1 &
SMTP_PID=$!

# DEMO_SERVE=1: the read-only dashboard over the demo's journal while it runs.
if [ "${DEMO_SERVE:-0}" = 1 ]; then
  "$BIN/rollctl" serve --listen "${DEMO_SERVE_LISTEN:-127.0.0.1:8080}" >"$STATE/serve.log" 2>&1 &
  SERVE_PID=$!
  sleep 1
  echo "Dashboard: http://${DEMO_SERVE_LISTEN:-127.0.0.1:8080}/ (rollctl serve; live pages reload every 5 s)"
fi

bold "1. A fleet of 12 hosts in 3 racks, on the in-house kernel whose bind() patch leaks slab memory"
run "$BIN/fleetsim" up --hosts 12 --racks 3 --dir .fleetsim --scenario scripts/demo-scenario.yaml || exit 1
run "$BIN/rollctl" fleet facts -i .fleetsim/inventory.yaml

# The fleet's monitoring: Debian's Prometheus scrapes every host's node metrics (fleetsim serves
# them on <address>:9100); the leaky plan's gate asks it for each host's slab growth.
targets=$(sed -n 's/^ *address: *//p' .fleetsim/inventory.yaml | sed 's/$/:9100/' | paste -sd, | sed 's/,/", "/g')
cat >"$STATE/prometheus.yml" <<YML
global: {scrape_interval: 1s, evaluation_interval: 1s}
scrape_configs:
  - job_name: fleet
    static_configs: [{targets: ["$targets"]}]
YML
/usr/bin/prometheus --config.file="$STATE/prometheus.yml" --storage.tsdb.path="$STATE/tsdb" \
  --web.listen-address=127.0.0.1:9490 >"$STATE/prometheus.log" 2>&1 &
PROM_PID=$!
for _ in $(seq 1 60); do curl -fsS http://127.0.0.1:9490/-/ready >/dev/null 2>&1 && break; sleep 0.5; done
echo "Prometheus scrapes the fleet's node metrics: http://127.0.0.1:9490 (the leaky plan's gate asks it)"

bold "2. Preview: what a rollout of the first fix (6.1.0-18) would do — touches nothing"
run "$BIN/rollctl" plan apply plans/fleetsim-leaky.yaml --dry-run

bold "3. Roll out the first fix. It still leaks: the canary's gate sees the slab trend in Prometheus, rollctl halts and rolls back"
run "$BIN/rollctl" plan apply plans/fleetsim-leaky.yaml
echo "(exit code $?: 3 means halted by a gate)"
LEAKY=$("$BIN/rollctl" rollout list --json | head -n 1 | sed -E 's/.*"id":"([^"]+)".*/\1/')

bold "4. Roll out the real fix (6.1.0-19). The plan pauses after the canary for a person to look"
printf '$ %s\n' "$BIN/rollctl plan apply plans/fleetsim-promote.yaml &"
"$BIN/rollctl" plan apply plans/fleetsim-promote.yaml >"$STATE/apply.log" 2>&1 &
APPLY=$!
for _ in $(seq 1 600); do grep -q "PAUSED" "$STATE/apply.log" && break; kill -0 "$APPLY" 2>/dev/null || break; sleep 0.5; done
shown=$(wc -l <"$STATE/apply.log"); cat "$STATE/apply.log"
FIXED=$("$BIN/rollctl" rollout list --json | head -n 1 | sed -E 's/.*"id":"([^"]+)".*/\1/')
run "$BIN/rollctl" rollout status "$FIXED"
echo "(a person would look at the canary now — rollout show, fleet facts; the demo promotes it)"
run "$BIN/rollctl" rollout promote "$FIXED"
wait "$APPLY"; status=$?
tail -n +"$((shown + 1))" "$STATE/apply.log"
echo "(exit code $status: every wave passed its gate and was committed)"

bold "5. The customers were told: maintenance before each wave's reboots, done after each wave"
echo "$(ls "$STATE/mail/box/new" 2>/dev/null | wc -l) messages in the local SMTP sink; the first one:"
first=$(ls "$STATE/mail/box/new" 2>/dev/null | head -n 1)
[ -n "$first" ] && /usr/bin/python3 - "$STATE/mail/box/new/$first" <<'PY'
import email, email.policy, sys
m = email.message_from_binary_file(open(sys.argv[1], "rb"), policy=email.policy.default)
for h in ("From", "To", "Subject", "Message-ID"):
    print(f"{h}: {m[h]}")
print()
print(m.get_content().rstrip())
PY
run "$BIN/rollctl" rollout notices "$FIXED" --wave 1

bold "5b. The journal, and the fleet afterwards"
run "$BIN/rollctl" rollout list
run "$BIN/rollctl" rollout show "$LEAKY"
run "$BIN/rollctl" rollout show "$FIXED"
REPORT="$PWD/rollctl-demo-report.html"
run "$BIN/rollctl" rollout report "$LEAKY" "$FIXED" --html "$REPORT"
echo "Open $REPORT in a browser: the leaky canary's slab climbing past its growth limit, the fixed kernel's flat line below it."

echo "Waiting 20 s so a trend can show ..."
sleep 20
run "$BIN/rollctl" fleet facts -i .fleetsim/inventory.yaml
