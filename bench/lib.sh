# Shared helpers for the bench/ scripts (sourced, not run).
# Everything here talks to loopback only.

ROOT=${ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}
BIN=${BIN:-$ROOT/.build-bench/release}
export PATH=/opt/swift/usr/bin:$PATH

say() { printf '[%s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }

need_release_build() {
  for b in rollctl fleetsim "$@"; do
    [[ -x $BIN/$b ]] || { say "missing $BIN/$b: run 'make bench' or 'ROLLCTL_BENCH=1 swift build -c release --scratch-path .build-bench'"; exit 2; }
  done
}

# load1 from /proc/loadavg
load1() { cut -d' ' -f1 /proc/loadavg; }

# Whole-machine busy share (% of all cores) over $1 seconds while the benchmark itself
# is idle: what other users of the machine (and the idle fleet) take.
busy_pct() {
  local s=${1:-2} a b
  a=($(awk '/^cpu /{print $2+$3+$4+$7+$8, $2+$3+$4+$5+$6+$7+$8}' /proc/stat))
  sleep "$s"
  b=($(awk '/^cpu /{print $2+$3+$4+$7+$8, $2+$3+$4+$5+$6+$7+$8}' /proc/stat))
  awk -v db=$((b[0]-a[0])) -v dt=$((b[1]-a[1])) 'BEGIN{printf "%.0f", dt ? 100*db/dt : 0}'
}

# Waits (at most $1 s, default 90) for load1 < LOAD_MAX (default 1.5). Prints the load it got.
wait_for_load() {
  local max=${1:-30} t=0 lim=${LOAD_MAX:-1.5}
  while awk -v l="$(load1)" -v m="$lim" 'BEGIN{exit !(l >= m)}' && (( t < max )); do sleep 5; t=$((t+5)); done
  load1
}

# A cpuacct cgroup (v1) per measured command, so CPU of the whole client process
# tree is counted, daemonized children (ansible's ControlPersist masters) included.
CG_ROOT=/sys/fs/cgroup/cpuacct
have_cgroup() { [[ -w $CG_ROOT/cgroup.procs ]] && mkdir -p "$CG_ROOT/rollctl-bench-check-$$" 2>/dev/null && rmdir "$CG_ROOT/rollctl-bench-check-$$"; }

# measure OUTFILE_PREFIX -- command...
# Runs the command under /usr/bin/time (and in its own cpuacct cgroup when possible).
# Sets: M_RC M_WALL M_TIME_USER M_TIME_SYS M_MAXRSS_KIB M_CG_USER M_CG_SYS (seconds) M_LEFT (processes left and killed)
# M_MACH_CPU (busy CPU seconds of the whole machine during the command)
measure() {
  local prefix=$1; shift; [[ $1 == -- ]] && shift
  local tf=$prefix.time cg=""
  if have_cgroup; then cg=$CG_ROOT/rollctl-bench-$$-$RANDOM; mkdir "$cg"; fi
  local ma mb
  ma=$(awk '/^cpu /{print $2+$3+$4+$7+$8}' /proc/stat)
  set +e
  ( [[ -n $cg ]] && echo $BASHPID > "$cg/cgroup.procs"
    exec /usr/bin/time -f '%e %U %S %M' -o "$tf" "$@" ) >"$prefix.out" 2>"$prefix.err"
  M_RC=$?
  set -e
  mb=$(awk '/^cpu /{print $2+$3+$4+$7+$8}' /proc/stat)
  # Busy CPU of the whole machine during the command (client, every sshd, the fleet, others).
  M_MACH_CPU=$(awk -v d=$((mb - ma)) -v hz="$(getconf CLK_TCK)" 'BEGIN{printf "%.2f", d/hz}')
  read -r M_WALL M_TIME_USER M_TIME_SYS M_MAXRSS_KIB < <(tail -1 "$tf")
  M_CG_USER=NA; M_CG_SYS=NA; M_LEFT=0
  if [[ -n $cg ]]; then
    # Anything still in the group (daemonized ssh masters) is counted, then ended.
    local pids; pids=$(cat "$cg/cgroup.procs")
    if [[ -n $pids ]]; then M_LEFT=$(wc -w <<<"$pids"); kill $pids 2>/dev/null || true; sleep 0.3; kill -9 $(cat "$cg/cgroup.procs") 2>/dev/null || true; fi
    M_CG_USER=$(awk '{printf "%.3f", $1/1e9}' "$cg/cpuacct.usage_user")
    M_CG_SYS=$(awk '{printf "%.3f", $1/1e9}' "$cg/cpuacct.usage_sys")
    local i; for i in 1 2 3 4 5 6 7 8 9 10; do rmdir "$cg" 2>/dev/null && break; sleep 0.2; done
  fi
}

# Peak of the SUM of RSS of every process of a command's tree (sampled every 50 ms
# from its cgroup), for tools that run many processes. A separate, unmeasured run:
# the sampler costs CPU. Prints "peak_rss_sum_kib max_procs peak_pss_sum_kib" (RSS sums
# count shared pages once per process; PSS splits them).
sum_rss_run() {
  local prefix=$1; shift; [[ $1 == -- ]] && shift
  have_cgroup || { echo "NA NA NA"; return; }
  local cg=$CG_ROOT/rollctl-bench-$$-$RANDOM; mkdir "$cg"
  rm -f "$prefix.stop"
  python3 - "$cg" "$prefix.stop" >"$prefix.rss" <<'EOF' &
import os, sys, time
cg, stop = sys.argv[1], sys.argv[2]; peak = 0; peak_pss = 0; nmax = 0; seen = False; idle = 0
page = os.sysconf("SC_PAGE_SIZE") // 1024
while True:
    try:
        pids = open(cg + "/cgroup.procs").read().split()
    except OSError:
        break
    tot = 0; pss = 0
    for p in pids:
        try:
            tot += int(open(f"/proc/{p}/statm").read().split()[1]) * page
            for l in open(f"/proc/{p}/smaps_rollup"):
                if l.startswith("Pss:"):
                    pss += int(l.split()[1]); break
        except (OSError, IndexError, ValueError):
            pass
    if pids:
        seen = True; idle = 0
    elif seen:
        idle += 1
        if idle > 10: break
    peak = max(peak, tot); peak_pss = max(peak_pss, pss); nmax = max(nmax, len(pids))
    if os.path.exists(stop): break
    time.sleep(0.05)
print(peak, nmax, peak_pss)
EOF
  local sampler=$!
  sleep 0.2
  set +e
  ( echo $BASHPID > "$cg/cgroup.procs"; exec "$@" ) >"$prefix.out" 2>"$prefix.err"
  set -e
  local pids; pids=$(cat "$cg/cgroup.procs")
  [[ -n $pids ]] && { kill $pids 2>/dev/null || true; sleep 0.3; kill -9 $(cat "$cg/cgroup.procs") 2>/dev/null || true; }
  touch "$prefix.stop"; wait "$sampler" || true; rm -f "$prefix.stop"
  local i; for i in 1 2 3 4 5 6 7 8 9 10; do rmdir "$cg" 2>/dev/null && break; sleep 0.2; done
  cat "$prefix.rss"
}

# fleet_up DIR HOSTS RACKS BASE PORT: a fleetsim fleet for a benchmark (caller traps fleet_down).
fleet_up() {
  local dir=$1 hosts=$2 racks=$3 base=$4 port=$5
  "$BIN/fleetsim" down --dir "$dir" >/dev/null 2>&1 || true
  "$BIN/fleetsim" up --hosts "$hosts" --racks "$racks" --dir "$dir" --base-address "$base" --ssh-port "$port" --wait 300 >&2
}
fleet_down() { "$BIN/fleetsim" down --dir "$1" >/dev/null 2>&1 || true; }
