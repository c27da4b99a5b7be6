import Foundation
import GRDB

extension Journal {
    /// Every table of the journal, parents before children (a rollout before its hosts).
    static let tables = ["rollout", "wave", "host", "event", "gate_report", "host_lock", "notice", "hook_run", "known_bad", "silence", "soak_progress", "meta"]

    /// Why a copy was refused before anything was written (bad input: exit 2).
    public struct CopyRefused: Error, Sendable, CustomStringConvertible {
        public var message: String
        public var hint: String
        public var description: String { "\(message) (\(hint))" }
    }

    /// Copies every row of every table of this journal into `target`, in one transaction on
    /// the target, keeping the journal's identity (`meta.journal_id`: the hosts' leases name
    /// it). Refused when the target holds anything, or when a live process drives a rollout
    /// here (it would go on writing here, not there). Returns the rows copied per table.
    @discardableResult
    public func copy(into target: Journal) throws -> [(table: String, rows: Int)] {
        if let driven = try rollouts().first(where: { $0.lease?.isLive() == true }), let lease = driven.lease {
            throw CopyRefused(message: "rollout \(driven.id) in \(path) is being driven by \(lease.holder) (last heartbeat \(lease.heartbeat))",
                              hint: "copy when no rollout is driven: wait for it to end, or stop it with rollctl rollout abort")
        }
        // Read everything first, from one consistent state of this journal: SQLite's read is a
        // snapshot (WAL); on PostgreSQL the write lock keeps every other writer out meanwhile.
        let data: [(String, [String], [[JournalCell]])] = try store.snapshot { db in
            try Self.tables.map { table in
                let rows = try db.all("SELECT * FROM \(table)")
                let columns = rows.first?.columnNames ?? []
                return (table, columns, rows.map { r in (0..<columns.count).map { r.cell($0) } })
            }
        }
        return try target.store.write { db in
            for table in Self.tables where table != "meta" {
                if let n = try db.one("SELECT count(*) FROM \(table)").map({ $0[0] as Int }), n > 0 {
                    throw CopyRefused(message: "the target journal \(target.path) is not empty: its table \(table) has \(n) row\(n == 1 ? "" : "s")",
                                      hint: "copy into a new, empty database (rollctl journal migrate creates the tables)")
                }
            }
            try db.execute("DELETE FROM meta")
            var counts: [(table: String, rows: Int)] = []
            for (table, columns, rows) in data {
                if !rows.isEmpty {
                    let sql = "INSERT INTO \(table) (\(columns.joined(separator: ", "))) VALUES (\(columns.map { _ in "?" }.joined(separator: ", ")))"
                    for row in rows { try db.execute(sql, cached: true, row.map { CellValue(cell: $0) }) }
                }
                counts.append((table, rows.count))
            }
            // Explicit ids do not move PostgreSQL's identity sequence: the next event must not reuse one.
            if db.isPostgres {
                _ = try db.one("SELECT setval(pg_get_serial_sequence('event', 'id'), max(id)) FROM event WHERE EXISTS (SELECT 1 FROM event)")
            }
            return counts
        }
    }
}

/// A cell read from one journal, bound into another.
struct CellValue: JournalValue {
    let cell: JournalCell
    var journalValue: JournalCell { cell }
}
