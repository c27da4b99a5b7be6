import Foundation
import Basics

/// An Alertmanager silence rollctl made for one host's reboot. Journaled as an intent (no id yet)
/// before the request, with its id after, and with `expired_at` once rollctl ended it — so a
/// resume finds what it made (by the marker in the comment when it died before the id was
/// written), never makes a second one and never leaves one behind.
public struct SilenceRow: Sendable, Equatable {
    public var host: String
    /// `rollctl:<rollout>/<host>`, inside the silence's comment.
    public var marker: String
    public var silenceID: String?
    public var createdAt: String
    public var endsAt: String
    public var expiredAt: String?

    public var open: Bool { expiredAt == nil }
}

extension Journal {
    static func migrateSilences(_ db: SQLTx) throws {
        try db.script("""
        CREATE TABLE silence (
          rollout_id TEXT NOT NULL REFERENCES rollout(id),
          host TEXT NOT NULL,
          marker TEXT NOT NULL,        -- in the silence's comment: finds it after a crash
          silence_id TEXT,             -- NULL: asked for, answer not journaled
          created_at TEXT NOT NULL,
          ends_at TEXT NOT NULL,       -- the end Alertmanager was given (it lapses by itself then)
          expired_at TEXT,             -- rollctl expired it (or found it gone)
          PRIMARY KEY (rollout_id, host)
        );
        """)
    }

    public static func silenceMarker(_ rolloutID: String, host: String) -> String { "rollctl:\(rolloutID)/\(host)" }

    /// The rollout's silences (`host`: that host's only, by key: asked before every host's reboot).
    public func silences(_ rolloutID: String, host: String? = nil) throws -> [SilenceRow] {
        try store.read { db in
            try db.all("SELECT * FROM silence WHERE rollout_id = ?" + (host == nil ? "" : " AND host = ?") + " ORDER BY created_at, host",
                       host.map { [rolloutID, $0] } ?? [rolloutID]).map {
                SilenceRow(host: $0["host"], marker: $0["marker"], silenceID: $0["silence_id"], createdAt: $0["created_at"],
                           endsAt: $0["ends_at"], expiredAt: $0["expired_at"])
            }
        }
    }

    /// The intent, before the request: a silence for `host` until `endsAt` is being made.
    public func silenceAsked(_ rolloutID: String, host: String, endsAt: Date) async throws {
        let marker = Self.silenceMarker(rolloutID, host: host)
        try await group.submit { db in
            try db.execute("""
                INSERT INTO silence (rollout_id, host, marker, created_at, ends_at) VALUES (?, ?, ?, ?, ?)
                ON CONFLICT (rollout_id, host) DO UPDATE SET marker = excluded.marker, created_at = excluded.created_at,
                  ends_at = excluded.ends_at, silence_id = NULL, expired_at = NULL
                """, [rolloutID, host, marker, self.now(), Self.timestampStyle.format(endsAt)])
            try self.insertEvent(db, rolloutID, host: host, kind: .intent, "alertmanager: silence for the reboot (\(marker))", data: nil)
        }
    }

    public func silenceMade(_ rolloutID: String, host: String, id: String) async throws {
        try await group.submit { db in
            try db.execute("UPDATE silence SET silence_id = ? WHERE rollout_id = ? AND host = ?", [id, rolloutID, host])
            try self.insertEvent(db, rolloutID, host: host, kind: .outcome, "alertmanager: silence \(id) active", data: nil)
        }
    }

    public func silenceExpired(_ rolloutID: String, host: String, note: String) async throws {
        try await group.submit { db in
            try db.execute("UPDATE silence SET expired_at = ? WHERE rollout_id = ? AND host = ?", [self.now(), rolloutID, host])
            try self.insertEvent(db, rolloutID, host: host, kind: .outcome, "alertmanager: \(note)", data: nil)
        }
    }
}
