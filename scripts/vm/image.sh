#!/usr/bin/env bash
# Builds (or finds cached) the Debian bookworm base image the real-VM tests boot.
#
#   scripts/vm/image.sh            prints the cache dir (builds it first if missing)
#
# The cache dir is $ROLLCTL_VM_CACHE (default /var/cache/rollctl-vm)/<first 12 hex of
# sha256(this file)>/ and holds, once complete:
#   base.img              raw disk: MBR, one ext4 partition at 1 MiB, GRUB i386-pc
#   client_key(.pub)      ed25519 key in root's authorized_keys in the image
#   host_ed25519.pub      the image's fixed sshd host key (for a strict known_hosts)
#   manifest              generic=<release of linux-image-amd64>, cloud=<release of the
#                         pre-downloaded linux-image-cloud-amd64>, cloud_deb=<its .deb's name>,
#                         built=<seconds>
#   debs/<cloud_deb>      that .deb, for kernel.packages (scenario 3)
# Everything is built in <dir>.tmp.<pid> and renamed at the end, so a half build is never
# used. Loop devices and mounts are removed on success, failure and Ctrl-C.
#
# Image: minbase + systemd, udev, openssh-server (root by key only), ifupdown + DHCP on
# eth0 (net.ifnames=0), serial console, GRUB_DEFAULT=saved, GRUB_TIMEOUT=1, persistent
# journald, a boot log (/var/log/rollctl-boots: one line per boot: time, boot id, release),
# and the .debs of linux-image-cloud-amd64 in /var/cache/apt/archives with the apt lists,
# so installing it in the guest needs no network.
set -euo pipefail

SELF=$(readlink -f "$0")
CACHE_ROOT=${ROLLCTL_VM_CACHE:-/var/cache/rollctl-vm}
KEY=$(sha256sum "$SELF" | cut -c1-12)
OUT=$CACHE_ROOT/$KEY
if [ -f "$OUT/manifest" ] && [ -f "$OUT/base.img" ]; then echo "$OUT"; exit 0; fi
[ "$(id -u)" = 0 ] || { echo "image.sh: needs root (loop devices, mount, chroot)" >&2; exit 2; }

# The mirrors apt is configured with on this machine (scripts/apt-mirror.sh), unless set.
source "$(dirname "$SELF")/../apt-mirror.sh"
MIRROR=${ROLLCTL_VM_MIRROR:-$(apt_mirror || true)}
SECURITY=${ROLLCTL_VM_SECURITY_MIRROR:-$(apt_mirror security || true)}
[ -n "$MIRROR" ] || { echo "image.sh: apt has no Debian bookworm mirror configured; set ROLLCTL_VM_MIRROR" >&2; exit 2; }
[ -n "$SECURITY" ] || SECURITY=$MIRROR-security
SIZE=${ROLLCTL_VM_IMAGE_SIZE:-3G}
OFFSET=1048576

mkdir -p "$CACHE_ROOT"
TMP=$OUT.tmp.$$
rm -rf "$TMP"; mkdir -p "$TMP"
MNT=$TMP/mnt
LOG=$TMP/build.log
LOOP=""
T0=$(date +%s)
say() { echo "[image $(( $(date +%s) - T0 ))s] $*" >&2; }

descendants() { local c; for c in $(ps -o pid= --ppid "$1" 2>/dev/null); do echo "$c"; descendants "$c"; done; }
exec 3>&1 4>&2   # the script's own stdout/stderr: a trap may fire inside a step redirected to the log
cleanup() {
  local rc=$?
  set +e
  trap - EXIT INT TERM
  exec 1>&3 2>&4
  # Our own children first (debootstrap, dpkg in the chroot), by pid: they hold the mounts.
  local kids; kids=$(descendants $$)
  [ -n "$kids" ] && { kill $kids 2>/dev/null; sleep 1; kill -9 $kids 2>/dev/null; }
  if [ -n "$MNT" ] && [ -d "$MNT" ]; then
    for m in dev/pts dev proc sys; do mountpoint -q "$MNT/$m" && { umount "$MNT/$m" || umount -l "$MNT/$m"; }; done
    mountpoint -q "$MNT" && { umount "$MNT" || umount -l "$MNT"; }
  fi
  [ -n "$LOOP" ] && losetup -d "$LOOP" 2>/dev/null
  if [ $rc != 0 ]; then
    say "FAILED (exit $rc); last lines of $LOG:"
    tail -n 30 "$LOG" >&2 2>/dev/null
    # keep the log, drop the half image
    mkdir -p "$CACHE_ROOT/failed"; cp "$LOG" "$CACHE_ROOT/failed/build-$KEY.log" 2>/dev/null
    echo "full log: $CACHE_ROOT/failed/build-$KEY.log" >&2
    rm -rf "$TMP"
  fi
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Long steps run as a background child and are waited for: a trapped TERM/INT then takes
# effect at once (bash runs traps only after a foreground child ends).
bg_wait() { "$@" & wait $!; }
in_chroot() { chroot "$MNT" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin DEBIAN_FRONTEND=noninteractive LC_ALL=C "$@"; }

say "building $OUT (log: $LOG)"
IMG=$TMP/base.img
truncate -s "$SIZE" "$IMG"
echo "start=2048, type=83, bootable" | sfdisk -q "$IMG" >>"$LOG" 2>&1
# The host kernel cannot scan partition tables here (no loopNp1): map the partition by offset.
LOOP=$(losetup -f --show -o $OFFSET "$IMG")
mkfs.ext4 -q -L root "$LOOP" >>"$LOG" 2>&1
UUID=$(blkid -s UUID -o value "$LOOP")
mkdir -p "$MNT"
mount "$LOOP" "$MNT"

say "debootstrap bookworm (minbase) from $MIRROR"
bg_wait debootstrap --variant=minbase \
  --include=systemd-sysv,udev,kmod,openssh-server,ifupdown,isc-dhcp-client,iproute2,procps,ca-certificates,less \
  bookworm "$MNT" "$MIRROR" >>"$LOG" 2>&1

# The chroot's own /dev: the loop node under its own name and a by-uuid link, so
# grub-probe/update-grub find the root device and write root=UUID=.
mount -t tmpfs -o mode=0755 devtmp "$MNT/dev"
for n in null:1:3 zero:1:5 full:1:7 random:1:8 urandom:1:9 tty:5:0; do
  IFS=: read -r name ma mi <<<"$n"; mknod -m 666 "$MNT/dev/$name" c "$ma" "$mi"
done
mkdir -p "$MNT/dev/pts" "$MNT/dev/disk/by-uuid"
mknod -m 660 "$MNT$LOOP" b "$(stat -c '%t' "$LOOP" | xargs printf '%d')" "$(stat -c '%T' "$LOOP" | xargs printf '%d')"
ln -s "../../$(basename "$LOOP")" "$MNT/dev/disk/by-uuid/$UUID"
mount -t proc proc "$MNT/proc"
mount -t sysfs sys "$MNT/sys"

cat >"$MNT/etc/apt/sources.list" <<EOF
deb $MIRROR bookworm main
deb $MIRROR bookworm-updates main
deb $SECURITY bookworm-security main
EOF
cp /etc/resolv.conf "$MNT/etc/resolv.conf"
echo 'APT::Install-Recommends "false";' >"$MNT/etc/apt/apt.conf.d/90norecommends"
echo vm >"$MNT/etc/hostname"
printf '127.0.0.1 localhost\n127.0.1.1 vm\n' >"$MNT/etc/hosts"
printf 'UUID=%s / ext4 errors=remount-ro 0 1\n' "$UUID" >"$MNT/etc/fstab"
printf 'auto lo\niface lo inet loopback\n\nauto eth0\niface eth0 inet dhcp\n' >"$MNT/etc/network/interfaces"
# Small, deterministic initramfs: only what a virtio disk with ext4 needs (also for the
# cloud kernel installed in the guest).
mkdir -p "$MNT/etc/initramfs-tools/conf.d"
echo 'MODULES=list' >"$MNT/etc/initramfs-tools/conf.d/rollctl-vm"
printf 'virtio_pci\nvirtio_blk\next4\n' >>"$MNT/etc/initramfs-tools/modules"
mkdir -p "$MNT/etc/default"
cat >"$MNT/etc/default/grub" <<'EOF'
GRUB_DEFAULT=saved
GRUB_TIMEOUT=1
GRUB_DISTRIBUTOR=`lsb_release -i -s 2> /dev/null || echo Debian`
GRUB_CMDLINE_LINUX_DEFAULT=""
GRUB_CMDLINE_LINUX="console=ttyS0,115200 net.ifnames=0"
GRUB_TERMINAL="serial"
GRUB_SERIAL_COMMAND="serial --unit=0 --speed=115200"
GRUB_DISABLE_OS_PROBER=true
EOF
in_chroot debconf-set-selections <<'EOF'
grub-pc grub-pc/install_devices multiselect
grub-pc grub-pc/install_devices_empty boolean true
EOF

say "apt: kernel, GRUB"
bg_wait in_chroot apt-get update -qq >>"$LOG" 2>&1
bg_wait in_chroot apt-get install -y -q linux-image-amd64 grub-pc initramfs-tools >>"$LOG" 2>&1
GENERIC=$(ls "$MNT/lib/modules" | grep -- '-amd64$' | grep -v cloud | sort -V | tail -n 1)

say "apt: pre-download linux-image-cloud-amd64 (the test's 'patched kernel')"
in_chroot apt-get clean   # the cache then holds only what the download below brings
bg_wait in_chroot apt-get install -y -q --download-only linux-image-cloud-amd64 >>"$LOG" 2>&1
CLOUD_DEB=$(ls "$MNT/var/cache/apt/archives" | grep -E '^linux-image-[0-9].*-cloud-amd64_' | sort -V | tail -n 1)
CLOUD=${CLOUD_DEB#linux-image-}; CLOUD=${CLOUD%%_*}
[ -n "$GENERIC" ] && [ -n "$CLOUD" ] || { say "cannot tell the kernel releases (generic='$GENERIC' cloud='$CLOUD')"; exit 1; }
# Keep the .debs: no apt-get clean, and no docker-style clean hook.
rm -f "$MNT/etc/apt/apt.conf.d/docker-clean"
# The cloud kernel's own package also beside the image: scenario 3 ships it from here with
# kernel.packages (uploaded by rollctl, installed with dpkg -i), as an in-house kernel would be.
install -d "$TMP/debs"
cp "$MNT/var/cache/apt/archives/$CLOUD_DEB" "$TMP/debs/"

say "ssh: client key, fixed host key"
ssh-keygen -q -t ed25519 -N '' -C rollctl-vm-client -f "$TMP/client_key"
ssh-keygen -q -t ed25519 -N '' -C rollctl-vm-host -f "$TMP/host_ed25519"
rm -f "$MNT"/etc/ssh/ssh_host_*
install -m 600 "$TMP/host_ed25519" "$MNT/etc/ssh/ssh_host_ed25519_key"
install -m 644 "$TMP/host_ed25519.pub" "$MNT/etc/ssh/ssh_host_ed25519_key.pub"
cat >"$MNT/etc/ssh/sshd_config.d/rollctl-vm.conf" <<'EOF'
HostKey /etc/ssh/ssh_host_ed25519_key
PermitRootLogin prohibit-password
PasswordAuthentication no
UseDNS no
EOF
install -d -m 700 "$MNT/root/.ssh"
install -m 600 "$TMP/client_key.pub" "$MNT/root/.ssh/authorized_keys"

say "boot log, persistent journal, misc"
install -d -m 2755 "$MNT/var/log/journal"
cat >"$MNT/etc/systemd/system/rollctl-bootlog.service" <<'EOF'
[Unit]
Description=Append this boot to /var/log/rollctl-boots (rollctl VM tests)
DefaultDependencies=no
After=local-fs.target
Before=sshd.service ssh.service

[Service]
Type=oneshot
ExecStart=/bin/sh -c 'echo "$(date +%%s) $(cat /proc/sys/kernel/random/boot_id) $(cat /proc/sys/kernel/osrelease)" >>/var/log/rollctl-boots; sync'

[Install]
WantedBy=multi-user.target
EOF
ln -sf /etc/systemd/system/rollctl-bootlog.service "$MNT/etc/systemd/system/multi-user.target.wants/rollctl-bootlog.service"
# No waiting for a network that is not needed to boot; no password for root (key only).
in_chroot passwd -l root >>"$LOG" 2>&1
in_chroot systemctl mask systemd-networkd-wait-online.service apt-daily.timer apt-daily-upgrade.timer e2scrub_all.timer fstrim.timer >>"$LOG" 2>&1 || true
: >"$MNT/etc/machine-id"

say "GRUB: grub.cfg, core.img, boot sector"
# grub's 10_linux writes no entry at all for a root on /dev/loop[0-9] ("loop-mounted from
# files"): tell grub-mkconfig the root is the guest's /dev/vda1 for this one run (root= is
# UUID=... anyway, through the by-uuid link).
mkdir -p "$MNT/etc/default/grub.d"
echo 'GRUB_DEVICE=/dev/vda1' >"$MNT/etc/default/grub.d/zz-rollctl-image-build.cfg"
bg_wait in_chroot update-grub >>"$LOG" 2>&1
rm -f "$MNT/etc/default/grub.d/zz-rollctl-image-build.cfg"
grep -E "menuentry|submenu|linux\s" "$MNT/boot/grub/grub.cfg" >>"$LOG" || true
grep -q "with Linux $GENERIC'" "$MNT/boot/grub/grub.cfg" || { say "grub.cfg has no entry for $GENERIC"; exit 1; }
grep -q "root=UUID=$UUID" "$MNT/boot/grub/grub.cfg" || { say "grub.cfg does not boot root=UUID=$UUID"; exit 1; }
in_chroot grub-editenv /boot/grub/grubenv create
mkdir -p "$MNT/boot/grub/i386-pc"
cp "$MNT"/usr/lib/grub/i386-pc/*.mod "$MNT"/usr/lib/grub/i386-pc/*.lst "$MNT/boot/grub/i386-pc/"
# grub-install cannot work on an offset loop device: build core.img and write both stages by hand.
in_chroot grub-mkimage -O i386-pc -o /boot/grub/i386-pc/core.img -p '(hd0,msdos1)/boot/grub' \
  biosdisk part_msdos ext2 >>"$LOG" 2>&1
CORE=$MNT/boot/grub/i386-pc/core.img
[ "$(stat -c %s "$CORE")" -lt $(( (2048 - 1) * 512 )) ] || { say "core.img does not fit before the partition"; exit 1; }
cp "$MNT/usr/lib/grub/i386-pc/boot.img" "$TMP/boot.img"
cp "$CORE" "$TMP/core.img"
rm -f "$MNT/etc/resolv.conf"

say "unmounting"
for m in dev proc sys; do umount "$MNT/$m"; done
umount "$MNT"
losetup -d "$LOOP"; LOOP=""
dd if="$TMP/boot.img" of="$IMG" bs=440 count=1 conv=notrunc status=none
dd if="$TMP/core.img" of="$IMG" bs=512 seek=1 conv=notrunc status=none
rm -f "$TMP/boot.img" "$TMP/core.img"
rmdir "$MNT"; MNT=""

printf 'generic=%s\ncloud=%s\ncloud_deb=%s\nuuid=%s\nbuilt=%s\n' "$GENERIC" "$CLOUD" "$CLOUD_DEB" "$UUID" "$(( $(date +%s) - T0 ))" >"$TMP/manifest"
rm -rf "$OUT"
mv "$TMP" "$OUT"
say "done: generic $GENERIC, cloud $CLOUD"
echo "$OUT"
