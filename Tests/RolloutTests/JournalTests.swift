import Foundation
import Testing
import SSHTesting
import PostgresTesting
@testable import Basics
@testable import RolloutConfig
@testable import RolloutJournal
@testable import Engine
@testable import NetIO

@Suite struct HostStateTests {
    @Test func happyPathIsAllowedStepByStep() {
        let path: [HostState] = [.pending, .checked, .notified, .staged, .rebooting, .up, .verified, .soaking, .healthy, .committed]
        for (a, b) in zip(path, path.dropFirst()) { #expect(a.canMove(to: b), "\(a) → \(b)") }
        #expect(HostState.checked.canMove(to: .staged))   // no notices configured
    }

    @Test func noStepIsSkippedAndEndsAreEnds() {
        #expect(!HostState.pending.canMove(to: .rebooting))
        #expect(!HostState.staged.canMove(to: .verified))
        #expect(!HostState.rebooting.canMove(to: .committed))
        #expect(!HostState.committed.canMove(to: .failed))
        #expect(!HostState.rolledBack.canMove(to: .pending))
        #expect(!HostState.skipped.canMove(to: .checked))
        #expect(!HostState.pending.canMove(to: .rollingBack))  // nothing changed yet
        #expect(HostState.committed.canMove(to: .rollingBack))  // rollback of everything
        #expect(HostState.failed.canMove(to: .rollingBack))
        #expect(HostState.rollingBack.canMove(to: .rolledBack))
        #expect(HostState.rollingBack.canMove(to: .rollbackFailed))
        // Every non-terminal state may fail.
        for s in HostState.allCases where s < .committed { #expect(s.canMove(to: .failed)) }
    }

    @Test func resumeJudgesARebootByBootID() {
        #expect(RebootProgress.judge(bootIDBefore: "a", bootIDNow: "b") == .rebooted)
        #expect(RebootProgress.judge(bootIDBefore: "a", bootIDNow: "a") == .notYet)
        #expect(RebootProgress.judge(bootIDBefore: "a", bootIDNow: nil) == .unknown)
    }
}

/// The journal's two stores. The journal suite runs on both: a SQLite file in a temporary
/// folder, and a database of its own on a real PostgreSQL server (`TestPostgres`).
enum JournalBackendKind: String, CaseIterable, Sendable, CustomStringConvertible {
    case sqlite, postgres
    var description: String { rawValue }
}

/// One test's journal place: where it is, how to open it again (another process's view), and
/// how to write to it from outside rollctl (the sqlite3 shell, psql).
struct JournalPlace: Sendable {
    let kind: JournalBackendKind
    let dir: String
    let location: JournalLocation
    let server: TestPostgres?
    let database: String?

    init(_ kind: JournalBackendKind, file: String = "j.sqlite") throws {
        self.kind = kind
        dir = try TestSSHD.makeTempDir()
        switch kind {
        case .sqlite:
            location = .sqlite(dir + "/" + file); server = nil; database = nil
        case .postgres:
            let s = try TestPostgres.shared()
            let db = try s.createDatabase()
            location = try JournalLocation.parse(s.url(db)); server = s; database = db
        }
    }

    func open() throws -> Journal { try Journal(location: location) }

    /// Runs SQL as another client would.
    func outside(_ sql: String) throws {
        switch kind {
        case .sqlite:
            guard case .sqlite(let path) = location else { return }
            let (status, out) = try Spawn.run("/usr/bin/sqlite3", [path, sql])
            if status != 0 { throw TestSSHDError("sqlite3: \(out)") }
        case .postgres:
            try server!.psql(database!, sql)
        }
    }

    func cleanUp() {
        try? FileManager.default.removeItem(atPath: dir)
        if let server, let database { _ = try? server.psql("postgres", "DROP DATABASE IF EXISTS \(database) WITH (FORCE)") }
    }
}

@Suite struct JournalTests {
    func plan(_ dir: String) -> Plan {
        Plan(name: "t", path: dir + "/p.yaml", text: "name: t\n", kernel: KernelSpec(release: "6.1.0-19-hosting"), inventoryPath: dir + "/i.yaml")
    }

    func hosts(_ names: [String]) -> [(name: String, address: String, lockKey: String, wave: Int?, batch: Int?, state: HostState, reason: String?)] {
        names.map { ($0, "10.0.0.1", "\($0):22", 1, 1, .pending, nil) }
    }

    @Test func isARealSQLiteFileWithModeAndWAL() throws {
        let dir = try TestSSHD.makeTempDir(); defer { try? FileManager.default.removeItem(atPath: dir) }
        let j = try Journal(path: dir + "/state/journal.sqlite")
        try j.createRollout(id: "r1", plan: plan(dir), planHash: "h", hosts: hosts(["a", "b"]), waves: 1)
        let attrs = try FileManager.default.attributesOfItem(atPath: j.path)
        #expect((attrs[.posixPermissions] as? Int) == 0o600)
        // Readable with the sqlite3 shell, in WAL mode.
        let (s1, mode) = try Spawn.run("/usr/bin/sqlite3", [j.path, "PRAGMA journal_mode;"])
        #expect(s1 == 0 && mode.trimmingCharacters(in: .whitespacesAndNewlines) == "wal")
        let (_, rows) = try Spawn.run("/usr/bin/sqlite3", [j.path, "SELECT name, state FROM host ORDER BY name;"])
        #expect(rows == "a|pending\nb|pending\n")
    }

    @Test(arguments: JournalBackendKind.allCases) func refusesTransitionsTheStateMachineForbids(_ backend: JournalBackendKind) throws {
        let place = try JournalPlace(backend); defer { place.cleanUp() }
        let dir = place.dir
        let j = try place.open()
        try j.createRollout(id: "r1", plan: plan(dir), planHash: "h", hosts: hosts(["a"]), waves: 1)
        #expect(throws: JournalError.self) { try j.move("r1", host: "a", to: .rebooting) }
        try j.move("r1", host: "a", to: .checked, set: ["release_before": "6.1.0-17", "boot_id_before": "b1"])
        try j.move("r1", host: "a", to: .staged)
        try j.move("r1", host: "a", to: .rebooting, countsReboot: true)
        let h = try #require(try j.host("r1", "a"))
        #expect(h.state == .rebooting && h.reboots == 1 && h.releaseBefore == "6.1.0-17" && h.bootIDBefore == "b1")
        let events = try j.events("r1").map(\.message)
        #expect(events.contains("checked → staged"))
        #expect(events.contains("staged → rebooting"))
        // Every move also carries its data for machines.
        let moves = try j.events("r1").filter { $0.kind == .state }
        #expect(moves.last?.data == #"{"from":"staged","to":"rebooting"}"#)
        try j.move("r1", host: "a", to: .failed, reason: "said \"no\"\n\u{1}")
        let failed = try #require(try j.events("r1").last?.data)
        let object = try #require(try JSONSerialization.jsonObject(with: Data(failed.utf8)) as? [String: String])
        #expect(object == ["from": "rebooting", "to": "failed", "reason": "said \"no\"\n\u{1}"])
    }

    @Test(arguments: JournalBackendKind.allCases) func failedHostsAreCountedPerWaveAndThroughAWave(_ backend: JournalBackendKind) throws {
        let place = try JournalPlace(backend); defer { place.cleanUp() }
        let j = try place.open()
        let rows = (1...9).map { i in (name: "h\(i)", address: "10.0.0.\(i)", lockKey: "h\(i):22", wave: Optional((i - 1) / 3 + 1), batch: Optional(1), state: HostState.pending, reason: String?.none) }
        try j.createRollout(id: "r1", plan: plan(place.dir), planHash: "h", hosts: rows, waves: 3)
        for name in ["h1", "h2", "h4", "h7", "h8", "h9"] { try j.move("r1", host: name, to: .failed, reason: "x") }
        #expect(try j.count("r1", in: [.failed], wave: 1) == (2, 6))
        #expect(try j.count("r1", in: [.failed], wave: 1, throughWave: 1) == (2, 2))
        #expect(try j.count("r1", in: [.failed], wave: 2, throughWave: 2) == (1, 3))
        #expect(try j.count("r1", in: [.failed, .rolledBack], wave: 3, throughWave: 3) == (3, 6))
        #expect(try j.count("r1", in: [.pending], wave: 2, throughWave: 1) == (2, 1))
    }

    /// The budget's count runs after every batch: it must read the failed hosts only (the index on
    /// rollout and state), never every host of the waves so far (a 100k-host rollout spent ~30 ms a
    /// batch there, ~60 s in all, with `AND wave <= ?` steering SQLite to the wave index).
    @Test func theBudgetsCountReadsOnlyTheHostsInTheStatesCounted() throws {
        let place = try JournalPlace(.sqlite); defer { place.cleanUp() }
        let j = try place.open()
        try j.createRollout(id: "r1", plan: plan(place.dir), planHash: "h", hosts: hosts(["a", "b"]), waves: 1)
        for through in [false, true] {
            let sql = Journal.countSQL(states: 4, throughWave: through)
            var args: SQLArguments = [1]
            if through { args.append(1) }
            args += ["r1", "failed", "rolling_back", "rolled_back", "rollback_failed"]
            let plan = try j.store.read { db in try db.all("EXPLAIN QUERY PLAN " + sql, args).map { $0["detail"] as String } }
            #expect(plan.count == 1 && plan[0].contains("INDEX host_state (rollout_id=? AND state=?)"), "\(plan)")
        }
    }

    /// A notice step reads the address and old release of the hosts it tells about, and only those
    /// (in chunks of 500 names: more than a query's parameters may hold at once).
    @Test(arguments: JournalBackendKind.allCases) func noticeHostsAreReadForTheHostsNamedOnly(_ backend: JournalBackendKind) throws {
        let place = try JournalPlace(backend); defer { place.cleanUp() }
        let j = try place.open()
        let names = (0..<1203).map { String(format: "h%04d", $0) }
        let rows = names.enumerated().map { i, n in (name: n, address: "10.0.\(i / 256).\(i % 256)", lockKey: "\(n):22", wave: Optional(1), batch: Optional(1), state: HostState.pending, reason: String?.none) }
        try j.createRollout(id: "r1", plan: plan(place.dir), planHash: "h", hosts: rows, waves: 1)
        try j.move("r1", host: "h0700", to: .checked, set: ["release_before": "6.1.0-18-hosting", "boot_id_before": "b"])
        let asked = Array(names[1...1101]) + ["h0700", "nobody"]
        let got = try j.noticeHosts("r1", named: asked)
        #expect(got.count == 1101)
        #expect(got["h0000"] == nil && got["h1102"] == nil && got["nobody"] == nil)
        #expect(got["h0700"] == Journal.NoticeHost(address: "10.0.2.188", releaseBefore: "6.1.0-18-hosting"))
        #expect(got["h1101"] == Journal.NoticeHost(address: "10.0.4.77", releaseBefore: nil))
    }

    /// Asked before every host's reboot (its silence) and at every run's start (the packages' digests):
    /// one host's row and one rollout event, found by the query, not among every row of the rollout.
    @Test(arguments: JournalBackendKind.allCases) func oneHostsSilenceAndTheRolloutsMarkedEventAreFoundByQuery(_ backend: JournalBackendKind) async throws {
        let place = try JournalPlace(backend); defer { place.cleanUp() }
        let j = try place.open()
        try j.createRollout(id: "r1", plan: plan(place.dir), planHash: "h", hosts: hosts(["a", "b", "c"]), waves: 1)
        try await j.silenceAsked("r1", host: "a", endsAt: Date(timeIntervalSince1970: 2_000_000_000))
        try await j.silenceAsked("r1", host: "b", endsAt: Date(timeIntervalSince1970: 2_000_000_000))
        try await j.silenceMade("r1", host: "b", id: "s-b")
        #expect(try j.silences("r1", host: "b").map(\.silenceID) == ["s-b"])
        #expect(try j.silences("r1", host: "a").map(\.host) == ["a"])
        #expect(try j.silences("r1", host: "c").isEmpty)
        #expect(try j.silences("r1").count == 2)
        try await j.event("r1", host: "a", kind: .info, "on a host", data: "{\"kernel_packages\":[1]}")
        try await j.event("r1", kind: .info, "other", data: "{\"other\":1}")
        #expect(try j.firstRolloutEvent("r1", dataPrefix: "{\"kernel_packages\":") == nil)
        try await j.event("r1", kind: .info, "kernel packages: k.deb", data: "{\"kernel_packages\":[2]}")
        try await j.event("r1", kind: .info, "kernel packages again", data: "{\"kernel_packages\":[3]}")
        let found = try #require(try j.firstRolloutEvent("r1", dataPrefix: "{\"kernel_packages\":"))
        #expect(found.message == "kernel packages: k.deb" && found.host == nil && found.data == "{\"kernel_packages\":[2]}")
    }

    /// Asked once per host on a resume of a plan that ships packages: by host, from the partial
    /// index of outcome events, not a read of every event of the rollout per host.
    @Test func aHostsOutcomeIsLookedUpByHostNotAmongEveryEvent() throws {
        let place = try JournalPlace(.sqlite); defer { place.cleanUp() }
        let j = try place.open()
        try j.createRollout(id: "r1", plan: plan(place.dir), planHash: "h", hosts: hosts(["a", "b"]), waves: 1)
        try j.event("r1", host: "a", kind: .outcome, "installed shipped packages: k.deb from /x")
        try j.event("r1", host: "b", kind: .info, "installed shipped packages: k.deb from /x")
        #expect(try j.hasEvent("r1", host: "a", kind: .outcome, prefix: "installed shipped packages: "))
        #expect(try !j.hasEvent("r1", host: "b", kind: .outcome, prefix: "installed shipped packages: "))
        #expect(try !j.hasEvent("r1", host: "a", kind: .outcome, prefix: "installed shipped packages: x"))
        let plan = try j.store.read { db in
            try db.all("EXPLAIN QUERY PLAN " + Journal.hasEventSQL(.outcome), ["r1", "a", 3, "ins"]).map { $0["detail"] as String }
        }
        #expect(plan.contains { $0.contains("INDEX event_host_outcome (rollout_id=? AND host=?)") }, "\(plan)")
    }

    @Test(arguments: JournalBackendKind.allCases) func overlappingRolloutsAreRefusedUntilLocksAreReleased(_ backend: JournalBackendKind) throws {
        let place = try JournalPlace(backend); defer { place.cleanUp() }
        let dir = place.dir
        let j = try place.open()
        try j.createRollout(id: "r1", plan: plan(dir), planHash: "h", hosts: hosts(["a", "b"]), waves: 1)
        do {
            try j.createRollout(id: "r2", plan: plan(dir), planHash: "h", hosts: hosts(["b", "c"]), waves: 1)
            Issue.record("overlapping rollout accepted")
        } catch let e as Journal.LockConflict {
            #expect(e.holder.id == "r1")
            #expect(e.hosts == ["b (b:22)"])
            #expect(e.description.contains("held by rollout r1"))
        }
        #expect(try j.rollout("r2") == nil)  // nothing of r2 was written
        try j.createRollout(id: "r3", plan: plan(dir), planHash: "h", hosts: hosts(["c"]), waves: 1)  // disjoint: fine
        try j.releaseLocks(rolloutID: "r1")
        try j.createRollout(id: "r2", plan: plan(dir), planHash: "h", hosts: hosts(["b"]), waves: 1)
    }

    @Test(arguments: JournalBackendKind.allCases) func manyProcessesOpeningANewJournalAtOnceAllSucceed(_ backend: JournalBackendKind) async throws {
        let place = try JournalPlace(backend, file: "new.sqlite"); defer { place.cleanUp() }
        // Each open runs the migrations; without serialising them, the losers fail
        // with "table ... already exists" (seen as a rollout that never started).
        // On PostgreSQL each open is a session of its own, as another process's would be.
        let results = await withTaskGroup(of: Bool.self) { group in
            for _ in 0..<8 {
                group.addTask { await Task.detached { (try? place.open()) != nil }.value }
            }
            var all: [Bool] = []
            for await r in group { all.append(r) }
            return all
        }
        #expect(results == Array(repeating: true, count: 8))
        // Each migration applied exactly once, and the journal has one identity.
        let j = try place.open()
        #expect(try j.migrationsApplied().sorted() == Journal.migrations.map(\.0).sorted())
        #expect(try j.journalID() != "?")
    }

    @Test func isReadableFromPsqlOnPostgres() throws {
        let place = try JournalPlace(.postgres); defer { place.cleanUp() }
        let j = try place.open()
        try j.createRollout(id: "r1", plan: plan(place.dir), planHash: "h", hosts: hosts(["a", "b"]), waves: 1)
        let rows = try place.server!.psql(place.database!, "SELECT name, state FROM host ORDER BY name")
        #expect(rows == "a|pending\nb|pending\n")
        // The same tables and columns as a SQLite journal (the bookkeeping of migrations included).
        let sqlite = try JournalPlace(.sqlite); defer { sqlite.cleanUp() }
        _ = try sqlite.open()
        guard case .sqlite(let path) = sqlite.location else { return }
        let (_, liteColumns) = try Spawn.run("/usr/bin/sqlite3", [path, """
            SELECT m.name || '.' || p.name FROM sqlite_master m JOIN pragma_table_info(m.name) p
            WHERE m.type = 'table' AND m.name NOT LIKE 'sqlite_%' ORDER BY 1;
            """])
        let pgColumns = try place.server!.psql(place.database!, """
            SELECT table_name || '.' || column_name FROM information_schema.columns WHERE table_schema = 'public' ORDER BY (table_name || '.' || column_name) COLLATE "C"
            """)
        #expect(pgColumns.contains("host.grub_entry_before\n") && pgColumns.contains("grdb_migrations.identifier\n"))
        #expect(pgColumns == liteColumns)
    }

    /// Lists come out in one order on both stores: hosts of no wave (skipped) first, names
    /// compared byte by byte (SQLite's BINARY; PostgreSQL's columns are COLLATE "C").
    @Test(arguments: JournalBackendKind.allCases) func hostsComeInTheSameOrderOnBothBackends(_ backend: JournalBackendKind) throws {
        let place = try JournalPlace(backend); defer { place.cleanUp() }
        let j = try place.open()
        let names = ["b", "B", "a_1", "a-1", "Z", "skipped-z", "skipped-a"]
        let rows: [(name: String, address: String, lockKey: String, wave: Int?, batch: Int?, state: HostState, reason: String?)] = names.map { n in
            n.hasPrefix("skipped") ? (n, "10.0.0.9", n + ":22", nil, nil, .skipped, "already there") : (n, "10.0.0.1", n + ":22", 1, 1, .pending, nil)
        }
        try j.createRollout(id: "r1", plan: plan(place.dir), planHash: "h", hosts: rows, waves: 1)
        #expect(try j.hosts("r1").map(\.name) == ["skipped-a", "skipped-z", "B", "Z", "a-1", "a_1", "b"])
        #expect(try j.lockedHosts("r1") == ["B", "Z", "a-1", "a_1", "b"])
        #expect(try j.count("r1", in: [.pending], wave: 1) == (wave: 5, all: 5))
    }

    /// Two sessions (two admins' rollctl) create rollouts over the same hosts at once: the
    /// journal's write serialisation lets exactly one take the host locks.
    @Test(arguments: JournalBackendKind.allCases) func hostLocksAreRefusedAcrossConnectionsAtOnce(_ backend: JournalBackendKind) async throws {
        let place = try JournalPlace(backend); defer { place.cleanUp() }
        _ = try place.open()
        let dir = place.dir
        let outcomes = await withTaskGroup(of: String.self) { group in
            for i in 0..<6 {
                group.addTask {
                    await Task.detached {
                        do {
                            let j = try place.open()
                            try j.createRollout(id: "r\(i)", plan: self.plan(dir), planHash: "h", hosts: self.hosts(["shared-\(i % 2)", "web-1", "own-\(i)"]), waves: 1)
                            return "created"
                        } catch is Journal.LockConflict {
                            return "refused"
                        } catch {
                            return "error: \(error)"
                        }
                    }.value
                }
            }
            var all: [String] = []
            for await o in group { all.append(o) }
            return all
        }
        #expect(outcomes.filter { $0 == "created" }.count == 1, "\(outcomes)")
        #expect(outcomes.filter { $0 == "refused" }.count == 5, "\(outcomes)")
        let j = try place.open()
        let winner = try #require(try j.rollouts().first)
        #expect(try j.rollouts().count == 1)
        #expect(try j.lockedHosts(winner.id).count == 3)
    }

    /// `journal copy`: a SQLite journal with a bit of everything, moved into PostgreSQL, reads
    /// the same there, keeps its identity, and goes on (a new event gets a new id).
    @Test func copyMovesEveryTableOfASQLiteJournalIntoPostgres() async throws {
        let from = try JournalPlace(.sqlite); defer { from.cleanUp() }
        let to = try JournalPlace(.postgres); defer { to.cleanUp() }
        let a = try from.open()
        let gone = identity(pid: 999_999, start: 1)  // a driver that is no more: nothing drives the rollout
        try a.createRollout(id: "r1", plan: plan(from.dir), planHash: "h", hosts: hosts(["a", "b", "c"]), waves: 2, driver: gone)
        try await a.move("r1", host: "a", to: .checked, set: ["release_before": "6.1.0-17", "boot_id_before": "b1"])
        try await a.move("r1", host: "a", to: .skipped, reason: "already on it")
        try a.saveGateResults("r1", wave: 1, [(host: "b", verdict: "inconclusive", report: "{}", state: nil, reason: nil)])
        try a.setWave("r1", 1, state: .running)
        try a.queueNotices([Journal.NoticeRow(rolloutID: "r1", wave: 1, kind: .maintenance, customerID: "c1", customerName: "C One", channel: .smtp,
                                              recipient: "c1@example.org", messageID: "<m1@x>", hosts: ["a", "b"], subject: "s", payload: "p")])
        try await a.hookStarting("r1", host: "b", phase: "pre_reboot", wave: 1, index: 0, command: "true")
        try await a.silenceAsked("r1", host: "b", endsAt: Date(timeIntervalSince1970: 2_000_000_000))
        try a.recordKnownBad("6.1.0-13-leaky", source: .manual, rolloutID: nil, hosts: [], evidence: "leaks", by: "test")
        try a.requestPause("r1", by: "alice")
        let b = try to.open()
        let copied = try a.copy(into: b)
        #expect(copied.first { $0.table == "event" }?.rows == (try a.eventCount("r1")))
        #expect(try b.journalID() == (try a.journalID()))
        #expect(try b.rollouts() == (try a.rollouts()))
        #expect(try b.hosts("r1") == (try a.hosts("r1")))
        #expect(try b.events("r1").map(\.message) == (try a.events("r1").map(\.message)))
        #expect(try b.notices("r1") == (try a.notices("r1")))
        #expect(try b.hookRuns("r1") == (try a.hookRuns("r1")))
        #expect(try b.silences("r1") == (try a.silences("r1")))
        #expect(try b.knownBadKernels() == (try a.knownBadKernels()))
        #expect(try b.lockedHosts("r1") == (try a.lockedHosts("r1")))
        #expect(try b.pauseState("r1") == (try a.pauseState("r1")))
        #expect(try b.gateReports("r1").map(\.host) == ["b"])
        // The copy goes on where the original stopped.
        let last = try #require(try b.events("r1").last?.id)
        try await b.event("r1", kind: .info, "after the copy")
        #expect(try b.events("r1").last?.id ?? 0 > last)
        // Copied once: a second copy into the same target is refused, and changes nothing.
        #expect(throws: Journal.CopyRefused.self) { try a.copy(into: b) }
        #expect(try b.eventCount("r1") == (try a.eventCount("r1")) + 1)
    }

    @Test func copyIsRefusedWhileARolloutIsDriven() throws {
        let from = try JournalPlace(.sqlite); defer { from.cleanUp() }
        let to = try JournalPlace(.sqlite, file: "to.sqlite"); defer { to.cleanUp() }
        let a = try from.open()
        try a.createRollout(id: "r1", plan: plan(from.dir), planHash: "h", hosts: hosts(["a"]), waves: 1)  // driven by this live process
        do {
            try a.copy(into: try to.open())
            Issue.record("a driven rollout's journal was copied")
        } catch let e as Journal.CopyRefused {
            #expect(e.message.contains("r1") && e.message.contains("pid \(getpid())"))
        }
        #expect(try to.open().rollouts().isEmpty)
    }

    /// A commit is on disk before the side effect it announces, also when the server's (or the
    /// database's) default says commits may return before the WAL is flushed.
    @Test func commitsWaitForTheWALFlushWhateverTheServersDefault() throws {
        let place = try JournalPlace(.postgres); defer { place.cleanUp() }
        try place.server!.psql("postgres", "ALTER DATABASE \(place.database!) SET synchronous_commit = off")
        #expect(try place.server!.psql(place.database!, "SHOW synchronous_commit") == "off\n")
        let j = try place.open()
        let setting = try j.store.read { db in try db.one("SHOW synchronous_commit").map { $0[0] as String } }
        #expect(setting == "on")
        // Also after the session was cut and came back.
        try place.server!.psql("postgres", "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '\(place.database!)' AND application_name = 'rollctl'")
        #expect(throws: (any Error).self) { _ = try j.rollouts() }
        #expect(try j.rollouts().isEmpty)
        #expect(try j.store.read { db in try db.one("SHOW synchronous_commit").map { $0[0] as String } } == "on")
    }

    @Test func defaultPathFollowsXDG() {
        #expect(Journal.defaultPath(environment: ["ROLLCTL_JOURNAL": "/x/j.db"]) == "/x/j.db")
        #expect(Journal.defaultPath(environment: ["XDG_STATE_HOME": "/s"]) == "/s/rollctl/journal.sqlite")
        #expect(Journal.defaultPath(environment: [:]).hasSuffix("/.local/state/rollctl/journal.sqlite"))
    }

    @Test func planHashIsSHA256() {
        #expect(sha256Hex("") == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        #expect(sha256Hex("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
    }

    // MARK: - the driver lease

    func identity(host: String = ProcessInfo.processInfo.hostName, pid: Int32 = getpid(), start: UInt64? = nil) -> DriverIdentity {
        DriverIdentity(host: host, pid: pid, startTime: start ?? DriverIdentity.current.startTime, token: UUID().uuidString)
    }

    @Test(arguments: JournalBackendKind.allCases) func manyDriversAtOnceExactlyOneGetsTheLease(_ backend: JournalBackendKind) async throws {
        let place = try JournalPlace(backend); defer { place.cleanUp() }
        let dir = place.dir
        let j = try place.open()
        try j.createRollout(id: "r1", plan: plan(dir), planHash: "h", hosts: hosts(["a"]), waves: 1, driver: identity(pid: 999_999, start: 1))
        // Eight processes' worth of journals on one file, each a different (live: this process) driver.
        let wins = await withTaskGroup(of: Bool.self) { group in
            for _ in 0..<8 {
                group.addTask {
                    await Task.detached {
                        guard let jj = try? place.open() else { return false }
                        do { try jj.acquireLease("r1", as: self.identity()); return true } catch { return false }
                    }.value
                }
            }
            var n: [Bool] = []
            for await w in group { n.append(w) }
            return n
        }
        #expect(wins.filter { $0 }.count == 1, "\(wins)")
        let events = try j.events("r1").map(\.message)
        #expect(events.contains { $0.contains("driver lease taken over from") })
    }

    @Test(arguments: JournalBackendKind.allCases) func aLiveHolderIsNeverTakenOverADeadOneIs(_ backend: JournalBackendKind) throws {
        let place = try JournalPlace(backend); defer { place.cleanUp() }
        let dir = place.dir
        let j = try place.open()
        let me = identity()
        try j.createRollout(id: "r1", plan: plan(dir), planHash: "h", hosts: hosts(["a"]), waves: 1, driver: me)
        // This process is alive: another driver is refused, naming it.
        do {
            try j.acquireLease("r1", as: identity())
            Issue.record("a live holder's lease was taken")
        } catch let e as LeaseHeld {
            #expect(e.lease.holder.token == me.token)
            #expect(e.description.contains("pid \(getpid())"))
        }
        // Re-taking one's own lease renews it.
        try j.acquireLease("r1", as: me)
        #expect(try j.renewLease("r1", as: me).held)
        // Same pid, another start time: the pid was reused by an unrelated process; the holder is dead.
        let reused = identity(start: 12345)
        try j.releaseLease("r1", as: me)
        try j.acquireLease("r1", as: reused)
        let next = identity()
        try j.acquireLease("r1", as: next)
        #expect(try j.lease("r1")?.holder.token == next.token)
        // The loser learns at its next heartbeat that it lost the lease.
        #expect(try j.renewLease("r1", as: reused).held == false)
    }

    @Test(arguments: JournalBackendKind.allCases) func anotherMachinesLeaseHoldsUntilItExpires(_ backend: JournalBackendKind) throws {
        let place = try JournalPlace(backend); defer { place.cleanUp() }
        let dir = place.dir
        let j = try place.open()
        let remote = identity(host: "standby.example", pid: 4242, start: 7)
        try j.createRollout(id: "r1", plan: plan(dir), planHash: "h", hosts: hosts(["a"]), waves: 1, driver: remote, ttl: .seconds(60))
        #expect(throws: LeaseHeld.self) { try j.acquireLease("r1", as: self.identity()) }
        try j.createRollout(id: "r2", plan: plan(dir), planHash: "h", hosts: hosts(["b"]), waves: 1, driver: remote, ttl: .milliseconds(1))
        usleep(20_000)
        try j.acquireLease("r2", as: identity())
    }

    /// A driver cut from the journal for longer than its TTL, whose lease a standby took over,
    /// may come back (the partition heals): none of its writes may land any more, so it cannot
    /// journal an intent and then act on it. Every write of a lease holder checks the lease first.
    @Test(arguments: JournalBackendKind.allCases) func aDriverWhoseLeaseWasTakenOverCannotWriteAnyMore(_ backend: JournalBackendKind) async throws {
        let place = try JournalPlace(backend); defer { place.cleanUp() }
        let dir = place.dir
        let j = try place.open()
        let me = identity()
        try j.createRollout(id: "r1", plan: plan(dir), planHash: "h", hosts: hosts(["a", "b"]), waves: 1, driver: me)
        let lease = try DriverLease(journal: j, rolloutID: "r1", ttl: .seconds(60), as: me)
        try await j.move("r1", host: "a", to: .checked)
        // A standby on another machine takes the rollout over (as it does once the lease lapsed).
        try place.outside("UPDATE rollout SET lease_token = 'standby-token', lease_host = 'standby.example', lease_pid = 4242 WHERE id = 'r1'")
        let events = try j.eventCount("r1")
        do {
            try await j.move("r1", host: "b", to: .checked)
            Issue.record("a driver whose lease was taken over journaled a move")
        } catch let e as LeaseLost {
            #expect(e.rolloutID == "r1" && e.holder?.host == "standby.example", "\(e)")
        }
        await #expect(throws: LeaseLost.self) { try await j.move("r1", host: "a", to: .rebooting, countsReboot: true) }
        await #expect(throws: LeaseLost.self) { try await j.event("r1", host: "a", kind: .intent, "hook pre_reboot") }
        #expect(try j.host("r1", "a")?.state == .checked && j.host("r1", "b")?.state == .pending)
        #expect(try j.eventCount("r1") == events)
        // Its heartbeat learns it too; released, it is no driver and writes as any other process.
        #expect(try j.renewLease("r1", as: me).held == false)
        lease.release()
        try await j.event("r1", kind: .info, "read by an admin")
    }

    /// A PostgreSQL journal is shared by machines whose clocks differ: the server's clock
    /// stamps and judges every lease. A driver whose clock is an hour slow must not look
    /// expired to a standby (two drivers), nor one an hour fast stay alive an hour after it died.
    @Test func onPostgresTheServersClockJudgesTheLeaseNotTheDrivers() throws {
        let place = try JournalPlace(.postgres); defer { place.cleanUp() }
        let dir = place.dir
        guard case .postgres(let url) = place.location else { return }
        let slow = try Journal(postgres: url, leaseClock: { Date().addingTimeInterval(-3600) })
        let fast = try Journal(postgres: url, leaseClock: { Date().addingTimeInterval(3600) })
        let standby = try place.open()
        try slow.createRollout(id: "r1", plan: plan(dir), planHash: "h", hosts: hosts(["a"]), waves: 1,
                               driver: identity(host: "slow.example", pid: 11, start: 1), ttl: .seconds(60))
        #expect(throws: LeaseHeld.self) { try standby.acquireLease("r1", as: self.identity(host: "standby.example", pid: 12, start: 1)) }
        #expect(try standby.rollout("r1")?.lease?.isLive() == true)
        try fast.createRollout(id: "r2", plan: plan(dir), planHash: "h", hosts: hosts(["b"]), waves: 1,
                               driver: identity(host: "fast.example", pid: 13, start: 1), ttl: .seconds(1))
        usleep(1_300_000)
        #expect(try standby.rollout("r2")?.lease?.isLive() == false)
        try standby.acquireLease("r2", as: identity(host: "standby.example", pid: 12, start: 1))
    }

    @Test(arguments: JournalBackendKind.allCases) func stopRequestsReachTheDriverAtItsHeartbeat(_ backend: JournalBackendKind) throws {
        let place = try JournalPlace(backend); defer { place.cleanUp() }
        let dir = place.dir
        let j = try place.open()
        let me = identity()
        try j.createRollout(id: "r1", plan: plan(dir), planHash: "h", hosts: hosts(["a"]), waves: 1, driver: me)
        #expect(try j.renewLease("r1", as: me).stopRequested == false)
        try j.requestStop("r1", by: "test")
        #expect(try j.renewLease("r1", as: me).stopRequested == true)
    }

    /// A value this rollctl does not know (a newer version wrote it, or a person did) is an
    /// error, never read as `failed` (which a rollback would act on) or `pending` (re-sent).
    @Test(arguments: JournalBackendKind.allCases) func unknownStatesInTheJournalAreErrorsNotGuesses(_ backend: JournalBackendKind) throws {
        let place = try JournalPlace(backend); defer { place.cleanUp() }
        let dir = place.dir
        let j = try place.open()
        try j.createRollout(id: "r1", plan: plan(dir), planHash: "h", hosts: hosts(["a"]), waves: 1)
        try place.outside("UPDATE host SET state = 'parked' WHERE name = 'a';")
        #expect(throws: JournalError.self) { _ = try j.hosts("r1") }
        #expect(throws: JournalError.self) { _ = try j.host("r1", "a") }
        try place.outside("""
            INSERT INTO notice (rollout_id, wave, kind, customer_id, customer_name, channel, recipient, message_id, hosts, subject, payload, status, created_at, updated_at)
            VALUES ('r1', 1, 'done', 'c1', 'C', 'smtp', 'c@example.org', '<m@x>', '[]', 's', 'p', 'delivered?', 'now', 'now');
            """)
        #expect(throws: JournalError.self) { _ = try j.notices("r1") }
        try place.outside("DELETE FROM notice; INSERT INTO notice (rollout_id, wave, kind, customer_id, customer_name, channel, recipient, message_id, hosts, subject, payload, status, created_at, updated_at) VALUES ('r1', 1, 'done', 'c1', 'C', 'pigeon', 'c@example.org', '<m@x>', '[]', 's', 'p', 'sent', 'now', 'now');")
        #expect(throws: JournalError.self) { _ = try j.notices("r1") }
        try place.outside("INSERT INTO event (rollout_id, at, kind, message) VALUES ('r1', 'now', 'gossip', 'x');")
        #expect(throws: JournalError.self) { _ = try j.events("r1") }
        try place.outside("UPDATE rollout SET state = 'paused-ish'; UPDATE wave SET state = 'skipped?';")
        #expect(throws: JournalError.self) { _ = try j.rollout("r1") }
        #expect(throws: JournalError.self) { _ = try j.waves("r1") }
    }
}

/// `--journal` / `ROLLCTL_JOURNAL`: a path, or a PostgreSQL URL checked before anything connects.
@Suite struct JournalLocationTests {
    @Test func aPathIsSQLiteAURLIsPostgres() throws {
        #expect(try JournalLocation.parse("/var/lib/rollctl/j.sqlite") == .sqlite("/var/lib/rollctl/j.sqlite"))
        #expect(try JournalLocation.parse("relative/j.db") == .sqlite("relative/j.db"))
        for url in ["postgres://rollctl@127.0.0.1:5432/journal", "postgresql://rollctl@localhost/journal", "postgres://rollctl@[::1]:5433/j",
                    "postgres://rollctl@/journal?host=/var/run/postgresql"] {
            guard case .postgres(let u) = try JournalLocation.parse(url, environment: [:]) else { Issue.record("\(url) not read as PostgreSQL"); continue }
            #expect(u.display == url)
        }
        #expect(throws: JournalLocation.Invalid.self) { try JournalLocation.parse("mysql://x@h/db") }
        #expect(throws: JournalLocation.Invalid.self) { try JournalLocation.parse("postgres://rollctl@127.0.0.1:5432/", environment: [:]) }
    }

    @Test func aPasswordInTheURLIsRefusedAndNeverRepeated() {
        for url in ["postgres://rollctl:hunter2@db.example:5432/journal?sslmode=verify-full", "postgresql://rollctl:hunter2@127.0.0.1/journal",
                    "postgres://rollctl@127.0.0.1/journal?password=hunter2", "postgres://rollctl:hunter2@h1:5432,h2:5433/journal",
                    "mysql://rollctl:hunter2@db.example/journal"] {
            do {
                _ = try JournalLocation.parse(url, environment: [:])
                Issue.record("\(url) accepted")
            } catch let e as JournalLocation.Invalid {
                if url.hasPrefix("mysql") { #expect(e.message.contains("unknown scheme")) } else {
                    #expect(e.message.contains("password"))
                    #expect(e.hint.contains("PGPASSWORD") && e.hint.contains(".pgpass"))
                }
                #expect(!e.description.contains("hunter2"), "\(e)")
            } catch { Issue.record("\(error)") }
        }
    }

    @Test func aRemoteServerWithoutTLSIsRefusedUnlessAllowed() throws {
        let plain = "postgres://rollctl@db.example:5432/journal"
        do {
            _ = try JournalLocation.parse(plain, environment: [:])
            Issue.record("plain text to a remote server accepted")
        } catch let e as JournalLocation.Invalid {
            #expect(e.message.contains("db.example") && e.message.contains("prefer"))
            #expect(e.hint.contains("sslmode=verify-full") && e.hint.contains("--journal-allow-plaintext"))
        }
        #expect(throws: JournalLocation.Invalid.self) { try JournalLocation.parse(plain + "?sslmode=disable", environment: [:]) }
        let byQuery = #expect(throws: JournalLocation.Invalid.self) { try JournalLocation.parse("postgres://rollctl@/journal?host=10.1.2.3", environment: [:]) }
        #expect(byQuery?.message.contains("host 10.1.2.3") == true, "\(String(describing: byQuery))")
        let listed = #expect(throws: JournalLocation.Invalid.self) { try JournalLocation.parse("postgres://rollctl@localhost,db2.example:5433/journal", environment: [:]) }
        #expect(listed?.message.contains("host db2.example is not on this machine") == true, "\(String(describing: listed))")
        _ = try JournalLocation.parse("postgres://rollctl@localhost:5432,127.0.0.2:5433/journal", environment: [:])
        for ok in ["?sslmode=require", "?sslmode=verify-ca", "?sslmode=verify-full"] { _ = try JournalLocation.parse(plain + ok, environment: [:]) }
        _ = try JournalLocation.parse(plain, environment: ["PGSSLMODE": "verify-full"])
        #expect(throws: JournalLocation.Invalid.self) { try JournalLocation.parse(plain + "?sslmode=allow", environment: ["PGSSLMODE": "verify-full"]) }
        _ = try JournalLocation.parse(plain, allowPlaintext: true, environment: [:])
        // No host in the URL: libpq takes PGHOST.
        #expect(throws: JournalLocation.Invalid.self) { try JournalLocation.parse("postgres://rollctl@/journal", environment: ["PGHOST": "db.example"]) }
        _ = try JournalLocation.parse("postgres://rollctl@/journal", environment: ["PGHOST": "/run/postgresql"])
    }
}
