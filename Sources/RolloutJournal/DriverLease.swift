import Foundation
import Basics

/// Who drives a rollout: the machine, the process and that process's start time
/// (a pid alone may have been reused by an unrelated process since), plus a
/// random token unique to this run of rollctl.
public struct DriverIdentity: Sendable, Equatable, CustomStringConvertible {
    public var host: String
    public var pid: Int32
    /// Clock ticks after boot at which the process started (`/proc/PID/stat`, field 22).
    public var startTime: UInt64
    public var token: String

    public init(host: String, pid: Int32, startTime: UInt64, token: String) {
        self.host = host; self.pid = pid; self.startTime = startTime; self.token = token
    }

    /// This process.
    public static let current = DriverIdentity(host: ProcessInfo.processInfo.hostName, pid: getpid(),
                                               startTime: processStartTime(getpid()) ?? 0, token: UUID().uuidString.lowercased())

    public var description: String { "\(host), pid \(pid)" }

    /// The start time of process `pid` on this machine, nil when no such process runs.
    public static func processStartTime(_ pid: Int32) -> UInt64? {
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
              let close = stat.lastIndex(of: ")") else { return nil }
        // Fields after the command name (which may hold spaces and parentheses): state is field 3.
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        guard fields.count > 19 else { return nil }
        return UInt64(fields[19])
    }

    /// Whether the process this identity names still runs. Only answerable on its
    /// own machine (`nil` elsewhere): there the lease's expiry decides.
    public func isRunningHere() -> Bool? {
        guard host == ProcessInfo.processInfo.hostName else { return nil }
        if pid == getpid() { return startTime == DriverIdentity.current.startTime }
        guard let start = Self.processStartTime(pid) else { return false }
        return start == startTime
    }
}

/// The journaled right to drive one rollout: taken in one transaction, renewed
/// by a heartbeat, released at the end of the run.
public struct LeaseRow: Sendable, Equatable {
    public var holder: DriverIdentity
    public var since: String
    public var heartbeat: String
    public var expires: String
    /// The journal's lease clock when this row was read (`Journal.leaseNow`): PostgreSQL's
    /// own clock for a shared journal, this machine's for SQLite. Expiry is judged against it.
    public var readAt: Date

    /// The same lease (when it was read is not part of it).
    public static func == (a: LeaseRow, b: LeaseRow) -> Bool {
        a.holder == b.holder && a.since == b.since && a.heartbeat == b.heartbeat && a.expires == b.expires
    }

    /// Live unless its process is known dead (same machine) or, seen from another
    /// machine, its expiry passed on the journal's lease clock (`now`: when it was read).
    public func isLive(now: Date? = nil) -> Bool {
        if let running = holder.isRunningHere() { return running }
        guard let end = Journal.parseTimestamp(expires) else { return false }
        return end > (now ?? readAt)
    }
}

/// This process drove the rollout, and another took its driver lease over (it was cut from
/// the journal, or stalled, for longer than the lease's TTL). Every journal write of a
/// process that holds a lease is fenced: it first checks, in the same transaction, that the
/// lease is still its own, so a driver that comes back from a partition cannot journal (and so
/// cannot act on) anything after its successor took over.
public struct LeaseLost: Error, Sendable, CustomStringConvertible {
    public var rolloutID: String
    /// Who holds it now (nil: nobody, it was released).
    public var holder: DriverIdentity?
    public var description: String {
        "this process lost the driver lease of rollout \(rolloutID)"
            + (holder.map { " to \($0)" } ?? "") + ": it stops before touching another host; the new driver finishes the rollout"
    }
}

/// The leases this process holds in one journal: every write transaction checks them first.
final class LeaseFences: @unchecked Sendable {
    private let lock = NSLock()
    private var tokens: [String: String] = [:]
    func set(_ rolloutID: String, token: String) { lock.lock(); tokens[rolloutID] = token; lock.unlock() }
    func remove(_ rolloutID: String, token: String) {
        lock.lock(); if tokens[rolloutID] == token { tokens[rolloutID] = nil }; lock.unlock()
    }
    var all: [(rolloutID: String, token: String)] { lock.lock(); defer { lock.unlock() }; return tokens.map { ($0.key, $0.value) } }

    /// Throws `LeaseLost` when one of this process's leases is not its own any more.
    func check(_ db: SQLTx) throws {
        for (id, token) in all {
            let row = try db.one("""
                SELECT lease_token, lease_host, lease_pid, lease_start, lease_since, lease_heartbeat, lease_expires FROM rollout WHERE id = ?
                """, cached: true, [id])
            let now = row.flatMap { $0["lease_token"] as String? }
            if now != token { throw LeaseLost(rolloutID: id, holder: row.flatMap { Journal.lease(from: $0, readAt: Date())?.holder }) }
        }
    }
}

/// Another live process drives the rollout: the caller must not touch it.
public struct LeaseHeld: Error, Sendable, CustomStringConvertible {
    public var rolloutID: String
    public var lease: LeaseRow
    public init(rolloutID: String, lease: LeaseRow) { self.rolloutID = rolloutID; self.lease = lease }
    public var description: String {
        "rollout \(rolloutID) is being driven by \(lease.holder.host), pid \(lease.holder.pid), since \(lease.since) (last heartbeat \(lease.heartbeat))"
    }
}

extension Journal {
    static func migrateLease(_ db: SQLTx) throws {
        try db.script("""
        ALTER TABLE rollout ADD COLUMN lease_token TEXT;      -- the driving run's random token (NULL: nobody drives)
        ALTER TABLE rollout ADD COLUMN lease_host TEXT;       -- its machine
        ALTER TABLE rollout ADD COLUMN lease_pid INTEGER;     -- its process
        ALTER TABLE rollout ADD COLUMN lease_start INTEGER;   -- the process's start time (/proc/PID/stat field 22)
        ALTER TABLE rollout ADD COLUMN lease_since TEXT;
        ALTER TABLE rollout ADD COLUMN lease_heartbeat TEXT;
        ALTER TABLE rollout ADD COLUMN lease_expires TEXT;
        ALTER TABLE rollout ADD COLUMN stop_requested TEXT;   -- who asked the driver to stop (abort), NULL when nobody
        ALTER TABLE host_lock ADD COLUMN name TEXT;           -- the host's inventory name
        CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
        """)
        try db.execute("INSERT INTO meta (key, value) VALUES ('journal_id', ?)", [UUID().uuidString.lowercased()])
    }

    static func parseTimestamp(_ s: String) -> Date? { try? Date(s, strategy: timestampStyle) }

    static func lease(from row: SQLRow, readAt: Date) -> LeaseRow? {
        guard let token: String = row["lease_token"] else { return nil }
        let holder = DriverIdentity(host: row["lease_host"] ?? "?", pid: row["lease_pid"] ?? 0,
                                    startTime: UInt64(row["lease_start"] as Int64? ?? 0), token: token)
        return LeaseRow(holder: holder, since: row["lease_since"] ?? "", heartbeat: row["lease_heartbeat"] ?? "", expires: row["lease_expires"] ?? "",
                        readAt: readAt)
    }

    /// The clock leases are stamped and judged by. A PostgreSQL journal is shared by several
    /// machines: its server's clock (`clock_timestamp()`, read in the same transaction) is the
    /// one clock they all agree on, so no driver's wall clock decides another's expiry. A SQLite
    /// journal is on one machine: that machine's clock (`leaseClock`).
    func leaseNow(_ db: SQLTx) throws -> Date {
        guard db.isPostgres else { return leaseClock() }
        guard let row = try db.one("SELECT extract(epoch FROM clock_timestamp())::float8", cached: true),
              let seconds = row[0] as Double? else { throw JournalError("the journal's server did not tell its time") }
        return Date(timeIntervalSince1970: seconds)
    }

    /// This journal's identity (written once, at its creation): host leases name it.
    public func journalID() throws -> String {
        try store.read { db in try db.one("SELECT value FROM meta WHERE key = 'journal_id'").map { $0[0] as String } ?? "?" }
    }

    /// The rollout's lease, if any process holds one (live or not).
    public func lease(_ rolloutID: String) throws -> LeaseRow? {
        try store.read { db in
            let now = try leaseNow(db)
            return try db.one("SELECT * FROM rollout WHERE id = ?", [rolloutID]).flatMap { Self.lease(from: $0, readAt: now) }
        }
    }

    /// Takes the right to drive the rollout, in one (IMMEDIATE) transaction: of any
    /// number of processes trying at once, exactly one gets it. A lease held by a
    /// live process is never taken (`LeaseHeld`); a dead holder's is taken over and
    /// journaled. Re-taking one's own lease renews it.
    public func acquireLease(_ rolloutID: String, as me: DriverIdentity = .current, ttl: Duration = .seconds(60)) throws {
        try store.write { db in try self.acquireLease(db, rolloutID, as: me, ttl: ttl) }
    }

    func acquireLease(_ db: SQLTx, _ rolloutID: String, as me: DriverIdentity, ttl: Duration) throws {
        guard let row = try db.one("SELECT * FROM rollout WHERE id = ?", [rolloutID]) else {
            throw JournalError("no rollout \(rolloutID)")
        }
        let now = try leaseNow(db)
        if let held = Self.lease(from: row, readAt: now), held.holder.token != me.token {
            if held.isLive() { throw LeaseHeld(rolloutID: rolloutID, lease: held) }
            try insertEvent(db, rolloutID, host: nil, kind: .info,
                            "driver lease taken over from \(held.holder) (since \(held.since), last heartbeat \(held.heartbeat)): that process is gone", data: nil)
        }
        let stamp = Self.timestampStyle.format(now)
        let expires = Self.timestampStyle.format(now.addingTimeInterval(ttl.seconds))
        try db.execute("""
            UPDATE rollout SET lease_token = ?, lease_host = ?, lease_pid = ?, lease_start = ?,
              lease_since = CASE WHEN lease_token = ? THEN lease_since ELSE ? END,
              lease_heartbeat = ?, lease_expires = ?, pid = ?, stop_requested = NULL, updated_at = ? WHERE id = ?
            """, [me.token, me.host, me.pid, Int64(me.startTime), me.token, stamp, stamp, expires, me.pid, stamp, rolloutID])
    }

    /// Extends one's lease by `ttl`. Returns false when it is not ours any more
    /// (taken over): the caller must stop touching hosts at once. `stopRequested`
    /// is true when someone asked the driver to stop (`rollout abort` from anywhere).
    public func renewLease(_ rolloutID: String, as me: DriverIdentity = .current, ttl: Duration = .seconds(60)) throws -> (held: Bool, stopRequested: Bool) {
        do { return try store.write { db in try self.renewLease(db, rolloutID, as: me, ttl: ttl) } } catch is LeaseLost { return (false, false) }
    }

    func renewLease(_ db: SQLTx, _ rolloutID: String, as me: DriverIdentity, ttl: Duration) throws -> (held: Bool, stopRequested: Bool) {
        let now = try leaseNow(db)
        let changed = try db.execute("UPDATE rollout SET lease_heartbeat = ?, lease_expires = ? WHERE id = ? AND lease_token = ?",
                       [Self.timestampStyle.format(now), Self.timestampStyle.format(now.addingTimeInterval(ttl.seconds)), rolloutID, me.token])
        let held = changed == 1
        let stop = try db.one("SELECT stop_requested FROM rollout WHERE id = ?", [rolloutID]).flatMap { $0[0] as String? } != nil
        return (held, stop)
    }

    /// Gives the lease up (only one's own).
    public func releaseLease(_ rolloutID: String, as me: DriverIdentity = .current) throws {
        try store.write { db in
            try db.execute("""
                UPDATE rollout SET lease_token = NULL, lease_host = NULL, lease_pid = NULL, lease_start = NULL, lease_since = NULL,
                  lease_heartbeat = NULL, lease_expires = NULL, pid = NULL WHERE id = ? AND lease_token = ?
                """, [rolloutID, me.token])
        }
    }

    /// Asks whoever drives the rollout to stop after its steps in flight (seen at its next heartbeat).
    public func requestStop(_ rolloutID: String, by who: String) throws {
        try store.write { db in
            try db.execute("UPDATE rollout SET stop_requested = ? WHERE id = ?", [who, rolloutID])
            try self.insertEvent(db, rolloutID, host: nil, kind: .info, "stop requested by \(who)", data: nil)
        }
    }
}

/// A held lease kept alive while a rollout is driven: renewed every `ttl / 6`
/// on a task of its own. When renewal finds the lease taken, or a stop request,
/// `shouldStop` turns true; the orchestrator checks it before every step that
/// touches a host, and `stillHeld` before every reboot.
public final class DriverLease: Sendable {
    public let journal: Journal
    public let rolloutID: String
    public let ttl: Duration
    public let identity: DriverIdentity
    private let state = LeaseState()
    private let task: Task<Void, Never>

    final class LeaseState: @unchecked Sendable {
        let lock = NSLock()
        var lost = false
        var stop = false
        var renewedAt = ContinuousClock.now
        func with<T>(_ f: (LeaseState) -> T) -> T { lock.lock(); defer { lock.unlock() }; return f(self) }
    }

    /// Takes the lease (throws `LeaseHeld` when a live process has it) and starts the heartbeat.
    public init(journal: Journal, rolloutID: String, ttl: Duration = .seconds(60), as identity: DriverIdentity = .current) throws {
        try journal.acquireLease(rolloutID, as: identity, ttl: ttl)
        // From here every write of this process to the journal checks the lease is still ours.
        journal.fences.set(rolloutID, token: identity.token)
        self.journal = journal
        self.rolloutID = rolloutID
        self.ttl = ttl
        self.identity = identity
        let state = self.state
        let every = ttl / 6
        task = Task.detached {
            while !Task.isCancelled {
                try? await Task.sleep(for: min(every, .seconds(5)))
                if Task.isCancelled { return }
                // Taken before the call: the new expiry is stamped after this instant, however
                // long the answer takes to come back (a reply held up by the network must not
                // make the lease look fresher here than it is in the journal).
                let sent = ContinuousClock.now
                // The journal write blocks: off the cooperative pool.
                let result = await Blocking.run { Result { try journal.renewLease(rolloutID, as: identity, ttl: ttl) } }
                state.with { s in
                    switch result {
                    case .success(let r):
                        if r.held { s.renewedAt = max(s.renewedAt, sent) } else { s.lost = true }
                        if r.stopRequested { s.stop = true }
                    case .failure:
                        break  // a failed renewal counts against `stillHeld` by time
                    }
                }
            }
        }
    }

    /// Lost, asked to stop, or not renewed for half the TTL (the journal is out of reach):
    /// stop touching hosts.
    public var shouldStop: Bool { state.with { $0.lost || $0.stop } || !stillHeld }

    /// True while the lease is ours with a safe margin (last renewal within half the TTL).
    public var stillHeld: Bool { state.with { !$0.lost && ContinuousClock.now - $0.renewedAt < ttl / 2 } }

    public var wasLost: Bool { state.with { $0.lost } }

    public func release() {
        task.cancel()
        // A release that fails leaves a lease whose process is about to end: it reads as dead.
        try? journal.releaseLease(rolloutID, as: identity)
        journal.fences.remove(rolloutID, token: identity.token)
    }

    deinit { task.cancel() }
}
