import Foundation
import GRDB
import Postgres

/// A value the journal binds to a statement: strings, integers, booleans, doubles.
public protocol JournalValue {
    var journalValue: JournalCell { get }
}

/// One value going into or coming out of the journal, whichever database holds it.
public enum JournalCell: Sendable {
    case null
    case int(Int64)
    case double(Double)
    case text(String)
    case bool(Bool)
}

extension String: JournalValue { public var journalValue: JournalCell { .text(self) } }
extension Int: JournalValue { public var journalValue: JournalCell { .int(Int64(self)) } }
extension Int64: JournalValue { public var journalValue: JournalCell { .int(self) } }
extension Int32: JournalValue { public var journalValue: JournalCell { .int(Int64(self)) } }
extension Bool: JournalValue { public var journalValue: JournalCell { .bool(self) } }
extension Double: JournalValue { public var journalValue: JournalCell { .double(self) } }

/// Arguments of one statement, in order (`nil` is NULL).
typealias SQLArguments = [(any JournalValue)?]

/// Where the journal lives. SQLite is the default; PostgreSQL lets several machines share it.
enum JournalBackend: Sendable {
    case sqlite(DatabasePool)
    case postgres(PostgresStore)
}

/// The journal's database: one set of SQL for both backends, written so both accept it
/// (`INSERT … ON CONFLICT`, `CASE` instead of SQLite's two-argument `MAX`, `NULLS FIRST`
/// spelt out), with `?` placeholders that the PostgreSQL side numbers (`$1`, …).
/// Reads and writes go through `read` and `write`; a write is one transaction, serialised
/// against every other writer of the journal (SQLite's one writer; on PostgreSQL an advisory
/// lock taken first in the transaction), so read-then-write logic (the host locks, the
/// driver lease, a host's move) means the same on both.
struct JournalStore: Sendable {
    let backend: JournalBackend
    /// The driver leases this process holds: checked first in every write (`LeaseLost`).
    let fences: LeaseFences

    func read<T>(_ body: (SQLTx) throws -> T) throws -> T {
        switch backend {
        case .sqlite(let pool): return try pool.read { db in try body(SQLTx(.sqlite(db))) }
        case .postgres(let store): return try store.read { c in try body(SQLTx(.postgres(c, store))) }
        }
    }

    func write<T>(_ body: (SQLTx) throws -> T) throws -> T {
        switch backend {
        case .sqlite(let pool): return try pool.write { db in try fenced(SQLTx(.sqlite(db)), body) }
        case .postgres(let store): return try store.write { c in try fenced(SQLTx(.postgres(c, store)), body) }
        }
    }

    private func fenced<T>(_ tx: SQLTx, _ body: (SQLTx) throws -> T) throws -> T {
        try fences.check(tx)
        return try body(tx)
    }

    /// Several reads that must see one state of the journal (no write in between).
    func snapshot<T>(_ body: (SQLTx) throws -> T) throws -> T {
        switch backend {
        case .sqlite: return try read(body)
        case .postgres: return try write(body)
        }
    }

    var isPostgres: Bool { if case .postgres = backend { return true } else { return false } }
}

/// One open transaction (or, for reads on PostgreSQL, one session) of the journal's database.
struct SQLTx {
    enum Handle { case sqlite(Database), postgres(PostgresConnection, PostgresStore) }
    let handle: Handle
    init(_ h: Handle) { handle = h }

    var isPostgres: Bool { if case .postgres = handle { return true } else { return false } }

    /// Runs a statement; returns the rows it changed. `cached`: a statement run often (SQLite
    /// keeps it compiled: compiling anew was a quarter of a host move's cost).
    @discardableResult
    func execute(_ sql: String, cached: Bool = false, _ args: SQLArguments = []) throws -> Int {
        switch handle {
        case .sqlite(let db):
            if cached {
                try db.cachedStatement(sql: sql).execute(arguments: Self.sqliteArguments(args))
            } else {
                try db.execute(sql: sql, arguments: Self.sqliteArguments(args))
            }
            return db.changesCount
        case .postgres(let c, let store):
            return try c.execute(store.numbered(sql), Self.postgresArguments(args)).affectedRows
        }
    }

    func all(_ sql: String, cached: Bool = false, _ args: SQLArguments = []) throws -> [SQLRow] {
        switch handle {
        case .sqlite(let db):
            let rows = cached ? try Row.fetchAll(db.cachedStatement(sql: sql), arguments: Self.sqliteArguments(args))
                              : try Row.fetchAll(db, sql: sql, arguments: Self.sqliteArguments(args))
            return rows.map { SQLRow(.sqlite($0)) }
        case .postgres(let c, let store):
            let r = try c.execute(store.numbered(sql), Self.postgresArguments(args))
            return (0..<r.rowCount).map { SQLRow(.postgres(r, $0)) }
        }
    }

    func one(_ sql: String, cached: Bool = false, _ args: SQLArguments = []) throws -> SQLRow? {
        switch handle {
        case .sqlite(let db):
            let row = cached ? try Row.fetchOne(db.cachedStatement(sql: sql), arguments: Self.sqliteArguments(args))
                             : try Row.fetchOne(db, sql: sql, arguments: Self.sqliteArguments(args))
            return row.map { SQLRow(.sqlite($0)) }
        case .postgres(let c, let store):
            let r = try c.execute(store.numbered(sql), Self.postgresArguments(args))
            return r.rowCount > 0 ? SQLRow(.postgres(r, 0)) : nil
        }
    }

    /// Schema statements (no arguments, possibly several), in SQLite's spelling: on PostgreSQL
    /// an `INTEGER` column is a `BIGINT` (SQLite's integers are 64-bit), the event id an
    /// identity, and text compares byte by byte (`COLLATE "C"`, SQLite's `BINARY`), so
    /// lists come out in the same order from both.
    func script(_ sql: String, asWritten: Bool = false) throws {
        switch handle {
        case .sqlite(let db): try db.execute(sql: sql)
        case .postgres(let c, _): try c.executeScript(asWritten ? sql : Self.postgresDDL(sql))
        }
    }

    static func postgresDDL(_ sql: String) -> String {
        var s = sql.replacingOccurrences(of: "INTEGER PRIMARY KEY AUTOINCREMENT", with: "BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY")
        s = s.replacingOccurrences(of: #"\bINTEGER\b"#, with: "BIGINT", options: .regularExpression)
        s = s.replacingOccurrences(of: #"\bTEXT\b"#, with: "TEXT COLLATE \"C\"", options: .regularExpression)
        return s
    }

    static func sqliteArguments(_ args: SQLArguments) -> StatementArguments {
        // Optional existentials: GRDB's initializer for a sequence of concrete values maps them
        // through a key path, which costs more than the statement itself (bench-core's profile).
        StatementArguments(args.map { v -> (any DatabaseValueConvertible)? in
            switch v?.journalValue ?? .null {
            case .null: return nil
            case .int(let i): return i
            case .double(let d): return d
            case .text(let s): return s
            case .bool(let b): return b
            }
        })
    }

    static func postgresArguments(_ args: SQLArguments) -> [PostgresValue?] {
        args.map { v in
            switch v?.journalValue ?? .null {
            case .null: return nil
            case .int(let i): return .int(i)
            case .double(let d): return .double(d)
            case .text(let s): return .text(s)
            case .bool(let b): return .bool(b)
            }
        }
    }
}

/// A type the journal reads out of a column.
protocol JournalColumn {
    /// nil: the cell does not hold this type (NULL into a non-optional, text into an integer).
    static func decode(_ cell: SQLCellRef) -> Self?
}

/// A cell as the backend gave it.
enum SQLCellRef {
    case sqlite(DatabaseValue)
    case text(String?)

    var isNull: Bool {
        switch self {
        case .sqlite(let v): return v.isNull
        case .text(let s): return s == nil
        }
    }
}

extension String: JournalColumn {
    static func decode(_ cell: SQLCellRef) -> String? {
        switch cell { case .sqlite(let v): return String.fromDatabaseValue(v); case .text(let s): return s }
    }
}
extension Int64: JournalColumn {
    static func decode(_ cell: SQLCellRef) -> Int64? {
        switch cell { case .sqlite(let v): return Int64.fromDatabaseValue(v); case .text(let s): return s.flatMap { Int64($0) ?? Double($0).flatMap { Int64(exactly: $0) } } }
    }
}
extension Int: JournalColumn { static func decode(_ cell: SQLCellRef) -> Int? { Int64.decode(cell).flatMap { Int(exactly: $0) } } }
extension Int32: JournalColumn { static func decode(_ cell: SQLCellRef) -> Int32? { Int64.decode(cell).flatMap { Int32(exactly: $0) } } }
extension Bool: JournalColumn {
    static func decode(_ cell: SQLCellRef) -> Bool? {
        switch cell {
        case .sqlite(let v): return Bool.fromDatabaseValue(v)
        case .text(let s):
            switch s { case "t", "true": return true; case "f", "false": return false; default: return Int64.decode(cell).map { $0 != 0 } }
        }
    }
}
extension Double: JournalColumn {
    static func decode(_ cell: SQLCellRef) -> Double? {
        switch cell { case .sqlite(let v): return Double.fromDatabaseValue(v); case .text(let s): return s.flatMap { Double($0) } }
    }
}
extension Optional: JournalColumn where Wrapped: JournalColumn {
    static func decode(_ cell: SQLCellRef) -> Wrapped?? {
        if cell.isNull { return .some(nil) }
        return Wrapped.decode(cell).map { .some($0) }
    }
}

/// One row of a result, read by position or by column name. A value of the wrong type is a
/// programming error (the schema says what each column holds) and stops the process, as
/// GRDB's own row access does.
struct SQLRow {
    enum Source { case sqlite(Row), postgres(PostgresResult, Int) }
    let source: Source
    init(_ s: Source) { source = s }

    /// The result's column names, in order.
    var columnNames: [String] {
        switch source {
        case .sqlite(let row): return Array(row.columnNames)
        case .postgres(let r, _): return (0..<r.columnCount).map { r.columnName($0) }
        }
    }

    /// A cell as it is stored (PostgreSQL's text form stays text: the other side's column
    /// type decides, as SQLite's affinity and PostgreSQL's input functions do).
    func cell(_ index: Int) -> JournalCell {
        switch source {
        case .sqlite(let row):
            switch (row[index] as DatabaseValue).storage {
            case .null: return .null
            case .int64(let i): return .int(i)
            case .double(let d): return .double(d)
            case .string(let s): return .text(s)
            case .blob(let b): return .text(String(decoding: b, as: UTF8.self))
            }
        case .postgres(let r, let i): return r.value(row: i, column: index).map { .text($0) } ?? .null
        }
    }

    subscript<T: JournalColumn>(_ index: Int) -> T {
        let cell: SQLCellRef
        switch source {
        case .sqlite(let row): cell = .sqlite(row[index] as DatabaseValue)
        case .postgres(let r, let i): cell = .text(r.value(row: i, column: index))
        }
        guard let v = T.decode(cell) else { fatalError("journal: column \(index) does not hold a \(T.self): \(cell)") }
        return v
    }

    subscript<T: JournalColumn>(_ name: String) -> T {
        let cell: SQLCellRef
        switch source {
        case .sqlite(let row): cell = .sqlite((row[name] as DatabaseValue?) ?? .null)
        case .postgres(let r, let i): cell = .text(r.column(named: name).flatMap { r.value(row: i, column: $0) })
        }
        guard let v = T.decode(cell) else { fatalError("journal: column \(name) does not hold a \(T.self): \(cell)") }
        return v
    }
}

/// The journal on PostgreSQL: one session, used by one caller at a time. Every write
/// transaction first takes a transaction-scoped advisory lock shared by all rollctl
/// processes on this database, so writers are serialised as SQLite serialises them (one
/// writer), and a check-then-write (a host lock, the driver lease) cannot interleave with
/// another process's. Each commit waits for the server's WAL flush (`synchronous_commit`
/// is set `on` for the session, whatever the server's default), so a commit is durable
/// before the side effect it announces.
final class PostgresStore: @unchecked Sendable {
    /// The advisory lock keys: (rollctl's class, what it guards).
    static let lockClass: Int32 = 0x726f6c6c  // "roll"
    static let writeLock: Int32 = 1
    static let migrateLock: Int32 = 2

    private let lock = NSLock()
    private let connection: PostgresConnection
    private var numberedCache: [String: String] = [:]

    /// A journal cut off (a partition, a server gone) fails a call within ~20 s instead of
    /// TCP's ~15 minutes, so a driver cut from its journal ends and says so (it stops touching
    /// hosts after half its lease's TTL anyway). Only where the URL sets none of these itself.
    /// Every session: commits wait for the WAL flush; a transaction left open by a client that
    /// went silent (cut off mid-transaction, holding the write lock) is ended by the server
    /// after 15 s, so the other machines' writers (a standby taking over) are not held up for
    /// TCP's minutes. The journal's own transactions never sit idle.
    static let sessionSetup = "SET synchronous_commit = on; SET idle_in_transaction_session_timeout = '15s'"

    static let networkDefaults = ["connect_timeout": "10", "keepalives": "1", "keepalives_idle": "10",
                                  "keepalives_interval": "3", "keepalives_count": "3", "tcp_user_timeout": "20000"]

    init(conninfo: String) throws {
        var settings = ["application_name": "rollctl"]
        // A keyword the URL or conninfo sets (`keepalives_idle=` is not `keepalives=`) is left alone.
        for (key, value) in Self.networkDefaults where !conninfo.contains(key + "=") { settings[key] = value }
        connection = try PostgresConnection(conninfo: conninfo, settings: settings)
        try connection.executeScript(Self.sessionSetup)
    }

    func read<T>(_ body: (PostgresConnection) throws -> T) throws -> T {
        lock.lock(); defer { lock.unlock() }
        try reconnectIfDropped()
        return try body(connection)
    }

    func write<T>(_ body: (PostgresConnection) throws -> T) throws -> T {
        lock.lock(); defer { lock.unlock() }
        try reconnectIfDropped()
        return try connection.transaction { c in
            try c.execute("SELECT pg_advisory_xact_lock($1, $2)", [.int(Int64(Self.lockClass)), .int(Int64(Self.writeLock))])
            return try body(c)
        }
    }

    /// Runs the migrations' transaction under the migration lock: of two processes starting
    /// at once, the second waits and then finds them applied.
    func migrating<T>(_ body: (PostgresConnection) throws -> T) throws -> T {
        lock.lock(); defer { lock.unlock() }
        return try connection.transaction { c in
            try c.execute("SELECT pg_advisory_xact_lock($1, $2)", [.int(Int64(Self.lockClass)), .int(Int64(Self.migrateLock))])
            return try body(c)
        }
    }

    private func reconnectIfDropped() throws {
        if !connection.isOpen {
            try connection.reset()
            try connection.executeScript(Self.sessionSetup)
        }
    }

    /// `sql` with its `?` placeholders numbered `$1`, `$2`, … (outside quoted text), cached
    /// per statement. Called with the lock held.
    func numbered(_ sql: String) -> String {
        if let s = numberedCache[sql] { return s }
        var out = ""
        var n = 0
        var quote: Character? = nil
        for ch in sql {
            if let q = quote {
                if ch == q { quote = nil }
                out.append(ch)
            } else if ch == "'" || ch == "\"" {
                quote = ch; out.append(ch)
            } else if ch == "?" {
                n += 1; out += "$\(n)"
            } else {
                out.append(ch)
            }
        }
        if numberedCache.count < 4096 { numberedCache[sql] = out }
        return out
    }
}
