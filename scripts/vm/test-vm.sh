#!/usr/bin/env bash
# make test-vm: rollctl against real Debian 12 VMs (qemu, software emulation) with real GRUB.
# See docs/vm-tests.md. Needs root, qemu-system-x86, qemu-utils, debootstrap, fdisk, sqlite3,
# openssh-client, and the rollctl binary in $ROLLCTL.
#
#   ROLLCTL=.build/debug/rollctl scripts/vm/test-vm.sh
#
# Environment: ROLLCTL_VM_SCENARIOS (default "1 2 3"), ROLLCTL_VM_CACHE (image cache root,
# default /var/cache/rollctl-vm), ROLLCTL_VM_KEEP=1 keeps the run folder after a success.
set -uo pipefail
cd "$(dirname "$0")/../.."
REPO=$(pwd)
[ "$(id -u)" = 0 ] || { echo "test-vm: needs root (image build: loop devices, mount, chroot)" >&2; exit 2; }
: "${ROLLCTL:?set ROLLCTL to the rollctl binary, e.g. ROLLCTL=.build/debug/rollctl}"
ROLLCTL=$(readlink -f "$ROLLCTL")
[ -x "$ROLLCTL" ] || { echo "test-vm: $ROLLCTL is not executable" >&2; exit 2; }
for t in qemu-system-x86_64 qemu-img debootstrap sfdisk sqlite3 ssh; do
  command -v "$t" >/dev/null || { echo "test-vm: $t missing (make test-vm installs it)" >&2; exit 2; }
done
SCENARIOS=${ROLLCTL_VM_SCENARIOS:-1 2 3}

T0=$SECONDS
log() { echo "[test-vm +$(( SECONDS - T0 ))s] $*"; }

# ---- base image (cached) -------------------------------------------------------------
t=$SECONDS
IMAGE_DIR=$(scripts/vm/image.sh) || { log "FAIL: image build"; exit 1; }
IMAGE_SECS=$(( SECONDS - t ))
source <(grep -E '^(generic|cloud|cloud_deb)=' "$IMAGE_DIR/manifest" | sed 's/^/IMG_/')
GENERIC=$IMG_generic CLOUD=$IMG_cloud CLOUD_DEB=$IMG_cloud_deb
[ -n "$CLOUD_DEB" ] && [ -f "$IMAGE_DIR/debs/$CLOUD_DEB" ] || { log "FAIL: the image has no debs/<cloud .deb> (rebuild it)"; exit 1; }
ENTRY_PREFIX="Advanced options for Debian GNU/Linux>Debian GNU/Linux, with Linux"
if (( IMAGE_SECS > 5 )); then IMAGE_NOTE="built in ${IMAGE_SECS}s"; else IMAGE_NOTE="cached (built in $(sed -n 's/^built=//p' "$IMAGE_DIR/manifest")s)"; fi
log "image $IMAGE_DIR: $IMAGE_NOTE; generic $GENERIC, cloud $CLOUD"

RUN=$(mktemp -d /tmp/rollctl-vm.XXXXXX)
mkdir -p "$RUN/vms"
source scripts/vm/lib.sh
OK=0
descendants() { local c; for c in $(ps -o pid= --ppid "$1" 2>/dev/null); do echo "$c"; descendants "$c"; done; }

cleanup() {
  local rc=$? p d
  trap - EXIT INT TERM
  set +e
  # Our own children (scenario subshells, rollctl, ssh), by pid; qemu is daemonized: pid files.
  local kids; kids=$(descendants $$)
  [ -n "$kids" ] && { kill $kids 2>/dev/null; sleep 1; kill -9 $kids 2>/dev/null; }
  vm_teardown_all
  local left=""
  for d in "$RUN"/vms/*/; do [ -f "$d/qemu.pid" ] && left="$left $(basename "$d")"; done
  pgrep -f -- "-name rollctl-vm-" >/dev/null && left="$left (a qemu named rollctl-vm-* still runs)"
  [ -n "$(losetup -j "$IMAGE_DIR/base.img" 2>/dev/null)" ] && left="$left (a loop device on base.img)"
  grep -q " $RUN" /proc/mounts && left="$left (a mount under $RUN)"
  if [ -n "$left" ]; then log "teardown: LEFT BEHIND:$left"; rc=1; else log "teardown: every VM stopped; no qemu, loop device or mount left"; fi
  if [ "$OK" = 1 ] && [ "$rc" = 0 ] && [ "${ROLLCTL_VM_KEEP:-0}" != 1 ]; then
    rm -rf "$RUN"
  else
    log "logs kept in $RUN (rollctl output, serial logs, journals)"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'log "interrupted"; exit 130' INT
trap 'log "terminated"; exit 143' TERM

# ---- helpers used inside a scenario (run in its own subshell; $S and $SD set) ------------
slog() { echo "[$S +$(( SECONDS - ST0 ))s] $*"; }
fail() {
  slog "FAIL: $*"
  {
    echo "=== $S failed: $*"
    echo "--- rollctl output ($SD/rollctl.out)"; cat "$SD/rollctl.out" 2>/dev/null
    [ -f "$SD/resume.out" ] && { echo "--- rollctl rollout resume output"; cat "$SD/resume.out"; }
    local id; id=$(rollout_id)
    if [ -n "$id" ]; then
      echo "--- rollctl rollout show $id --events"; "$ROLLCTL" rollout show "$id" --events 2>&1 | tail -n 80
    fi
    local v; for v in $SVMS; do
      echo "--- serial log of $v (last 40 lines: $RUN/vms/$v/serial.log)"
      tail -n 40 "$RUN/vms/$v/serial.log" 2>/dev/null | tr -d '\r' | sed 's/\x1b\[[0-9;]*m//g'
    done
  } >"$SD/failure.txt" 2>&1
  exit 1
}
ok() { slog "ok: $*"; }
passed() { echo $(( SECONDS - ST0 )) >"$SD/secs"; slog "passed in $(( SECONDS - ST0 ))s"; }
expect() { # expect WHAT WANT GOT
  if [ "$3" = "$2" ]; then ok "$1 = $3"; else fail "$1: want '$2', got '$3'"; fi
}
# (never before rollctl made the journal: a file made by sqlite3 first is 0644, not 0600)
sql() { [ -s "$ROLLCTL_JOURNAL" ] || return 0; sqlite3 -cmd '.timeout 5000' "$ROLLCTL_JOURNAL" "$1" 2>/dev/null; }
rollout_id() { sql 'SELECT id FROM rollout ORDER BY started_at DESC LIMIT 1'; }
grubenv() { vm_ssh "$1" grub-editenv /boot/grub/grubenv list | sed -n "s/^$2=//p"; }
boots() { vm_ssh "$1" cat /var/log/rollctl-boots; }

scenario_begin() { # scenario_begin NAME "VM..."
  S=$1 SVMS=$2 SD=$RUN/$1 ST0=$SECONDS
  trap - EXIT INT TERM
  mkdir -p "$SD"
  export ROLLCTL_JOURNAL=$SD/journal.sqlite
}

# Inventory for the scenario's VMs, and the plan from plans/ with the image's cloud release
# and that inventory.
scenario_files() { # scenario_files PLAN
  {
    echo "# written by scripts/vm/test-vm.sh"
    echo "defaults:"
    echo "  user: root"
    echo "  identity: $IMAGE_DIR/client_key"
    echo "  known_hosts: $VM_KNOWN_HOSTS"
    echo "  host_key_policy: strict"
    echo "  connect_timeout: 10s"
    echo "  ssh_config: false"
    echo "hosts:"
    local v; for v in $SVMS; do echo "  - {name: $v, address: 127.0.0.1, port: $(vm_port "$v")}"; done
  } >"$SD/vm-inventory.yaml"
  sed -e "s/^  release: .*/  release: $CLOUD/" -e "s|^inventory: .*|inventory: vm-inventory.yaml|" \
    -e "s|^  packages: .*|  packages: [$IMAGE_DIR/debs/$CLOUD_DEB]|" \
    "$REPO/plans/$1" >"$SD/plan.yaml"
  grep -q "^  release: $CLOUD\$" "$SD/plan.yaml" || fail "could not set kernel.release in $SD/plan.yaml"
}

boot_vms() { # boot_vms VM... : start them (already registered) and wait for SSH
  local v pids=() rc=0
  for v in "$@"; do vm_wait_ssh "$v" 300 & pids+=($!); done
  for p in "${pids[@]}"; do wait "$p" || rc=1; done
  return $rc
}

# A VM after the rollout: on the cloud kernel, GRUB default the cloud entry, nothing staged.
assert_on_cloud() { # assert_on_cloud VM
  expect "$1 release" "$CLOUD" "$(vm_ssh "$1" cat /proc/sys/kernel/osrelease)"
  expect "$1 grubenv saved_entry" "$ENTRY_PREFIX $CLOUD" "$(grubenv "$1" saved_entry)"
  expect "$1 grubenv next_entry (none staged)" "" "$(grubenv "$1" next_entry)"
}

# Reads the journal from other processes while a rollout runs, as an operator would
# (rollctl once lost its SQLite locks and such a reader deleted the WAL under it).
journal_readers() {
  while sleep 2; do
    [ -s "$ROLLCTL_JOURNAL" ] || continue
    echo "$(date +%T) list: $("$ROLLCTL" rollout list 2>&1 | tail -n 1 | tr -s ' ') hosts: $(sqlite3 -cmd '.timeout 5000' \
      "$ROLLCTL_JOURNAL" "SELECT name||':'||state FROM host ORDER BY name" 2>&1 | paste -sd' ')" >>"$SD/readers.log"
  done
}

# ---- scenario 1: the real-VM plan over 2 VMs, waves [1, 100%] ---------------------------------
scenario1() {
  scenario_begin s1 "a1 a2"
  slog "scenario 1: plans/vm-cloud-kernel.yaml on 2 VMs (waves [1, 100%], GRUB boot-once, gate, commit)"
  boot_vms a1 a2 || fail "VMs did not come up"
  slog "VMs up (a1 port $(vm_port a1), a2 port $(vm_port a2)) on $(vm_ssh a1 cat /proc/sys/kernel/osrelease)"
  scenario_files vm-cloud-kernel.yaml
  slog "rollctl plan apply --dry-run (reads the real grub.cfg; touches nothing)"
  "$ROLLCTL" plan apply "$SD/plan.yaml" --dry-run >"$SD/dry-run.out" 2>&1
  expect "dry-run exit code" 0 "$?"
  grep -qF "grub-set-default '$ENTRY_PREFIX $GENERIC'" "$SD/dry-run.out" \
    || fail "the dry-run does not pin the running kernel's real GRUB entry: $(grep -a grub- "$SD/dry-run.out")"
  ok "dry-run pins the running kernel's GRUB entry and stages $CLOUD"
  slog "rollctl plan apply (while other processes read the journal every 2s: rollout list, sqlite3)"
  journal_readers & local readers=$!
  "$ROLLCTL" plan apply "$SD/plan.yaml" 2>&1 | tee "$SD/rollctl.out" | sed -u "s/^/  [$S] /"
  local rc=${PIPESTATUS[0]}
  kill "$readers" 2>/dev/null; wait "$readers" 2>/dev/null
  expect "rollctl plan apply exit code" 0 "$rc"
  local id; id=$(rollout_id)
  expect "journal integrity after concurrent readers" ok "$(sql 'PRAGMA integrity_check')"
  grep -qE 'a1:(staged|rebooting|up|verified|soaking|healthy)' "$SD/readers.log" \
    || fail "the readers never saw the rollout in progress (stale journal?): $(tail -n 5 "$SD/readers.log")"
  ok "readers saw the rollout in progress ($(grep -c . "$SD/readers.log") reads)"
  expect "journal: rollout state" completed "$(sql "SELECT state FROM rollout WHERE id='$id'")"
  expect "journal: hosts committed" "a1 committed 1|a2 committed 1" \
    "$(sql "SELECT name||' '||state||' '||reboots FROM host WHERE rollout_id='$id' ORDER BY name" | paste -sd'|')"
  expect "journal: waves" "1 passed 1|2 passed 1" \
    "$(sql "SELECT number||' '||state||' '||(SELECT count(*) FROM host h WHERE h.rollout_id=w.rollout_id AND h.wave=w.number) FROM wave w WHERE rollout_id='$id' ORDER BY number" | paste -sd'|')"
  local v before
  for v in a1 a2; do
    # The host lease (/var/lib/rollctl/lease) was taken at the pre-check and given back at the commit.
    expect "$v host lease released after the commit" free "$(vm_ssh "$v" 'test -e /var/lib/rollctl/lease && echo held || echo free')"
    expect "$v host lease folder (rollctl's)" "700 root" "$(vm_ssh "$v" "stat -c '%a %U' /var/lib/rollctl")"
    assert_on_cloud "$v"
    local b; b=$(boots "$v")
    expect "$v boots so far (cold boot + the rollout's reboot)" 2 "$(wc -l <<<"$b")"
    expect "$v boot id rollctl verified = the boot now" "$(sql "SELECT boot_id_after FROM host WHERE rollout_id='$id' AND name='$v'")" \
      "$(vm_ssh "$v" cat /proc/sys/kernel/random/boot_id)"
  done
  slog "one more plain reboot of each VM (must stay on $CLOUD)"
  local pids=() p
  for v in a1 a2; do vm_reboot_wait "$v" >"$SD/reboot-$v.out" 2>&1 & pids+=($!); done
  for p in "${pids[@]}"; do wait "$p" || fail "plain reboot failed: $(cat "$SD"/reboot-*.out)"; done
  for v in a1 a2; do
    assert_on_cloud "$v"
    expect "$v boots so far" 3 "$(boots "$v" | wc -l)"
  done
  passed
}

# ---- scenario 2: the canary's gate fails -> halt -> rollback to the generic kernel ------------
scenario2() {
  scenario_begin s2 "b1"
  slog "scenario 2: plans/vm-gate-fails.yaml on 1 VM (a gate check that fails on the new kernel)"
  boot_vms b1 || fail "VM did not come up"
  scenario_files vm-gate-fails.yaml
  slog "rollctl plan apply (expect a halt, exit 3)"
  "$ROLLCTL" plan apply "$SD/plan.yaml" 2>&1 | tee "$SD/rollctl.out" | sed -u "s/^/  [$S] /"
  local rc=${PIPESTATUS[0]}
  expect "rollctl plan apply exit code (halted)" 3 "$rc"
  local id; id=$(rollout_id)
  expect "journal: rollout state (every changed host rolled back)" rolled_back "$(sql "SELECT state FROM rollout WHERE id='$id'")"
  expect "journal: canary state" rolled_back "$(sql "SELECT state FROM host WHERE rollout_id='$id' AND name='b1'")"
  expect "journal: wave 1 verdict" fail "$(sql "SELECT verdict FROM wave WHERE rollout_id='$id' AND number=1")"
  expect "b1 release (back on the generic kernel)" "$GENERIC" "$(vm_ssh b1 cat /proc/sys/kernel/osrelease)"
  expect "b1 grubenv saved_entry (default restored)" "$ENTRY_PREFIX $GENERIC" "$(grubenv b1 saved_entry)"
  expect "b1 grubenv next_entry (none staged)" "" "$(grubenv b1 next_entry)"
  local b; b=$(boots b1)
  expect "b1 boots (cold, new kernel, rollback)" 3 "$(wc -l <<<"$b")"
  expect "b1 kernels booted, in order" "$GENERIC $CLOUD $GENERIC" "$(awk '{print $3}' <<<"$b" | paste -sd' ')"
  passed
}

# ---- scenario 3: kill -9 of rollctl while the canary reboots, then rollout resume -------------
scenario3() {
  scenario_begin s3 "c1"
  slog "scenario 3: the cloud kernel's .deb shipped by rollctl (kernel.packages); kill -9 of rollctl while the VM reboots, then rollctl rollout resume"
  boot_vms c1 || fail "VM did not come up"
  scenario_files vm-cloud-package.yaml
  # Not from the VM's apt cache: only the file rollctl uploads can install the kernel.
  vm_ssh c1 "rm -f /var/cache/apt/archives/linux-image-*cloud*.deb" || fail "could not empty c1's apt cache"
  local serial=$RUN/vms/c1/serial.log restarts0
  restarts0=$(grep -ac 'reboot: Restarting system' "$serial")
  slog "rollctl plan apply (in the background)"
  "$ROLLCTL" plan apply "$SD/plan.yaml" >"$SD/rollctl.out" 2>&1 &
  local pid=$!
  echo "$pid" >"$SD/rollctl.pid"
  # rollctl prints "c1 rebooting" right after journaling the state (and before the command).
  local t=$SECONDS state=""
  while (( SECONDS - t < 400 )); do
    grep -q ' c1 rebooting$' "$SD/rollctl.out" && break
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.3
  done
  grep -q ' c1 rebooting$' "$SD/rollctl.out" || fail "rollctl never said 'c1 rebooting'"
  # Another process reading the journal meanwhile (as 'rollctl rollout show' would).
  state=$(sql "SELECT state FROM host WHERE name='c1'")
  expect "journal (read by sqlite3 while rollctl runs): c1 state" rebooting "$state"
  slog "journal: c1 rebooting; waiting for the guest kernel to restart"
  t=$SECONDS
  while (( SECONDS - t < 120 )) && (( $(grep -ac 'reboot: Restarting system' "$serial") <= restarts0 )); do sleep 0.2; done
  (( $(grep -ac 'reboot: Restarting system' "$serial") > restarts0 )) || fail "c1 did not restart within 120s of 'rebooting'"
  kill -9 "$pid"
  wait "$pid"; local rc=$?
  rm -f "$SD/rollctl.pid"
  expect "rollctl killed by SIGKILL while c1 reboots (exit status)" 137 "$rc"
  sed "s/^/  [$S] /" "$SD/rollctl.out"
  local id; id=$(rollout_id)
  expect "journal after the kill: rollout state" running "$(sql "SELECT state FROM rollout WHERE id='$id'")"
  slog "rollctl rollout resume $id"
  "$ROLLCTL" rollout resume "$id" 2>&1 | tee "$SD/resume.out" | sed -u "s/^/  [$S] /"
  rc=${PIPESTATUS[0]}
  expect "rollctl rollout resume exit code" 0 "$rc"
  expect "journal: rollout state" completed "$(sql "SELECT state FROM rollout WHERE id='$id'")"
  expect "journal: c1 state, reboots ordered" "committed 1" "$(sql "SELECT state||' '||reboots FROM host WHERE rollout_id='$id' AND name='c1'")"
  expect "journal: reboot intents for c1 (across both processes)" 1 \
    "$(sql "SELECT count(*) FROM event WHERE rollout_id='$id' AND host='c1' AND message LIKE '%(intent: systemctl reboot)%'")"
  expect "journal: reboot commands sent to c1" 1 \
    "$(sql "SELECT count(*) FROM event WHERE rollout_id='$id' AND host='c1' AND message = 'reboot command sent'")"
  assert_on_cloud c1
  expect "journal: uploads of $CLOUD_DEB to c1, checked there" 1 \
    "$(sql "SELECT count(*) FROM event WHERE rollout_id='$id' AND host='c1' AND message LIKE 'uploaded $CLOUD_DEB %SHA-256 verified on the host'")"
  expect "journal: installs of the shipped package on c1" 1 \
    "$(sql "SELECT count(*) FROM event WHERE rollout_id='$id' AND host='c1' AND message LIKE 'installed shipped packages: %'")"
  expect "c1 dpkg: linux-image-$CLOUD" "install ok installed" "$(vm_ssh c1 "dpkg-query -W -f='\${Status}' linux-image-$CLOUD")"
  expect "c1 /var/tmp/rollctl-$id (removed after the install)" gone "$(vm_ssh c1 "test -e /var/tmp/rollctl-$id && echo left || echo gone")"
  local b; b=$(boots c1)
  expect "c1 boots (cold + exactly one for the rollout)" 2 "$(wc -l <<<"$b")"
  expect "c1 kernels booted, in order" "$GENERIC $CLOUD" "$(awk '{print $3}' <<<"$b" | paste -sd' ')"
  expect "c1 boots in journalctl --list-boots" 2 "$(vm_ssh c1 journalctl --list-boots --no-pager -q | grep -c .)"
  expect "guest kernel restarts on the serial console" $(( restarts0 + 1 )) "$(grep -ac 'reboot: Restarting system' "$serial")"
  passed
}

# ---- run -----------------------------------------------------------------------------------
declare -A TIMES
run_scenarios() { # run_scenarios N... : concurrently, each in its own subshell
  local n pids=() names=() rc=0 i
  for n in "$@"; do
    ( "scenario$n" ) &
    pids+=($!); names+=("$n")
  done
  for i in "${!pids[@]}"; do
    wait "${pids[$i]}" || rc=1
  done
  for n in "$@"; do
    [ -f "$RUN/s$n/failure.txt" ] && { cat "$RUN/s$n/failure.txt"; rc=1; }
  done
  return $rc
}

start_vms() { # start_vms VM...
  local v
  for v in "$@"; do vm_start "$v" || { log "FAIL: qemu did not start $v"; exit 1; }; done
  vm_write_known_hosts
}

FAILED=0
want() { [[ " $SCENARIOS " == *" $1 "* ]]; }
if want 1; then
  log "scenario 1: starting VMs a1 a2"
  t=$SECONDS; start_vms a1 a2
  run_scenarios 1 || FAILED=1
  TIMES[s1]=$(( SECONDS - t ))
  vm_stop a1; vm_stop a2
  log "scenario 1: $([ $FAILED = 0 ] && echo passed || echo FAILED) in ${TIMES[s1]}s (VMs stopped)"
fi
LATER=(); want 2 && LATER+=(2); want 3 && LATER+=(3)
if (( ${#LATER[@]} )); then
  VMS=(); want 2 && VMS+=(b1); want 3 && VMS+=(c1)
  log "scenario(s) ${LATER[*]} at the same time: starting VMs ${VMS[*]}"
  t=$SECONDS; start_vms "${VMS[@]}"
  run_scenarios "${LATER[@]}" || FAILED=1
  TIMES[s23]=$(( SECONDS - t ))
  for v in "${VMS[@]}"; do vm_stop "$v"; done
fi

SUMMARY="image $IMAGE_NOTE"
for n in 1 2 3; do [ -f "$RUN/s$n/secs" ] && SUMMARY="$SUMMARY; scenario $n $(cat "$RUN/s$n/secs")s"; done
[ -n "${TIMES[s23]:-}" ] && (( ${#LATER[@]} > 1 )) && SUMMARY="$SUMMARY; scenarios ${LATER[*]} together ${TIMES[s23]}s"
log "times: $SUMMARY; whole run $(( SECONDS - T0 ))s"
if [ $FAILED = 0 ]; then OK=1; log "PASS"; exit 0; else log "FAIL"; exit 1; fi
