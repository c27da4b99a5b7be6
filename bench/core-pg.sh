#!/usr/bin/env bash
# bench/core-pg.sh — bench-core (see core.sh) with the journal in PostgreSQL: a cluster this
# script makes with Debian's postgresql package (initdb in a temp folder, its own loopback port,
# fsync and synchronous_commit on as shipped: every commit durable, as the journal promises),
# a fresh database per run. Reports bench-core's wall time and peak RSS, and the CPU seconds
# of the server's processes during the run (every process of the `postgres` user: run it when no
# other PostgreSQL works on this machine).
#
#   bench/core-pg.sh [SIZE...]        default 1000 10000; REPS=1
set -euo pipefail
source "$(dirname "$0")/lib.sh"
[[ -x $BIN/bench-core ]] || { say "missing $BIN/bench-core: ROLLCTL_BENCH=1 swift build -c release --scratch-path .build-bench --product bench-core"; exit 2; }

SIZES=${*:-1000 10000}
REPS=${REPS:-1}
OUT=${OUT:-$ROOT/bench/out/core-pg-$(date -u +%Y%m%dT%H%M%SZ)}
PGBIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
PGDIR=$(mktemp -d /tmp/rollctl-bench-pg-XXXXXX)
PORT=${PGPORT:-$((25000 + $$ % 1000))}
mkdir -p "$OUT"
chown postgres:postgres "$PGDIR"
as_pg() { setpriv --reuid=postgres --regid=postgres --init-groups -- "$@"; }
as_pg "$PGBIN/initdb" -D "$PGDIR/data" -U rollctl -A trust -E UTF8 --locale=C --no-instructions > "$OUT/initdb.log"
as_pg "$PGBIN/postgres" -D "$PGDIR/data" -k "$PGDIR" -p "$PORT" -h 127.0.0.1 > "$OUT/postgres.log" 2>&1 &
PGPID=$!
trap 'kill $PGPID 2>/dev/null; wait $PGPID 2>/dev/null || true; rm -rf "$PGDIR"' EXIT
for _ in $(seq 100); do "$PGBIN/pg_isready" -q -h 127.0.0.1 -p "$PORT" -U rollctl -d postgres && break; sleep 0.2; done

# CPU seconds (user+system) of every process of the postgres user, exited children included.
pg_cpu() {
  local tck; tck=$(getconf CLK_TCK)
  ps -u postgres -o pid= | while read -r p; do
    awk '{print $14+$15+$16+$17}' "/proc/$p/stat" 2>/dev/null || true
  done | awk -v t="$tck" '{s+=$1} END{printf "%.1f", s/t}'
}

: > "$OUT/core.jsonl"
for n in $SIZES; do
  for ((r = 1; r <= REPS; r++)); do
    db=bench_${n}_$r
    as_pg "$PGBIN/psql" -q -h 127.0.0.1 -p "$PORT" -U rollctl -d postgres -c "CREATE DATABASE $db" > /dev/null
    ld=$(load1); c0=$(pg_cpu)
    /usr/bin/time -f '%e %M %U %S' -o "$OUT/time-$n-$r" "$BIN/bench-core" --hosts "$n" \
      --journal "postgres://rollctl@127.0.0.1:$PORT/$db?sslmode=disable" > "$OUT/run-$n-$r.json"
    c1=$(pg_cpu)
    python3 - "$OUT/run-$n-$r.json" "$ld" "$OUT/time-$n-$r" "$c0" "$c1" >> "$OUT/core.jsonl" <<'PY'
import json, sys
r = json.load(open(sys.argv[1])); r["load1"] = float(sys.argv[2])
wall, maxrss, user, sys_ = open(sys.argv[3]).read().split()[-4:]
r["time_wall_s"] = float(wall); r["time_maxrss_kib"] = int(maxrss); r["client_cpu_s"] = round(float(user) + float(sys_), 1)
r["server_cpu_s"] = round(float(sys.argv[5]) - float(sys.argv[4]), 1)
print(json.dumps(r))
PY
    say "$n hosts run $r: $(tail -1 "$OUT/core.jsonl")"
    as_pg "$PGBIN/psql" -q -h 127.0.0.1 -p "$PORT" -U rollctl -d postgres -c "DROP DATABASE $db" > /dev/null
  done
done
