import Foundation
import Testing
import SSHTesting
#if canImport(Glibc)
import Glibc
#endif

/// The customer notices' windows against the reboots fleetsim saw, and the plan's maintenance
/// windows and cutoff on the real clock. Its own suite (not "rollouts on fleetsim") only so that
/// `make test` can run it in the other process-suite lane: its two tests wait ~4 minutes.
@Suite("maintenance windows and notices on fleetsim", .serialized, .enabled(if: geteuid() == 0))
struct WindowE2ETests {
    typealias Fleet = RolloutE2ETests.Fleet

    @Test func everyRebootFallsInsideTheWindowItsCustomersWereTold() throws {
        let fleet = try Fleet(hosts: 6, racks: 3, slot: 15); defer { fleet.down() }
        let sink = try Fleet.MailSink(fleet.dir); defer { sink.stop() }
        // Lead time longer than a wave: the old rule told the canary's customers a window
        // that ended before the first reboot. Wave 2 has two batches (three racks, five hosts).
        let plan = try fleet.plan(release: "6.1.0-19-hosting", waves: "[1, 100%]", soak: "10s", rebootTimeout: "10s",
                                  notifyPort: sink.port, leadTime: "25s")
        let r = try fleet.apply(plan, ["--verbose"])
        #expect(r.status == 0, "\(r.output)")
        // --verbose: each host's SSH dialogue, the SMTP dialogue and the gate's samples are logged.
        for line in ["SSH: connected and authenticated", "SSH $ cat /proc/sys/kernel/random/boot_id", "SSH exit 0",
                     "SMTP → MAIL FROM:<", "SMTP ← 250", "gate sample 1/"] {
            #expect(r.output.contains(line), "no '\(line)' in the --verbose output")
        }
        // The windows held as told: no corrected notice was needed.
        #expect(!r.output.contains("corrected notice"), "\(r.output)")
        #expect(try sink.mails().allSatisfy { ($0["notice"] as? String)?.hasPrefix("rescheduled") != true })
        let doc = try fleet.lastRollout()
        let id = try #require(doc["id"] as? String)
        let events = try fleet.show(id)["events"] as? [[String: Any]] ?? []
        var rebootAt: [String: Date] = [:]
        let iso = Date.ISO8601FormatStyle(includingFractionalSeconds: true)
        for e in events where (e["message"] as? String)?.hasPrefix("staged → rebooting") == true {
            if let h = e["host"] as? String, let at = e["at"] as? String { rebootAt[h] = try Date(at, strategy: iso) }
            // The same move for machines.
            #expect((e["data"] as? [String: String]) == ["from": "staged", "to": "rebooting"], "\(e)")
        }
        #expect(rebootAt.count == 6)
        let batches = Set((doc["hosts"] as? [[String: Any]] ?? []).compactMap { h -> String? in
            guard let w = h["wave"] as? Int, let b = h["batch"] as? Int else { return nil }
            return "\(w).\(b)"
        })
        #expect(batches.count >= 3, "\(batches)")
        let notices = try CLI.run(["rollout", "notices", id, "--journal", fleet.journal, "--json"]).json.first?["notices"] as? [[String: Any]] ?? []
        let hostsOf = Dictionary(notices.map { ($0["message_id"] as? String ?? "", $0["hosts"] as? [String] ?? []) }, uniquingKeysWith: { a, _ in a })
        let mails = try sink.mails().filter { ($0["notice"] as? String)?.hasPrefix("maintenance") == true }
        #expect(!mails.isEmpty)
        var checked = 0
        for m in mails {
            let window = try #require(m["window"] as? String, "no X-Rollctl-Window in \(m)")
            let parts = window.split(separator: "/").map(String.init)
            let from = try Date(parts[0], strategy: .iso8601), to = try Date(parts[1], strategy: .iso8601)
            for h in hostsOf[m["message_id"] as? String ?? ""] ?? [] {
                let at = try #require(rebootAt[h])
                #expect(at >= from && at <= to, "\(h) rebooted at \(at), outside \(window) told to \(m["to"] ?? "?")")
                checked += 1
            }
            // The text says the same, in minutes rounded outwards.
            #expect((m["body"] as? String)?.contains("between") == true)
        }
        #expect(checked >= 6)
    }

    /// A maintenance window that opens 30 s after the start and a cutoff: no reboot before the
    /// window opens; the canary's batch starts in it; wave 2, ready ~25 s later, cannot end (its
    /// batch may take 45.5 s) 10 s before the window closes, so it waits for the next window.
    @Test func rebootsWaitForTheWindowAndTheCutoffHoldsBackABatch() throws {
        let fleet = try Fleet(hosts: 4, racks: 2, slot: 17); defer { fleet.down() }
        func tod(_ d: Date) -> String {
            var c = Calendar(identifier: .gregorian)
            c.timeZone = TimeZone(identifier: "UTC")!
            let p = c.dateComponents([.hour, .minute, .second], from: d)
            return String(format: "%02d:%02d:%02d", p.hour!, p.minute!, p.second!)
        }
        let t = Date()
        let open = t.addingTimeInterval(30), close = t.addingTimeInterval(105), next = t.addingTimeInterval(120)
        // Reboot timeout 5 s + settle 0.5 s + 40 s for the reads: a batch may take 45.5 s.
        let schedule = """
            schedule:
              time_zone: UTC
              windows:
                - {start: "\(tod(open))", end: "\(tod(close))"}
                - {start: "\(tod(next))", end: "\(tod(next.addingTimeInterval(600)))"}
              cutoff: 10s
            """
        let plan = try fleet.plan(release: "6.1.0-19-hosting", waves: "[1, 100%]", soak: "20s", rebootTimeout: "5s")
        try (String(contentsOfFile: plan, encoding: .utf8) + "\n" + schedule + "\n").write(toFile: plan, atomically: true, encoding: .utf8)
        let preview = try CLI.run(["plan", "apply", plan, "--dry-run", "--offline"])
        #expect(preview.status == 0 && preview.output.contains("Schedule UTC: daily ") && preview.output.contains("; cutoff 10s")
                && preview.output.contains("canary: 1 batch from "), "\(preview.output)")
        let r = try fleet.apply(plan)
        #expect(r.status == 0, "\(r.output)")
        #expect(r.output.contains("waiting for the maintenance window"), "\(r.output)")
        let doc = try fleet.lastRollout()
        let id = try #require(doc["id"] as? String)
        #expect(Set(fleet.hostStates(doc).values) == ["committed"])
        for i in 1...4 { #expect(fleet.boots(fleet.name(i)) == ["6.1.0-17-hosting", "6.1.0-19-hosting"], "\(fleet.name(i))") }
        let iso = Date.ISO8601FormatStyle(includingFractionalSeconds: true)
        var rebootAt: [String: Date] = [:]
        for e in try fleet.show(id)["events"] as? [[String: Any]] ?? [] where (e["message"] as? String)?.hasPrefix("staged → rebooting") == true {
            if let h = e["host"] as? String, let at = e["at"] as? String { rebootAt[h] = try Date(at, strategy: iso) }
        }
        let waveOf = Dictionary(uniqueKeysWithValues: (doc["hosts"] as? [[String: Any]] ?? []).compactMap { h -> (String, Int)? in
            guard let n = h["name"] as? String, let w = h["wave"] as? Int else { return nil }
            return (n, w)
        })
        #expect(rebootAt.count == 4)
        for (host, at) in rebootAt {
            // Journal times have fractions; the windows whole seconds.
            #expect(at >= open.addingTimeInterval(-1), "\(host) rebooted at \(at), before the window opened at \(open)")
            if waveOf[host] == 1 {
                #expect(at.addingTimeInterval(45.5 + 10) <= close.addingTimeInterval(1), "the canary's batch started at \(at), too late to end before the cutoff")
            } else {
                #expect(at >= next.addingTimeInterval(-1), "\(host) (wave 2) rebooted at \(at), in the first window past its cutoff")
            }
        }
    }
}
