import Foundation
import CLibPQ

/// One PostgreSQL session through libpq's blocking API. Values always travel as
/// parameters (`$1`, `$2`, … in text format), never inside the SQL text.
///
/// Not thread-safe by itself: one caller at a time (the journal's store holds a lock
/// around it). Its calls block: run them off the cooperative pool.
public final class PostgresConnection: @unchecked Sendable {
    private var conn: OpaquePointer?

    /// Opens a session. `conninfo` is a libpq connection string or a `postgresql://` URL;
    /// `settings` override its keywords (e.g. `application_name`). The password, if the
    /// server wants one, comes from libpq itself (`PGPASSWORD`, `~/.pgpass`, `PGPASSFILE`).
    public init(conninfo: String, settings: [String: String] = [:]) throws {
        let keys = ["dbname"] + settings.keys.sorted()
        let values = [conninfo] + settings.keys.sorted().map { settings[$0]! }
        // expand_dbname = 1: the first "dbname" is parsed as a URL or a conninfo string,
        // the later keywords override what it says.
        let c = Self.withCStrings(keys) { k in Self.withCStrings(values) { v in PQconnectdbParams(k, v, 1) } }
        guard let c else { throw PostgresError(.connectionFailed, message: "out of memory") }
        if PQstatus(c) != CONNECTION_OK {
            let message = Self.trimmed(PQerrorMessage(c))
            PQfinish(c)
            throw PostgresError(.connectionFailed, message: message)
        }
        // The server's notices ("relation … already exists, skipping") would go to stderr
        // unfiltered: they are not errors, and nothing of a peer reaches the terminal raw.
        PQsetNoticeProcessor(c, { _, _ in }, nil)
        conn = c
    }

    deinit { if let conn { PQfinish(conn) } }

    /// Closes the session now (later calls fail with `connectionLost`).
    public func close() {
        if let conn { PQfinish(conn) }
        conn = nil
    }

    /// Whether the session is still up (libpq's view: a dropped socket shows at the next call).
    public var isOpen: Bool { conn.map { PQstatus($0) == CONNECTION_OK } ?? false }

    /// Re-establishes a dropped session with the same parameters.
    public func reset() throws {
        guard let conn else { throw PostgresError(.connectionLost, message: "the connection was closed") }
        PQreset(conn)
        if PQstatus(conn) != CONNECTION_OK { throw PostgresError(.connectionLost, message: Self.trimmed(PQerrorMessage(conn))) }
    }

    /// The server's `ssl` use for this session.
    public var usesTLS: Bool { conn.map { PQsslInUse($0) != 0 } ?? false }

    /// A server setting as the session sees it (`server_version`, …).
    public func parameter(_ name: String) -> String? {
        guard let conn, let p = PQparameterStatus(conn, name) else { return nil }
        return String(cString: p)
    }

    /// Runs one statement with parameters. The result holds the rows (if any) and the
    /// number of rows it changed.
    @discardableResult
    public func execute(_ sql: String, _ parameters: [PostgresValue?] = []) throws -> PostgresResult {
        guard let conn else { throw PostgresError(.connectionLost, message: "the connection was closed") }
        let texts = parameters.map { $0?.text }
        let result: OpaquePointer? = Self.withOptionalCStrings(texts) { values in
            PQexecParams(conn, sql, Int32(parameters.count), nil, values, nil, nil, 0)
        }
        return try check(result)
    }

    /// Runs SQL with no parameters, possibly several statements (DDL of a migration).
    public func executeScript(_ sql: String) throws {
        guard let conn else { throw PostgresError(.connectionLost, message: "the connection was closed") }
        _ = try check(PQexec(conn, sql))
    }

    /// Runs `body` in one transaction: committed when it returns, rolled back when it throws.
    /// `begin` is the statement that opens it (`BEGIN`, `BEGIN ISOLATION LEVEL …`).
    public func transaction<T>(begin: String = "BEGIN", _ body: (PostgresConnection) throws -> T) throws -> T {
        try executeScript(begin)
        let value: T
        do { value = try body(self) } catch {
            // The rollback's own failure (a lost connection) must not hide the cause.
            _ = try? executeScript("ROLLBACK")
            throw error
        }
        try executeScript("COMMIT")
        return value
    }

    private func check(_ result: OpaquePointer?) throws -> PostgresResult {
        guard let result else {
            let message = conn.map { Self.trimmed(PQerrorMessage($0)) } ?? "no connection"
            throw PostgresError(isOpen ? .protocolViolation : .connectionLost, message: message)
        }
        switch PQresultStatus(result) {
        case PGRES_COMMAND_OK, PGRES_TUPLES_OK, PGRES_EMPTY_QUERY:
            return PostgresResult(result)
        default:
            let error = Self.error(from: result, connectionOK: isOpen)
            PQclear(result)
            throw error
        }
    }

    static func error(from result: OpaquePointer, connectionOK: Bool) -> PostgresError {
        func field(_ code: Character) -> String? {
            guard let p = PQresultErrorField(result, Int32(code.asciiValue!)) else { return nil }
            return String(cString: p)
        }
        let state = field("C")
        let message = field("M") ?? trimmed(PQresultErrorMessage(result))
        let kind: PostgresError.Code = state != nil ? .server : (connectionOK ? .protocolViolation : .connectionLost)
        return PostgresError(kind, sqlState: state, message: message, detail: field("D"), hint: field("H"))
    }

    static func trimmed(_ p: UnsafePointer<CChar>?) -> String {
        guard let p else { return "" }
        return String(cString: p).trimmingCharacters(in: .whitespacesAndNewlines)
    }

    static func withCStrings<R>(_ strings: [String], _ body: (UnsafePointer<UnsafePointer<CChar>?>) -> R) -> R {
        withOptionalCStrings(strings.map { Optional($0) }) { body($0) }
    }

    /// `strings` as a C array of C strings (NULL entries for nil, and a NULL at the end).
    static func withOptionalCStrings<R>(_ strings: [String?], _ body: (UnsafePointer<UnsafePointer<CChar>?>) -> R) -> R {
        var owned: [UnsafeMutablePointer<CChar>?] = strings.map { $0.map { strdup($0) } }
        defer { for p in owned { free(p) } }
        owned.append(nil)
        return owned.withUnsafeBufferPointer { buf in
            buf.baseAddress!.withMemoryRebound(to: UnsafePointer<CChar>?.self, capacity: buf.count) { body($0) }
        }
    }
}

/// A value bound to a statement parameter, sent in PostgreSQL's text format; the server
/// infers its type from where the parameter stands.
public enum PostgresValue: Sendable, Equatable {
    case text(String)
    case int(Int64)
    case double(Double)
    /// Sent as `1`/`0`: read as a boolean where one is expected, and as an integer in an
    /// integer column (where SQLite keeps booleans).
    case bool(Bool)

    public var text: String {
        switch self {
        case .text(let s): return s
        case .int(let i): return String(i)
        case .double(let d): return String(d)
        case .bool(let b): return b ? "1" : "0"
        }
    }
}

/// The rows of one statement (text format) and what it changed. Owns libpq's result.
public final class PostgresResult: @unchecked Sendable {
    private let result: OpaquePointer
    public let rowCount: Int
    public let columnCount: Int

    init(_ result: OpaquePointer) {
        self.result = result
        rowCount = Int(PQntuples(result))
        columnCount = Int(PQnfields(result))
    }

    deinit { PQclear(result) }

    /// Rows inserted, updated or deleted (0 for a statement that changes none).
    public var affectedRows: Int { Int(String(cString: PQcmdTuples(result))) ?? 0 }

    /// The column's index by name (as the statement names it), nil when there is none.
    public func column(named name: String) -> Int? {
        let i = Int(PQfnumber(result, "\"" + name.replacingOccurrences(of: "\"", with: "\"\"") + "\""))
        return i < 0 ? nil : i
    }

    public func columnName(_ column: Int) -> String { String(cString: PQfname(result, Int32(column))) }

    /// The value's text, nil for NULL.
    public func value(row: Int, column: Int) -> String? {
        precondition(row < rowCount && column < columnCount, "row \(row), column \(column) outside the result")
        if PQgetisnull(result, Int32(row), Int32(column)) != 0 { return nil }
        return String(cString: PQgetvalue(result, Int32(row), Int32(column)))
    }
}

/// A PostgreSQL or libpq failure. Classify by `code` (and, for the server's errors, by
/// `sqlState`: `23505` a unique violation, `40P01` a deadlock, …), never by the message.
public struct PostgresError: Error, Sendable, CustomStringConvertible {
    /// What kind of failure (an opaque struct, so new kinds do not break callers' switches).
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        enum Kind: Hashable, Sendable { case connectionFailed, connectionLost, server, protocolViolation }
        let kind: Kind
        /// The server could not be reached, or refused the session (authentication, no such database).
        public static let connectionFailed = Code(kind: .connectionFailed)
        /// The session broke while in use (server gone, network cut).
        public static let connectionLost = Code(kind: .connectionLost)
        /// The server refused a statement: `sqlState` says why.
        public static let server = Code(kind: .server)
        /// libpq reported something unexpected.
        public static let protocolViolation = Code(kind: .protocolViolation)
        public var description: String { "\(kind)" }
    }

    public var code: Code
    /// PostgreSQL's SQLSTATE (five characters), for errors the server reported.
    public var sqlState: String?
    public var message: String
    public var detail: String?
    public var hint: String?

    public init(_ code: Code, sqlState: String? = nil, message: String, detail: String? = nil, hint: String? = nil) {
        self.code = code; self.sqlState = sqlState; self.message = message; self.detail = detail; self.hint = hint
    }

    /// A failure that may pass if tried again on a new session (the network, the server restarting).
    public var isTransient: Bool {
        code == .connectionLost || code == .connectionFailed || sqlState.map { $0.hasPrefix("08") || $0 == "57P01" || $0 == "40001" || $0 == "40P01" } ?? false
    }

    public var description: String {
        var s = "PostgreSQL: " + message
        if let sqlState { s += " (SQLSTATE \(sqlState))" }
        if let detail { s += "; " + detail }
        if let hint { s += "; hint: " + hint }
        return s
    }
}
