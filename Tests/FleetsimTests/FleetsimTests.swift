import Basics
import Foundation
import Testing
import FleetsimCore
#if canImport(Glibc)
import Glibc
#endif

let advanced = "Advanced options for Debian GNU/Linux"
func titlePath(_ rel: String) -> String { "\(advanced)>Debian GNU/Linux, with Linux \(rel)" }

/// End-to-end tests on real namespaces and sshd. Each test has its own DIR and address range,
/// so they can run in parallel. They need root. They are async and wait for processes with
/// `await`: swift-subprocess needs Swift's cooperative pool, so a test must not block a pool
/// thread on a child (see `waitFor` in FleetsimCore).
@Suite(.enabled(if: isRoot, "fleetsim needs root"))
struct FleetsimEndToEndTests {
    @Test func upWritesInventoryKnownHostsCustomersAndDownLeavesNothing() async throws {
        try await withFleet(hosts: 3, third: 61) { f in

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
            #expect(await f.sshOut(1, "cat /proc/sys/kernel/osrelease") == "6.1.0-17-hosting")
            #expect(await f.sshOut(3, "hostname >/dev/null; echo ok") == "ok")

            // A drop rule that down must remove.
            #expect(await f.fleetsim(["set", "web-002", "drop=on"]).status == 0)
            let tagged = await run("/usr/sbin/iptables", ["-w", "-S", "INPUT"]).out.contains(f.address(2) + "/32")
            #expect(tagged)
            #expect(httpGet(f.address(2), timeout: 1) == .timeout)

            let d = await f.fleetsim(["down"])
            #expect(d.status == 0, "\(d.out) \(d.err)")
            #expect(pidsMentioning(f.dir + "/").isEmpty)
            #expect(!(readFile("/proc/mounts") ?? "").contains(f.dir))
            let rules: String = await run("/usr/sbin/iptables", ["-w", "-S", "INPUT"]).out
            let prefix = String(f.base.dropLast(2)) + "."
            #expect(!rules.contains(prefix))
            #expect(!fileExists(f.dir))
            #expect(httpGet(f.address(1), timeout: 1) == .refused)
        }
    }

    @Test func upOnDirtyStateCleansFirst() async throws {
        try await withFleet(hosts: 2, third: 62) { f in
            let firstSupervisor = try #require(f.status(1))
            _ = firstSupervisor
            let oldPids = pidsMentioning(f.dir + "/")
            #expect(!oldPids.isEmpty)
            let f2 = try await TestFleet(hosts: 2, third: 62)  // same DIR and addresses
            _ = f2
            for p in oldPids { #expect(!processAlive(p)) }
            #expect(await f.sshOut(2, "cat /proc/sys/kernel/osrelease") == "6.1.0-17-hosting")
            #expect(f.bootLog(1).count == 1)
        }
    }

    @Test func fakeProcFilesOverSSHAndLeakGrows() async throws {
        try await withFleet(hosts: 2, third: 63) { f in
            let out = await f.sshOut(1, "cat /proc/sys/kernel/osrelease /proc/sys/kernel/random/boot_id /proc/uptime; grep -E '^(MemTotal|SUnreclaim):' /proc/meminfo; grep '^oom_kill ' /proc/vmstat")
            let lines = out.split(separator: "\n").map(String.init)
            #expect(lines.count == 6, "\(out)")
            #expect(lines[0] == "6.1.0-17-hosting")
            #expect(lines[1].count == 36 && lines[1] == lines[1].lowercased())
            #expect(lines[1] == f.status(1)?.bootID)
            #expect(lines[2].split(separator: " ").count == 2)
            #expect(lines[3].hasPrefix("MemTotal:") && lines[3].hasSuffix(" kB"))
            #expect(lines[5] == "oom_kill 0")
            let s1 = try #require(await f.sunreclaimKiB(1))
            #expect(s1 > 290 * 1024 && s1 < 400 * 1024)
            await pause(4)
            let s2 = try #require(await f.sunreclaimKiB(1))
            // 600 MiB/min = 10 MiB/s: four seconds is ~40 MiB, far above the +-0.5 MiB noise.
            #expect(s2 - s1 > 20 * 1024, "SUnreclaim \(s1) -> \(s2) kB")
            // uname and hostname agree with the simulated host.
            #expect(await f.sshOut(2, "uname -r; hostname") == "6.1.0-17-hosting\nweb-002")
            // The two hosts have distinct boot ids.
            #expect(await f.sshOut(2, "cat /proc/sys/kernel/random/boot_id") != lines[1])
        }
    }

    @Test func grubRebootTitlePathBootsOnceAndClearsNextEntry() async throws {
        try await withFleet(hosts: 1, third: 64) { f in
            let before = try #require(f.status(1))
            let install = await f.ssh(1, "apt-get install -y linux-image-6.1.0-19-hosting")
            #expect(install.status == 0, "\(install.out)\(install.err)")
            let cfg = await f.sshOut(1, "cat /boot/grub/grub.cfg")
            #expect(cfg.contains("menuentry 'Debian GNU/Linux, with Linux 6.1.0-19-hosting'"))
            #expect(cfg.contains("'gnulinux-6.1.0-19-hosting-advanced-"))
            #expect(cfg.contains("submenu '\(advanced)'"))
            // Installing does not change the default.
            #expect(await f.grubenv(1)["saved_entry"] == titlePath("6.1.0-17-hosting"))

            let r = await f.ssh(1, "grub-reboot '\(titlePath("6.1.0-19-hosting"))' && grub-editenv list && reboot")
            #expect(r.status == 0 || r.status == 255, "\(r.out)\(r.err)")
            #expect(r.out.contains("next_entry=\(titlePath("6.1.0-19-hosting"))"))
            let after = try #require(await f.waitUp(1, boots: 2))
            #expect(after.bootID != before.bootID)
            #expect(await f.sshOut(1, "cat /proc/sys/kernel/osrelease") == "6.1.0-19-hosting")
            #expect(await f.sshOut(1, "cat /proc/sys/kernel/random/boot_id") == after.bootID)
            let env = await f.grubenv(1)
            #expect((env["next_entry"] ?? "").isEmpty)
            #expect(env["saved_entry"] == titlePath("6.1.0-17-hosting"))
            let up = Double(await f.sshOut(1, "cut -d' ' -f1 /proc/uptime")) ?? 99
            #expect(up < 5)
            // The fixed kernel is flat.
            #expect((await f.sunreclaimKiB(1) ?? 0) < 260 * 1024)

            // One-shot: the next plain reboot returns to the saved default.
            _ = await f.ssh(1, "systemctl reboot")
            #expect(await f.waitUp(1, boots: 3) != nil)
            #expect(await f.sshOut(1, "cat /proc/sys/kernel/osrelease") == "6.1.0-17-hosting")

            // grub-set-default by id path, then a reboot: the new default sticks.
            let uuidLine = cfg.split(separator: "\n").first { $0.contains("gnulinux-simple-") } ?? ""
            let uuid = String(uuidLine.split(separator: "'").last { $0.hasPrefix("gnulinux-simple-") }?.dropFirst("gnulinux-simple-".count) ?? "")
            _ = await f.ssh(1, "grub-set-default 'gnulinux-advanced-\(uuid)>gnulinux-6.1.0-19-hosting-advanced-\(uuid)'; /sbin/reboot")
            #expect(await f.waitUp(1, boots: 4) != nil)
            #expect(await f.sshOut(1, "cat /proc/sys/kernel/osrelease") == "6.1.0-19-hosting")

            let log = f.bootLog(1)
            #expect(log.count == 4)
            let fields: [[Substring]] = log.map { $0.split(separator: " ") }
            let releases: [Substring] = fields.map { $0[3] }, counts: [Substring] = fields.map { $0[1] }
            #expect(releases == ["6.1.0-17-hosting", "6.1.0-19-hosting", "6.1.0-17-hosting", "6.1.0-19-hosting"])
            #expect(counts == ["1", "2", "3", "4"])
        }
    }

    @Test func wrongEntryBootsDefaultAndIndexPathWorks() async throws {
        try await withFleet(hosts: 1, third: 65) { f in
            #expect(await f.ssh(1, "apt-get install -y linux-image-6.1.0-19-hosting").status == 0)
            // A name that matches no entry is written without complaint; the host boots the default.
            let r = await f.ssh(1, "grub-reboot 'Debian GNU/Linux, with Linux 6.1.0-19-hosting'; echo rc=$?; reboot")
            #expect(r.out.contains("rc=0"))
            #expect(await f.waitUp(1, boots: 2) != nil)
            #expect(await f.sshOut(1, "cat /proc/sys/kernel/osrelease") == "6.1.0-17-hosting")
            #expect((await f.grubenv(1)["next_entry"] ?? "").isEmpty)
            // "1>0": the first entry of the submenu = newest kernel.
            _ = await f.ssh(1, "grub-reboot '1>0'; reboot")
            #expect(await f.waitUp(1, boots: 3) != nil)
            #expect(await f.sshOut(1, "cat /proc/sys/kernel/osrelease") == "6.1.0-19-hosting")
        }
    }

    @Test func realGrubModeBootsEntryZeroOnWrongEntry() async throws {
        try await withFleet(hosts: 1, third: 68, scenario: testScenario.replacingOccurrences(
            of: "initial_kernel: 6.1.0-17-hosting\n", with: "initial_kernel: 6.1.0-17-hosting\ninvalid_entry_boots: first\n")) { f in
            #expect(await f.ssh(1, "apt-get install -y linux-image-6.1.0-19-hosting").status == 0)
            _ = await f.ssh(1, "grub-reboot 'no such entry'; reboot")
            #expect(await f.waitUp(1, boots: 2) != nil)
            // Entry 0 is the top "Debian GNU/Linux" entry: the newest installed kernel.
            #expect(await f.sshOut(1, "uname -r") == "6.1.0-19-hosting")
        }
    }

    @Test func panicKernelFallsBackToDefault() async throws {
        try await withFleet(hosts: 1, third: 66) { f in
            #expect(await f.ssh(1, "apt-get install -y linux-image-6.1.0-20-hosting").status == 0)
            _ = await f.ssh(1, "grub-reboot '\(titlePath("6.1.0-20-hosting"))'; reboot")
            // Goes down, panics, comes back on the saved default with next_entry cleared.
            let s = try #require(await f.waitUp(1, boots: 2, timeout: 25))
            #expect(s.kernel == "6.1.0-17-hosting")
            #expect(await f.sshOut(1, "cat /proc/sys/kernel/osrelease") == "6.1.0-17-hosting")
            #expect((await f.grubenv(1)["next_entry"] ?? "").isEmpty)
            let log = f.bootLog(1)
            #expect(log.contains { $0.hasSuffix("6.1.0-20-hosting panic") })
            #expect(log.filter { $0.hasSuffix(" up") }.count == 2)
        }
    }

    @Test func testSiteFaultsAndBootFull() async throws {
        try await withFleet(hosts: 2, third: 67) { f in
            let a = f.address(1)
            #expect(httpGet(a) == .status(200))
            #expect(await f.fleetsim(["set", "web-001", "site=reset"]).status == 0)
            #expect(httpGet(a) == .reset)
            #expect(await f.fleetsim(["set", "web-001", "site=http500"]).status == 0)
            #expect(httpGet(a) == .status(500))
            #expect(await f.fleetsim(["set", "web-001", "site=refuse"]).status == 0)
            #expect(httpGet(a) == .refused)
            #expect(await f.fleetsim(["set", "web-001", "site=timeout"]).status == 0)
            #expect(httpGet(a, timeout: 1) == .timeout)
            #expect(await f.fleetsim(["set", "web-001", "site=ok", "site_fail_fraction=0.5"]).status == 0)
            var outcomes: [HTTPOutcome] = []
            for _ in 0..<40 { outcomes.append(httpGet(a)) }
            let ok = outcomes.filter { $0 == .status(200) }.count
            let reset = outcomes.filter { $0 == .reset }.count
            #expect(ok + reset == 40 && ok > 5 && reset > 5, "\(ok) ok, \(reset) reset")
            // Unknown keys and bad values are refused.
            #expect(await f.fleetsim(["set", "web-001", "sight=ok"]).status == 2)
            #expect(await f.fleetsim(["set", "web-001", "site=maybe"]).status == 2)
            // oom_per_min shows in vmstat.
            #expect(await f.fleetsim(["set", "web-001", "oom_per_min=120"]).status == 0)
            await pause(2)
            let oom = Int(await f.sshOut(1, "awk '$1==\"oom_kill\"{print $2}' /proc/vmstat")) ?? 0
            #expect(oom >= 1)
            // /boot full (scenario) makes the install fail with a clear message.
            let r = await f.ssh(2, "apt-get install -y linux-image-6.1.0-19-hosting")
            #expect(r.status == 100)
            #expect(r.err.contains("No space left on device"))
            #expect(await !f.sshOut(2, "ls /boot").contains("6.1.0-19"))
            // drop with a duration: traffic hangs, then the rule goes away by itself.
            #expect(await f.fleetsim(["set", "web-002", "drop=1s"]).status == 0)
            #expect(httpGet(f.address(2), timeout: 0.5) == .timeout)
            await pause(1.6)
            #expect(httpGet(f.address(2)) == .status(200))
            #expect(await !run("/usr/sbin/iptables", ["-w", "-S", "INPUT"]).out.contains(f.address(2) + "/32"))
            // sshd stop: refused until restarted.
            #expect(await f.fleetsim(["set", "web-002", "sshd=stop:2s"]).status == 0)
            #expect(await f.ssh(2, "true").status == 255)
            await pause(3)
            #expect(await f.sshOut(2, "echo back") == "back")
        }
    }
    /// Every running host serves node_exporter-like metrics on :9100 (Prometheus text 0.0.4),
    /// whatever its site mode: the numbers its fake /proc shows at that moment (SUnreclaim grows
    /// 10 MiB/s here and has ±0.5 MiB noise, so only the same snapshot matches to the kB), its boot
    /// time, and its test site's answers per status, counted from its boot; down, it refuses.
    @Test func nodeMetricsMatchProcAndCountSiteRequestsPerBoot() async throws {
        #expect(NodeMetrics.escapeLabel("a\\b\"c\nd") == #"a\\b\"c\nd"#)
        try await withFleet(hosts: 2, third: 70) { f in
            let a = f.address(1)
            let name = try #require(f.status(1)?.name)
            let proc = f.dir + "/hosts/\(name)/proc/"
            func scrape(_ i: Int) throws -> [String: Double] {
                let r = httpRequest(f.address(i), port: 9100, path: "/metrics")
                guard case .success(let resp) = r else { throw FleetsimError("scrape of host \(i): \(r)") }
                #expect(resp.status == 200)
                #expect(resp.headers.contains("\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8"), "\(resp.headers)")
                let (samples, problems) = parseExposition(resp.body)
                #expect(problems.isEmpty, "\(problems)\n\(resp.body)")
                return samples
            }
            func requests(_ m: [String: Double], _ host: String, _ status: Int) -> Double? {
                m["nginx_http_requests_total{host=\"\(host)\",status=\"\(status)\"}"]
            }
            #expect(await f.fleetsim(["set", name, "oom_per_min=600"]).status == 0)
            await pause(1.5)

            // The same snapshot as /proc/meminfo and /proc/vmstat: read the files before and after
            // the scrape; when they did not change in between, the numbers must be equal exactly.
            var seen: [Double] = []
            var first: [String: Double] = [:]
            for _ in 0..<40 where seen.count < 2 {
                let before = (readFile(proc + "meminfo") ?? "") + (readFile(proc + "vmstat") ?? "")
                let m = try scrape(1)
                let after = (readFile(proc + "meminfo") ?? "") + (readFile(proc + "vmstat") ?? "")
                guard before == after, let sunr = procValue(before, "SUnreclaim:"),
                      let total = procValue(before, "MemTotal:"), let oom = procValue(before, "oom_kill") else { continue }
                #expect(m["node_memory_SUnreclaim_bytes"] == sunr * 1024)
                #expect(m["node_memory_MemTotal_bytes"] == total * 1024)
                #expect(m["node_vmstat_oom_kill"] == oom)
                if seen.isEmpty { first = m }
                if seen.last != m["node_memory_SUnreclaim_bytes"] { seen.append(m["node_memory_SUnreclaim_bytes"] ?? -1) }
                await pause(0.6)
            }
            #expect(seen.count == 2, "SUnreclaim never matched twice or never moved: \(seen)")
            let memTotal = try #require(first["node_memory_MemTotal_bytes"])
            #expect(memTotal > 15 * 1_073_741_824 && memTotal < 16 * 1_073_741_824)
            let sunr = try #require(first["node_memory_SUnreclaim_bytes"])
            #expect(sunr > 290 * 1_048_576 && sunr < 2000 * 1_048_576)
            #expect((first["node_vmstat_oom_kill"] ?? 0) >= 1)
            let up = try #require(Double(readFile(proc + "uptime")?.split(separator: " ").first ?? ""))
            let boot1 = try #require(first["node_boot_time_seconds"])
            #expect(abs(boot1 - (now() - up)) <= 3, "boot time \(boot1), now \(now()), uptime \(up)")

            // Only GET /metrics is served.
            if case .success(let r) = httpRequest(a, port: 9100, path: "/") { #expect(r.status == 404) } else { Issue.record("GET / on :9100 failed") }
            if case .success(let r) = httpRequest(a, port: 9100, method: "POST", path: "/metrics") { #expect(r.status == 404) } else { Issue.record("POST failed") }

            // The site counters follow the answers: 5 × 200, 3 × 500, 2 resets; host 2 untouched.
            let base = try scrape(1)
            let ok0 = try #require(requests(base, name, 200)), err0 = try #require(requests(base, name, 500))
            let resets0 = try #require(base["fleetsim_site_resets_total{host=\"\(name)\"}"])
            for _ in 0..<5 { #expect(httpGet(a) == .status(200)) }
            #expect(await f.fleetsim(["set", name, "site=http500"]).status == 0)
            for _ in 0..<3 { #expect(httpGet(a) == .status(500)) }
            #expect(await f.fleetsim(["set", name, "site=reset"]).status == 0)
            for _ in 0..<2 { #expect(httpGet(a) == .reset) }
            #expect(await f.fleetsim(["set", name, "site=refuse"]).status == 0)
            #expect(httpGet(a) == .refused)
            let counted = try scrape(1)   // a refused site still exports metrics
            #expect(requests(counted, name, 200) == ok0 + 5)
            #expect(requests(counted, name, 500) == err0 + 3)
            #expect(counted["fleetsim_site_resets_total{host=\"\(name)\"}"] == resets0 + 2)
            let other = try #require(f.status(2)?.name)
            let host2 = try scrape(2)
            #expect(requests(host2, other, 200) == 0)
            #expect(await f.fleetsim(["set", name, "site=ok"]).status == 0)

            // Powered off: the scrape is refused like the site. Back on: counters from zero.
            #expect(await f.fleetsim(["set", name, "power=off"]).status == 0)
            if case .failure(let e) = httpRequest(a, port: 9100, path: "/metrics") { #expect(e.outcome == .refused) } else { Issue.record("a host that is off served its metrics") }
            #expect(await f.fleetsim(["set", name, "power=on"]).status == 0)
            _ = try #require(await f.waitUp(1, boots: 2))
            let fresh = try scrape(1)
            #expect(requests(fresh, name, 200) == 0 && requests(fresh, name, 500) == 0)
            #expect(fresh["fleetsim_site_resets_total{host=\"\(name)\"}"] == 0)
            #expect((fresh["node_boot_time_seconds"] ?? 0) > boot1)
            for _ in 0..<3 { #expect(httpGet(a) == .status(200)) }
            let three = try scrape(1)
            #expect(requests(three, name, 200) == 3)

            // A reboot from inside the host restarts the count too.
            let r = await f.ssh(1, "reboot")
            #expect(r.status == 0 || r.status == 255, "\(r.out)\(r.err)")
            _ = try #require(await f.waitUp(1, boots: 3))
            let rebooted = try scrape(1)
            #expect(requests(rebooted, name, 200) == 0)
        }
    }

    /// `down` signals what fleetsim started and recorded (pid and start time), and nothing that
    /// only looks like it: here three processes with the fleet's DIR in their command lines,
    /// named like its `unshare`, its sshd (comm `sshd`) and a `sleep`, which the name-matching
    /// sweep `down` used to do would have killed.
    @Test func downKillsWhatItStartedAndNothingElse() async throws {
        try await withFleet(hosts: 2, third: 69) { f in
            let decoys = try await Decoys(dir: f.dir)
            defer { decoys.stop() }

            let started = ProcessLedger.load(dir: f.dir)
            #expect(started.map(\.role).sorted() == ["host web-001", "host web-002", "supervisor"])
            #expect(started.allSatisfy { $0.state == .running }, "\(started)")
            let supervisor = started.first { $0.role == "supervisor" }
            #expect(supervisor != nil)
            // Each host's PID 1 (child of its unshare) and the sshd it started.
            let inits = started.filter { $0.role.hasPrefix("host ") }.flatMap { $0.children() }
            #expect(inits.count == 2)
            let sshds = inits.flatMap { $0.children() }.filter { processComm($0.pid) == "sshd" }
            #expect(sshds.count == 2)

            let d = await f.fleetsim(["down"])
            #expect(d.status == 0, "\(d.out) \(d.err)")
            #expect(d.out.contains("supervisor stopped (pid \(supervisor?.pid ?? 0))"), "\(d.out)")
            #expect(d.out.contains("it stopped 2 hosts (web-00"), "\(d.out)")
            for r in started + inits + sshds { #expect(r.state != .running, "\(r) still running") }
            for p in decoys.processes { #expect(!p.hasExited && processAlive(p.pid), "decoy \(p.pid) was killed") }
            #expect(Set(pidsMentioning(f.dir + "/")) == Set(decoys.processes.map(\.pid)))
            #expect(!fileExists(f.dir))
        }
    }

    /// A recorded pid whose start time is not the recorded one belongs to another process now:
    /// `down` leaves it alone (and says so), and still kills a recorded one that matches.
    @Test func downSignalsOnlyPidsWithTheirRecordedStartTime() async throws {
        let dir = NSTemporaryDirectory() + "fleetsim-test-72-\(getpid())"
        try mkdirs(dir + "/run")
        try writeFile(dir + "/.fleetsim", "fleetsim fleet directory; `fleetsim down` removes it\n")
        let recorded = try await spawnDetached("/bin/sleep", ["300"], logPath: nil)
        let bystander = try await spawnDetached("/bin/sleep", ["301"], logPath: nil)
        defer { for p in [recorded, bystander] where !p.hasExited { p.record("t")?.signal(SIGKILL) } }
        let ended = try await spawnDetached("/bin/sleep", ["0.1"], logPath: nil)
        let endedRecord = try #require(ended.record("host web-003"))
        #expect(await waitUntil(5) { ended.hasExited })
        let r = try #require(recorded.record("host web-001"))
        var wrong = try #require(bystander.record("supervisor"))
        wrong.startTime += 1  // as if the recorded supervisor ended and its pid went to `bystander`
        for x in [wrong, r, endedRecord] { ProcessLedger.append(dir: dir, x) }

        let d = await run(fleetsimBinary(), ["down", "--dir", dir])
        #expect(d.status == 0, "\(d.out) \(d.err)")
        #expect(d.out.contains("killed 1 host left running (web-001 pid \(recorded.pid))"), "\(d.out)")
        #expect(d.out.contains("left alone 1 recorded pid now used by another process (supervisor pid \(bystander.pid))"), "\(d.out)")
        #expect(!d.out.contains("supervisor stopped"))
        #expect(await waitUntil(5) { recorded.hasExited })
        #expect(recorded.termination == 128 + SIGKILL)
        #expect(!bystander.hasExited && processAlive(bystander.pid))
        #expect(!fileExists(dir))
    }
}

/// Processes that look like a fleet's in `ps`: DIR in the command line, named `sleep`, `sshd`.
struct Decoys {
    let processes: [SpawnedProcess]
    let bin: String

    init(dir: String) async throws {
        bin = NSTemporaryDirectory() + "fleetsim-decoy-\(getpid())"
        try mkdirs(bin)
        try FileManager.default.copyItem(atPath: "/bin/sleep", toPath: bin + "/sshd")
        let h = dir + "/hosts/web-001"
        let looks = [
            ("/bin/sleep", "/usr/bin/unshare --pid --fork --kill-child --mount -- /bin/sh \(dir)/host-init.sh \(h)"),
            ("/bin/sleep", "/usr/sbin/sshd -f \(h)/sshd_config -E \(h)/sshd.log"),
            (bin + "/sshd", "sshd: /usr/sbin/sshd -f \(h)/sshd_config [listener] 0 of 200-400 startups"),
        ]
        var started: [SpawnedProcess] = []
        for (exe, argv0) in looks {
            started.append(try await spawnDetached("/bin/bash", ["-c", "exec -a \(shellQuote(argv0)) \(exe) 300"], logPath: nil))
        }
        processes = started
        let ps = processes
        guard await waitUntil(5, { ps.allSatisfy { processCmdline($0.pid).first?.contains(dir) == true } }) else {
            stop()
            throw FleetsimError("decoys did not start")
        }
        #expect(processes.map { processComm($0.pid) } == ["sleep", "sleep", "sshd"])
    }

    func stop() {
        for p in processes where !p.hasExited { p.record("decoy")?.signal(SIGKILL) }
        try? FileManager.default.removeItem(atPath: bin)
    }
}

/// Waits (without holding a thread) until `ok()`, at most `seconds`; returns whether it came true.
func waitUntil(_ seconds: Double, _ ok: () -> Bool) async -> Bool {
    let deadline = monotonic() + seconds
    while !ok() {
        if monotonic() > deadline { return false }
        await pause(0.02)
    }
    return true
}


@Suite struct FleetsimUnitTests {
    /// fleetsim reads durations and sizes with rollctl's parsers: a scenario's `2048kB` or `1m30s`
    /// means what a plan's does (before, fleetsim took kB as 1024 and had no compound durations).
    @Test func scenarioValuesUseRollctlsParsers() {
        #expect(parseSize("2048kB") == 2_048_000)
        #expect(parseSize("300MiB") == Double(300 * 1_048_576))
        #expect(parseSize("1.5GiB") == 1.5 * 1_073_741_824)
        #expect(parseSize("12") == 12)
        #expect(parseSize("3G") == nil)
        #expect(parseDuration("1m30s") == 90)
        #expect(parseDuration("500ms") == 0.5)
        #expect(parseDuration("20") == 20, "a scenario takes bare seconds")
        #expect(DurationText.parse("20") == nil, "a plan does not")
        #expect(parseDuration("-1s") == nil)
        #expect(shellQuote("it's") == "'it'\\''s'")
    }

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

    @Test func runCapturingKeepsStreamsApartAndTimesOut() async {
        let r = await runCapturing("/bin/sh", ["-c", "echo out; echo err >&2; exit 3"])
        #expect(r.status == 3 && r.stdout == "out\n" && r.stderr == "err\n")
        let t0 = monotonic()
        let slow = await runCapturing("/bin/sleep", ["30"], timeout: 0.5)
        #expect(slow.status == 124 && monotonic() - t0 < 10)
        #expect(await runCapturing("/nonexistent/program", []).status == 127)
        let both = await runProgram("/bin/sh", ["-c", "echo a; echo b >&2; kill -9 $$"])
        #expect(both.status == 128 + SIGKILL && both.output == "a\nb\n")
        let fed = await runProgram("/bin/cat", [], input: "fed on stdin")
        #expect(fed.status == 0 && fed.output == "fed on stdin")
    }

    /// What the hand-written posix_spawn used to do: a new session, stdin /dev/null, stdout and
    /// stderr to the log, and none of our descriptors (here a pipe left inheritable on purpose).
    @Test func spawnDetachedStartsASessionWithOnlyItsLog() async throws {
        var fds: [Int32] = [0, 0]
        #expect(pipe(&fds) == 0)  // no O_CLOEXEC
        defer { close(fds[0]); close(fds[1]) }
        let log = NSTemporaryDirectory() + "fleetsim-spawn-\(getpid()).log"
        defer { unlink(log) }
        let p = try await spawnDetached("/bin/sh", ["-c", "echo pid $$ sid $(cut -d' ' -f6 /proc/$$/stat); ls /proc/$$/fd; readlink /proc/$$/fd/0; echo to-stderr >&2"], logPath: log)
        #expect(await waitUntil(10) { p.hasExited })
        #expect(p.termination == 0)
        let lines = (readFile(log) ?? "").split(separator: "\n").map(String.init)
        #expect(lines.first == "pid \(p.pid) sid \(p.pid)", "\(lines)")
        #expect(Array(lines.dropFirst().prefix(3)) == ["0", "1", "2"], "\(lines)")
        #expect(lines.dropFirst(4).first == "/dev/null", "\(lines)")
        #expect(lines.last == "to-stderr")
    }

    @Test func processRecordsTellRunningEndedAndReusedPids() async throws {
        let me = ProcessRecord(pid: getpid(), startTime: try #require(processStartTime(getpid())), role: "test")
        #expect(me.state == .running)
        #expect(me.signal(0))
        var other = me
        other.startTime += 1
        #expect(other.state == .reused)
        #expect(!other.signal(0))
        let p = try await spawnDetached("/bin/sleep", ["0.2"], logPath: nil)
        let r = try #require(p.record("sleep"))
        #expect(r.state == .running)
        #expect(await waitUntil(5) { p.hasExited })
        #expect(p.termination == 0)
        #expect(r.state != .running)
        #expect(!r.signal(0))

        let dir = NSTemporaryDirectory() + "fleetsim-ledger-\(getpid())"
        try mkdirs(dir + "/run")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        for x in [me, r, me] { ProcessLedger.append(dir: dir, x) }
        #expect(ProcessLedger.load(dir: dir) == [me, r])
        #expect(ProcessLedger.runningSupervisor(dir: dir) == nil)
        ProcessLedger.append(dir: dir, ProcessRecord(pid: me.pid, startTime: me.startTime, role: "supervisor"))
        #expect(ProcessLedger.runningSupervisor(dir: dir)?.pid == getpid())
    }

    @Test func notRootExitsTwo() async throws {
        guard isRoot, fileExists("/usr/bin/setpriv") else { return }
        let r = await run("/usr/bin/setpriv", ["--reuid=65534", "--regid=65534", "--clear-groups", fleetsimBinary(), "up", "--hosts", "1", "--dir", "/tmp/fleetsim-nonroot"])
        #expect(r.status == 2)
        #expect(r.err.contains("needs root"))
    }
}

/// The number after `key` on a /proc line (`SUnreclaim:   307200 kB`, `oom_kill 3`).
func procValue(_ text: String, _ key: String) -> Double? {
    for line in text.split(separator: "\n") {
        let f = line.split(separator: " ", omittingEmptySubsequences: true)
        if f.count >= 2, f[0] == key { return Double(f[1]) }
    }
    return nil
}

/// The samples of a text exposition (0.0.4), keyed by name and labels as written, and what is
/// wrong with it: a sample without a `# HELP` and `# TYPE` of its family before it, a bad value,
/// a sample given twice.
func parseExposition(_ body: String) -> (samples: [String: Double], problems: [String]) {
    var samples: [String: Double] = [:], problems: [String] = []
    var helped = Set<String>(), typed = Set<String>()
    if !body.hasSuffix("\n") { problems.append("no final newline") }
    for line in body.split(separator: "\n", omittingEmptySubsequences: false).dropLast() {
        let l = String(line)
        if l.hasPrefix("# HELP ") { helped.insert(String(l.dropFirst(7).split(separator: " ")[0])); continue }
        if l.hasPrefix("# TYPE ") {
            let f = l.dropFirst(7).split(separator: " ")
            if f.count != 2 || !["counter", "gauge", "untyped", "summary", "histogram"].contains(String(f[1])) { problems.append(l) }
            typed.insert(String(f[0]))
            continue
        }
        guard let sp = l.lastIndex(of: " "), let v = Double(l[l.index(after: sp)...]) else { problems.append("bad sample: \(l)"); continue }
        let key = String(l[..<sp])
        let name = String(key.prefix { $0 != "{" })
        if !helped.contains(name) || !typed.contains(name) { problems.append("no HELP/TYPE before \(l)") }
        if samples[key] != nil { problems.append("twice: \(key)") }
        samples[key] = v
    }
    return (samples, problems)
}
