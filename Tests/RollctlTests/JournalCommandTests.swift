import Foundation
import Testing
import SSHTesting
import PostgresTesting
@testable import RolloutConfig
@testable import RolloutJournal

/// `--journal postgres://…`, `journal migrate` and `journal copy`, through the built binary,
/// against a real PostgreSQL server.
@Suite("journal commands", .serialized)
struct JournalCommandTests {
    @Test func aPasswordInTheURLIsBadInputAndNeverPrinted() throws {
        let r = try CLI.run(["rollout", "list", "--journal", "postgres://rollctl:hunter2@127.0.0.1:5432/rollctl"])
        #expect(r.status == 2, "\(r.output)")
        #expect(r.output.contains("--journal") && r.output.contains("holds a password") && r.output.contains("PGPASSWORD"))
        #expect(!r.output.contains("hunter2"), "\(r.output)")
        let e = try CLI.run(["journal", "migrate"], environment: ["ROLLCTL_JOURNAL": "postgresql://rollctl:hunter2@127.0.0.1/rollctl"])
        #expect(e.status == 2 && e.output.contains("ROLLCTL_JOURNAL") && !e.output.contains("hunter2"), "\(e.output)")
    }

    @Test func aServerOffThisMachineWithoutTLSIsRefused() throws {
        let r = try CLI.run(["journal", "migrate", "--journal", "postgres://rollctl@db.example:5432/rollctl"])
        #expect(r.status == 2, "\(r.output)")
        #expect(r.output.contains("db.example") && r.output.contains("sslmode=verify-full") && r.output.contains("--journal-allow-plaintext"))
    }

    /// Four rollctl processes started at once on a new database: each applies nothing twice,
    /// none fails, and every migration is recorded once.
    @Test func processesMigratingAtOnceApplyEachMigrationOnce() throws {
        let server = try TestPostgres.shared()
        let db = try server.createDatabase()
        let dir = try TestSSHD.makeTempDir(); defer { try? FileManager.default.removeItem(atPath: dir) }
        var env = ProcessInfo.processInfo.environment
        env["NO_COLOR"] = "1"
        let pids = try (0..<4).map { i in
            try Spawn.start(CLI.binary, ["journal", "migrate", "--journal", server.url(db)], environment: env, outputPath: dir + "/out\(i)")
        }
        let statuses = pids.map { Spawn.wait($0) }
        let outputs = try (0..<4).map { try String(contentsOfFile: dir + "/out\($0)", encoding: .utf8) }
        #expect(statuses == [0, 0, 0, 0], "\(outputs)")
        for o in outputs { #expect(o.contains("schema up to date (\(Journal.migrations.count) migrations, the latest \(Journal.migrations.last!.0))"), "\(o)") }
        let ids = try server.psql(db, "SELECT count(*), count(DISTINCT identifier) FROM grdb_migrations")
        #expect(ids == "\(Journal.migrations.count)|\(Journal.migrations.count)\n")
        #expect(try server.psql(db, "SELECT count(*) FROM meta") == "1\n")
    }

    @Test func copyMovesASQLiteJournalIntoPostgresOnce() throws {
        let server = try TestPostgres.shared()
        let db = try server.createDatabase()
        let dir = try TestSSHD.makeTempDir(); defer { try? FileManager.default.removeItem(atPath: dir) }
        let sqlite = dir + "/journal.sqlite"
        let j = try Journal(path: sqlite)
        let plan = Plan(name: "moved", path: dir + "/p.yaml", text: "name: moved\n", kernel: KernelSpec(release: "6.1.0-19-hosting"), inventoryPath: dir + "/i.yaml")
        let gone = DriverIdentity(host: ProcessInfo.processInfo.hostName, pid: 999_999, startTime: 1, token: "gone")
        try j.createRollout(id: "r-moved", plan: plan, planHash: "h", hosts: [("web-1", "10.0.0.1", "10.0.0.1:22", 1, 1, .pending, nil)], waves: 1, driver: gone)
        let r = try CLI.run(["journal", "copy", sqlite, server.url(db)])
        #expect(r.status == 0, "\(r.output)")
        #expect(r.output.contains("copied") && r.output.contains("rollout 1") && r.output.contains("host 1"), "\(r.output)")
        let list = try CLI.run(["rollout", "list", "--json", "--journal", server.url(db)])
        #expect(list.status == 0 && list.json.first?["id"] as? String == "r-moved", "\(list.output)")
        let again = try CLI.run(["journal", "copy", sqlite, server.url(db)])
        #expect(again.status == 2 && again.output.contains("not empty"), "\(again.output)")
        let missing = try CLI.run(["journal", "copy", dir + "/nope.sqlite", server.url(db)])
        #expect(missing.status == 2 && missing.output.contains("no such journal"), "\(missing.output)")
    }

    /// A team's known-bad kernels live in the shared journal: `plan validate` and the dry-run ask a
    /// PostgreSQL journal (a SQLite one only when its file exists).
    @Test func aKnownBadKernelInAPostgresJournalIsRefused() throws {
        let server = try TestPostgres.shared()
        let url = server.url(try server.createDatabase())
        let plan = PlanCommandTests.root + "/plans/socket-bind-fix.yaml"
        let block = try CLI.run(["kernel", "block", "6.1.0-19-hosting", "--reason", "panics on Xeon E5 v2", "--journal", url])
        #expect(block.status == 0, "\(block.output)")
        let refused = try CLI.run(["plan", "validate", plan, "--journal", url])
        #expect(refused.status == 2 && refused.output.contains("kernel 6.1.0-19-hosting is known bad: blocked by hand"), "\(refused.output)")
        let dry = try CLI.run(["plan", "apply", plan, "--dry-run", "--offline"], environment: ["ROLLCTL_JOURNAL": url])
        #expect(dry.status == 2 && dry.output.contains("is known bad"), "\(dry.output)")
        #expect(try CLI.run(["kernel", "unblock", "6.1.0-19-hosting", "--journal", url]).status == 0)
        #expect(try CLI.run(["plan", "validate", plan, "--journal", url]).status == 0)
    }
}
