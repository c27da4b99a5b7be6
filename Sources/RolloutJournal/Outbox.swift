import Foundation
import RolloutConfig

/// Where a notice stands in the outbox.
public enum NoticeStatus: String, Sendable, Codable, CaseIterable {
    /// Owed and journaled (in the same transaction as the step that owes it), not yet tried.
    case queued
    /// Recorded before sending (the intent); not known to be delivered. A row
    /// still `pending` when a run resumes is resent with the same Message-ID.
    case pending
    /// The server accepted it (`reply` holds its answer).
    case sent
    /// Not delivered, and the plan blocks on that: the next run tries again.
    case failed
    /// Not delivered, and the plan said to report and go on: never retried.
    case skipped
}

/// The kinds of notice, one per customer per wave each.
/// How a notice travels (`notice.channel`).
public enum NoticeChannel: String, Sendable, Codable, CaseIterable {
    case smtp, webhook
}

public enum NoticeKind: String, Sendable, Codable, CaseIterable {
    case maintenance
    case done
    case rolledBack = "rolled_back"
    /// A corrected window, when the first one can no longer hold (at most one per customer per wave).
    case rescheduled
}

/// The outbox: the `notice` table of the journal (migration `v2-outbox`).
extension Journal {
    static func migrateOutbox(_ db: SQLTx) throws {
        try db.script("""
        CREATE TABLE notice (
          rollout_id TEXT NOT NULL REFERENCES rollout(id),
          wave INTEGER NOT NULL,
          kind TEXT NOT NULL,              -- maintenance | done | rolled_back
          customer_id TEXT NOT NULL,
          customer_name TEXT NOT NULL,
          channel TEXT NOT NULL,           -- smtp | webhook
          recipient TEXT NOT NULL,         -- email address, or the webhook URL
          message_id TEXT NOT NULL,        -- stable: <rollctl.{rollout}.{wave}.{kind}.{customer}@{domain}>
          hosts TEXT NOT NULL,             -- JSON array of the customer's hosts in the wave
          subject TEXT NOT NULL,
          payload TEXT NOT NULL,           -- exactly what is sent: the RFC 5322 message, or the JSON body
          status TEXT NOT NULL,            -- pending | sent | failed | skipped
          attempts INTEGER NOT NULL DEFAULT 0,
          resent_after_crash INTEGER NOT NULL DEFAULT 0,
          reply TEXT,                      -- the server's answer to the accepted send
          last_error TEXT,
          created_at TEXT NOT NULL,
          sent_at TEXT,
          updated_at TEXT NOT NULL,
          PRIMARY KEY (rollout_id, wave, kind, customer_id)
        );
        """)
    }

    /// One row of the outbox.
    public struct NoticeRow: Sendable, Equatable, Codable {
        public var rolloutID: String
        public var wave: Int
        public var kind: NoticeKind
        public var customerID: String
        public var customerName: String
        public var channel: NoticeChannel
        public var recipient: String
        public var messageID: String
        public var hosts: [String]
        public var subject: String
        public var payload: String
        public var status: NoticeStatus
        public var attempts: Int
        public var resentAfterCrash: Bool
        public var reply: String?
        public var lastError: String?
        public var createdAt: String
        public var sentAt: String?
        public var updatedAt: String
        /// The window a maintenance (or rescheduled) notice states.
        public var window: MaintenanceWindow?

        init(row: SQLRow) throws {
            rolloutID = row["rollout_id"]; wave = row["wave"]; customerID = row["customer_id"]
            let id: String = row["message_id"]
            let (rawKind, rawChannel): (String, String) = (row["kind"], row["channel"])
            guard let k = NoticeKind(rawValue: rawKind) else { throw JournalError("notice \(id): unknown kind '\(rawKind)' in the journal") }
            guard let c = NoticeChannel(rawValue: rawChannel) else { throw JournalError("notice \(id): unknown channel '\(rawChannel)' in the journal") }
            kind = k; channel = c
            customerName = row["customer_name"]; recipient = row["recipient"]; messageID = id
            let hostsJSON: String = row["hosts"]
            hosts = (try? JSONDecoder().decode([String].self, from: Data(hostsJSON.utf8))) ?? []
            subject = row["subject"]; payload = row["payload"]
            let raw: String = row["status"]
            guard let st = NoticeStatus(rawValue: raw) else { throw JournalError("notice \(row["message_id"] as String? ?? "?"): unknown status '\(raw)' in the journal") }
            status = st
            attempts = row["attempts"]; resentAfterCrash = row["resent_after_crash"]
            reply = row["reply"]; lastError = row["last_error"]; createdAt = row["created_at"]; sentAt = row["sent_at"]; updatedAt = row["updated_at"]
            if let a: String = row["window_start"], let b: String = row["window_end"], let s = Journal.parseTimestamp(a), let e = Journal.parseTimestamp(b) {
                window = MaintenanceWindow(start: s, end: e)
            }
        }

        package init(rolloutID: String, wave: Int, kind: NoticeKind, customerID: String, customerName: String, channel: NoticeChannel, recipient: String,
             messageID: String, hosts: [String], subject: String, payload: String, window: MaintenanceWindow? = nil) {
            self.rolloutID = rolloutID; self.wave = wave; self.kind = kind; self.customerID = customerID
            self.customerName = customerName; self.channel = channel; self.recipient = recipient; self.messageID = messageID
            self.hosts = hosts; self.subject = subject; self.payload = payload; self.window = window
            status = .pending; attempts = 0; resentAfterCrash = false
            createdAt = Journal.timestampStyle.format(Date()); updatedAt = createdAt
        }

        package var label: String { "\(kind) notice for \(customerID) <\(recipient)> (wave \(wave))" }
    }

    /// Every notice of a rollout, by wave, kind and customer.
    public func notices(_ rolloutID: String) throws -> [NoticeRow] {
        try store.read { db in
            try db.all("SELECT * FROM notice WHERE rollout_id = ? ORDER BY wave, created_at, kind, customer_id",
                             [rolloutID]).map { try NoticeRow(row: $0) }
        }
    }

    /// Journals owed notices as `queued`: inside the transaction `db` of the step that
    /// owes them (so a crash cannot separate the step from its notices). A customer who
    /// already has a row of this wave and kind keeps it, unless it `failed`: then it is
    /// replaced by the new rendering (same Message-ID).
    func queueNotices(_ db: SQLTx, _ rows: [NoticeRow]) throws {
        let now = self.now()
        for n in rows {
            let hostsJSON = String(decoding: (try? JSONEncoder().encode(n.hosts)) ?? Data("[]".utf8), as: UTF8.self)
            let queued = try db.execute("""
                INSERT INTO notice (rollout_id, wave, kind, customer_id, customer_name, channel, recipient, message_id, hosts, subject, payload,
                                    status, created_at, updated_at, window_start, window_end)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'queued', ?, ?, ?, ?)
                ON CONFLICT (rollout_id, wave, kind, customer_id) DO UPDATE SET
                  customer_name = excluded.customer_name, channel = excluded.channel, recipient = excluded.recipient,
                  hosts = excluded.hosts, subject = excluded.subject, payload = excluded.payload, status = 'queued',
                  window_start = excluded.window_start, window_end = excluded.window_end, updated_at = excluded.updated_at
                WHERE notice.status = 'failed'
                """, [n.rolloutID, n.wave, n.kind.rawValue, n.customerID, n.customerName, n.channel.rawValue, n.recipient, n.messageID, hostsJSON,
                                 n.subject, n.payload, now, now, n.window.map { Self.timestampStyle.format($0.start) }, n.window.map { Self.timestampStyle.format($0.end) }])
            if queued > 0 {
                try insertEvent(db, n.rolloutID, host: nil, kind: .intent, "\(n.label): queued, Message-ID \(n.messageID), hosts \(n.hosts.joined(separator: ", "))"
                                + (n.window.map { ", window \($0.iso)" } ?? ""), data: nil)
            }
        }
    }

    package func queueNotices(_ rows: [NoticeRow]) throws {
        try store.write { db in try self.queueNotices(db, rows) }
    }

    /// Notices of the rollout not delivered yet: queued, pending (a run died mid-send), failed (blocking).
    public func undeliveredNotices(_ rolloutID: String) throws -> [NoticeRow] {
        try store.read { db in
            try db.all("SELECT * FROM notice WHERE rollout_id = ? AND status IN ('queued', 'pending', 'failed') ORDER BY wave, created_at, kind, customer_id",
                             [rolloutID]).map { try NoticeRow(row: $0) }
        }
    }

    /// The intent of one attempt: `pending` until the server's answer is journaled.
    package func markNoticeSending(_ n: NoticeRow) throws {
        try store.write { db in
            try db.execute("UPDATE notice SET status = 'pending', updated_at = ? WHERE rollout_id = ? AND wave = ? AND kind = ? AND customer_id = ?",
                           [self.now(), n.rolloutID, n.wave, n.kind.rawValue, n.customerID])
        }
    }

    /// A `pending` row found at resume: the last run may have been accepted by
    /// the server before it died. Marked; resent with the same Message-ID.
    package func markNoticeResend(_ n: NoticeRow) throws {
        try store.write { db in
            let now = self.now()
            try db.execute("UPDATE notice SET resent_after_crash = 1, updated_at = ? WHERE rollout_id = ? AND wave = ? AND kind = ? AND customer_id = ?",
                           [now, n.rolloutID, n.wave, n.kind.rawValue, n.customerID])
            try db.execute("INSERT INTO event (rollout_id, at, kind, message) VALUES (?, ?, 'intent', ?)",
                           [n.rolloutID, now, "\(n.label): was pending when the last run stopped; resending with the same Message-ID \(n.messageID)"])
        }
    }

    /// Counts an attempt before it is made (a crash mid-attempt still counts).
    package func noteNoticeAttempt(_ n: NoticeRow) throws {
        try store.write { db in
            try db.execute("UPDATE notice SET attempts = attempts + 1, updated_at = ? WHERE rollout_id = ? AND wave = ? AND kind = ? AND customer_id = ?",
                           [self.now(), n.rolloutID, n.wave, n.kind.rawValue, n.customerID])
        }
    }

    /// A failed attempt: the error is kept, and an event says whether it is retried.
    package func noteNoticeFailure(_ n: NoticeRow, attempt: Int, of total: Int, error: String, retryIn: Duration?) throws {
        try store.write { db in
            let now = self.now()
            try db.execute("UPDATE notice SET last_error = ?, updated_at = ? WHERE rollout_id = ? AND wave = ? AND kind = ? AND customer_id = ?",
                           [error, now, n.rolloutID, n.wave, n.kind.rawValue, n.customerID])
            let next = retryIn.map { "; retrying in \(PlanFormat.duration($0))" } ?? "; giving up"
            try db.execute("INSERT INTO event (rollout_id, at, kind, message) VALUES (?, ?, 'outcome', ?)",
                           [n.rolloutID, now, "\(n.label): attempt \(attempt)/\(total) failed: \(error)\(next)"])
        }
    }

    /// The server accepted: status `sent`, its reply and the time. Returns the time.
    @discardableResult
    package func markNoticeSent(_ n: NoticeRow, reply: String) throws -> String {
        try store.write { db in
            let now = self.now()
            try db.execute("""
                UPDATE notice SET status = 'sent', reply = ?, sent_at = ?, updated_at = ? WHERE rollout_id = ? AND wave = ? AND kind = ? AND customer_id = ?
                """, [reply, now, now, n.rolloutID, n.wave, n.kind.rawValue, n.customerID])
            try db.execute("INSERT INTO event (rollout_id, at, kind, message) VALUES (?, ?, 'outcome', ?)",
                           [n.rolloutID, now, "\(n.label): sent (\(reply))"])
            return now
        }
    }

    /// Given up: `failed` (blocks; retried next run) or `skipped` (reported, never retried).
    package func markNoticeUndelivered(_ n: NoticeRow, status: NoticeStatus, error: String) throws {
        precondition(status == .failed || status == .skipped)
        try store.write { db in
            let now = self.now()
            try db.execute("""
                UPDATE notice SET status = ?, last_error = ?, updated_at = ? WHERE rollout_id = ? AND wave = ? AND kind = ? AND customer_id = ?
                """, [status.rawValue, error, now, n.rolloutID, n.wave, n.kind.rawValue, n.customerID])
            try db.execute("INSERT INTO event (rollout_id, at, kind, message) VALUES (?, ?, 'outcome', ?)",
                           [n.rolloutID, now, "\(n.label): NOT delivered (\(status == .failed ? "blocks the wave" : "skipped by the plan's on_failure: skip")): \(error)"])
        }
    }
}
