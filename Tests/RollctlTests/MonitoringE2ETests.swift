import Foundation
import Testing
import SSHTesting
#if canImport(Glibc)
import Glibc
#endif

/// End-to-end: `rollctl` against fleetsim with the fleet's monitoring — a real Prometheus
/// scraping every host's node metrics (`gate.prometheus`) and a real Alertmanager holding
/// batches (`gate.block_on_alerts`) and taking the reboots' silences (`silence`), both from
/// Debian's packages, each started by the test on its own loopback port. Needs root.
@Suite("monitoring on fleetsim", .serialized, .enabled(if: geteuid() == 0))
struct MonitoringE2ETests {
    typealias Fleet = RolloutE2ETests.Fleet

    /// Old kernel flat, 18 leaks 3 GiB/min (crosses 600 MiB ~6 s after boot), 19 flat at 250 MiB.
    static let leakScenario = """
        mem_total: 16GiB
        initial_kernel: 6.1.0-17-hosting
        kernels:
          6.1.0-17-hosting: {sunreclaim_base: 300MiB}
          6.1.0-18-hosting: {sunreclaim_base: 300MiB, sunreclaim_growth_per_min: 3GiB}
          6.1.0-19-hosting: {sunreclaim_base: 250MiB}
        """

    /// A plan for `fleet`: waves [1, 100%], one-second samples, no test site, the slab slope
    /// check off (fleetsim's noise over a few seconds is not what these tests judge), `gate`
    /// lines added to the gate section and `top` as top-level keys.
    static func plan(_ fleet: Fleet, release: String, name: String, soak: String = "10s", gate: [String] = [], top: String = "") throws -> String {
        let path = fleet.dir + "/plan-\(name).yaml"
        try """
        name: mon-\(name)
        kernel:
          release: \(release)
        inventory: fleet/inventory.yaml
        bootloader: grub
        waves:
          sizes: [1, 100%]
          max_parallel: 4
          failure_domain: rack
        reboot:
          command: systemctl reboot
          timeout: 30s
          settle: 500ms
        gate:
          soak: \(soak)
          interval: 1s
          probe_timeout: 1s
          sunreclaim_growth_max: null
          test_site: none
        \(gate.map { "  " + $0 }.joined(separator: "\n"))
        \(top)
        on_failure:
          rollback: wave
        """.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    /// name → address, from the fleet's inventory.
    static func addresses(_ fleet: Fleet) throws -> [String: String] {
        var out: [String: String] = [:]
        var name: String?
        for line in try String(contentsOfFile: fleet.dir + "/fleet/inventory.yaml", encoding: .utf8).split(separator: "\n") {
            let t = line.trimmingCharacters(in: .whitespaces)
            if t.hasPrefix("- name: ") { name = String(t.dropFirst(8)) }
            if t.hasPrefix("address: "), let n = name { out[n] = String(t.dropFirst(9)) }
        }
        return out
    }

    /// Polls `cond` every 200 ms; false after `seconds`.
    static func until(_ seconds: Double, _ cond: () throws -> Bool) rethrows -> Bool {
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline {
            if try cond() { return true }
            usleep(200_000)
        }
        return false
    }

    /// The id of the fleet's newest rollout once the journal has it.
    static func rolloutID(_ fleet: Fleet, seconds: Double = 60) -> String? {
        var id: String?
        _ = until(seconds) {
            id = try? CLI.run(["rollout", "list", "--journal", fleet.journal, "--json"]).json.first?["id"] as? String
            return id != nil
        }
        return id
    }

    /// The exit status of a child that has ended (reaped), nil while it runs.
    static func exited(_ pid: pid_t) -> Int32? {
        var status: Int32 = 0
        guard waitpid(pid, &status, WNOHANG) == pid else { return nil }
        return status & 0x7f == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f)
    }

    static func status(_ fleet: Fleet, _ id: String) -> [String: Any] {
        (try? CLI.run(["rollout", "status", id, "--journal", fleet.journal, "--json"]).json.first) ?? [:]
    }

    /// Each host's gate report (the newest wave that judged it) from `rollout show --json`.
    static func gateReports(_ doc: [String: Any]) -> [String: [String: Any]] {
        var out: [String: [String: Any]] = [:]
        for g in doc["gate"] as? [[String: Any]] ?? [] {
            if let host = g["host"] as? String, let report = g["report"] as? [String: Any] { out[host] = report }
        }
        return out
    }

    static func finding(_ report: [String: Any]?, _ check: String) -> [String: Any]? {
        (report?["findings"] as? [[String: Any]])?.first { $0["check"] as? String == check }
    }

    // MARK: - gate.prometheus

    /// The built-in slab checks off: only the Prometheus check (SUnreclaim as the real
    /// Prometheus scraped it from fleetsim's :9100) can see the leak — it fails the canary and
    /// the rollout halts naming `prometheus:slab`. The fixed kernel passes the same check.
    @Test func aPrometheusSlabCheckAloneHaltsALeakyKernelAndPassesTheFixedOne() throws {
        let fleet = try Fleet(hosts: 2, racks: 2, slot: 31, scenario: Self.leakScenario); defer { fleet.down() }
        let addresses = try Self.addresses(fleet)
        // rollctl's own /metrics (plan apply --metrics-listen) is a target of the same Prometheus.
        let metricsPort = (0..<50).map { UInt16(29000 + (Int(getpid()) * 7 + $0) % 1000) }.first(where: MonitoringServer.portIsFree) ?? 29999
        let prom = try MonitoringServer.prometheus(in: fleet.dir, targets: addresses.values.sorted().map { "\($0):9100" } + ["127.0.0.1:\(metricsPort)"])
        defer { prom.stop() }
        #expect(prom.waitForTargets(2), "Prometheus never scraped both hosts:\n\(prom.log.suffix(2000))")
        let gate = [
            "sunreclaim_max_share: null",
            "prometheus:",
            "  url: \(prom.url)",
            "  checks:",
            "    - name: slab",
            "      query: node_memory_SUnreclaim_bytes{instance=\"{address}:9100\"}",
            "      max: 600MiB",
        ]
        let leaky = try fleet.apply(try Self.plan(fleet, release: "6.1.0-18-hosting", name: "leak", gate: gate))
        #expect(leaky.status == 3, "\(leaky.output)")
        #expect(leaky.output.contains("HALT: wave 1 gate fail: failed on web-001"), "\(leaky.output)")
        #expect(leaky.output.contains("FAIL prometheus:slab"), "\(leaky.output)")
        let doc = try fleet.lastRollout()
        #expect(doc["state"] as? String == "rolled_back", "\(leaky.output)")
        #expect(fleet.boots("web-001") == ["6.1.0-17-hosting", "6.1.0-18-hosting", "6.1.0-17-hosting"])
        #expect(fleet.boots("web-002") == ["6.1.0-17-hosting"])
        let report = Self.gateReports(doc)["web-001"]
        #expect(report?["verdict"] as? String == "fail")
        let slab = Self.finding(report, "prometheus:slab")
        #expect(slab?["status"] as? String == "fail", "\(String(describing: report?["findings"]))")
        #expect((slab?["measured"] as? Double ?? 0) > 600 * 1048576, "\(String(describing: slab))")
        #expect((slab?["summary"] as? String)?.contains("> max 600") == true, "\(String(describing: slab))")
        // Alone: no built-in check failed.
        let others = (report?["findings"] as? [[String: Any]] ?? []).filter { $0["check"] as? String != "prometheus:slab" && $0["status"] as? String == "fail" }
        #expect(others.isEmpty, "\(others)")
        // The series came from the real server, for this host only.
        let series = (report?["samples"] as? [[String: Any]] ?? []).flatMap { ($0["metrics"] as? [[String: Any]] ?? []).flatMap { $0["series"] as? [[String: Any]] ?? [] } }
        #expect(!series.isEmpty && series.allSatisfy { ($0["labels"] as? [String: String])?["instance"] == "\(addresses["web-001"]!):9100" }, "\(series.prefix(3))")

        // The fixed kernel: the same check passes on every host, with real values in it.
        let fixed = try fleet.apply(try Self.plan(fleet, release: "6.1.0-19-hosting", name: "fixed", gate: gate),
                                    ["--metrics-listen", "127.0.0.1:\(metricsPort)"])
        #expect(fixed.status == 0, "\(fixed.output)")
        let done = try fleet.lastRollout()
        #expect(done["state"] as? String == "completed")
        // The real Prometheus scraped rollctl's /metrics during the run: hosts soaking, reboots counted.
        let doneID = try #require(done["id"] as? String)
        let soaking = try prom.query("max_over_time(rollctl_hosts{state=\"soaking\",rollout=\"\(doneID)\"}[10m])")
        #expect(soaking.first.map { $0.value >= 1 } == true, "\(soaking)\n\(prom.log.suffix(1000))")
        let reboots = try prom.query("max_over_time(rollctl_reboots_total{rollout=\"\(doneID)\"}[10m])")
        #expect(reboots.first.map { $0.value >= 1 && $0.value <= 2 } == true, "\(reboots)")
        // Over the run, like the two above: once rollctl has exited, Prometheus marks its series stale
        // at the next failed scrape, and an instant query finds nothing (seen once in make test).
        #expect(try prom.query("count(max_over_time(rollctl_reboot_duration_seconds_bucket{rollout=\"\(doneID)\"}[10m]))").first.map { $0.value > 0 } == true)
        for (host, report) in Self.gateReports(done) {
            let f = Self.finding(report, "prometheus:slab")
            #expect(f?["status"] as? String == "pass", "\(host): \(String(describing: f))")
            let peak = f?["measured"] as? Double ?? 0
            #expect(peak > 200 * 1048576 && peak < 300 * 1048576, "\(host): peak \(peak)")
        }
        #expect(Self.gateReports(done).count == 2)
        #expect(fleet.boots("web-002") == ["6.1.0-17-hosting", "6.1.0-19-hosting"])
    }

    /// A query that finds no series (a metric fleetsim does not export) is no evidence: the
    /// gate is inconclusive, never a pass, and the rollout halts; the finding says why. A second
    /// check on the same server reads MemTotal exactly, so the server did answer.
    @Test func anEmptyQueryResultMakesTheGateInconclusive() throws {
        let fleet = try Fleet(hosts: 2, racks: 2, slot: 32); defer { fleet.down() }
        let addresses = try Self.addresses(fleet)
        // rollctl's own /metrics (plan apply --metrics-listen) is a target of the same Prometheus.
        let metricsPort = (0..<50).map { UInt16(29000 + (Int(getpid()) * 7 + $0) % 1000) }.first(where: MonitoringServer.portIsFree) ?? 29999
        let prom = try MonitoringServer.prometheus(in: fleet.dir, targets: addresses.values.sorted().map { "\($0):9100" } + ["127.0.0.1:\(metricsPort)"])
        defer { prom.stop() }
        #expect(prom.waitForTargets(2), "Prometheus never scraped both hosts:\n\(prom.log.suffix(2000))")
        let gate = [
            "prometheus:",
            "  url: \(prom.url)",
            "  checks:",
            "    - name: ghost",
            "      query: node_no_such_metric{instance=\"{address}:9100\"}",
            "      max: 1",
            "    - name: memtotal",
            "      query: node_memory_MemTotal_bytes{instance=\"{address}:9100\"}",
            "      min: 1GiB",
        ]
        let r = try fleet.apply(try Self.plan(fleet, release: "6.1.0-19-hosting", name: "ghost", gate: gate))
        #expect(r.status == 3, "\(r.output)")
        #expect(r.output.contains("wave 1 gate inconclusive: inconclusive on web-001"), "\(r.output)")
        let doc = try fleet.lastRollout()
        #expect(["halted", "rolled_back"].contains(doc["state"] as? String ?? ""), "\(doc["state"] ?? "-")")
        #expect(fleet.boots("web-002") == ["6.1.0-17-hosting"], "wave 2 must not start")
        let report = Self.gateReports(doc)["web-001"]
        #expect(report?["verdict"] as? String == "inconclusive", "\(String(describing: report?["findings"]))")
        let ghost = Self.finding(report, "prometheus:ghost")
        #expect(ghost?["status"] as? String == "inconclusive", "\(String(describing: ghost))")
        #expect((ghost?["summary"] as? String)?.contains("no series") == true, "\(String(describing: ghost))")
        let mem = Self.finding(report, "prometheus:memtotal")
        #expect(!["fail", "inconclusive"].contains(mem?["status"] as? String ?? "fail"), "\(String(describing: mem))")
        // Exactly what the canary's /proc/meminfo says (kB × 1024), through the real scrape.
        let meminfo = try String(contentsOfFile: fleet.dir + "/fleet/hosts/web-001/proc/meminfo", encoding: .utf8)
        let kB = try #require(meminfo.split(separator: "\n").first { $0.hasPrefix("MemTotal:") }?.split(separator: " ").dropFirst().first.flatMap { Double($0) })
        #expect(mem?["measured"] as? Double == kB * 1024, "\(String(describing: mem)) vs MemTotal \(kB) kB")
    }

    // MARK: - gate.block_on_alerts

    /// A critical alert firing before the apply holds the first batch — the rollout `waiting`,
    /// its note naming the alert (and not a warning that fires too), no host rebooted — until
    /// the alert is resolved; then the rollout goes on and completes.
    @Test func aFiringCriticalAlertHoldsTheBatchUntilResolved() throws {
        let fleet = try Fleet(hosts: 3, racks: 3, slot: 33); defer { fleet.down() }
        let am = try MonitoringServer.alertmanager(in: fleet.dir); defer { am.stop() }
        let critical = ["alertname": "TestCritical", "severity": "critical"]
        try am.fire(critical)
        try am.fire(["alertname": "TestWarning", "severity": "warning"])
        let gate = [
            "block_on_alerts:",
            "  url: \(am.url)",
            "  matchers: ['severity=\"critical\"']",
            "  max_wait: 5m",
            "  interval: 1s",
        ]
        let plan = try Self.plan(fleet, release: "6.1.0-19-hosting", name: "held", gate: gate)
        let pid = try Spawn.start(CLI.binary, ["plan", "apply", plan, "--journal", fleet.journal], outputPath: fleet.dir + "/apply.log")
        defer { if Spawn.isRunning(pid) { kill(pid, SIGKILL); _ = Spawn.wait(pid) } }
        let id = try #require(Self.rolloutID(fleet), "\(fleet.log("apply.log"))")
        var status: [String: Any] = [:]
        let held = Self.until(90) {
            status = Self.status(fleet, id)
            return status["state"] as? String == "waiting" && (status["note"] as? String)?.contains("TestCritical") == true
        }
        #expect(held, "\(status)\n\(fleet.log("apply.log"))")
        let note = status["note"] as? String ?? ""
        #expect(note.contains("held by alerts") && note.contains("severity=critical") && !note.contains("TestWarning"), "\(note)")
        #expect(status["waiting_for"] as? String == "alerts", "\(status)")
        // Still held a few looks later, and nothing rebooted.
        usleep(3_000_000)
        #expect(Self.status(fleet, id)["state"] as? String == "waiting")
        for i in 1...3 { #expect(fleet.boots(fleet.name(i)).count == 1, "\(fleet.name(i)) rebooted while held") }
        #expect(fleet.hostStates(try fleet.lastRollout())["web-001"] == "staged")

        try am.resolve(critical)
        #expect(Spawn.wait(pid) == 0, "\(fleet.log("apply.log"))")
        let doc = try fleet.show(id)
        #expect(doc["state"] as? String == "completed")
        #expect(Set(fleet.hostStates(doc).values) == ["committed"])
        for i in 1...3 { #expect(fleet.boots(fleet.name(i)) == ["6.1.0-17-hosting", "6.1.0-19-hosting"], "\(fleet.name(i))") }
        let events = doc["events"] as? [[String: Any]] ?? []
        #expect(events.contains { ($0["message"] as? String)?.contains("alerts cleared after") == true }, "\(events.compactMap { $0["message"] })")
        #expect(fleet.log("apply.log").contains("no matching alert fires any more"), "\(fleet.log("apply.log"))")
    }

    /// Per-host matchers (`instance=~"{address}:.*"`): an alert on a wave-2 host holds only that
    /// host's batch — the canary goes through, a look-alike instance (the canary's address with
    /// its dots as other characters) does not hold it, so the address is regex-quoted — and an
    /// alert that keeps firing past `max_wait` halts the rollout, wave 2 never rebooted.
    @Test func aPerHostAlertThatKeepsFiringHaltsAfterMaxWait() throws {
        let fleet = try Fleet(hosts: 3, racks: 3, slot: 34); defer { fleet.down() }
        let am = try MonitoringServer.alertmanager(in: fleet.dir); defer { am.stop() }
        let addresses = try Self.addresses(fleet)
        let canary = try #require(addresses["web-001"])
        try am.fire(["alertname": "HostCritical", "severity": "critical", "instance": "\(try #require(addresses["web-003"])):9100"])
        try am.fire(["alertname": "LookAlike", "severity": "critical", "instance": canary.replacingOccurrences(of: ".", with: "x") + ":9100"])
        let gate = [
            "block_on_alerts:",
            "  url: \(am.url)",
            "  matchers: ['severity=\"critical\"', 'instance=~\"{address}:.*\"']",
            "  max_wait: 3s",
            "  interval: 1s",
        ]
        let r = try fleet.apply(try Self.plan(fleet, release: "6.1.0-19-hosting", name: "perhost", soak: "8s", gate: gate))
        #expect(r.status == 3, "\(r.output)")
        #expect(r.output.contains("wave 2, batch 1: held by Alertmanager for 3s (gate.block_on_alerts.max_wait)"), "\(r.output)")
        #expect(r.output.contains("HostCritical") && r.output.contains("(web-003)"), "\(r.output)")
        #expect(!r.output.contains("LookAlike"), "\(r.output)")
        let doc = try fleet.lastRollout()
        #expect(doc["state"] as? String == "halted", "\(r.output)")
        let states = fleet.hostStates(doc)
        #expect(states["web-001"] == "committed", "\(states)")
        #expect(fleet.boots("web-001") == ["6.1.0-17-hosting", "6.1.0-19-hosting"])
        for host in ["web-002", "web-003"] {
            #expect(fleet.boots(host) == ["6.1.0-17-hosting"], "\(host) rebooted in a held batch")
            // The halted wave's staged hosts lose their boot-once entry (rollback policy `wave`).
            #expect(states[host] == "rolled_back", "\(states)")
        }
    }

    // MARK: - silence

    /// Marker host of a rollctl silence comment (`… [rollctl:<id>/<host>]`).
    static func silencedHost(_ s: MonitoringServer.Silence, rollout id: String) -> String? {
        guard let r = s.comment.range(of: "rollctl:\(id)/") else { return nil }
        return String(s.comment[r.upperBound...].prefix { $0 != "]" && $0 != " " })
    }

    /// Regex-quoted `address` as the silence's matcher holds it.
    static func quoted(_ address: String) -> String { address.replacingOccurrences(of: ".", with: "\\.") }

    /// With `silence:`, each host gets one silence from before its reboot to after its gate's
    /// verdict: Alertmanager lists it active while the host reboots and soaks, it mutes that
    /// host's alert and no other host's, and once the rollout completed every one is expired —
    /// one per rebooted host, as the journal says.
    @Test func eachRebootedHostIsSilencedFromItsRebootToItsVerdict() throws {
        let fleet = try Fleet(hosts: 3, racks: 3, slot: 35); defer { fleet.down() }
        let am = try MonitoringServer.alertmanager(in: fleet.dir); defer { am.stop() }
        let addresses = try Self.addresses(fleet)
        for (host, address) in addresses { try am.fire(["alertname": "NodeNoise", "severity": "warning", "instance": "\(address):9100", "node": host]) }
        let top = """
            silence:
              url: \(am.url)
              matchers: ['instance=~"{address}:.*"']
              comment: kernel rollout
            """
        let plan = try Self.plan(fleet, release: "6.1.0-19-hosting", name: "silence", top: top)
        let pid = try Spawn.start(CLI.binary, ["plan", "apply", plan, "--journal", fleet.journal], outputPath: fleet.dir + "/apply.log")
        defer { if Spawn.isRunning(pid) { kill(pid, SIGKILL); _ = Spawn.wait(pid) } }
        let id = try #require(Self.rolloutID(fleet), "\(fleet.log("apply.log"))")
        // Watch Alertmanager while the rollout runs.
        var activeSeen: [String: Set<String>] = [:]      // host → ids seen active
        var mutesItsHost: Set<String> = []
        var soakingSeen: Set<String> = []                // active while the host was already on its new boot
        var wrong: [String] = []
        var exit: Int32?
        while exit == nil {
            exit = Self.exited(pid)
            guard let silences = try? am.silences(), let alerts = try? am.alerts() else { usleep(200_000); continue }
            for s in silences where s.state == "active" {
                guard let host = Self.silencedHost(s, rollout: id) else { wrong.append("active silence without our marker: \(s.comment)"); continue }
                activeSeen[host, default: []].insert(s.id)
                if fleet.boots(host).count == 2 { soakingSeen.insert(host) }
                for a in alerts where a.labels["alertname"] == "NodeNoise" {
                    let mine = a.labels["node"] == host
                    if mine && a.silencedBy.contains(s.id) { mutesItsHost.insert(host) }
                    if !mine && a.silencedBy.contains(s.id) { wrong.append("silence \(s.id) of \(host) mutes \(a.labels["node"] ?? "?")") }
                }
            }
            usleep(200_000)
        }
        #expect(exit == 0, "\(fleet.log("apply.log"))")
        #expect(wrong.isEmpty, "\(wrong)")
        let hosts = addresses.keys.sorted()
        #expect(Set(activeSeen.keys) == Set(hosts), "active silences seen for \(activeSeen)")
        #expect(mutesItsHost == Set(hosts), "a host's silence muted its alert: \(mutesItsHost)")
        #expect(soakingSeen == Set(hosts), "silenced after the reboot (while soaking): \(soakingSeen)")

        let doc = try fleet.show(id)
        #expect(doc["state"] as? String == "completed")
        let ours = try am.silences().filter { Self.silencedHost($0, rollout: id) != nil }
        let byHost = Dictionary(grouping: ours, by: { Self.silencedHost($0, rollout: id)! })
        let iso = Date.ISO8601FormatStyle(includingFractionalSeconds: true)
        let allEvents = doc["events"] as? [[String: Any]] ?? []
        func at(_ host: String, _ to: String) -> Date? {
            allEvents.first { $0["host"] as? String == host && ($0["data"] as? [String: String])?["to"] == to }
                .flatMap { ($0["at"] as? String).flatMap { try? Date($0, strategy: iso) } }
        }
        let waveOf = Dictionary(uniqueKeysWithValues: (doc["hosts"] as? [[String: Any]] ?? []).compactMap { h -> (String, Int)? in
            guard let n = h["name"] as? String, let w = h["wave"] as? Int else { return nil }
            return (n, w)
        })
        for host in hosts {
            let list = byHost[host] ?? []
            #expect(list.count == 1, "\(host): \(list.map { "\($0.id) \($0.state)" })")
            guard let s = list.first else { continue }
            #expect(s.state == "expired", "\(host): \(s.state)")
            #expect(s.createdBy.hasPrefix("rollctl ("), "\(s.createdBy)")
            #expect(s.comment.hasPrefix("kernel rollout") && s.comment.contains("[rollctl:\(id)/\(host)]"), "\(s.comment)")
            #expect(s.matchers.count == 1 && s.matchers[0].name == "instance" && s.matchers[0].isRegex && s.matchers[0].isEqual
                    && s.matchers[0].value == Self.quoted(addresses[host]!) + ":.*", "\(s.matchers)")
            // From before the reboot's intent to after the verdict (ends at its expiry) ...
            let rebooting = try #require(at(host, "rebooting")), healthy = try #require(at(host, "healthy"))
            #expect(s.startsAt <= rebooting && s.endsAt >= healthy, "\(host): silence \(s.startsAt)–\(s.endsAt), reboot \(rebooting), healthy \(healthy)")
            // ... and no longer: ended before any host of a later wave went down.
            for (other, wave) in waveOf where wave > (waveOf[host] ?? 0) {
                let later = try #require(at(other, "rebooting"))
                #expect(s.endsAt <= later, "\(host)'s silence ended at \(s.endsAt), after \(other) (wave \(wave)) rebooted at \(later)")
            }
        }
        #expect(try am.alerts().allSatisfy { $0.silencedBy.isEmpty }, "a silence still mutes an alert")
        // The journal agrees: one row per host, its id, expired.
        let (s, rows) = try Spawn.run("/usr/bin/sqlite3", ["-readonly", "-separator", " ", fleet.journal,
                                                            "SELECT host, silence_id, expired_at IS NOT NULL FROM silence WHERE rollout_id = '\(id)' ORDER BY host"])
        #expect(s == 0, "\(rows)")
        let expected = hosts.map { "\($0) \(byHost[$0]?.first?.id ?? "?") 1" }
        #expect(rows.split(separator: "\n").map(String.init) == expected, "\(rows)")
    }

    /// rollctl's own silences spare the on-call, not rollctl: a critical alert on a host this rollout
    /// rebooted (muted by its silence) still holds the next batch. One wave, one host per batch: the
    /// alert fires while web-001's silence is active and web-002's batch waits for it to resolve.
    @Test func anAlertMutedOnlyByOurOwnSilenceStillHoldsTheNextBatch() throws {
        let fleet = try Fleet(hosts: 2, racks: 2, slot: 38); defer { fleet.down() }
        let am = try MonitoringServer.alertmanager(in: fleet.dir); defer { am.stop() }
        let addresses = try Self.addresses(fleet)
        let gate = ["block_on_alerts:", "  url: \(am.url)", "  matchers: ['severity=\"critical\"']", "  max_wait: 5m", "  interval: 1s"]
        let top = """
            silence:
              url: \(am.url)
              matchers: ['instance=~"{address}:.*"']
            """
        let path = try Self.plan(fleet, release: "6.1.0-19-hosting", name: "own-silence", gate: gate, top: top)
        let text = try String(contentsOfFile: path, encoding: .utf8)
            .replacingOccurrences(of: "sizes: [1, 100%]", with: "sizes: [100%]").replacingOccurrences(of: "max_parallel: 4", with: "max_parallel: 1")
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        let pid = try Spawn.start(CLI.binary, ["plan", "apply", path, "--journal", fleet.journal], outputPath: fleet.dir + "/apply.log")
        defer { if Spawn.isRunning(pid) { kill(pid, SIGKILL); _ = Spawn.wait(pid) } }
        let id = try #require(Self.rolloutID(fleet), "\(fleet.log("apply.log"))")
        // The first batch's host is silenced (right before its reboot): its alert fires now.
        var first: String?
        let silenced = Self.until(60) {
            first = (try? am.silences())?.first { $0.state == "active" }.flatMap { Self.silencedHost($0, rollout: id) }
            return first != nil
        }
        #expect(silenced, "\(fleet.log("apply.log"))")
        let host = try #require(first)
        let other = addresses.keys.first { $0 != host }!
        let alert = ["alertname": "KernelOops", "severity": "critical", "instance": "\(addresses[host]!):9100"]
        try am.fire(alert)
        var status: [String: Any] = [:]
        let held = Self.until(60) {
            status = Self.status(fleet, id)
            return status["state"] as? String == "waiting" && (status["note"] as? String)?.contains("KernelOops") == true
        }
        #expect(held, "\(status)\n\(fleet.log("apply.log"))")
        #expect(try am.alerts().first { $0.labels["alertname"] == "KernelOops" }?.silencedBy.isEmpty == false, "the alert is muted by our silence")
        #expect(fleet.boots(other).count == 1, "\(other) rebooted while \(host)'s alert fired")
        try am.resolve(alert)
        #expect(Spawn.wait(pid) == 0, "\(fleet.log("apply.log"))")
        #expect(fleet.boots(other) == ["6.1.0-17-hosting", "6.1.0-19-hosting"])
    }

    /// `rollout abort` while the canary soaks (its driver is stopped, then the rollout is over):
    /// the canary's silence does not outlive the rollout.
    @Test func anAbortEndsTheSilencesOfTheRollout() throws {
        let fleet = try Fleet(hosts: 2, racks: 2, slot: 37); defer { fleet.down() }
        let am = try MonitoringServer.alertmanager(in: fleet.dir); defer { am.stop() }
        let top = """
            silence:
              url: \(am.url)
              matchers: ['instance=~"{address}:.*"']
            """
        let plan = try Self.plan(fleet, release: "6.1.0-19-hosting", name: "silence-abort", soak: "30s", top: top)
        let pid = try Spawn.start(CLI.binary, ["plan", "apply", plan, "--journal", fleet.journal], outputPath: fleet.dir + "/apply.log")
        defer { if Spawn.isRunning(pid) { kill(pid, SIGKILL); _ = Spawn.wait(pid) } }
        #expect(fleet.waitFor("soaking 1 host", in: fleet.dir + "/apply.log", seconds: 90), "\(fleet.log("apply.log"))")
        let id = try #require(Self.rolloutID(fleet))
        let mine = { ((try? am.silences()) ?? []).filter { Self.silencedHost($0, rollout: id) != nil } }
        #expect(mine().filter { $0.state == "active" }.count == 1, "the soaking canary is silenced")
        let abort = try CLI.run(["rollout", "abort", id, "--journal", fleet.journal])
        #expect(abort.status == 0, "\(abort.output)")
        _ = Spawn.wait(pid)
        #expect(try fleet.lastRollout()["state"] as? String == "aborted")
        let left = mine()
        #expect(left.count == 1 && left.allSatisfy { $0.state == "expired" }, "\(left.map { "\($0.id) \($0.state) \($0.comment)" })\n\(abort.output)")
    }

    /// kill -9 while the canary soaks and again right after a wave-2 silence appears, then
    /// resume: the silences a dead driver left are ended (or adopted) by the next one — none
    /// stays active, and no host ever has two active at once.
    @Test func silencesSurviveKillNineAndResumeWithoutLeftoversOrDoubles() throws {
        let fleet = try Fleet(hosts: 3, racks: 3, slot: 36); defer { fleet.down() }
        let am = try MonitoringServer.alertmanager(in: fleet.dir); defer { am.stop() }
        let top = """
            silence:
              url: \(am.url)
              matchers: ['instance=~"{address}:.*"']
              comment: kernel rollout
            """
        let plan = try Self.plan(fleet, release: "6.1.0-19-hosting", name: "silence-kill", top: top)
        var pid = try Spawn.start(CLI.binary, ["plan", "apply", plan, "--journal", fleet.journal], outputPath: fleet.dir + "/apply.log")
        defer { if Spawn.isRunning(pid) { kill(pid, SIGKILL); _ = Spawn.wait(pid) } }
        #expect(fleet.waitFor("soaking 1 host", in: fleet.dir + "/apply.log", seconds: 90), "\(fleet.log("apply.log"))")
        let id = try #require(Self.rolloutID(fleet))
        func active(_ host: String? = nil) -> [MonitoringServer.Silence] {
            ((try? am.silences()) ?? []).filter { $0.state == "active" && Self.silencedHost($0, rollout: id).map { host == nil || $0 == host } == true }
        }
        #expect(active("web-001").count == 1, "the soaking canary is silenced")
        kill(pid, SIGKILL)
        _ = Spawn.wait(pid)
        #expect(fleet.hostStates(try fleet.lastRollout())["web-001"] == "soaking")

        // Resume; die again as soon as a wave-2 host's silence shows (looked for without a pause:
        // the kill lands between the silence and the reboot's intent, or in the reboot).
        pid = try Spawn.start(CLI.binary, ["rollout", "resume", id, "--journal", fleet.journal], outputPath: fleet.dir + "/resume1.log")
        var secondKill = false
        let deadline = Date().addingTimeInterval(120)
        while Date() < deadline && Spawn.isRunning(pid) {
            if let all = try? am.silences(), all.contains(where: { $0.state == "active" && ["web-002", "web-003"].contains(Self.silencedHost($0, rollout: id) ?? "") }) {
                kill(pid, SIGKILL)
                secondKill = true
                break
            }
            usleep(2_000)
        }
        _ = Spawn.wait(pid)
        #expect(secondKill, "no wave-2 silence seen before the resume ended:\n\(fleet.log("resume1.log"))")
        let between = fleet.hostStates(try fleet.lastRollout())

        let resumed = try CLI.run(["rollout", "resume", id, "--journal", fleet.journal])
        #expect(resumed.status == 0, "\(resumed.output)")
        let doc = try fleet.lastRollout()
        #expect(doc["state"] as? String == "completed")
        #expect(Set(fleet.hostStates(doc).values) == ["committed"])
        for i in 1...3 { #expect(fleet.boots(fleet.name(i)) == ["6.1.0-17-hosting", "6.1.0-19-hosting"], "\(fleet.name(i))") }

        let ours = try am.silences().filter { Self.silencedHost($0, rollout: id) != nil }
        #expect(ours.allSatisfy { $0.state == "expired" }, "\(ours.map { "\($0.id) \($0.state) \($0.comment)" })")
        let byHost = Dictionary(grouping: ours, by: { Self.silencedHost($0, rollout: id)! })
        for (host, list) in byHost {
            // Two silences of one host never active at the same time.
            for (i, a) in list.enumerated() {
                for b in list.dropFirst(i + 1) {
                    #expect(a.endsAt <= b.startsAt || b.endsAt <= a.startsAt, "\(host): \(a.id) \(a.startsAt)–\(a.endsAt) overlaps \(b.id) \(b.startsAt)–\(b.endsAt)")
                }
            }
            #expect(list.count == 1, "\(host): \(list.count) silences")
        }
        #expect(Set(byHost.keys) == ["web-001", "web-002", "web-003"], "\(byHost.keys.sorted())")
        // The journal names the silence Alertmanager has, each expired.
        let (s, rows) = try Spawn.run("/usr/bin/sqlite3", ["-readonly", "-separator", " ", fleet.journal,
                                                            "SELECT host, silence_id, expired_at IS NOT NULL FROM silence WHERE rollout_id = '\(id)' ORDER BY host"])
        #expect(s == 0, "\(rows)")
        #expect(rows.split(separator: "\n").map(String.init) == byHost.keys.sorted().map { "\($0) \(byHost[$0]!.last!.id) 1" }, "\(rows)")
        print("silences after kill -9 (second kill with hosts \(between.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", "))): "
              + byHost.keys.sorted().map { "\($0) \(byHost[$0]!.count)" }.joined(separator: ", "))
    }
}
