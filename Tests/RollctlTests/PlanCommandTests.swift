import Foundation
import Testing
import SSHTesting

/// `rollctl plan validate` and `plan apply --dry-run`, run as a process.
@Suite("plan commands", .serialized)
struct PlanCommandTests {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path
    static let corpus = root + "/Tests/RolloutTests/corpus"

    @Test func validateTheFlagship() throws {
        let r = try CLI.run(["plan", "validate", Self.root + "/plans/socket-bind-fix.yaml"])
        #expect(r.status == 0, "\(r.output)")
        #expect(r.output.contains("OK "))
        #expect(r.output.contains("'socket-bind-fix' -> 6.1.0-19-hosting; 24 hosts"))
        #expect(r.lines.count == 1)
    }

    /// A handful of the corpus through the binary: exit 2, every error with its place, a count.
    @Test(arguments: [
        ("p-many-errors.yaml", ["p-many-errors.yaml:2:1: error: unknown key 'kernal' in the plan", "hint: did you mean 'kernel'?",
                                "p-many-errors.yaml:6:14: error: wave size 150% is impossible", "p-many-errors.yaml:9:12:",
                                "5 problems found; nothing was run."]),
        ("p-binary.yaml", ["p-binary.yaml:2:8: error: binary data (a NUL byte)"]),
        ("p-deep-nesting.yaml", ["p-deep-nesting.yaml:2:40: error: nesting deeper than 32 levels"]),
        ("p-hostile-select-host.yaml", ["19:11: error: select.hosts: 'web-1; rm -rf /' is not a valid host name",
                                        "19:30: error: select.hosts: '$(reboot)' is not a valid host name"]),
        ("x-domain-missing.yaml", ["x-domain-missing.yaml:8:3: error: no selected host has the failure-domain label 'rakc'"]),
        ("x-template-unknown-var.yaml", ["bad-templates/maintenance.subject:1: error: unknown template variable 'custmer_name'"]),
    ])
    func badPlansExit2(_ c: (String, [String])) throws {
        for command in [["plan", "validate"], ["plan", "apply", "--dry-run"]] {
            let r = try CLI.run(command + [Self.corpus + "/" + c.0])
            #expect(r.status == 2, "\(command) \(c.0): \(r.output)")
            for text in c.1 { #expect(r.output.contains(text), "\(c.0): missing '\(text)' in\n\(r.output)") }
            #expect(r.output.contains("nothing was run"))
        }
    }

    @Test func inventoryOverrideIsValidatedToo() throws {
        let r = try CLI.run(["plan", "validate", Self.corpus + "/_ok-plan.yaml", "--inventory", Self.corpus + "/i-hostile-name-newline.yaml"])
        #expect(r.status == 2)
        #expect(r.output.contains("i-hostile-name-newline.yaml:2:11: error: host name 'web-1?evil' is not valid"))
    }

    @Test func tenMegabytesAreRefusedQuickly() throws {
        let path = NSTemporaryDirectory() + "rollctl-cli-10mb-\(getpid()).yaml"
        defer { try? FileManager.default.removeItem(atPath: path) }
        try ("name: big\ndescription: " + String(repeating: "y", count: 10 << 20) + "\n").write(toFile: path, atomically: true, encoding: .utf8)
        let start = ContinuousClock.now
        let r = try CLI.run(["plan", "validate", path])
        #expect(r.status == 2)
        #expect(r.output.contains("rollctl reads at most 4 MiB"))
        #expect(ContinuousClock.now - start < .seconds(5))
    }

    @Test func offlineDryRunOfTheFlagship() throws {
        let r = try CLI.run(["plan", "apply", Self.root + "/plans/socket-bind-fix.yaml", "--dry-run", "--offline"])
        #expect(r.status == 0, "\(r.output)")
        for text in ["Plan socket-bind-fix", "canary: 1 host in 1 batch", "batch 1: web-001 {dc=fra1, rack=r1, role=web}",
                     "$ grub-reboot 'Advanced options for Debian GNU/Linux>Debian GNU/Linux, with Linux 6.1.0-19-hosting'",
                     "$ DEBIAN_FRONTEND=noninteractive apt-get install -y linux-image-6.1.0-19-hosting",
                     "growth ≤ 32.0 MiB/h", "Subject: Planned maintenance", "Estimated duration about",
                     "Dry run: nothing was changed on any host."] {
            #expect(r.output.contains(text), "missing '\(text)'")
        }
        let json = try CLI.run(["plan", "apply", Self.root + "/plans/socket-bind-fix.yaml", "--dry-run", "--offline", "--json"])
        #expect(json.status == 0)
        let doc = try #require(try JSONSerialization.jsonObject(with: Data(json.output.utf8)) as? [String: Any])
        #expect((doc["waves"] as? [[String: Any]])?.count == 4)
        #expect((doc["survey"] as? [String: Any])?["offline"] as? Bool == true)
        #expect((doc["plan"] as? [String: Any])?["target_release"] as? String == "6.1.0-19-hosting")
        // Stable: the same document twice.
        let again = try CLI.run(["plan", "apply", Self.root + "/plans/socket-bind-fix.yaml", "--dry-run", "--offline", "--json"])
        #expect(again.output == json.output)
    }

    /// A known-bad release: `plan validate` (and apply) refuse it with the evidence, at its line;
    /// --allow-known-bad lets it through; `kernel unblock` forgets it.
    @Test func aKnownBadKernelIsRefusedUntilAllowedOrUnblocked() throws {
        let d = try TestSSHD.makeTempDir()
        defer { try? FileManager.default.removeItem(atPath: d) }
        let plan = Self.root + "/plans/socket-bind-fix.yaml", journal = d + "/j.sqlite"
        let block = try CLI.run(["kernel", "block", "6.1.0-19-hosting", "--reason", "panics on Xeon E5 v2", "--journal", journal])
        #expect(block.status == 0, "\(block.output)")
        let refused = try CLI.run(["plan", "validate", plan, "--journal", journal])
        #expect(refused.status == 2, "\(refused.output)")
        #expect(refused.output.contains("socket-bind-fix.yaml:15:3: error: kernel 6.1.0-19-hosting is known bad: blocked by hand ("), "\(refused.output)")
        #expect(refused.output.contains("panics on Xeon E5 v2"))
        let dry = try CLI.run(["plan", "apply", plan, "--dry-run", "--offline", "--journal", journal])
        #expect(dry.status == 2 && dry.output.contains("is known bad"))
        let allowed = try CLI.run(["plan", "validate", plan, "--journal", journal, "--allow-known-bad"])
        #expect(allowed.status == 0 && allowed.output.contains("going on: --allow-known-bad"), "\(allowed.output)")
        let list = try CLI.run(["kernel", "list", "--journal", journal, "--json"])
        #expect(list.json.first?["release"] as? String == "6.1.0-19-hosting" && list.json.first?["source"] as? String == "manual", "\(list.output)")
        #expect(try CLI.run(["kernel", "unblock", "6.1.0-19-hosting", "--journal", journal]).status == 0)
        #expect(try CLI.run(["plan", "validate", plan, "--journal", journal]).status == 0)
        #expect(try CLI.run(["kernel", "unblock", "6.1.0-19-hosting", "--journal", journal]).status == 2)
    }

    /// `--at`: read on the plan's zone (UTC here), shown by the dry-run; a past or unreadable time is bad input.
    @Test func aScheduledStartIsShownAndABadOneRefused() throws {
        let plan = Self.root + "/plans/socket-bind-fix.yaml"
        let later = try CLI.run(["plan", "apply", plan, "--dry-run", "--offline", "--at", "2099-01-02 03:04"])
        #expect(later.status != 0 && later.output.contains("is more than a year away"), "\(later.output)")
        let f = DateFormatter()
        f.locale = Locale(identifier: "en_US_POSIX"); f.timeZone = TimeZone(identifier: "UTC"); f.dateFormat = "yyyy-MM-dd HH:mm"
        let soon = Date().addingTimeInterval(2 * 86400)
        let ok = try CLI.run(["plan", "apply", plan, "--dry-run", "--offline", "--at", f.string(from: soon)])
        f.dateFormat = "yyyy-MM-dd'T'HH:mm"
        #expect(ok.status == 0 && ok.output.contains("Starts at \(f.string(from: soon)):00Z (plan apply --at)"), "\(ok.output)")
        for (at, text) in [("2020-01-01 00:00", "has passed"), ("next tuesday", "is not a time rollctl can read")] {
            let r = try CLI.run(["plan", "apply", plan, "--dry-run", "--offline", "--at", at])
            #expect(r.status == 2 && r.output.contains(text), "\(at): \(r.output)")
            let applied = try CLI.run(["plan", "apply", plan, "--at", at, "--journal", "/nonexistent/j.sqlite"])
            #expect(applied.status == 2 && applied.output.contains(text), "\(at): \(applied.output)")
        }
    }

    func writePlan(in d: TestSSHD, release: String, extra: String = "") throws -> String {
        let path = d.dir + "/plan.yaml"
        try """
        name: local
        kernel: {release: \(release)}
        inventory: inventory.yaml
        waves: {sizes: [1, 100%], failure_domain: rack}
        reboot: {timeout: 60s}
        gate: {soak: 20s, interval: 2s, probe_timeout: 2s, sunreclaim_growth_max: 512MiB/h, test_site: {timeout: 1s}}
        \(extra)
        bootloader: grub
        """.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    @Test func dryRunReadsTheHostsReleaseOverSSHAndWritesNothing() throws {
        let d = try TestSSHD(); defer { d.cleanUp() }
        let closed = try TestSSHD.freePort()
        _ = try CLI.inventory(for: d, extraHosts: "  - {name: gone-1, address: 127.0.0.1, port: \(closed), labels: {rack: r2}}\n")
        let plan = try writePlan(in: d, release: "6.1.0-19-hosting")
        let before = try FileManager.default.contentsOfDirectory(atPath: d.dir).sorted()
        let r = try CLI.run(["plan", "apply", plan, "--dry-run", "--json"])
        #expect(r.status == 0, "\(r.output)")
        let doc = try #require(try JSONSerialization.jsonObject(with: Data(r.output.utf8)) as? [String: Any])
        let release = try String(contentsOfFile: "/proc/sys/kernel/osrelease", encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
        let waves = try #require(doc["waves"] as? [[String: Any]])
        let host = try #require(((waves.first?["batches"] as? [[[String: Any]]])?.first?.first))
        #expect(host["name"] as? String == "local-1")
        #expect(host["current_release"] as? String == release)
        #expect((host["sunreclaim_bytes"] as? NSNumber)?.uint64Value ?? 0 > 0)
        #expect(host["uptime_seconds"] != nil)
        #expect((host["boot_free_bytes"] as? NSNumber)?.uint64Value ?? 0 > 0)
        let skipped = try #require(doc["skipped"] as? [[String: Any]])
        #expect(skipped.first?["host"] as? String == "gone-1")
        #expect((skipped.first?["reason"] as? String)?.hasPrefix("unreachable: [connect_refused]") == true)
        // Read-only: the sshd saw a connection, nothing changed in its folder.
        #expect(try String(contentsOfFile: d.logPath, encoding: .utf8).contains("Accepted publickey"))
        #expect(try FileManager.default.contentsOfDirectory(atPath: d.dir).sorted() == before)
        // A host already on the target is skipped with that reason.
        let same = try writePlan(in: d, release: release)
        let r2 = try CLI.run(["plan", "apply", same, "--dry-run"])
        #expect(r2.status == 0, "\(r2.output)")
        #expect(r2.output.contains("local-1: already on \(release)"))
    }

    @Test func badInputNeverConnects() throws {
        let d = try TestSSHD(); defer { d.cleanUp() }
        _ = try CLI.inventory(for: d)
        let plan = try writePlan(in: d, release: "6.1.0-19-hosting", extra: "on_failure: {rollback: everything}\n")
        // Let sshd log its own readiness probe first.
        for _ in 0..<100 where !((try? String(contentsOfFile: d.logPath, encoding: .utf8)) ?? "").contains("Connection closed") {
            Thread.sleep(forTimeInterval: 0.02)
        }
        let before = (try? String(contentsOfFile: d.logPath, encoding: .utf8)) ?? ""
        let r = try CLI.run(["plan", "apply", plan, "--dry-run"])
        #expect(r.status == 2)
        #expect(r.output.contains("plan.yaml:7:24: error: on_failure.rollback must be wave, all or none, found 'everything'"))
        Thread.sleep(forTimeInterval: 0.2)
        // The sshd's log is unchanged: no connection at all (the one before is its own readiness probe).
        let after = (try? String(contentsOfFile: d.logPath, encoding: .utf8)) ?? ""
        #expect(after == before, "sshd log:\n\(after)")
    }
}
