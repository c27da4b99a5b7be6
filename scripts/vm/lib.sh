# Sourced by scripts/vm/test-vm.sh: start, reach and stop qemu VMs over a cached base image.
# Needs: IMAGE_DIR (from image.sh), RUN (this run's scratch dir). Every VM lives in
# $RUN/vms/<name>/ (overlay.qcow2, qemu.pid, serial.log, port) and is registered there, so
# vm_teardown_all finds every one of them (also after a failure or Ctrl-C).

VM_MEM=${ROLLCTL_VM_MEM:-1024}
VM_KNOWN_HOSTS=""   # set by vm_write_known_hosts

# A free TCP port on 127.0.0.1 (not listening now, not given to another VM of this run).
vm_free_port() {
  local p
  for p in $(seq "${ROLLCTL_VM_PORT_BASE:-22201}" 22399); do
    grep -qx "$p" "$RUN"/vms/*/port 2>/dev/null && continue
    ss -Hltn "sport = :$p" 2>/dev/null | grep -q . && continue
    echo "$p"; return 0
  done
  return 1
}

# vm_start NAME: fresh qcow2 overlay over base.img, qemu daemonized with sshd on 127.0.0.1:PORT.
vm_start() {
  local name=$1 d=$RUN/vms/$1 port
  mkdir -p "$d"
  port=$(vm_free_port) || { echo "no free port for $name" >&2; return 1; }
  echo "$port" >"$d/port"
  qemu-img create -q -f qcow2 -F raw -b "$IMAGE_DIR/base.img" "$d/overlay.qcow2"
  qemu-system-x86_64 -name "rollctl-vm-$name" \
    -accel tcg,tb-size=256 -m "$VM_MEM" -smp 1 \
    -drive "file=$d/overlay.qcow2,if=virtio,format=qcow2,cache=unsafe" \
    -netdev "user,id=n0,hostfwd=tcp:127.0.0.1:$port-:22" -device virtio-net-pci,netdev=n0 \
    -display none -serial "file:$d/serial.log" -monitor none \
    -daemonize -pidfile "$d/qemu.pid"
}

vm_port() { cat "$RUN/vms/$1/port"; }

# Strict known_hosts for every VM of the run: the image's fixed host key on each [127.0.0.1]:PORT.
vm_write_known_hosts() {
  VM_KNOWN_HOSTS=$RUN/known_hosts
  local key d
  key=$(awk '{print $1" "$2}' "$IMAGE_DIR/host_ed25519.pub")
  : >"$VM_KNOWN_HOSTS"
  for d in "$RUN"/vms/*/; do echo "[127.0.0.1]:$(cat "$d/port") $key" >>"$VM_KNOWN_HOSTS"; done
}

# vm_ssh NAME COMMAND...: OpenSSH with host-key checking on (strict).
vm_ssh() {
  local name=$1; shift
  ssh -q -o BatchMode=yes -o StrictHostKeyChecking=yes -o UserKnownHostsFile="$VM_KNOWN_HOSTS" \
    -o GlobalKnownHostsFile=/dev/null -o ConnectTimeout=5 -o ServerAliveInterval=5 -o ServerAliveCountMax=3 \
    -i "$IMAGE_DIR/client_key" -p "$(vm_port "$name")" root@127.0.0.1 "$@"
}

# vm_wait_ssh NAME [TIMEOUT_SECONDS]: until sshd answers a command.
vm_wait_ssh() {
  local name=$1 limit=${2:-240} t0=$SECONDS
  while (( SECONDS - t0 < limit )); do
    vm_ssh "$name" true 2>/dev/null && return 0
    vm_alive "$name" || { echo "VM $name: qemu is gone" >&2; return 1; }
    sleep 2
  done
  echo "VM $name: no SSH after ${limit}s" >&2
  return 1
}

vm_alive() { local f=$RUN/vms/$1/qemu.pid; [ -f "$f" ] && kill -0 "$(cat "$f")" 2>/dev/null; }

# vm_reboot_wait NAME: plain reboot, wait for a new boot id; prints the new release.
vm_reboot_wait() {
  local name=$1 before after t0=$SECONDS
  before=$(vm_ssh "$name" cat /proc/sys/kernel/random/boot_id)
  vm_ssh "$name" 'systemctl reboot' || true
  while (( SECONDS - t0 < 300 )); do
    sleep 3
    after=$(vm_ssh "$name" cat /proc/sys/kernel/random/boot_id 2>/dev/null) || continue
    [ -n "$after" ] && [ "$after" != "$before" ] && { vm_ssh "$name" cat /proc/sys/kernel/osrelease; return 0; }
  done
  echo "VM $name: no new boot id 300s after a plain reboot" >&2
  return 1
}

# vm_stop NAME: kill qemu (by its pid file), wait until it is gone, remove the overlay.
vm_stop() {
  local d=$RUN/vms/$1 pid i
  [ -f "$d/qemu.pid" ] && pid=$(cat "$d/qemu.pid") || pid=""
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
    kill "$pid" 2>/dev/null
    for i in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$pid" 2>/dev/null && kill -9 "$pid" 2>/dev/null
  fi
  rm -f "$d/qemu.pid" "$d/overlay.qcow2"
}

vm_teardown_all() {
  local d
  for d in "$RUN"/vms/*/; do [ -d "$d" ] && vm_stop "$(basename "$d")"; done
  return 0
}
