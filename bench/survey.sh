#!/usr/bin/env bash
# bench/survey.sh — fleet survey on fleetsim: rollctl fleet facts vs parallel-ssh vs
# ansible (-m command, -m raw) vs the OpenSSH handshake floor. Issues 2 and 8.1.
#
#   bench/survey.sh [SIZE...]            default: 50 200
#   RUNS=5 BASE=127.0.40.1 PORT=2222 LOAD_MAX=1.5 bench/survey.sh 50
#
# Every tool reads the same five /proc files on every host of a fleetsim fleet (real
# sshd per host, on loopback), host keys verified against the fleet's known_hosts,
# parallelism = host count. Runs are interleaved (run 1 of every tool, then run 2 ...,
# the tool order rotating) so load drift hits every tool alike, and the ratios come
# from that one run set. Raw rows: bench/out/survey-*/runs.tsv; summary: summary.md.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
need_release_build

SIZES=${*:-50 200}
RUNS=${RUNS:-5}
BASE=${BASE:-127.0.40.1}
PORT=${PORT:-2222}
TOOLS=${TOOLS:-rollctl pssh ansible-command ansible-raw floor floor-curve25519}
OUT=${OUT:-$ROOT/bench/out/survey-$(date -u +%Y%m%dT%H%M%SZ)}
FLEET=${FLEET:-/tmp/rollctl-bench-survey}
VENV=${VENV:-$ROOT/bench/.venv}
FILES="/proc/sys/kernel/osrelease /proc/sys/kernel/random/boot_id /proc/uptime /proc/meminfo /proc/vmstat"
mkdir -p "$OUT"

command -v parallel-ssh >/dev/null || { say "parallel-ssh missing: apt-get install pssh"; exit 2; }
if [[ ! -x $VENV/bin/ansible ]]; then
  say "making $VENV with ansible-core from PyPI"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q ansible-core
fi

cleanup() { fleet_down "$FLEET"; }
trap cleanup EXIT
trap 'exit 130' INT TERM

have_cgroup || say "no writable cpuacct cgroup: CPU is /usr/bin/time's children totals only"

{
  echo "# survey run $(date -u +%FT%TZ)"
  echo "# cores $(nproc), $(awk '/MemTotal/{printf "%.1f GiB", $2/1048576}' /proc/meminfo)"
  echo "# tree $(git -C "$ROOT" rev-parse --short HEAD)$(git -C "$ROOT" diff --quiet HEAD -- Sources || echo '+dirty') now; rollctl binary built $(date -u -r "$BIN/rollctl" +%FT%TZ)"
  echo "# $(ssh -V 2>&1)"
  echo "# pssh $(dpkg-query -W -f='${Version}' pssh)"
  echo "# $("$VENV/bin/ansible" --version 2>/dev/null | head -1)"
  echo "# libssh2 $(dpkg-query -W -f='${Version}' libssh2-1)"
} > "$OUT/versions.txt"

printf 'size\ttool\trun\tok\trc\twall_s\ttime_user_s\ttime_sys_s\ttime_maxrss_kib\tcg_user_s\tcg_sys_s\tleft\tload1\tbusy_pct\tmachine_cpu_s\n' > "$OUT/runs.tsv"

# One survey with TOOL against the fleet; run inside `measure`.
run_tool() {
  local tool=$1 n=$2 work=$3
  local KH=$FLEET/known_hosts KEY=$FLEET/client_key
  local sshopts=(-o UserKnownHostsFile="$KH" -o StrictHostKeyChecking=yes -o BatchMode=yes
                 -o IdentitiesOnly=yes -o ControlMaster=no -o ConnectTimeout=30 -i "$KEY" -p "$PORT" -l root)
  case $tool in
    rollctl)
      measure "$work" -- "$BIN/rollctl" fleet facts -i "$FLEET/inventory.yaml" --parallel "$n" --json ;;
    rollctl-p*)  # rollctl with another --parallel (rollctl-p64: the default)
      measure "$work" -- "$BIN/rollctl" fleet facts -i "$FLEET/inventory.yaml" --parallel "${tool#rollctl-p}" --json ;;
    pssh)
      rm -rf "$work.o"; mkdir -p "$work.o"
      measure "$work" -- parallel-ssh -h "$FLEET/pssh-hosts" -p "$n" -t 120 -o "$work.o" \
        -O UserKnownHostsFile="$KH" -O StrictHostKeyChecking=yes -O IdentitiesOnly=yes -O ControlMaster=no \
        -x "-i $KEY" cat $FILES ;;
    ansible-command|ansible-raw)
      local mod=${tool#ansible-}
      rm -rf "$work.cp"; mkdir -p "$work.cp"
      # Ansible's own defaults (ControlPersist 60s, no pipelining, interpreter discovery),
      # host key checking on with the fleet's known_hosts, a fresh ControlPath per run.
      measure "$work" -- env ANSIBLE_HOME="$FLEET/ansible-home" ANSIBLE_LOCAL_TEMP="$FLEET/ansible-tmp" \
        ANSIBLE_HOST_KEY_CHECKING=True ANSIBLE_CONTROL_PATH_DIR="$work.cp" \
        ANSIBLE_SSH_ARGS="-C -o ControlMaster=auto -o ControlPersist=60s -o UserKnownHostsFile=$KH -o StrictHostKeyChecking=yes -o IdentitiesOnly=yes" \
        ANSIBLE_PRIVATE_KEY_FILE="$KEY" ANSIBLE_TIMEOUT=60 ANSIBLE_NOCOLOR=1 ANSIBLE_DEPRECATION_WARNINGS=False \
        "$VENV/bin/ansible" all -i "$FLEET/hosts.ini" -f "$n" -o -m "$mod" -a "cat $FILES" ;;
    floor)
      measure "$work" -- xargs -a "$FLEET/addresses" -P "$n" -I{} ssh "${sshopts[@]}" {} true ;;
    floor-curve25519)
      # Same handshake with the key exchange libssh2 1.10 negotiates (OpenSSH 9.2 prefers
      # sntrup761x25519, which costs more on both ends).
      measure "$work" -- xargs -a "$FLEET/addresses" -P "$n" -I{} ssh "${sshopts[@]}" -o KexAlgorithms=curve25519-sha256 {} true ;;
  esac
}

# How many hosts the tool got an answer from.
count_ok() {
  local tool=$1 n=$2 work=$3
  case $tool in
    rollctl*) grep -c '"release"' "$work.out" || true ;;
    pssh) grep -c '\[SUCCESS\]' "$work.out" || true ;;
    ansible-*) grep -Ec '\| (CHANGED|SUCCESS) \|' "$work.out" || true ;;
    floor*) [[ $M_RC == 0 ]] && echo "$n" || echo "fail(rc=$M_RC)" ;;
  esac
}

for n in $SIZES; do
  racks=$(( n >= 40 ? 10 : 3 ))
  say "fleet of $n hosts ($racks racks) at $BASE:$PORT in $FLEET"
  fleet_up "$FLEET" "$n" "$racks" "$BASE" "$PORT"
  python3 - "$FLEET" "$PORT" <<'EOF'
import sys, re
fleet, port = sys.argv[1], sys.argv[2]
hosts = re.findall(r"name: (\S+)\n\s+address: (\S+)", open(f"{fleet}/inventory.yaml").read())
open(f"{fleet}/addresses", "w").write("".join(a + "\n" for _, a in hosts))
open(f"{fleet}/pssh-hosts", "w").write("".join(f"root@{a}:{port}\n" for _, a in hosts))
open(f"{fleet}/hosts.ini", "w").write("[fleet]\n" + "".join(
    f"{n} ansible_host={a} ansible_port={port} ansible_user=root\n" for n, a in hosts))
EOF
  [[ $(wc -l < "$FLEET/addresses") == "$n" ]] || { say "inventory has $(wc -l < "$FLEET/addresses") hosts, expected $n"; exit 1; }
  # Warm-up (not recorded): page cache, ansible's first-run files, sshd's first forks.
  for tool in $TOOLS; do run_tool "$tool" "$n" "$OUT/warm-$n-$tool" || true; done

  read -ra tools <<<"$TOOLS"
  for ((r = 1; r <= RUNS; r++)); do
    ld=$(wait_for_load 30); busy=$(busy_pct 2)
    say "size $n run $r/$RUNS: load1 $ld, machine busy ${busy}% while idle"
    for ((k = 0; k < ${#tools[@]}; k++)); do
      tool=${tools[$(( (k + r - 1) % ${#tools[@]} ))]}
      ld=$(load1)
      work=$OUT/$n-$tool-$r
      run_tool "$tool" "$n" "$work"
      ok=$(count_ok "$tool" "$n" "$work")
      printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$n" "$tool" "$r" "$ok" "$M_RC" "$M_WALL" "$M_TIME_USER" \
        "$M_TIME_SYS" "$M_MAXRSS_KIB" "$M_CG_USER" "$M_CG_SYS" "$M_LEFT" "$ld" "$busy" "$M_MACH_CPU" >> "$OUT/runs.tsv"
      say "  $tool: ${M_WALL}s wall, machine ${M_MACH_CPU} CPU-s, cpu ${M_CG_USER}+${M_CG_SYS}s (time: ${M_TIME_USER}+${M_TIME_SYS}), maxrss ${M_MAXRSS_KIB}KiB, ok $ok/$n"
      sleep 1
    done
  done
  # Peak of the summed RSS of each tool's process tree: one extra, sampled run each.
  for tool in $TOOLS; do
    case $tool in
      rollctl) set -- "$BIN/rollctl" fleet facts -i "$FLEET/inventory.yaml" --parallel "$n" --json ;;
      rollctl-p*) set -- "$BIN/rollctl" fleet facts -i "$FLEET/inventory.yaml" --parallel "${tool#rollctl-p}" --json ;;
      *) set -- bash -c "$(declare -f run_tool measure have_cgroup say); CG_ROOT=/nonexistent; FLEET=$FLEET PORT=$PORT BIN=$BIN VENV=$VENV FILES='$FILES' run_tool $tool $n $OUT/rss-inner-$n-$tool" ;;
    esac
    read -r peak procs pss < <(sum_rss_run "$OUT/rss-$n-$tool" -- "$@")
    printf '%s\t%s\t%s\t%s\t%s\n' "$n" "$tool" "$peak" "$procs" "$pss" >> "$OUT/rss-sum.tsv"
    say "  $tool: peak summed RSS ${peak} KiB, PSS ${pss} KiB, at most $procs processes"
  done
  fleet_down "$FLEET"
done

python3 "$ROOT/bench/summarize.py" survey "$OUT" > "$OUT/summary.md"
cat "$OUT/summary.md"
say "raw runs: $OUT/runs.tsv; summary: $OUT/summary.md"
