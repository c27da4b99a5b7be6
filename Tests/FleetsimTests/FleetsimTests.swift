import Foundation
import Testing
import FleetsimCore
#if canImport(Glibc)
import Glibc
#endif

let advanced = "Advanced options for Debian GNU/Linux"
func titlePath(_ rel: String) -> String { "\(advanced)>Debian GNU/Linux, with Linux \(rel)" }

/// End-to-end tests on real namespaces and sshd. Each test has its own DIR and address range,
/// so they can run in parallel. They need root.
@Suite(.enabled(if: isRoot, "fleetsim needs root"))
struct FleetsimEndToEndTests {
    @Test func upWritesInventoryKnownHostsCustomersAndDownLeavesNothing() throws {
        let f = try TestFleet(hosts: 3, third: 61)
        var downed = false
        defer { if !downed { f.down() } }

        let inv = try #require(readFile(f.dir + "/inventory.yaml"))
        #expect(inv.hasPrefix("# written by fleetsim up\ndefaults:\n  user: root\n  port: 2222\n"))
        #expect(inv.contains("  identity: client_key"))
        #expect(inv.contains("  known_hosts: known_hosts\n  host_key_policy: strict\nhosts:\n"))
        #expect(inv.contains("  - name: web-001\n    address: \(f.address(1))\n    labels: {rack: r1, cluster: c1}\n"))
        #expect(inv.contains("  - name: web-002\n    address: \(f.address(2))\n    labels: {rack: r2, cluster: c1}\n"))
        let known = try #require(readFile(f.dir + "/known_hosts")).split(separator: "\n")
        #expect(known.count == 3)
        #expect(known[0].hasPrefix("[\(f.address(1))]:2222 ssh-ed25519 AAAA"))
        let csv = try #require(readFile(f.dir + "/customers.csv")).split(separator: "\n")
        #expect(csv[0] == "host,customer_id,name,email")
        #expect(csv.count >= 1 + 3 * 2)
        #expect(csv.dropFirst().allSatisfy { $0.split(separator: ",").count == 4 && $0.hasSuffix("@example.test") })

        // The key pair and known_hosts written by up are enough for strict host key checking.
        #expect(f.sshOut(1, "cat /proc/sys/kernel/osrelease") == "6.1.0-17-hosting")
        #expect(f.sshOut(3, "hostname >/dev/null; echo ok") == "ok")

        // A drop rule that down must remove.
        #expect(f.fleetsim(["set", "web-002", "drop=on"]).status == 0)
        let tagged = run("/usr/sbin/iptables", ["-w", "-S", "INPUT"]).out.contains(f.address(2) + "/32")
        #expect(tagged)
        #expect(httpGet(f.address(2), timeout: 1) == .timeout)

        let d = f.fleetsim(["down"])
        downed = true
        #expect(d.status == 0, "\(d.out) \(d.err)")
        #expect(pidsMentioning(f.dir + "/").isEmpty)
        #expect(!(readFile("/proc/mounts") ?? "").contains(f.dir))
        #expect(!run("/usr/sbin/iptables", ["-w", "-S", "INPUT"]).out.contains(f.base.dropLast(2) + "."))
        #expect(!fileExists(f.dir))
        #expect(httpGet(f.address(1), timeout: 1) == .refused)
    }

    @Test func upOnDirtyStateCleansFirst() throws {
        let f = try TestFleet(hosts: 2, third: 62)
        defer { f.down() }
        let firstSupervisor = try #require(f.status(1))
        _ = firstSupervisor
        let oldPids = pidsMentioning(f.dir + "/")
        #expect(!oldPids.isEmpty)
        let f2 = try TestFleet(hosts: 2, third: 62)  // same DIR and addresses
        _ = f2
        for p in oldPids { #expect(!processAlive(p)) }
        #expect(f.sshOut(2, "cat /proc/sys/kernel/osrelease") == "6.1.0-17-hosting")
        #expect(f.bootLog(1).count == 1)
    }

    @Test func fakeProcFilesOverSSHAndLeakGrows() throws {
        let f = try TestFleet(hosts: 2, third: 63)
        defer { f.down() }
        let out = f.sshOut(1, "cat /proc/sys/kernel/osrelease /proc/sys/kernel/random/boot_id /proc/uptime; grep -E '^(MemTotal|SUnreclaim):' /proc/meminfo; grep '^oom_kill ' /proc/vmstat")
        let lines = out.split(separator: "\n").map(String.init)
        #expect(lines.count == 6, "\(out)")
        #expect(lines[0] == "6.1.0-17-hosting")
        #expect(lines[1].count == 36 && lines[1] == lines[1].lowercased())
        #expect(lines[1] == f.status(1)?.bootID)
        #expect(lines[2].split(separator: " ").count == 2)
        #expect(lines[3].hasPrefix("MemTotal:") && lines[3].hasSuffix(" kB"))
        #expect(lines[5] == "oom_kill 0")
        let s1 = try #require(f.sunreclaimKiB(1))
        #expect(s1 > 290 * 1024 && s1 < 400 * 1024)
        sleep(4)
        let s2 = try #require(f.sunreclaimKiB(1))
        // 600 MiB/min = 10 MiB/s: four seconds is ~40 MiB, far above the +-0.5 MiB noise.
        #expect(s2 - s1 > 20 * 1024, "SUnreclaim \(s1) -> \(s2) kB")
        // uname and hostname agree with the simulated host.
        #expect(f.sshOut(2, "uname -r; hostname") == "6.1.0-17-hosting\nweb-002")
        // The two hosts have distinct boot ids.
        #expect(f.sshOut(2, "cat /proc/sys/kernel/random/boot_id") != lines[1])
    }

    @Test func grubRebootTitlePathBootsOnceAndClearsNextEntry() throws {
        let f = try TestFleet(hosts: 1, third: 64)
        defer { f.down() }
        let before = try #require(f.status(1))
        let install = f.ssh(1, "apt-get install -y linux-image-6.1.0-19-hosting")
        #expect(install.status == 0, "\(install.out)\(install.err)")
        let cfg = f.sshOut(1, "cat /boot/grub/grub.cfg")
        #expect(cfg.contains("menuentry 'Debian GNU/Linux, with Linux 6.1.0-19-hosting'"))
        #expect(cfg.contains("'gnulinux-6.1.0-19-hosting-advanced-"))
        #expect(cfg.contains("submenu '\(advanced)'"))
        // Installing does not change the default.
        #expect(f.grubenv(1)["saved_entry"] == titlePath("6.1.0-17-hosting"))

        let r = f.ssh(1, "grub-reboot '\(titlePath("6.1.0-19-hosting"))' && grub-editenv list && reboot")
        #expect(r.status == 0 || r.status == 255, "\(r.out)\(r.err)")
        #expect(r.out.contains("next_entry=\(titlePath("6.1.0-19-hosting"))"))
        let after = try #require(f.waitUp(1, boots: 2))
        #expect(after.bootID != before.bootID)
        #expect(f.sshOut(1, "cat /proc/sys/kernel/osrelease") == "6.1.0-19-hosting")
        #expect(f.sshOut(1, "cat /proc/sys/kernel/random/boot_id") == after.bootID)
        let env = f.grubenv(1)
        #expect((env["next_entry"] ?? "").isEmpty)
        #expect(env["saved_entry"] == titlePath("6.1.0-17-hosting"))
        let up = Double(f.sshOut(1, "cut -d' ' -f1 /proc/uptime")) ?? 99
        #expect(up < 5)
        // The fixed kernel is flat.
        #expect((f.sunreclaimKiB(1) ?? 0) < 260 * 1024)

        // One-shot: the next plain reboot returns to the saved default.
        _ = f.ssh(1, "systemctl reboot")
        #expect(f.waitUp(1, boots: 3) != nil)
        #expect(f.sshOut(1, "cat /proc/sys/kernel/osrelease") == "6.1.0-17-hosting")

        // grub-set-default by id path, then a reboot: the new default sticks.
        let uuidLine = cfg.split(separator: "\n").first { $0.contains("gnulinux-simple-") } ?? ""
        let uuid = String(uuidLine.split(separator: "'").last { $0.hasPrefix("gnulinux-simple-") }?.dropFirst("gnulinux-simple-".count) ?? "")
        _ = f.ssh(1, "grub-set-default 'gnulinux-advanced-\(uuid)>gnulinux-6.1.0-19-hosting-advanced-\(uuid)'; /sbin/reboot")
        #expect(f.waitUp(1, boots: 4) != nil)
        #expect(f.sshOut(1, "cat /proc/sys/kernel/osrelease") == "6.1.0-19-hosting")

        let log = f.bootLog(1)
        #expect(log.count == 4)
        #expect(log.map { $0.split(separator: " ")[3] } == ["6.1.0-17-hosting", "6.1.0-19-hosting", "6.1.0-17-hosting", "6.1.0-19-hosting"])
        #expect(log.map { $0.split(separator: " ")[1] } == ["1", "2", "3", "4"])
    }

    @Test func wrongEntryBootsDefaultAndIndexPathWorks() throws {
        let f = try TestFleet(hosts: 1, third: 65)
        defer { f.down() }
        #expect(f.ssh(1, "apt-get install -y linux-image-6.1.0-19-hosting").status == 0)
        // A name that matches no entry is written without complaint; the host boots the default.
        let r = f.ssh(1, "grub-reboot 'Debian GNU/Linux, with Linux 6.1.0-19-hosting'; echo rc=$?; reboot")
        #expect(r.out.contains("rc=0"))
        #expect(f.waitUp(1, boots: 2) != nil)
        #expect(f.sshOut(1, "cat /proc/sys/kernel/osrelease") == "6.1.0-17-hosting")
        #expect((f.grubenv(1)["next_entry"] ?? "").isEmpty)
        // "1>0": the first entry of the submenu = newest kernel.
        _ = f.ssh(1, "grub-reboot '1>0'; reboot")
        #expect(f.waitUp(1, boots: 3) != nil)
        #expect(f.sshOut(1, "cat /proc/sys/kernel/osrelease") == "6.1.0-19-hosting")
    }

    @Test func realGrubModeBootsEntryZeroOnWrongEntry() throws {
        let f = try TestFleet(hosts: 1, third: 68, scenario: testScenario.replacingOccurrences(
            of: "initial_kernel: 6.1.0-17-hosting\n", with: "initial_kernel: 6.1.0-17-hosting\ninvalid_entry_boots: first\n"))
        defer { f.down() }
        #expect(f.ssh(1, "apt-get install -y linux-image-6.1.0-19-hosting").status == 0)
        _ = f.ssh(1, "grub-reboot 'no such entry'; reboot")
        #expect(f.waitUp(1, boots: 2) != nil)
        // Entry 0 is the top "Debian GNU/Linux" entry: the newest installed kernel.
        #expect(f.sshOut(1, "uname -r") == "6.1.0-19-hosting")
    }

    @Test func panicKernelFallsBackToDefault() throws {
        let f = try TestFleet(hosts: 1, third: 66)
        defer { f.down() }
        #expect(f.ssh(1, "apt-get install -y linux-image-6.1.0-20-hosting").status == 0)
        _ = f.ssh(1, "grub-reboot '\(titlePath("6.1.0-20-hosting"))'; reboot")
        // Goes down, panics, comes back on the saved default with next_entry cleared.
        let s = try #require(f.waitUp(1, boots: 2, timeout: 25))
        #expect(s.kernel == "6.1.0-17-hosting")
        #expect(f.sshOut(1, "cat /proc/sys/kernel/osrelease") == "6.1.0-17-hosting")
        #expect((f.grubenv(1)["next_entry"] ?? "").isEmpty)
        let log = f.bootLog(1)
        #expect(log.contains { $0.hasSuffix("6.1.0-20-hosting panic") })
        #expect(log.filter { $0.hasSuffix(" up") }.count == 2)
    }

    @Test func testSiteFaultsAndBootFull() throws {
        let f = try TestFleet(hosts: 2, third: 67)
        defer { f.down() }
        let a = f.address(1)
        #expect(httpGet(a) == .status(200))
        #expect(f.fleetsim(["set", "web-001", "site=reset"]).status == 0)
        #expect(httpGet(a) == .reset)
        #expect(f.fleetsim(["set", "web-001", "site=http500"]).status == 0)
        #expect(httpGet(a) == .status(500))
        #expect(f.fleetsim(["set", "web-001", "site=refuse"]).status == 0)
        #expect(httpGet(a) == .refused)
        #expect(f.fleetsim(["set", "web-001", "site=timeout"]).status == 0)
        #expect(httpGet(a, timeout: 1) == .timeout)
        #expect(f.fleetsim(["set", "web-001", "site=ok", "site_fail_fraction=0.5"]).status == 0)
        var outcomes: [HTTPOutcome] = []
        for _ in 0..<40 { outcomes.append(httpGet(a)) }
        let ok = outcomes.filter { $0 == .status(200) }.count
        let reset = outcomes.filter { $0 == .reset }.count
        #expect(ok + reset == 40 && ok > 5 && reset > 5, "\(ok) ok, \(reset) reset")
        // Unknown keys and bad values are refused.
        #expect(f.fleetsim(["set", "web-001", "sight=ok"]).status == 2)
        #expect(f.fleetsim(["set", "web-001", "site=maybe"]).status == 2)
        // oom_per_min shows in vmstat.
        #expect(f.fleetsim(["set", "web-001", "oom_per_min=120"]).status == 0)
        sleep(2)
        let oom = Int(f.sshOut(1, "awk '$1==\"oom_kill\"{print $2}' /proc/vmstat")) ?? 0
        #expect(oom >= 1)
        // /boot full (scenario) makes the install fail with a clear message.
        let r = f.ssh(2, "apt-get install -y linux-image-6.1.0-19-hosting")
        #expect(r.status == 100)
        #expect(r.err.contains("No space left on device"))
        #expect(!f.sshOut(2, "ls /boot").contains("6.1.0-19"))
        // drop with a duration: traffic hangs, then the rule goes away by itself.
        #expect(f.fleetsim(["set", "web-002", "drop=1s"]).status == 0)
        #expect(httpGet(f.address(2), timeout: 0.5) == .timeout)
        usleep(1_600_000)
        #expect(httpGet(f.address(2)) == .status(200))
        #expect(!run("/usr/sbin/iptables", ["-w", "-S", "INPUT"]).out.contains(f.address(2) + "/32"))
        // sshd stop: refused until restarted.
        #expect(f.fleetsim(["set", "web-002", "sshd=stop:2s"]).status == 0)
        #expect(f.ssh(2, "true").status == 255)
        sleep(3)
        #expect(f.sshOut(2, "echo back") == "back")
    }
}

@Suite struct FleetsimUnitTests {
    @Test func grubResolvesIndexTitleAndIdPaths() {
        let uuid = "0e8a4cbd-1f62-4d76-9f2a-2bb0ec3f5b11"
        let menu = Grub.parseMenu(Grub.config(kernels: ["6.1.0-19-hosting", "6.1.0-17-hosting"], rootUUID: uuid))
        #expect(menu.count == 2)
        #expect(menu[1].children?.count == 4)
        #expect(Grub.kernelFor(default: nil, menu: menu).kernel == "6.1.0-19-hosting")
        #expect(Grub.kernelFor(default: "0", menu: menu).kernel == "6.1.0-19-hosting")
        #expect(Grub.kernelFor(default: "1>2", menu: menu).kernel == "6.1.0-17-hosting")
        #expect(Grub.kernelFor(default: Grub.titlePath(release: "6.1.0-17-hosting"), menu: menu).kernel == "6.1.0-17-hosting")
        #expect(Grub.kernelFor(default: Grub.idPath(release: "6.1.0-17-hosting", rootUUID: uuid), menu: menu).kernel == "6.1.0-17-hosting")
        let wrong = Grub.kernelFor(default: "Debian GNU/Linux, with Linux 6.1.0-17-hosting", menu: menu)
        #expect(wrong.kernel == "6.1.0-19-hosting" && !wrong.matched)
        #expect(Grub.versionLess("6.1.0-9-hosting", "6.1.0-17-hosting"))
    }

    @Test func grubenvIsA1024ByteBlock() throws {
        let path = NSTemporaryDirectory() + "grubenv-\(getpid())"
        defer { unlink(path) }
        try Grub.writeEnv(path, [("saved_entry", "0")])
        try Grub.setEnv(path, "next_entry", "1>0")
        try Grub.setEnv(path, "next_entry", "")
        let text = try #require(readFile(path))
        #expect(text.utf8.count == 1024)
        #expect(text.hasPrefix("# GRUB Environment Block\nsaved_entry=0\nnext_entry=\n#"))
    }

    @Test func builtinScenarioTellsTheLeakStory() throws {
        let s = Scenario.builtin()
        let mib = 1024.0 * 1024
        #expect(s.initialKernel == "6.1.0-17-hosting")
        #expect((s.behaviour(host: "web-001", release: "6.1.0-17-hosting").sunreclaimGrowthPerMin ?? 0) >= 30 * mib)
        #expect((s.behaviour(host: "web-001", release: "6.1.0-18-hosting").sunreclaimGrowthPerMin ?? 0) >= 30 * mib)
        #expect(s.behaviour(host: "web-001", release: "6.1.0-19-hosting").sunreclaimGrowthPerMin == 0)
        #expect(s.behaviour(host: "web-001", release: "6.1.0-20-hosting").panic == true)
        #expect(throws: FleetsimError.self) { try Scenario.parse(yaml: "kernels: {x: {leak: 1}}", source: "t") }
    }

    @Test func procFilesLookLikeLinux() {
        let snap = ProcSnapshot(memTotal: 16 * 1024 * 1024 * 1024, sunreclaim: 300 * 1024 * 1024, oomKill: 3, uptime: 123.456, seed: 7)
        let mem = ProcFiles.meminfo(snap)
        #expect(mem.hasPrefix("MemTotal:       16374562 kB\n"))
        #expect(mem.contains("\nSUnreclaim:       307200 kB\n"))
        #expect(ProcFiles.vmstat(snap).contains("\noom_kill 3\n"))
        #expect(ProcFiles.uptime(snap) == "123.46 229.63\n")
    }

    @Test func notRootExitsTwo() throws {
        guard isRoot, fileExists("/usr/bin/setpriv") else { return }
        let r = run("/usr/bin/setpriv", ["--reuid=65534", "--regid=65534", "--clear-groups", fleetsimBinary(), "up", "--hosts", "1", "--dir", "/tmp/fleetsim-nonroot"])
        #expect(r.status == 2)
        #expect(r.err.contains("needs root"))
    }
}
