import Foundation

/// Where the journal is: a SQLite file (the default), or a PostgreSQL database given as
/// `postgres://user@host:port/db` (or `postgresql://…`). Checked before anything connects:
/// a URL with a password is refused (libpq reads it from `PGPASSWORD`, `~/.pgpass` or
/// `PGPASSFILE`, so it never reaches a command line, a log or the journal), and so is a
/// server off this machine without TLS, unless the user opts in to plain text.
public enum JournalLocation: Sendable, Equatable {
    case sqlite(String)
    case postgres(PostgresURL)

    /// A checked PostgreSQL URL.
    public struct PostgresURL: Sendable, Equatable {
        /// What libpq is given (the URL as written: it holds no password).
        public let conninfo: String
        /// For people and error messages.
        public var display: String { conninfo }
    }

    /// The path, or the URL (which holds no password).
    public var display: String {
        switch self {
        case .sqlite(let p): return p
        case .postgres(let u): return u.display
        }
    }

    /// Bad `--journal` / `ROLLCTL_JOURNAL` input: what is wrong and what to do.
    public struct Invalid: Error, Sendable, CustomStringConvertible {
        public var message: String
        public var hint: String
        public var description: String { "\(message) (\(hint))" }
    }

    /// `value` read as a journal location. `allowPlaintext`: the user accepts a server off
    /// this machine without TLS. `environment` supplies `PGSSLMODE`, which libpq uses when
    /// the URL names no `sslmode`.
    public static func parse(_ value: String, allowPlaintext: Bool = false,
                             environment: [String: String] = ProcessInfo.processInfo.environment) throws -> JournalLocation {
        let lower = value.lowercased()
        guard lower.hasPrefix("postgres://") || lower.hasPrefix("postgresql://") else {
            if lower.contains("://") {
                throw Invalid(message: "journal '\(redacted(value))': unknown scheme", hint: "give a SQLite file's path, or postgres://user@host:port/db")
            }
            return .sqlite(value)
        }
        // libpq's URL: postgresql://[userinfo@][host[:port][,…]][/dbname][?param=value&…]
        // (split here by hand: Foundation's URL parser refuses the host lists libpq accepts).
        let rest = value[value.range(of: "://")!.upperBound...]
        let authorityEnd = rest.firstIndex { $0 == "/" || $0 == "?" } ?? rest.endIndex
        let authority = rest[..<authorityEnd]
        let at = authority.lastIndex(of: "@")
        let userinfo = at.map { authority[..<$0] } ?? ""
        let hostspec = at.map { authority[authority.index(after: $0)...] } ?? authority
        var path = Substring(""), queryText = Substring("")
        let afterAuthority = rest[authorityEnd...]
        if let q = afterAuthority.firstIndex(of: "?") {
            path = afterAuthority[..<q]; queryText = afterAuthority[afterAuthority.index(after: q)...]
        } else {
            path = afterAuthority
        }
        if userinfo.contains(":") {
            throw Invalid(message: "journal URL '\(redacted(value))' holds a password",
                          hint: "remove it from the URL: libpq reads it from PGPASSWORD, ~/.pgpass or the file PGPASSFILE names")
        }
        var query: [String: String] = [:]
        for pair in queryText.split(separator: "&") where !pair.isEmpty {
            let kv = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            let key = String(kv[0]).removingPercentEncoding?.lowercased() ?? String(kv[0]).lowercased()
            query[key] = kv.count > 1 ? (String(kv[1]).removingPercentEncoding ?? String(kv[1])) : ""
        }
        if query["password"] != nil {
            throw Invalid(message: "the journal URL holds a password (password=)",
                          hint: "remove it from the URL: libpq reads it from PGPASSWORD, ~/.pgpass or the file PGPASSFILE names")
        }
        let database = path.hasPrefix("/") ? path.dropFirst() : path
        if database.isEmpty && (query["dbname"] ?? "").isEmpty {
            throw Invalid(message: "journal URL '\(value)' names no database", hint: "postgres://user@host:port/DATABASE")
        }
        // The hosts libpq will connect to: the URL's (a list is allowed), host= and hostaddr=, else PGHOST.
        var hosts: [String] = []
        for part in hostspec.split(separator: ",") where !part.isEmpty {
            var h = part
            if h.hasPrefix("["), let close = h.firstIndex(of: "]") { h = h[h.index(after: h.startIndex)..<close] }
            else if let colon = h.lastIndex(of: ":") { h = h[..<colon] }
            if !h.isEmpty { hosts.append(String(h).removingPercentEncoding ?? String(h)) }
        }
        for key in ["host", "hostaddr"] { if let h = query[key], !h.isEmpty { hosts += h.split(separator: ",").map(String.init) } }
        if hosts.isEmpty, let h = environment["PGHOST"], !h.isEmpty { hosts += h.split(separator: ",").map(String.init) }
        let sslmode = (query["sslmode"] ?? environment["PGSSLMODE"] ?? "prefer").lowercased()
        let tls = ["require", "verify-ca", "verify-full"].contains(sslmode)
        if !tls && !allowPlaintext, let remote = hosts.first(where: { !isLocal($0) }) {
            throw Invalid(message: "journal URL '\(value)': host \(remote) is not on this machine and sslmode is '\(sslmode)', so the password and the journal could cross the network in plain text",
                          hint: "add ?sslmode=verify-full (or require), or accept plain text with --journal-allow-plaintext (ROLLCTL_JOURNAL_ALLOW_PLAINTEXT=1)")
        }
        return .postgres(PostgresURL(conninfo: value))
    }

    /// A Unix socket folder, or a loopback name or address.
    static func isLocal(_ host: String) -> Bool {
        let h = host.trimmingCharacters(in: CharacterSet(charactersIn: "[]")).lowercased()
        if h.hasPrefix("/") || h.hasPrefix("@") || h == "localhost" || h == "::1" { return true }
        if h.hasPrefix("127."), h.split(separator: ".").count == 4 { return true }
        return false
    }

    /// The URL with whatever sits between `://` and `@` reduced to the user name (for an
    /// error message about a URL that holds a password).
    static func redacted(_ value: String) -> String {
        guard let scheme = value.range(of: "://"), let at = value[scheme.upperBound...].lastIndex(of: "@") else { return value }
        let userinfo = value[scheme.upperBound..<at]
        guard userinfo.contains(":") else { return value }
        let user = userinfo.split(separator: ":", maxSplits: 1).first.map(String.init) ?? ""
        return String(value[..<scheme.upperBound]) + user + ":***" + String(value[at...])
    }
}
