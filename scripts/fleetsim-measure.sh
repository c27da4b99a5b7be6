#!/bin/sh
# Measures an idle fleetsim fleet: supervisor and whole-machine CPU over N seconds, and RSS.
# usage: scripts/fleetsim-measure.sh DIR [SECONDS]
set -e
DIR=${1:-.fleetsim}; SECS=${2:-30}
SUP=$(cat "$DIR/supervisor.pid")
hz=$(getconf CLK_TCK)
cpu_of() { awk '{print $14+$15}' /proc/$1/stat; }
sys_busy() { awk '/^cpu /{print $2+$3+$4+$7+$8, $2+$3+$4+$5+$6+$7+$8}' /proc/stat; }
s0=$(cpu_of $SUP); set -- $(sys_busy); b0=$1; t0=$2
sleep "$SECS"
s1=$(cpu_of $SUP); set -- $(sys_busy); b1=$1; t1=$2
echo "supervisor CPU: $(echo "scale=2; ($s1-$s0)*100/($hz*$SECS)" | bc)% of one core over ${SECS}s"
echo "machine busy:   $(echo "scale=2; ($b1-$b0)*100/($t1-$t0)" | bc)% of all cores (everything running, not just the fleet)"
echo "supervisor RSS: $(awk '/VmRSS/{print $2}' /proc/$SUP/status) kB"
tot=0; n=0
for p in $(grep -l -- "$DIR/" /proc/[0-9]*/cmdline 2>/dev/null | cut -d/ -f3); do
  r=$(awk '/^Pss:/{print $2}' /proc/$p/smaps_rollup 2>/dev/null || echo 0); tot=$((tot + ${r:-0})); n=$((n+1))
done
echo "fleet processes: $n, summed PSS $((tot/1024)) MiB (shared pages split between processes)"
