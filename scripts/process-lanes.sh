#!/usr/bin/env bash
# The process suites of `make test` in two lanes: two `swift test` processes at once, each running
# its suites one test at a time. These tests mostly wait (soaks, reboots, timeouts), so two lanes
# take about half the wall time of one (CI's 45 minutes). Each lane's lines are prefixed and also
# kept in a log; the failures of both are repeated at the end; the exit status is non-zero when
# either lane failed.
#
#   scripts/process-lanes.sh ALL LANE1 [swift test flags...]
#   ALL:   the regex of every process suite;  LANE1: the regex of those run in lane 1
#          (lane 2 runs ALL without LANE1).
#
# The lanes cannot meet on the network: every fleetsim test has its own address slot, the test
# servers (sshd, SMTP, Prometheus, PostgreSQL) pick free ports, temporary folders are per test.
# Each lane runs the test bundle itself, as `swift test --skip-build` would (with swift-testing's
# own arguments): two `swift test` processes at once fight over .build's lock and build database.
set -uo pipefail
all=$1 lane1=$2
shift 2
logs=$(mktemp -d /tmp/rollctl-lanes.XXXXXX)
bundle="$(swift build --show-bin-path)/rollctlPackageTests.xctest"
[ -x "$bundle" ] || { echo "process-lanes: no test bundle at $bundle (swift build --build-tests first)" >&2; exit 2; }
run_lane() {  # N, swift test arguments...
  local n=$1
  shift
  "$bundle" --testing-library swift-testing --no-parallel "$@" 2>&1 | tee "$logs/lane$n.log" | sed -u "s/^/[lane $n] /"
  return "${PIPESTATUS[0]}"
}
start=$(date +%s)
run_lane 1 --filter "$lane1" "$@" &
pid1=$!
run_lane 2 --filter "$all" --skip "$lane1" "$@"
status2=$?
wait "$pid1"
status1=$?
echo "=== process suites: lane 1 exit $status1, lane 2 exit $status2, $(( $(date +%s) - start )) s (logs in $logs) ==="
for n in 1 2; do
  grep -E '✘|Fatal error' "$logs/lane$n.log" | sed "s/^/[lane $n] /" | head -100
  grep -E 'Test run with .* (passed|failed)' "$logs/lane$n.log" | sed "s/^/[lane $n] /"
done
[ "$status1" -eq 0 ] && [ "$status2" -eq 0 ]
