import Foundation
import Testing
import SSHTesting
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

    @Test func refusesTransitionsTheStateMachineForbids() throws {
        let dir = try TestSSHD.makeTempDir(); defer { try? FileManager.default.removeItem(atPath: dir) }
        let j = try Journal(path: dir + "/j.sqlite")
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

    @Test func overlappingRolloutsAreRefusedUntilLocksAreReleased() throws {
        let dir = try TestSSHD.makeTempDir(); defer { try? FileManager.default.removeItem(atPath: dir) }
        let j = try Journal(path: dir + "/j.sqlite")
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

    @Test func manyProcessesOpeningANewJournalAtOnceAllSucceed() async throws {
        let dir = try TestSSHD.makeTempDir(); defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/new.sqlite"
        // Each open runs the migrations; without serialising them, the losers fail
        // with "table ... already exists" (seen as a rollout that never started).
        let results = await withTaskGroup(of: Bool.self) { group in
            for _ in 0..<8 {
                group.addTask { await Task.detached { (try? Journal(path: path)) != nil }.value }
            }
            var all: [Bool] = []
            for await r in group { all.append(r) }
            return all
        }
        #expect(results == Array(repeating: true, count: 8))
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

    @Test func manyDriversAtOnceExactlyOneGetsTheLease() async throws {
        let dir = try TestSSHD.makeTempDir(); defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/j.sqlite"
        let j = try Journal(path: path)
        try j.createRollout(id: "r1", plan: plan(dir), planHash: "h", hosts: hosts(["a"]), waves: 1, driver: identity(pid: 999_999, start: 1))
        // Eight processes' worth of journals on one file, each a different (live: this process) driver.
        let wins = await withTaskGroup(of: Bool.self) { group in
            for _ in 0..<8 {
                group.addTask {
                    await Task.detached {
                        guard let jj = try? Journal(path: path) else { return false }
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

    @Test func aLiveHolderIsNeverTakenOverADeadOneIs() throws {
        let dir = try TestSSHD.makeTempDir(); defer { try? FileManager.default.removeItem(atPath: dir) }
        let j = try Journal(path: dir + "/j.sqlite")
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

    @Test func anotherMachinesLeaseHoldsUntilItExpires() throws {
        let dir = try TestSSHD.makeTempDir(); defer { try? FileManager.default.removeItem(atPath: dir) }
        let j = try Journal(path: dir + "/j.sqlite")
        let remote = identity(host: "standby.example", pid: 4242, start: 7)
        try j.createRollout(id: "r1", plan: plan(dir), planHash: "h", hosts: hosts(["a"]), waves: 1, driver: remote, ttl: .seconds(60))
        #expect(throws: LeaseHeld.self) { try j.acquireLease("r1", as: self.identity()) }
        try j.createRollout(id: "r2", plan: plan(dir), planHash: "h", hosts: hosts(["b"]), waves: 1, driver: remote, ttl: .milliseconds(1))
        usleep(20_000)
        try j.acquireLease("r2", as: identity())
    }

    @Test func stopRequestsReachTheDriverAtItsHeartbeat() throws {
        let dir = try TestSSHD.makeTempDir(); defer { try? FileManager.default.removeItem(atPath: dir) }
        let j = try Journal(path: dir + "/j.sqlite")
        let me = identity()
        try j.createRollout(id: "r1", plan: plan(dir), planHash: "h", hosts: hosts(["a"]), waves: 1, driver: me)
        #expect(try j.renewLease("r1", as: me).stopRequested == false)
        try j.requestStop("r1", by: "test")
        #expect(try j.renewLease("r1", as: me).stopRequested == true)
    }

    /// A value this rollctl does not know (a newer version wrote it, or a person did) is an
    /// error, never read as `failed` (which a rollback would act on) or `pending` (re-sent).
    @Test func unknownStatesInTheJournalAreErrorsNotGuesses() throws {
        let dir = try TestSSHD.makeTempDir(); defer { try? FileManager.default.removeItem(atPath: dir) }
        let j = try Journal(path: dir + "/j.sqlite")
        try j.createRollout(id: "r1", plan: plan(dir), planHash: "h", hosts: hosts(["a"]), waves: 1)
        let (s1, o1) = try Spawn.run("/usr/bin/sqlite3", [j.path, "UPDATE host SET state = 'parked' WHERE name = 'a';"])
        #expect(s1 == 0, "\(o1)")
        #expect(throws: JournalError.self) { _ = try j.hosts("r1") }
        #expect(throws: JournalError.self) { _ = try j.host("r1", "a") }
        let (s2, o2) = try Spawn.run("/usr/bin/sqlite3", [j.path, """
            INSERT INTO notice (rollout_id, wave, kind, customer_id, customer_name, channel, recipient, message_id, hosts, subject, payload, status, created_at, updated_at)
            VALUES ('r1', 1, 'done', 'c1', 'C', 'smtp', 'c@example.org', '<m@x>', '[]', 's', 'p', 'delivered?', 'now', 'now');
            """])
        #expect(s2 == 0, "\(o2)")
        #expect(throws: JournalError.self) { _ = try j.notices("r1") }
        _ = try Spawn.run("/usr/bin/sqlite3", [j.path, "DELETE FROM notice; INSERT INTO notice (rollout_id, wave, kind, customer_id, customer_name, channel, recipient, message_id, hosts, subject, payload, status, created_at, updated_at) VALUES ('r1', 1, 'done', 'c1', 'C', 'pigeon', 'c@example.org', '<m@x>', '[]', 's', 'p', 'sent', 'now', 'now');"])
        #expect(throws: JournalError.self) { _ = try j.notices("r1") }
        _ = try Spawn.run("/usr/bin/sqlite3", [j.path, "INSERT INTO event (rollout_id, at, kind, message) VALUES ('r1', 'now', 'gossip', 'x');"])
        #expect(throws: JournalError.self) { _ = try j.events("r1") }
        _ = try Spawn.run("/usr/bin/sqlite3", [j.path, "UPDATE rollout SET state = 'paused-ish'; UPDATE wave SET state = 'skipped?';"])
        #expect(throws: JournalError.self) { _ = try j.rollout("r1") }
        #expect(throws: JournalError.self) { _ = try j.waves("r1") }
    }
}
