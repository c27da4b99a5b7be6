import Foundation
import GRDB
import Postgres
import Basics
import RolloutConfig

/// The durable record of every rollout: SQLite (WAL) through GRDB, one file, mode 0600
/// (the default), or a PostgreSQL database shared by several machines (libpq). Every
/// transition is written before the side effect it announces (the intent) and its outcome
/// after, so a resumed run knows what happened. The same schema, migrations and semantics
/// on both; the schema is in docs/journal.md.
public final class Journal: Sendable {
    /// The SQLite file's path, or the PostgreSQL URL (which never holds a password).
    public let path: String
    let store: JournalStore
    let group: GroupCommit
    /// The time its timestamps are written in, and the time the rollouts it drives run on
    /// (the orchestrator and the notices read it here, so the three always agree). The
    /// driver lease alone is kept in real time: other processes judge it.
    public let clock: any RolloutClock
    /// This machine's wall clock for the driver lease of a SQLite journal (a PostgreSQL journal
    /// judges leases by its server's clock: `leaseNow`). Tests set it to a skewed clock.
    let leaseClock: @Sendable () -> Date
    /// The driver leases this process holds here: every write transaction checks them first.
    let fences: LeaseFences

    /// `ROLLCTL_JOURNAL`, else `$XDG_STATE_HOME/rollctl/journal.sqlite`, else `~/.local/state/rollctl/journal.sqlite`.
    public static func defaultPath(environment: [String: String] = ProcessInfo.processInfo.environment) -> String {
        if let p = environment["ROLLCTL_JOURNAL"], !p.isEmpty { return p }
        let state = environment["XDG_STATE_HOME"].flatMap { $0.isEmpty ? nil : $0 } ?? (NSHomeDirectory() + "/.local/state")
        return state + "/rollctl/journal.sqlite"
    }

    public init(path: String, clock: any RolloutClock = SystemClock(), leaseClock: @escaping @Sendable () -> Date = { Date() }) throws {
        self.path = path
        self.clock = clock
        self.leaseClock = leaseClock
        let fences = LeaseFences()
        self.fences = fences
        let dir = (path as NSString).deletingLastPathComponent
        if !dir.isEmpty { try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700]) }
        // Created 0600 before SQLite opens it; the -wal and -shm files inherit the mode.
        // Only a new file is opened (and closed) here, never the database once SQLite has it:
        // closing any descriptor of a file drops every POSIX (fcntl) lock this process holds on
        // it, SQLite's included; another process's connection then believes it is the last
        // one, checkpoints and deletes the WAL under the running rollout (seen on real VMs: a
        // `rollout list` during an apply, then "database disk image is malformed").
        let created = open(path, O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0o600)
        if created >= 0 { close(created) } else if errno != EEXIST {
            throw JournalError("cannot create \(path): \(String(cString: strerror(errno)))")
        }
        // Two rollctl processes opening a new journal at once would both run the
        // migrations; an exclusive flock on the journal's folder (not on the database
        // file, see above) makes the second wait and then find them applied.
        let lockDir = dir.isEmpty ? "." : dir
        let fd = open(lockDir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else { throw JournalError("cannot open \(lockDir): \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        _ = flock(fd, LOCK_EX)
        defer { _ = flock(fd, LOCK_UN) }
        var config = Configuration()
        config.busyMode = .timeout(10)
        let pool = try DatabasePool(path: path, configuration: config)
        store = JournalStore(backend: .sqlite(pool), fences: fences)
        group = GroupCommit(store: store)
        // FULL, not GRDB's WAL default NORMAL: a commit is on disk before the side effect
        // it announces (a reboot), also across a power cut of the machine running rollctl.
        // Group commit keeps the syncs near one per step of a batch, not one per host.
        // (Set on the pool's one writer connection, after GRDB's own WAL set-up.)
        try pool.writeWithoutTransaction { db in try db.execute(sql: "PRAGMA synchronous = FULL") }
        try Self.migrator.migrate(pool)
    }

    /// A journal in PostgreSQL (`location` checked by `JournalLocation`). The migrations run
    /// in one transaction under an advisory lock, so of several processes starting at once
    /// one applies them and the others find them applied.
    public init(postgres location: JournalLocation.PostgresURL, clock: any RolloutClock = SystemClock(),
                leaseClock: @escaping @Sendable () -> Date = { Date() }) throws {
        path = location.display
        self.clock = clock
        self.leaseClock = leaseClock
        let fences = LeaseFences()
        self.fences = fences
        let pg: PostgresStore
        do { pg = try PostgresStore(conninfo: location.conninfo) } catch let e as PostgresError {
            throw JournalError("cannot connect to the journal \(location.display): \(e)")
        }
        store = JournalStore(backend: .postgres(pg), fences: fences)
        group = GroupCommit(store: store)
        try Self.migratePostgres(pg)
    }

    /// Opens the journal wherever `location` says.
    public convenience init(location: JournalLocation, clock: any RolloutClock = SystemClock()) throws {
        switch location {
        case .sqlite(let path): try self.init(path: path, clock: clock)
        case .postgres(let url): try self.init(postgres: url, clock: clock)
        }
    }

    /// SQLite keeps GRDB's migrator (and its `grdb_migrations` table), as every existing journal has it.
    static var migrator: DatabaseMigrator {
        var m = DatabaseMigrator()
        for (id, run) in migrations { m.registerMigration(id) { db in try run(SQLTx(.sqlite(db))) } }
        return m
    }

    /// PostgreSQL: the same migrations and the same bookkeeping table as GRDB's (`grdb_migrations`,
    /// one row per applied identifier), so both backends hold the same tables.
    static func migratePostgres(_ pg: PostgresStore) throws {
        try pg.migrating { c in
            try c.executeScript("CREATE TABLE IF NOT EXISTS grdb_migrations (identifier TEXT NOT NULL PRIMARY KEY)")
            let r = try c.execute("SELECT identifier FROM grdb_migrations")
            let applied = Set((0..<r.rowCount).compactMap { r.value(row: $0, column: 0) })
            let known = Set(migrations.map(\.0))
            if let unknown = applied.subtracting(known).sorted().first {
                throw JournalError("the journal has migration '\(unknown)', which this rollctl does not know (written by a newer rollctl?)")
            }
            for (id, run) in migrations where !applied.contains(id) {
                try run(SQLTx(.postgres(c, pg)))
                try c.execute("INSERT INTO grdb_migrations (identifier) VALUES ($1)", [.text(id)])
            }
        }
    }

    /// The schema's versions, in order, each applied once (docs/journal.md lists them).
    /// Written in SQLite's spelling; `SQLTx.script` adapts the types for PostgreSQL.
    static let migrations: [(String, @Sendable (SQLTx) throws -> Void)] = [
        ("v1", { db in
            try db.script("""
            CREATE TABLE rollout (
              id TEXT PRIMARY KEY,
              plan_name TEXT NOT NULL,
              plan_path TEXT NOT NULL,
              plan_text TEXT NOT NULL,
              plan_hash TEXT NOT NULL,
              target_release TEXT NOT NULL,
              state TEXT NOT NULL,          -- running | halted | completed | interrupted | aborted | rolled_back
              started_by TEXT NOT NULL,
              started_at TEXT NOT NULL,
              updated_at TEXT NOT NULL,
              pid INTEGER,                  -- process driving it now (NULL when none)
              note TEXT
            );
            CREATE TABLE wave (
              rollout_id TEXT NOT NULL REFERENCES rollout(id),
              number INTEGER NOT NULL,
              state TEXT NOT NULL,          -- pending | running | passed | failed | rolled_back
              verdict TEXT,                 -- pass | fail | inconclusive
              report TEXT,                  -- the wave's gate report (JSON)
              started_at TEXT, ended_at TEXT,
              PRIMARY KEY (rollout_id, number)
            );
            CREATE TABLE host (
              rollout_id TEXT NOT NULL REFERENCES rollout(id),
              name TEXT NOT NULL,
              address TEXT NOT NULL,
              wave INTEGER,                 -- NULL for skipped hosts
              batch INTEGER,
              state TEXT NOT NULL,
              reason TEXT,                  -- why failed / skipped
              release_before TEXT, boot_id_before TEXT, grub_entry_before TEXT,
              release_after TEXT, boot_id_after TEXT, grub_entry_after TEXT,
              reboots INTEGER NOT NULL DEFAULT 0,
              last_error TEXT,
              updated_at TEXT NOT NULL,
              PRIMARY KEY (rollout_id, name)
            );
            CREATE TABLE event (
              id INTEGER PRIMARY KEY AUTOINCREMENT,
              rollout_id TEXT NOT NULL REFERENCES rollout(id),
              at TEXT NOT NULL,
              host TEXT,
              kind TEXT NOT NULL,           -- state | intent | outcome | gate | halt | info
              message TEXT NOT NULL,
              data TEXT                     -- JSON
            );
            CREATE INDEX event_rollout ON event(rollout_id, id);
            CREATE TABLE gate_report (
              rollout_id TEXT NOT NULL REFERENCES rollout(id),
              wave INTEGER NOT NULL,
              host TEXT NOT NULL,
              verdict TEXT NOT NULL,
              report TEXT NOT NULL,         -- HostGateReport JSON: samples, slope, classes, findings
              at TEXT NOT NULL,
              PRIMARY KEY (rollout_id, wave, host)
            );
            CREATE TABLE host_lock (
              host TEXT PRIMARY KEY,        -- inventory address:port
              rollout_id TEXT NOT NULL REFERENCES rollout(id),
              acquired_at TEXT NOT NULL
            );
            """)
        }),
        ("v2-outbox", { db in try Journal.migrateOutbox(db) }),
        ("v3-host-indexes", { db in
            // The orchestrator reads one wave's hosts at every step and counts failed
            // hosts after every batch: without these, each is a scan of the rollout.
            try db.script("CREATE INDEX host_wave ON host(rollout_id, wave); CREATE INDEX host_state ON host(rollout_id, state)")
        }),
        ("v4-lease", { db in try Journal.migrateLease(db) }),
        ("v5-notice-windows", { db in
            // The window each maintenance notice stated (what the orchestrator must keep).
            try db.script("ALTER TABLE notice ADD COLUMN window_start TEXT; ALTER TABLE notice ADD COLUMN window_end TEXT")
        }),
        ("v6-pauses", { db in try Journal.migratePauses(db) }),
        ("v7-start-at", { db in
            // `plan apply --at`: no step before this moment (the locks and the lease are held from creation).
            try db.script("ALTER TABLE rollout ADD COLUMN start_at TEXT")
        }),
        ("v8-hooks", { db in try Journal.migrateHooks(db) }),
        ("v9-known-bad", { db in try Journal.migrateKnownBad(db) }),
        ("v10-silences", { db in try Journal.migrateSilences(db) }),
        ("v11-soak-progress", { db in try Journal.migrateSoakProgress(db) }),
        ("v12-host-bootloader", { db in
            // Each host's bootloader driver (`grub`, `grub-bls`, `systemd-boot`, `custom`), chosen when the
            // rollout is created (`bootloader: auto` detects it per host): steps, resume and rollback use it.
            try db.script("ALTER TABLE host ADD COLUMN bootloader TEXT")
        }),
        ("v13-host-lock-index", { db in
            // A host's lock is released when it reaches its end (`releaseLock(rolloutID:host:)`,
            // by rollout and name): without this, a scan of every lock of every rollout per host,
            // quadratic in the fleet (bench-core: 100k hosts took 556 s instead of ~60).
            try db.script("CREATE INDEX host_lock_rollout ON host_lock(rollout_id, name)")
        }),
        ("v14-event-outcome-index", { db in
            // A host's outcome events by host (`hasEvent`: were its packages installed?, asked once per
            // host): without it a scan of every event of the rollout per host, ~70 ms a host at 30k
            // hosts. Partial: a few outcome events per host, so the other ~10 events a host gets
            // cost nothing more to write.
            try db.script("CREATE INDEX event_host_outcome ON event(rollout_id, host) WHERE kind = 'outcome'")
        }),
    ]

    /// A value-type formatter made once (building an ISO8601DateFormatter per timestamp
    /// was half the cost of a journal write in bench/core.sh).
    static let timestampStyle = Date.ISO8601FormatStyle(includingFractionalSeconds: true)

    /// Now on the journal's clock, as its timestamps are written.
    func now() -> String { Self.timestampStyle.format(clock.now) }

    // MARK: - rollouts

    public struct RolloutRow: Sendable, Equatable {
        public var id: String
        public var planName: String
        public var planPath: String
        public var planText: String
        public var planHash: String
        public var targetRelease: String
        public var state: RolloutState
        public var startedBy: String
        public var startedAt: String
        public var updatedAt: String
        public var pid: Int32?
        public var note: String?
        /// `plan apply --at`: no step before then.
        public var startAt: String?
        /// Who drives it now (or last did, if that process died without releasing).
        public var lease: LeaseRow?

        /// `leaseNow`: the journal's lease clock when the row was read (`Journal.leaseNow`).
        init(row: SQLRow, leaseNow: Date) throws {
            id = row["id"]; planName = row["plan_name"]; planPath = row["plan_path"]; planText = row["plan_text"]
            planHash = row["plan_hash"]; targetRelease = row["target_release"]
            let raw: String = row["state"]
            guard let st = RolloutState(rawValue: raw) else { throw JournalError("rollout \(row["id"] as String? ?? "?"): unknown state '\(raw)' in the journal") }
            state = st
            startedBy = row["started_by"]; startedAt = row["started_at"]; updatedAt = row["updated_at"]
            pid = row["pid"]; note = row["note"]; startAt = row["start_at"]
            lease = Journal.lease(from: row, readAt: leaseNow)
        }
    }

    public struct HostRow: Sendable, Equatable {
        public var name: String
        public var address: String
        public var wave: Int?
        public var batch: Int?
        public var state: HostState
        public var reason: String?
        public var releaseBefore: String?
        public var bootIDBefore: String?
        /// The running kernel's boot entry at check (what rollback boots; column grub_entry_before).
        public var bootEntryBefore: String?
        /// The new kernel's boot entry after the install (column grub_entry_after).
        public var bootEntryAfter: String?
        public var releaseAfter: String?
        public var bootIDAfter: String?
        public var reboots: Int
        public var lastError: String?
        public var updatedAt: String
        /// Its bootloader driver's name, chosen at creation; nil in rollouts journaled before v12.
        public var bootloader: String?

        /// The columns `init(row:)` decodes, by position (decoding by name costs a
        /// case-insensitive lookup per column: a fifth of a 10k-host rollout's CPU).
        static let columns = "name, address, wave, batch, state, reason, release_before, boot_id_before, grub_entry_before, grub_entry_after, release_after, boot_id_after, reboots, last_error, updated_at, bootloader"

        init(row: SQLRow) throws {
            name = row[0]; address = row[1]; wave = row[2]; batch = row[3]
            let raw: String = row[4]
            guard let st = HostState(rawValue: raw) else { throw JournalError("host \(name): unknown state '\(raw)' in the journal (written by a newer rollctl?)") }
            state = st
            reason = row[5]; releaseBefore = row[6]; bootIDBefore = row[7]
            bootEntryBefore = row[8]; bootEntryAfter = row[9]; releaseAfter = row[10]; bootIDAfter = row[11]
            reboots = row[12]; lastError = row[13]; updatedAt = row[14]; bootloader = row[15]
        }
    }

    public struct LockConflict: Error, Sendable, CustomStringConvertible {
        public var hosts: [String]
        public var holder: RolloutRow
        public var description: String {
            "\(hosts.count) host\(hosts.count == 1 ? " is" : "s are") held by rollout \(holder.id) (plan '\(holder.planName)', \(holder.state.rawValue), started \(holder.startedAt) by \(holder.startedBy)): \(hosts.prefix(5).joined(separator: ", "))\(hosts.count > 5 ? ", ..." : "")"
        }
    }

    /// Creates a rollout with its waves and hosts and takes the hosts' locks, all
    /// in one transaction: either everything is journaled, or nothing. `bootloaders`: host
    /// name -> its bootloader driver's name.
    public func createRollout(id: String, plan: Plan, planHash: String, hosts: [(name: String, address: String, lockKey: String, wave: Int?, batch: Int?, state: HostState, reason: String?)],
                              waves: Int, driver: DriverIdentity = .current, ttl: Duration = .seconds(60), startAt: Date? = nil,
                              bootloaders: [String: String] = [:]) throws {
        try store.write { db in
            let now = self.now()
            let locked = hosts.filter { $0.wave != nil }
            let lockKeys = locked.map(\.lockKey)
            try self.checkLocks(db, keys: lockKeys, except: nil)
            try db.execute("""
                INSERT INTO rollout (id, plan_name, plan_path, plan_text, plan_hash, target_release, state, started_by, started_at, updated_at, pid, start_at)
                VALUES (?, ?, ?, ?, ?, ?, 'running', ?, ?, ?, ?, ?)
                """, [id, plan.name, plan.path, plan.text, planHash, plan.kernel.release, Self.whoami(), now, now, driver.pid,
                                 startAt.map { Self.timestampStyle.format($0) }])
            try self.acquireLease(db, id, as: driver, ttl: ttl)
            for w in 0..<waves {
                try db.execute("INSERT INTO wave (rollout_id, number, state) VALUES (?, ?, 'pending')", [id, w + 1])
            }
            for h in hosts {
                try db.execute("""
                    INSERT INTO host (rollout_id, name, address, wave, batch, state, reason, updated_at, bootloader) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
                    """, [id, h.name, h.address, h.wave, h.batch, h.state.rawValue, h.reason, now, bootloaders[h.name]])
            }
            for h in locked {
                try db.execute("INSERT INTO host_lock (host, rollout_id, acquired_at, name) VALUES (?, ?, ?, ?)", [h.lockKey, id, now, h.name])
            }
            try db.execute("INSERT INTO event (rollout_id, at, kind, message) VALUES (?, ?, 'info', ?)",
                           [id, now, "rollout created: plan '\(plan.name)' → \(plan.kernel.release), \(waves) waves, \(lockKeys.count) hosts"
                                       + (startAt.map { ", to start at \(Self.timestampStyle.format($0))" } ?? "")])
        }
    }

    func checkLocks(_ db: SQLTx, keys: [String], except: String?) throws {
        guard !keys.isEmpty else { return }
        var held: [String: [String]] = [:]
        for chunk in stride(from: 0, to: keys.count, by: 500) {
            let part = Array(keys[chunk..<min(chunk + 500, keys.count)])
            let marks = part.map { _ in "?" }.joined(separator: ",")
            let rows = try db.all("SELECT host, name, rollout_id FROM host_lock WHERE host IN (\(marks))", (part))
            for r in rows {
                let owner: String = r["rollout_id"]
                let key: String = r["host"]
                let name: String? = r["name"]
                if owner != except { held[owner, default: []].append(name.map { "\($0) (\(key))" } ?? key) }
            }
        }
        if let (owner, hosts) = held.first, let row = try db.one("SELECT * FROM rollout WHERE id = ?", [owner]) {
            throw LockConflict(hosts: hosts.sorted(), holder: try RolloutRow(row: row, leaseNow: try leaseNow(db)))
        }
    }

    public func releaseLocks(rolloutID: String) throws {
        try store.write { db in try db.execute("DELETE FROM host_lock WHERE rollout_id = ?", [rolloutID]) }
    }

    /// Releases the locks of the rollout's hosts that reached a final state (committed,
    /// rolled back, skipped, or failed before anything changed on them); hosts that still
    /// need a person (rollback failed, changed and failed) stay locked. Returns those.
    @discardableResult
    public func releaseSettledLocks(rolloutID: String) throws -> [String] {
        try store.write { db in
            let rows = try db.all("SELECT name, state, release_before FROM host WHERE rollout_id = ?", [rolloutID])
            var keep: [String] = []
            for r in rows {
                let name: String = r["name"]
                let raw: String = r["state"]
                guard let state = HostState(rawValue: raw) else { throw JournalError("host \(name): unknown state '\(raw)' in the journal") }
                if state.staysLocked(releaseBefore: r["release_before"]) { keep.append(name) }
            }
            let marks = keep.map { _ in "?" }.joined(separator: ",")
            let cond = keep.isEmpty ? "" : " AND (name IS NULL OR name NOT IN (\(marks)))"
            try db.execute("DELETE FROM host_lock WHERE rollout_id = ?" + cond, ([rolloutID] + keep))
            return keep.sorted()
        }
    }

    /// Releases one host's lock (it reached a final state).
    public func releaseLock(rolloutID: String, host name: String) async throws {
        try await group.submit { db in
            try db.execute("DELETE FROM host_lock WHERE rollout_id = ? AND name = ?", cached: true, [rolloutID, name])
        }
    }

    /// Takes the locks of `hosts` again (a rollback run after an abort released them);
    /// throws `LockConflict` when another rollout holds one meanwhile.
    public func retakeLocks(rolloutID: String, hosts: [(name: String, lockKey: String)]) throws {
        try store.write { db in
            try self.checkLocks(db, keys: hosts.map(\.lockKey), except: rolloutID)
            for h in hosts {
                try db.execute("""
                    INSERT INTO host_lock (host, rollout_id, acquired_at, name) VALUES (?, ?, ?, ?)
                    ON CONFLICT (host) DO UPDATE SET rollout_id = excluded.rollout_id, acquired_at = excluded.acquired_at, name = excluded.name
                    """,
                               [h.lockKey, rolloutID, self.now(), h.name])
            }
        }
    }

    /// Names of the rollout's hosts still locked.
    public func lockedHosts(_ rolloutID: String) throws -> [String] {
        try store.read { db in try db.all("SELECT coalesce(name, host) FROM host_lock WHERE rollout_id = ? ORDER BY 1", [rolloutID]).map { $0[0] as String } }
    }

    /// `note` replaces the rollout's note; nil keeps it, unless `clearingNote` (a wait that ended).
    public func setRolloutState(_ id: String, _ state: RolloutState, note: String? = nil, clearingNote: Bool = false) throws {
        try store.write { db in
            try db.execute("UPDATE rollout SET state = ?, note = CASE WHEN ? THEN NULL ELSE COALESCE(?, note) END, updated_at = ? WHERE id = ?",
                           [state.rawValue, clearingNote, note, self.now(), id])
            try db.execute("INSERT INTO event (rollout_id, at, kind, message) VALUES (?, ?, 'info', ?)",
                           [id, self.now(), "rollout \(state.rawValue)" + (note.map { ": \($0)" } ?? "")])
        }
    }

    public func rollout(_ id: String) throws -> RolloutRow? {
        try store.read { db in
            let now = try leaseNow(db)
            return try db.one("SELECT * FROM rollout WHERE id = ?", [id]).map { try RolloutRow(row: $0, leaseNow: now) }
        }
    }

    public func rollouts() throws -> [RolloutRow] {
        try store.read { db in
            let now = try leaseNow(db)
            return try db.all("SELECT * FROM rollout ORDER BY started_at DESC").map { try RolloutRow(row: $0, leaseNow: now) }
        }
    }

    /// The rollout's hosts (of one wave, and in some states, when given), in wave, batch, name order.
    public func hosts(_ rolloutID: String, wave: Int? = nil, in states: [HostState]? = nil) throws -> [HostRow] {
        var sql = "SELECT \(HostRow.columns) FROM host WHERE rollout_id = ?"
        var args: SQLArguments = [rolloutID]
        if let wave { sql += " AND wave = ?"; args.append(wave) }
        if let states {
            sql += " AND state IN (\(states.map { _ in "?" }.joined(separator: ", ")))"
            args += states.map(\.rawValue)
        }
        return try store.read { db in
            try db.all(sql + " ORDER BY wave NULLS FIRST, batch NULLS FIRST, name", (args)).map { try HostRow(row: $0) }
        }
    }

    /// What a customer notice says of each host: its address and the release it ran before.
    public struct NoticeHost: Sendable, Equatable {
        public var address: String
        public var releaseBefore: String?
    }

    /// `NoticeHost` of the hosts named (those a step owes notices for), read in chunks: a notice
    /// step of a 100k-host rollout once read every host's full row here (~90 MB at the peak).
    public func noticeHosts(_ rolloutID: String, named names: [String]) throws -> [String: NoticeHost] {
        var out: [String: NoticeHost] = [:]
        out.reserveCapacity(names.count)
        let unique = Array(Set(names))
        for start in stride(from: 0, to: unique.count, by: 500) {
            let chunk = unique[start..<min(start + 500, unique.count)]
            var args: SQLArguments = [rolloutID]
            for name in chunk { args.append(name) }
            try store.read { db in
                for row in try db.all("SELECT name, address, release_before FROM host WHERE rollout_id = ? AND name IN (\(chunk.map { _ in "?" }.joined(separator: ", ")))", args) {
                    out[row[0]] = NoticeHost(address: row[1], releaseBefore: row[2])
                }
            }
        }
        return out
    }

    public func host(_ rolloutID: String, _ name: String) throws -> HostRow? {
        try store.read { db in
            try db.one("SELECT \(HostRow.columns) FROM host WHERE rollout_id = ? AND name = ?", cached: true, [rolloutID, name]).map { try HostRow(row: $0) }
        }
    }

    /// How many hosts are in `states`: in `wave`, and in the whole rollout.
    /// `throughWave`: `all` counts only hosts of waves up to that one (a wave's budget is not
    /// spent by the next wave's pre-checks, which run during its soak).
    public func count(_ rolloutID: String, in states: [HostState], wave: Int, throughWave: Int? = nil) throws -> (wave: Int, all: Int) {
        var args: SQLArguments = [wave]
        if let throughWave { args.append(throughWave) }
        args += [rolloutID] + states.map(\.rawValue)
        return try store.read { db in
            let row = try db.one(Self.countSQL(states: states.count, throughWave: throughWave != nil), cached: true, args)
            return (row?[0] ?? 0, row?[1] ?? 0)
        }
    }

    /// `count`'s query (arguments: wave, throughWave if any, rollout, states). It runs after every
    /// batch, so it must read only the hosts in `states` (the index on rollout and state): the wave
    /// bound is summed, not a `WHERE` term. As `AND wave <= ?` SQLite took the wave index's range
    /// instead and read every host of the waves so far at every batch (100k hosts: ~30 ms a batch).
    static func countSQL(states: Int, throughWave: Bool) -> String {
        "SELECT coalesce(sum(CASE WHEN wave = ? THEN 1 ELSE 0 END), 0), "
            + (throughWave ? "coalesce(sum(CASE WHEN wave <= ? THEN 1 ELSE 0 END), 0)" : "count(*)")
            + " FROM host WHERE rollout_id = ? AND state IN (\(Array(repeating: "?", count: states).joined(separator: ", ")))"
    }

    /// Journals a host's move to `state` (refusing transitions the state machine
    /// does not allow) with the fields given, and an event.
    /// `countsReboot`: this move announces a reboot rollctl is about to order (`reboots` + 1).
    public func move(_ rolloutID: String, host: String, to state: HostState, reason: String? = nil, message: String? = nil,
                     set fields: [String: (any JournalValue)?] = [:], countsReboot: Bool = false) throws {
        try store.write { db in
            try self.move(db, rolloutID, host: host, to: state, reason: reason, message: message, set: fields, countsReboot: countsReboot)
        }
    }

    /// `move` for concurrent callers: moves (and events) made at the same moment by many
    /// host tasks share one transaction (group commit). It returns, like the synchronous
    /// form, only once the transaction holding this move has committed, so the journal is
    /// still written before the side effect it announces.
    public func move(_ rolloutID: String, host: String, to state: HostState, reason: String? = nil, message: String? = nil,
                     set fields: [String: (any JournalValue & Sendable)?] = [:], countsReboot: Bool = false) async throws {
        try await group.submit { db in
            try self.move(db, rolloutID, host: host, to: state, reason: reason, message: message,
                          set: fields.mapValues { $0.map { $0 as any JournalValue } }, countsReboot: countsReboot)
        }
    }

    /// `event` for concurrent callers, group-committed like the async `move`.
    public func event(_ rolloutID: String, host: String? = nil, kind: EventKind, _ message: String, data: String? = nil) async throws {
        try await group.submit { db in try self.insertEvent(db, rolloutID, host: host, kind: kind, message, data: data) }
    }

    /// Moves every host in `hosts` to `state` in one transaction (all or none).
    public func move(_ rolloutID: String, hosts: [String], to state: HostState) throws {
        try store.write { db in
            for h in hosts { try self.move(db, rolloutID, host: h, to: state) }
        }
    }

    /// A wave's gate verdicts in one transaction: every host's report, and its move
    /// to `healthy` or `failed` (one transaction per host was most of a large wave's gate time).
    /// Each host's verdict and evidence, and its move (`state` nil: it stays where it is — soaking,
    /// for a person to decide on an inconclusive gate).
    public func saveGateResults(_ rolloutID: String, wave: Int, _ results: [(host: String, verdict: String, report: String, state: HostState?, reason: String?)]) throws {
        try saveGateResults(rolloutID, wave: wave, count: results.count) { results[$0] }
    }

    /// The same, each row made when it is written (`row(0)` to `row(count - 1)`, in one
    /// transaction): a wave of 100,000 hosts never holds all its reports' JSON at once.
    public func saveGateResults(_ rolloutID: String, wave: Int, count: Int,
                                row: (Int) throws -> (host: String, verdict: String, report: String, state: HostState?, reason: String?)) throws {
        try store.write { db in
            let save = """
                INSERT INTO gate_report (rollout_id, wave, host, verdict, report, at) VALUES (?, ?, ?, ?, ?, ?)
                ON CONFLICT (rollout_id, wave, host) DO UPDATE SET verdict = excluded.verdict, report = excluded.report, at = excluded.at
                """
            for i in 0..<count {
                let r = try row(i)
                try db.execute(save, cached: true, [rolloutID, wave, r.host, r.verdict, r.report, self.now()])
                if let state = r.state { try self.move(db, rolloutID, host: r.host, to: state, reason: r.reason) }
            }
        }
    }

    func move(_ db: SQLTx, _ rolloutID: String, host: String, to state: HostState, reason: String? = nil, message: String? = nil,
                     set fields: [String: (any JournalValue)?] = [:], countsReboot: Bool = false) throws {
        // Cached statements: compiling (and authorizing) the SQL anew was a quarter of a move's cost.
        guard let row = try db.one("SELECT state FROM host WHERE rollout_id = ? AND name = ?", cached: true, [rolloutID, host]) else {
            throw JournalError("no host \(host) in rollout \(rolloutID)")
        }
        let from = HostState(rawValue: row["state"]) ?? .failed
        guard from.canMove(to: state) else {
            throw JournalError("refusing transition \(from.rawValue) → \(state.rawValue) for \(host)")
        }
        var sets = ["state = ?", "updated_at = ?"]
        var args: SQLArguments = [state.rawValue, self.now()]
        if let reason { sets.append("reason = ?"); args.append(reason) }
        if countsReboot { sets.append("reboots = reboots + 1") }
        for (k, v) in fields.sorted(by: { $0.key < $1.key }) {
            precondition(k.allSatisfy { $0.isLetter || $0 == "_" })
            sets.append("\(k) = ?")
            args.append(v)
        }
        args += [rolloutID, host]
        try db.execute("UPDATE host SET \(sets.joined(separator: ", ")) WHERE rollout_id = ? AND name = ?", cached: true, (args))
        let text = message ?? (from == state ? "\(state.rawValue) (again)" : "\(from.rawValue) → \(state.rawValue)") + (reason.map { ": \($0)" } ?? "")
        // The same move for machines: {"from": "staged", "to": "rebooting", "reason": "…"}.
        let data = "{\"from\":\"\(from.rawValue)\",\"to\":\"\(state.rawValue)\"" + (reason.map { ",\"reason\":" + Self.jsonString($0) } ?? "") + "}"
        try db.execute("INSERT INTO event (rollout_id, at, host, kind, message, data) VALUES (?, ?, ?, 'state', ?, ?)", cached: true, [rolloutID, self.now(), host, text, data])
    }

    /// `text` as a JSON string literal (quotes, backslashes and control characters escaped).
    static func jsonString(_ text: String) -> String {
        var out = "\""
        for u in text.unicodeScalars {
            switch u {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\t": out += "\\t"
            case "\r": out += "\\r"
            case _ where u.value < 0x20: out += String(format: "\\u%04x", u.value)
            default: out.unicodeScalars.append(u)
            }
        }
        return out + "\""
    }

    /// Appends an event (intent, outcome, info, gate, halt).
    public func event(_ rolloutID: String, host: String? = nil, kind: EventKind, _ message: String, data: String? = nil) throws {
        try store.write { db in try self.insertEvent(db, rolloutID, host: host, kind: kind, message, data: data) }
    }

    func insertEvent(_ db: SQLTx, _ rolloutID: String, host: String?, kind: EventKind, _ message: String, data: String?) throws {
        try db.execute("INSERT INTO event (rollout_id, at, host, kind, message, data) VALUES (?, ?, ?, ?, ?, ?)", cached: true, [rolloutID, self.now(), host, kind.rawValue, message, data])
    }

    /// Whether `host` has an event of `kind` whose message starts with `prefix` (a step a resume
    /// must not repeat).
    public func hasEvent(_ rolloutID: String, host: String, kind: EventKind, prefix: String) throws -> Bool {
        try store.read { db in
            // substr counts characters (code points), in SQLite and PostgreSQL alike, not bytes.
            try db.one(Self.hasEventSQL(kind), [rolloutID, host, prefix.unicodeScalars.count, prefix]).map { $0[0] as Bool } ?? false
        }
    }

    /// The kind is written into the query (one of `EventKind`'s fixed names, never input): SQLite
    /// uses a partial index (`event_host_outcome`) only for a query that names its condition.
    static func hasEventSQL(_ kind: EventKind) -> String {
        "SELECT EXISTS (SELECT 1 FROM event WHERE rollout_id = ? AND host = ? AND kind = '\(kind.rawValue)' AND substr(message, 1, ?) = ?)"
    }

    public func eventCount(_ rolloutID: String) throws -> Int {
        try store.read { db in try db.one("SELECT count(*) FROM event WHERE rollout_id = ?", [rolloutID]).map { $0[0] as Int } ?? 0 }
    }

    public struct EventRow: Sendable { public var id: Int64; public var at: String; public var host: String?; public var kind: EventKind; public var message: String
        /// The event for machines (JSON): a state move's from, to and reason; a lease's holder; …
        public var data: String? }

    public func events(_ rolloutID: String) throws -> [EventRow] {
        try store.read { db in
            try db.all("SELECT * FROM event WHERE rollout_id = ? ORDER BY id", [rolloutID]).map(Self.eventRow)
        }
    }

    /// The rollout's first event of its own (no host) whose data starts with `dataPrefix`: found in
    /// SQL, not among every event loaded (a resume of a 100k-host rollout holds over a million).
    public func firstRolloutEvent(_ rolloutID: String, dataPrefix: String) throws -> EventRow? {
        try store.read { db in
            try db.one("SELECT * FROM event WHERE rollout_id = ? AND host IS NULL AND substr(data, 1, ?) = ? ORDER BY id LIMIT 1",
                       [rolloutID, dataPrefix.unicodeScalars.count, dataPrefix]).map(Self.eventRow)
        }
    }

    static func eventRow(_ row: SQLRow) throws -> EventRow {
        let raw: String = row["kind"]
        guard let kind = EventKind(rawValue: raw) else { throw JournalError("event \(row["id"] as Int64): unknown kind '\(raw)' in the journal") }
        return EventRow(id: row["id"], at: row["at"], host: row["host"], kind: kind, message: row["message"], data: row["data"])
    }

    /// `queueing`: the notices this step owes (a passed wave's "done", a rolled-back
    /// wave's "rolled back"), journaled in the same transaction.
    public func setWave(_ rolloutID: String, _ number: Int, state: WaveState, verdict: String? = nil, report: String? = nil,
                        queueing notices: [NoticeRow] = []) throws {
        try store.write { db in
            try self.queueNotices(db, notices)
            let now = self.now()
            try db.execute("""
                UPDATE wave SET state = ?, verdict = COALESCE(?, verdict), report = COALESCE(?, report),
                  started_at = COALESCE(started_at, ?), ended_at = CASE WHEN ? IN ('passed','failed','rolled_back') THEN ? ELSE ended_at END
                WHERE rollout_id = ? AND number = ?
                """, [state.rawValue, verdict, report, now, state.rawValue, now, rolloutID, number])
        }
    }

    public struct WaveRow: Sendable { public var number: Int; public var state: WaveState; public var verdict: String?; public var report: String? }

    public func waves(_ rolloutID: String) throws -> [WaveRow] {
        try store.read { db in
            try db.all("SELECT * FROM wave WHERE rollout_id = ? ORDER BY number", [rolloutID]).map {
                let raw: String = $0["state"]
                guard let st = WaveState(rawValue: raw) else { throw JournalError("wave \($0["number"] as Int? ?? 0): unknown state '\(raw)' in the journal") }
                return WaveRow(number: $0["number"], state: st, verdict: $0["verdict"], report: $0["report"])
            }
        }
    }

    public func gateReports(_ rolloutID: String) throws -> [(wave: Int, host: String, verdict: String, report: String)] {
        try store.read { db in
            try db.all("SELECT * FROM gate_report WHERE rollout_id = ? ORDER BY wave, host", [rolloutID]).map {
                (wave: $0["wave"], host: $0["host"], verdict: $0["verdict"], report: $0["report"])
            }
        }
    }

    /// An error of the database under the journal (SQLite's or PostgreSQL's, a lost connection
    /// included): the journal could not be read or written.
    public static func isStorageError(_ error: any Error) -> Bool {
        error is DatabaseError || error is PostgresError
    }

    /// The identifiers of the migrations this journal has applied.
    func migrationsApplied() throws -> [String] {
        try store.read { db in try db.all("SELECT identifier FROM grdb_migrations").map { $0[0] as String } }
    }

    /// The migrations applied, in the order this rollctl applies them.
    public func schemaVersions() throws -> [String] {
        let applied = Set(try migrationsApplied())
        return Self.migrations.map(\.0).filter(applied.contains)
    }

    /// Runs one statement as it is (tests: a state the code would never write).
    func executeRaw(_ sql: String) throws {
        try store.write { db in try db.script(sql, asWritten: true) }
    }

    /// `user@machine` (the sudoer's name under sudo): who started a rollout, or made a decision on one.
    public static func whoami() -> String {
        let user = ProcessInfo.processInfo.environment["SUDO_USER"] ?? ProcessInfo.processInfo.environment["USER"] ?? String(cString: getpwuid(geteuid()).pointee.pw_name)
        return "\(user)@\(ProcessInfo.processInfo.hostName)"
    }
}

public struct JournalError: Error, CustomStringConvertible, Sendable {
    public var description: String
    public init(_ d: String) { description = d }
}

/// Group commit: writes submitted while a transaction is being written wait and go
/// into the next one together. Each submitter resumes after the transaction holding
/// its write has committed (or with its error). A write that throws `JournalError`
/// (a refused transition, checked before it writes anything) fails alone; any other
/// error rolls back the whole batch and fails every write in it.
final class GroupCommit: @unchecked Sendable {
    typealias Work = @Sendable (SQLTx) throws -> Void
    private let store: JournalStore
    private let lock = NSLock()
    private var pending: [(work: Work, done: CheckedContinuation<Void, any Error>)] = []
    private var draining = false
    /// Transactions are written here, off the cooperative thread pool.
    private let queue = DispatchQueue(label: "rollctl.journal.group-commit")

    init(store: JournalStore) { self.store = store }

    func submit(_ work: @escaping Work) async throws {
        try await withCheckedThrowingContinuation { (c: CheckedContinuation<Void, any Error>) in
            lock.lock()
            pending.append((work, c))
            let start = !draining
            draining = true
            lock.unlock()
            if start { queue.async { self.drain() } }
        }
    }

    private func drain() {
        while true {
            lock.lock()
            let batch = pending
            pending = []
            if batch.isEmpty { draining = false; lock.unlock(); return }
            lock.unlock()
            var refused = [(any Error)?](repeating: nil, count: batch.count)
            do {
                try store.write { db in
                    for (i, item) in batch.enumerated() {
                        do { try item.work(db) } catch let e as JournalError { refused[i] = e }
                    }
                }
                for (i, item) in batch.enumerated() {
                    if let e = refused[i] { item.done.resume(throwing: e) } else { item.done.resume() }
                }
            } catch {
                for item in batch { item.done.resume(throwing: error) }
            }
        }
    }
}
