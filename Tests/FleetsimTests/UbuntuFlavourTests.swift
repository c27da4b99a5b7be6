import Basics
import Foundation
import Testing
import FleetsimCore

/// Ubuntu 24.04's kernel releases for the ubuntu flavour's tests: the running one, the next, and
/// one that panics.
let ubuntuScenario = """
mem_total: 16GiB
initial_kernel: 6.8.0-45-generic
defaults:
  boot_delay: 0.5s
  boot_jitter: 0s
  panic_delay: 1s
  sunreclaim_noise: 0.5MiB
kernels:
  6.8.0-45-generic:
    sunreclaim_base: 300MiB
  6.8.0-49-generic:
    sunreclaim_base: 250MiB
  6.8.0-50-generic:
    panic: true
"""

func ubuntuTitlePath(_ rel: String) -> String { "Advanced options for Ubuntu>Ubuntu, with Linux \(rel)" }

/// An ubuntu host next to a Debian one: Ubuntu's /etc/os-release, /etc/default/grub (prepared
/// for rollctl: GRUB_DEFAULT=saved), update-grub's menu with Ubuntu's titles and `recordfail`,
/// apt's texts, and a firmware that sets recordfail at every boot that is not a one-shot one,
/// clears it once the system is up, and waits the recordfail timeout at the menu. Needs root.
@Suite(.enabled(if: isRoot, "fleetsim needs root"))
struct UbuntuFlavourTests {
    /// grubenv as the host's file has it (readable while the host is down).
    func grubenv(_ f: TestFleet, _ host: String) -> [String: String] {
        var out: [String: String] = [:]
        for (k, v) in Grub.readEnv(f.dir + "/hosts/\(host)/boot/grub/grubenv") { out[k] = v }
        return out
    }

    func waitFor(_ seconds: Double, _ condition: () -> Bool) async -> Bool {
        let deadline = monotonic() + seconds
        while monotonic() < deadline {
            if condition() { return true }
            await pause(0.1)
        }
        return condition()
    }

    @Test func ubuntuHostHasUbuntusGrubAndItsRecordfail() async throws {
        try await withFleet(hosts: 2, third: 59, scenario: ubuntuScenario, extra: ["--flavours", "ubuntu:1"]) { f in
            let inv = try #require(readFile(f.dir + "/inventory.yaml"))
            #expect(inv.contains("  - name: web-001\n    address: \(f.address(1))\n    labels: {rack: r1, cluster: c1, flavour: ubuntu}\n"), "\(inv)")
            #expect(inv.contains("  - name: web-002\n    address: \(f.address(2))\n    labels: {rack: r2, cluster: c1}\n"), "\(inv)")

            // /etc as Ubuntu 24.04 has it, for this host only.
            #expect(await f.sshOut(1, ". /etc/os-release; echo $ID $ID_LIKE $VERSION_ID $VERSION_CODENAME") == "ubuntu debian 24.04 noble")
            #expect(await f.sshOut(2, ". /etc/os-release; echo $ID") != "ubuntu")
            #expect(await f.sshOut(1, "uname -rv").hasPrefix("6.8.0-45-generic #45-Ubuntu SMP PREEMPT_DYNAMIC"))
            #expect(await f.sshOut(1, "grep -E '^GRUB_(DEFAULT|TIMEOUT_STYLE|DISTRIBUTOR)=' /etc/default/grub")
                    == "GRUB_DEFAULT=saved\nGRUB_TIMEOUT_STYLE=hidden\nGRUB_DISTRIBUTOR=`( . /etc/os-release; echo ${NAME:-Ubuntu} ) 2>/dev/null || echo Ubuntu`")

            // update-grub's menu with Ubuntu's titles, `recordfail` first in every entry.
            let cfg = await f.sshOut(1, "cat /boot/grub/grub.cfg")
            let uuid = try #require(cfg.split(separator: "'").first { $0.hasPrefix("gnulinux-simple-") }).dropFirst("gnulinux-simple-".count)
            for text in ["menuentry 'Ubuntu' --class ubuntu --class gnu-linux --class gnu --class os $menuentry_id_option 'gnulinux-simple-\(uuid)' {\n\trecordfail\n\tload_video\n\tgfxmode $linux_gfx_mode\n",
                         "submenu 'Advanced options for Ubuntu' $menuentry_id_option 'gnulinux-advanced-\(uuid)' {\n",
                         "\tmenuentry 'Ubuntu, with Linux 6.8.0-45-generic' --class ubuntu --class gnu-linux --class gnu --class os $menuentry_id_option 'gnulinux-6.8.0-45-generic-advanced-\(uuid)' {\n\t\trecordfail\n",
                         "\tmenuentry 'Ubuntu, with Linux 6.8.0-45-generic (recovery mode)' --class ubuntu --class gnu-linux --class gnu --class os $menuentry_id_option 'gnulinux-6.8.0-45-generic-recovery-\(uuid)' {\n\t\trecordfail\n",
                         "ro recovery nomodeset dis_ucode_ldr", "function recordfail {\n  set recordfail=1\n  if [ -n \"${have_grubenv}\" ]; then if [ -z \"${boot_once}\" ]; then save_env recordfail; fi; fi\n}",
                         "   set default=\"${saved_entry}\"", "if [ \"${recordfail}\" = 1 ] ; then\n  set timeout=30\n"] {
                #expect(cfg.contains(text), "grub.cfg lacks \(text)")
            }
            #expect(!cfg.contains("Debian GNU/Linux"))
            // The first boot finished: GRUB's recordfail=1 was cleared once the host was up.
            var env = grubenv(f, "web-001")
            #expect(env["saved_entry"] == ubuntuTitlePath("6.8.0-45-generic") && env["recordfail"] == nil, "\(env)")

            // apt-get installs Ubuntu's packages and re-runs update-grub with Ubuntu's titles.
            let install = await f.ssh(1, "apt-get install -y linux-image-6.8.0-49-generic linux-image-6.8.0-50-generic")
            #expect(install.status == 0, "\(install)")
            #expect(install.out.contains("Get:1 http://archive.ubuntu.com/ubuntu noble-updates/main amd64 linux-image-6.8.0-49-generic amd64 6.8.0-49.49"), "\(install.out)")
            #expect(install.out.contains("Setting up linux-image-6.8.0-50-generic (6.8.0-50.50) ..."), "\(install.out)")
            #expect(install.err.contains("Sourcing file `/etc/default/grub'\nGenerating grub configuration file ...\nFound linux image: /boot/vmlinuz-6.8.0-50-generic"), "\(install.err)")
            let menu = await f.sshOut(1, "grep -E \"^\\s*(menuentry|submenu) \" /boot/grub/grub.cfg | cut -d \"'\" -f 2")
            #expect(menu == ["Ubuntu", "Advanced options for Ubuntu"].joined(separator: "\n") + "\n" + ["6.8.0-50-generic", "6.8.0-49-generic", "6.8.0-45-generic"].map {
                "Ubuntu, with Linux \($0)\nUbuntu, with Linux \($0) (recovery mode)" }.joined(separator: "\n"), "\(menu)")
            // A Debian host next to it has neither.
            #expect(await f.sshOut(2, "grep -c \"^menuentry 'Debian GNU/Linux'\" /boot/grub/grub.cfg") == "1")

            // grub-reboot: a one-shot boot of 6.8.0-49 (GRUB does not save recordfail then); the next plain boot is the saved default.
            _ = await f.ssh(1, "grub-reboot '\(ubuntuTitlePath("6.8.0-49-generic"))' && reboot")
            _ = try #require(await f.waitUp(1, boots: 2))
            #expect(await f.sshOut(1, "uname -r") == "6.8.0-49-generic")
            env = grubenv(f, "web-001")
            #expect((env["next_entry"] ?? "").isEmpty && env["saved_entry"] == ubuntuTitlePath("6.8.0-45-generic") && env["recordfail"] == nil, "\(env)")

            // Ubuntu's own GRUB_DEFAULT=0 boots entry 0, the newest kernel — one that panics. Every
            // attempt is a saved boot: recordfail=1 stays, and each next attempt waits at the menu
            // for GRUB_RECORDFAIL_TIMEOUT (update-grub wrote 2 s into grub.cfg).
            #expect(await f.fleetsim(["set", "web-001", "grub_default=0", "grub_recordfail_timeout=2"]).status == 0)
            let regen = await f.ssh(1, "update-grub && grep -E '^   set default=|^  set timeout=2$' /boot/grub/grub.cfg && reboot")
            #expect(regen.out.contains("   set default=\"0\"\n  set timeout=2\n"), "\(regen)")
            #expect(await waitFor(20) { f.bootLog(1).filter { $0.hasSuffix("6.8.0-50-generic panic") }.count >= 2 }, "\(f.bootLog(1))")
            #expect(grubenv(f, "web-001")["recordfail"] == "1", "a panicking boot leaves recordfail=1")
            #expect(readFile(f.dir + "/supervisor.log")?.contains("web-001: GRUB shows its menu for 2s (recordfail=1)") == true)
            // The kernel fixed: the next attempt comes up, and the finished boot clears recordfail.
            #expect(await f.fleetsim(["set", "web-001", "panic=false"]).status == 0)
            _ = try #require(await f.waitUp(1, boots: 3, timeout: 20))
            #expect(await f.sshOut(1, "uname -r") == "6.8.0-50-generic")
            #expect(grubenv(f, "web-001")["recordfail"] == nil, "\(grubenv(f, "web-001"))")

            // GRUB_RECORDFAIL_TIMEOUT=-1 with recordfail=1 left: GRUB waits at its menu for a key; the host stays down.
            #expect(await f.fleetsim(["set", "web-001", "grub_default=saved", "grub_recordfail_timeout=-1", "recordfail=true"]).status == 0)
            _ = await f.ssh(1, "update-grub && reboot")
            #expect(await waitFor(10) { f.status(1)?.phase == "hung" }, "\(String(describing: f.status(1)))")
            #expect(readFile(f.dir + "/supervisor.log")?.contains("web-001: GRUB shows its menu and waits for a key (recordfail=1, GRUB_RECORDFAIL_TIMEOUT=-1)") == true)
            // Someone clears it and power-cycles the host: the saved default boots.
            #expect(await f.fleetsim(["set", "web-001", "recordfail=false", "power=cycle"]).status == 0)
            _ = try #require(await f.waitUp(1, boots: 4, timeout: 20))
            #expect(await f.sshOut(1, "uname -r") == "6.8.0-45-generic")
            let booted: [String] = f.bootLog(1).compactMap { line -> String? in
                let kernel = line.split(separator: " ").dropFirst(3).first.map(String.init)
                return kernel == "6.8.0-50-generic" ? nil : kernel
            }
            #expect(booted == ["6.8.0-45-generic", "6.8.0-49-generic", "6.8.0-45-generic"])
        }
    }
}
