import Foundation
import Basics

/// A kernel release not to roll again: its gate failed or its hosts did not boot it (recorded when
/// a rollout halts on that), or a person blocked it. `plan validate` and `plan apply` refuse a plan
/// targeting it unless told otherwise.
public struct KnownBadKernel: Sendable, Equatable {
    public enum Source: String, Sendable { case gate, boot, manual }
    public var release: String
    public var source: Source
    /// The rollout that found it (nil when blocked by hand).
    public var rolloutID: String?
    /// The hosts that showed it.
    public var hosts: [String]
    /// For people: the halt reason, or the reason given to `kernel block`.
    public var evidence: String
    public var recordedAt: String
    public var recordedBy: String

    /// One line: `gate failed in rollout r… on web-001 (2026-12-05T…, root@vm): wave 1 gate fail: …`.
    public var summary: String {
        let what: String
        switch source {
        case .gate: what = "its gate failed"
        case .boot: what = "hosts did not boot it"
        case .manual: what = "blocked by hand"
        }
        return what + (rolloutID.map { " in rollout \($0)" } ?? "") + (hosts.isEmpty ? "" : " on \(hosts.joined(separator: ", "))")
            + " (\(recordedAt), \(recordedBy)): \(evidence)"
    }
}

extension Journal {
    static func migrateKnownBad(_ db: SQLTx) throws {
        try db.script("""
        CREATE TABLE known_bad (
          release TEXT PRIMARY KEY,
          source TEXT NOT NULL,        -- gate | boot | manual
          rollout_id TEXT,
          hosts TEXT NOT NULL,         -- JSON list of host names
          evidence TEXT NOT NULL,
          recorded_at TEXT NOT NULL,
          recorded_by TEXT NOT NULL
        );
        """)
    }

    public func knownBad(_ release: String) throws -> KnownBadKernel? {
        try store.read { db in try db.one("SELECT * FROM known_bad WHERE release = ?", [release]).map(Self.knownBad(from:)) }
    }

    public func knownBadKernels() throws -> [KnownBadKernel] {
        try store.read { db in try db.all("SELECT * FROM known_bad ORDER BY recorded_at, release").map(Self.knownBad(from:)) }
    }

    static func knownBad(from row: SQLRow) -> KnownBadKernel {
        let hostsJSON: String = row["hosts"]
        let hosts = (try? JSONDecoder().decode([String].self, from: Data(hostsJSON.utf8))) ?? []
        return KnownBadKernel(release: row["release"], source: KnownBadKernel.Source(rawValue: row["source"]) ?? .manual, rolloutID: row["rollout_id"],
                              hosts: hosts, evidence: row["evidence"], recordedAt: row["recorded_at"], recordedBy: row["recorded_by"])
    }

    /// Records `release` as known bad; a release already recorded keeps its first record
    /// (returns false then).
    @discardableResult
    public func recordKnownBad(_ release: String, source: KnownBadKernel.Source, rolloutID: String?, hosts: [String], evidence: String,
                               by who: String? = nil) throws -> Bool {
        let hostsJSON = String(decoding: (try? JSONEncoder().encode(hosts)) ?? Data("[]".utf8), as: UTF8.self)
        return try store.write { db in
            let inserted = try db.execute("""
                INSERT INTO known_bad (release, source, rollout_id, hosts, evidence, recorded_at, recorded_by) VALUES (?, ?, ?, ?, ?, ?, ?)
                ON CONFLICT (release) DO NOTHING
                """, [release, source.rawValue, rolloutID, hostsJSON, evidence, self.now(), who ?? Self.whoami()])
            if inserted == 1, let rolloutID {
                try self.insertEvent(db, rolloutID, host: nil, kind: .info, "kernel \(release) recorded as known bad (\(source.rawValue))",
                                     data: Self.jsonObject(["release": release, "source": source.rawValue]))
            }
            return inserted == 1
        }
    }

    /// `kernel unblock`: true when it was recorded.
    @discardableResult
    public func unblockKernel(_ release: String) throws -> Bool {
        try store.write { db in
            try db.execute("DELETE FROM known_bad WHERE release = ?", [release]) == 1
        }
    }
}
