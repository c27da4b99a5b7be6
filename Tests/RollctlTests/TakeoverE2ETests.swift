import Foundation
import Testing
import SSHTesting
import PostgresTesting
import Basics
#if canImport(Glibc)
import Glibc
#endif

/// Two admins' machines share one PostgreSQL journal (issue 19): each "machine" is a process in
/// its own UTS namespace, so its own host name (a driver's pid means nothing on another machine:
/// only the lease's expiry, on the server's clock, tells it the driver is gone). Both see the
/// same `rollout list`, only one drives, and a standby takes over when the driver is killed or
/// cut from the database — every host rebooted once, every notice sent once.
@Suite("takeover on a shared PostgreSQL journal", .serialized, .enabled(if: geteuid() == 0))
struct TakeoverE2ETests {
    typealias Fleet = RolloutE2ETests.Fleet

    /// `rollctl ARGS` as a process on another machine named `machine` (a UTS namespace of its own).
    static func onMachine(_ machine: String, _ args: [String], log: String) throws -> pid_t {
        let quoted = args.map(shellQuote).joined(separator: " ")
        return try Spawn.start("/usr/bin/unshare", ["--uts", "/bin/sh", "-c", "hostname \(machine) && exec \(shellQuote(CLI.binary)) \(quoted)"],
                               outputPath: log)
    }

    static func rolloutList(_ journal: String, on machine: String, dir: String) throws -> [[String: Any]] {
        let log = dir + "/list-\(machine).log"
        let pid = try onMachine(machine, ["rollout", "list", "--journal", journal, "--json"], log: log)
        guard Spawn.wait(pid) == 0 else { throw TestSSHDError("rollout list on \(machine): \((try? String(contentsOfFile: log, encoding: .utf8)) ?? "")") }
        let text = try String(contentsOfFile: log, encoding: .utf8)
        return text.split(separator: "\n").compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
    }

    /// Waits for the rollout's id to show in the journal (the driver created it).
    static func firstRollout(_ journal: String, dir: String) -> String? {
        for _ in 0..<300 {
            if let id = try? CLI.run(["rollout", "list", "--journal", journal, "--json"]).json.first?["id"] as? String { return id }
            usleep(100_000)
        }
        return nil
    }

    /// Every notice journaled was delivered, and no message reached the server twice.
    static func expectEveryNoticeOnce(_ id: String, journal: String, sink: Fleet.MailSink) throws {
        let notices = try CLI.run(["rollout", "notices", id, "--journal", journal, "--json"]).json.first?["notices"] as? [[String: Any]] ?? []
        #expect(!notices.isEmpty)
        #expect(notices.allSatisfy { $0["status"] as? String == "sent" }, "\(notices.map { "\($0["kind"] ?? "") \($0["status"] ?? "")" })")
        let delivered = try sink.mails().compactMap { $0["message_id"] as? String }
        #expect(delivered.count == Set(delivered).count, "a message was delivered twice: \(delivered.sorted())")
        for n in notices { #expect(delivered.contains(n["message_id"] as? String ?? "?"), "\(n["message_id"] ?? "") never reached the server") }
    }

    /// kill -9 at random points, each time resumed by a new process, on a PostgreSQL journal.
    @Test func killNineAtRandomPointsOnAPostgresJournalThenResumeBootsEachHostOnce() throws {
        let server = try TestPostgres.shared()
        let fleet = try Fleet(hosts: 6, racks: 3, slot: 62, journal: server.url(try server.createDatabase())); defer { fleet.down() }
        try RolloutE2ETests.killNineAtRandomPoints(fleet)
    }

    /// The driver (machine `admin-a`) is `kill -9`ed while the canary soaks; `admin-b` saw the same
    /// rollout in its `rollout list`, driven by admin-a, and its standby drives once the lease lapsed.
    @Test func aStandbyOnAnotherMachineTakesOverAKilledDriver() throws {
        let server = try TestPostgres.shared()
        let journal = server.url(try server.createDatabase())
        let fleet = try Fleet(hosts: 4, racks: 2, slot: 46); defer { fleet.down() }
        let sink = try Fleet.MailSink(fleet.dir); defer { sink.stop() }
        let plan = try fleet.plan(release: "6.1.0-19-hosting", waves: "[1, 100%]", soak: "10s", notifyPort: sink.port)
        let driver = try Self.onMachine("admin-a", ["plan", "apply", plan, "--journal", journal, "--lease-ttl", "6s"], log: fleet.dir + "/apply.log")
        defer { if Spawn.isRunning(driver) { kill(driver, SIGKILL); _ = Spawn.wait(driver) } }
        let id = try #require(Self.firstRollout(journal, dir: fleet.dir), "\(fleet.log("apply.log"))")
        #expect(fleet.waitFor("soaking", in: fleet.dir + "/apply.log"), "\(fleet.log("apply.log"))")
        // Both admins see the one rollout, driven by admin-a.
        for machine in ["admin-a", "admin-b"] {
            let list = try Self.rolloutList(journal, on: machine, dir: fleet.dir)
            #expect(list.count == 1 && list.first?["id"] as? String == id, "\(machine): \(list)")
            #expect((list.first?["driver"] as? [String: Any])?["host"] as? String == "admin-a", "\(machine): \(list)")
        }
        let standby = try Self.onMachine("admin-b", ["rollout", "resume", id, "--wait", "--journal", journal, "--lease-ttl", "6s"],
                                         log: fleet.dir + "/standby.log")
        defer { if Spawn.isRunning(standby) { kill(standby, SIGKILL); _ = Spawn.wait(standby) } }
        #expect(fleet.waitFor("standby: rollout \(id) is driven by admin-a", in: fleet.dir + "/standby.log", seconds: 30), "\(fleet.log("standby.log"))")
        kill(driver, SIGKILL)
        _ = Spawn.wait(driver)
        #expect(Spawn.wait(standby) == 0, "\(fleet.log("standby.log"))")
        #expect(fleet.log("standby.log").contains("whose lease lapsed"), "\(fleet.log("standby.log"))")
        let show = try CLI.run(["rollout", "show", id, "--journal", journal, "--json", "--events"]).json.first ?? [:]
        #expect(show["state"] as? String == "completed", "\(fleet.log("standby.log"))")
        let events = show["events"] as? [[String: Any]] ?? []
        #expect(events.contains { ($0["message"] as? String)?.hasPrefix("driver lease taken over from admin-a") == true })
        for i in 1...4 {
            #expect(fleet.boots(fleet.name(i)) == ["6.1.0-17-hosting", "6.1.0-19-hosting"], "\(fleet.name(i))\n\(fleet.log("standby.log"))")
        }
        try Self.expectEveryNoticeOnce(id, journal: journal, sink: sink)
    }

    /// The driver is cut from PostgreSQL (iptables drops its path to the server, the standby's
    /// path stays open) while the canary soaks. It stops touching hosts; the standby takes over
    /// once the lease lapsed on the server's clock; then the path comes back while the standby
    /// drives — the old driver's writes are refused (its lease is gone) and it ends. Every host
    /// rebooted once, every notice sent once.
    @Test func aDriverCutFromTheJournalStopsAndTheStandbyFinishes() throws {
        let server = try TestPostgres(addresses: ["127.0.0.1", "127.0.0.2"]); defer { server.stop() }
        let database = try server.createDatabase()
        let driverURL = server.url(database, address: "127.0.0.2"), standbyURL = server.url(database)
        let fleet = try Fleet(hosts: 4, racks: 2, slot: 47); defer { fleet.down() }
        let sink = try Fleet.MailSink(fleet.dir); defer { sink.stop() }
        let plan = try fleet.plan(release: "6.1.0-19-hosting", waves: "[1, 100%]", soak: "15s", notifyPort: sink.port)
        let driver = try Self.onMachine("admin-a", ["plan", "apply", plan, "--journal", driverURL, "--lease-ttl", "8s"], log: fleet.dir + "/apply.log")
        defer { if Spawn.isRunning(driver) { kill(driver, SIGKILL); _ = Spawn.wait(driver) } }
        let id = try #require(Self.firstRollout(standbyURL, dir: fleet.dir), "\(fleet.log("apply.log"))")
        let standby = try Self.onMachine("admin-b", ["rollout", "resume", id, "--wait", "--journal", standbyURL, "--lease-ttl", "8s"],
                                         log: fleet.dir + "/standby.log")
        defer { if Spawn.isRunning(standby) { kill(standby, SIGKILL); _ = Spawn.wait(standby) } }
        #expect(fleet.waitFor("soaking", in: fleet.dir + "/apply.log"), "\(fleet.log("apply.log"))")
        // Both directions of the driver's path (its packets to 127.0.0.2:PORT, and the server's back).
        let rules = [["INPUT", "-d", "127.0.0.2", "-p", "tcp", "--dport", "\(server.port)", "-j", "DROP"],
                     ["INPUT", "-s", "127.0.0.2", "-p", "tcp", "--sport", "\(server.port)", "-j", "DROP"]]
        var cut = false
        func heal() {
            guard cut else { return }
            for r in rules { _ = try? TestSSHD.run("/usr/sbin/iptables", ["-w", "-D"] + r) }
            cut = false
        }
        defer { heal() }
        for r in rules { _ = try TestSSHD.run("/usr/sbin/iptables", ["-w", "-I"] + r) }
        cut = true
        let cutAt = Date()
        // The standby takes over once the lease lapsed; the path comes back while it drives.
        #expect(fleet.waitFor("resuming rollout \(id)", in: fleet.dir + "/standby.log", seconds: 60), "\(fleet.log("standby.log"))")
        let tookOver = Date().timeIntervalSince(cutAt)
        heal()
        #expect(Spawn.wait(standby) == 0, "\(fleet.log("standby.log"))")
        // The old driver ends on its own: its writes fail (refused, or timed out while cut).
        var waited = 0
        while Spawn.isRunning(driver) && waited < 600 { usleep(100_000); waited += 1 }
        #expect(!Spawn.isRunning(driver), "the cut driver still runs 60 s after the standby finished:\n\(fleet.log("apply.log"))")
        let driverLog = fleet.log("apply.log")
        #expect(driverLog.contains("STOPPING"), "\(driverLog)")
        // The lease (8 s) was last renewed at most 8/6 s before the cut: it lapsed ≥ 6.6 s after it.
        #expect(tookOver >= 6, "taken over \(tookOver) s after the cut")
        let show = try CLI.run(["rollout", "show", id, "--journal", standbyURL, "--json"]).json.first ?? [:]
        #expect(show["state"] as? String == "completed", "\(fleet.log("standby.log"))")
        for i in 1...4 {
            #expect(fleet.boots(fleet.name(i)) == ["6.1.0-17-hosting", "6.1.0-19-hosting"], "\(fleet.name(i))\n\(driverLog)\n\(fleet.log("standby.log"))")
        }
        try Self.expectEveryNoticeOnce(id, journal: standbyURL, sink: sink)
    }
}
