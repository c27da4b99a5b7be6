import Foundation

/// The subset of `~/.ssh/config` users expect rollctl to honour: `Host`
/// patterns (with `*`, `?` and `!` negation), `HostName`, `User`, `Port`,
/// `IdentityFile`, and `ProxyJump` with one bastion. As in OpenSSH, the first
/// value found for a key wins. Inventory values take precedence over
/// everything read here (the inventory's `jump` over `ProxyJump`).
///
/// What rollctl cannot honour must not be ignored silently: `ProxyCommand`
/// (rollctl runs no proxy commands: the host would be dialled directly), a
/// `ProxyJump` through a chain of bastions, `Include` (settings in files
/// rollctl does not read) and `Match` (conditions rollctl cannot evaluate).
/// `unsupported(forHost:)` names them with file and line; the CLI refuses such
/// hosts before connecting.
public struct SSHConfig: Sendable {
    public struct Block: Sendable {
        public var patterns: [String]
        public var options: [(key: String, value: String, line: Int)]
        /// Line of the `Host` keyword; 0 for the implicit block before the first `Host`.
        public var line: Int = 0
    }

    /// What the config says about one host.
    public struct Resolved: Sendable, Equatable {
        public var hostName: String?
        public var user: String?
        public var port: Int?
        public var identityFiles: [String] = []
        public init() {}
    }

    /// A keyword rollctl cannot honour, where it is written.
    public struct Unsupported: Sendable, Equatable, CustomStringConvertible {
        public var file: String
        public var line: Int
        /// `ProxyJump` (a chain, or a value that is not `[user@]host[:port]`), `ProxyCommand`,
        /// `Include` or `Match`, as written in the file.
        public var keyword: String
        public var value: String
        public var message: String
        public var hint: String
        public var description: String { "\(file):\(line): \(message)" }
    }

    public var blocks: [Block]
    /// The file read, for messages (`~/.ssh/config` when parsed from text).
    public var path: String
    /// `Match` lines (whole-file: rollctl cannot tell which hosts they apply to).
    public var matchLines: [(line: Int, value: String)] = []

    public init(blocks: [Block] = [], path: String = "~/.ssh/config") {
        self.blocks = blocks
        self.path = path
    }

    /// Parses config text. Unknown keywords are ignored (OpenSSH has hundreds);
    /// `Match` blocks are skipped as a whole (and reported by `unsupported`).
    public static func parse(_ text: String, path: String = "~/.ssh/config") -> SSHConfig {
        var c = SSHConfig(blocks: [Block(patterns: ["*"], options: [])], path: path)
        var skipping = false
        for (i, raw) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            var line = raw.trimmingCharacters(in: .whitespaces)
            if line.hasSuffix("\r") { line.removeLast() }
            if line.isEmpty || line.hasPrefix("#") { continue }
            let (key, value) = splitKeyValue(line)
            switch key.lowercased() {
            case "host":
                skipping = false
                c.blocks.append(Block(patterns: value.split(whereSeparator: { $0 == " " || $0 == "\t" }).map(String.init), options: [], line: i + 1))
            case "match":
                skipping = true
                c.matchLines.append((i + 1, value))
            default:
                if !skipping { c.blocks[c.blocks.count - 1].options.append((key.lowercased(), unquote(value), i + 1)) }
            }
        }
        return c
    }

    /// Reads `~/.ssh/config` (or `path`); a missing file is an empty config.
    public static func load(path: String? = nil) -> SSHConfig {
        let p = path ?? (NSHomeDirectory() + "/.ssh/config")
        guard let text = try? String(contentsOfFile: p, encoding: .utf8) else { return SSHConfig(path: p) }
        return parse(text, path: p)
    }

    /// The first `ProxyJump` or `ProxyCommand` that applies to `host` (as in
    /// OpenSSH, whichever comes first decides); nil when none does or it is `none`.
    public func proxy(forHost host: String) -> (keyword: String, value: String, line: Int)? {
        for block in blocks where Self.matches(host: host, patterns: block.patterns) {
            for o in block.options where o.key == "proxyjump" || o.key == "proxycommand" {
                if o.value.lowercased() == "none" { return nil }
                return (o.key == "proxyjump" ? "ProxyJump" : "ProxyCommand", o.value, o.line)
            }
        }
        return nil
    }

    /// The bastion `ProxyJump` names for `host`, with the line it is on; nil when
    /// the host is reached directly (or through what `unsupported` reports).
    public func proxyJump(forHost host: String) -> (jump: JumpSpec, line: Int)? {
        guard let p = proxy(forHost: host), p.keyword == "ProxyJump", case .success(let spec) = JumpSpec.parse(p.value) else { return nil }
        return (spec, p.line)
    }

    /// What in this config rollctl would ignore for `host` although it changes
    /// how OpenSSH reaches it: the `ProxyCommand` that applies, or a `ProxyJump`
    /// rollctl cannot follow (a chain of bastions, a value it cannot read, a
    /// bastion that itself has a proxy) — the first one found decides, as in
    /// OpenSSH; `none` is no proxy. With `proxies: false` (the inventory says
    /// how the host is reached) those are not looked at. Also every `Include`
    /// in a block that applies (one in a `Host` block that does not match
    /// cannot affect the host), and every `Match` (rollctl cannot evaluate them).
    public func unsupported(forHost host: String, proxies: Bool = true) -> [Unsupported] {
        var out: [Unsupported] = []
        if proxies, let p = proxy(forHost: host) {
            if p.keyword == "ProxyCommand" {
                out.append(Unsupported(
                    file: path, line: p.line, keyword: p.keyword, value: p.value,
                    message: "host '\(host)' is to be reached through ProxyCommand \(Self.printable(p.value)); rollctl runs no proxy commands and would dial the host directly",
                    hint: "use ProxyJump [user@]bastion[:port] (one bastion) or the inventory's jump: instead, or add 'ProxyJump none' for the host in a Host block above this line if it is reachable directly"))
            } else {
                switch JumpSpec.parse(p.value) {
                case .failure(let problem):
                    out.append(Unsupported(
                        file: path, line: p.line, keyword: p.keyword, value: p.value,
                        message: "host '\(host)' is to be reached through ProxyJump \(Self.printable(p.value)): \(problem)",
                        hint: "rollctl goes through one bastion, written [user@]host[:port]; or set the host's jump: in the inventory"))
                case .success(let spec):
                    if let u = chainedProxy(bastion: spec.host, of: host) { out.append(u) }
                }
            }
        }
        for block in blocks where Self.matches(host: host, patterns: block.patterns) {
            for o in block.options where o.key == "include" {
                out.append(Unsupported(
                    file: path, line: o.line, keyword: "Include", value: o.value,
                    message: "Include \(Self.printable(o.value)) applies to host '\(host)', but rollctl does not read included files: their settings (User, Port, ProxyJump, ...) would be ignored",
                    hint: "copy the included Host blocks into \(path), or set ssh_config: false under the inventory's defaults to make rollctl ignore the file"))
            }
        }
        for m in matchLines {
            out.append(Unsupported(
                file: path, line: m.line, keyword: "Match", value: m.value,
                message: "Match \(Self.printable(m.value)) may apply to host '\(host)', but rollctl cannot evaluate Match blocks and would ignore their settings",
                hint: "write the settings in Host blocks instead, or set ssh_config: false under the inventory's defaults to make rollctl ignore the file"))
        }
        return out.sorted { $0.line < $1.line }
    }

    /// The error for a bastion (`bastion`, the jump of `host`) that this config
    /// would itself reach through a proxy: rollctl goes through one bastion only.
    /// A `ProxyJump` through the bastion itself (`Host *` blocks) is no chain: it is reached directly.
    public func chainedProxy(bastion: String, of host: String) -> Unsupported? {
        guard let p = proxy(forHost: bastion) else { return nil }
        if p.keyword == "ProxyJump", case .success(let spec) = JumpSpec.parse(p.value), spec.host == bastion { return nil }
        return Unsupported(
            file: path, line: p.line, keyword: p.keyword, value: p.value,
            message: "host '\(host)' is to be reached through bastion '\(Self.printable(bastion))', which is itself to be reached through \(p.keyword) \(Self.printable(p.value)); rollctl goes through one bastion only",
            hint: "add 'ProxyJump none' for \(Self.printable(bastion)) in a Host block above this line if rollctl's machine reaches it directly")
    }

    /// One line of at most 80 printable ASCII characters, for messages.
    static func printable(_ s: String) -> String {
        let clean = String(s.map { $0.isASCII && ($0.asciiValue ?? 0) >= 32 && $0 != "\u{7F}" ? $0 : "?" })
        return clean.count > 80 ? String(clean.prefix(77)) + "..." : clean
    }

    public func resolve(host: String) -> Resolved {
        var r = Resolved()
        for block in blocks where Self.matches(host: host, patterns: block.patterns) {
            for (key, value, _) in block.options {
                switch key {
                case "hostname": if r.hostName == nil { r.hostName = value.replacingOccurrences(of: "%h", with: host) }
                case "user": if r.user == nil { r.user = value }
                case "port": if r.port == nil { r.port = Int(value) }
                case "identityfile": r.identityFiles.append(Self.expandTilde(value))
                default: break
                }
            }
        }
        return r
    }

    static func matches(host: String, patterns: [String]) -> Bool {
        var matched = false
        for p in patterns {
            if p.hasPrefix("!") {
                if glob(String(p.dropFirst()), host) { return false }
            } else if glob(p, host) {
                matched = true
            }
        }
        return matched
    }

    /// `*` and `?` wildcards, as in ssh_config(5) PATTERNS.
    static func glob(_ pattern: String, _ text: String) -> Bool {
        let p = Array(pattern.lowercased()), t = Array(text.lowercased())
        var pi = 0, ti = 0, star = -1, mark = 0
        while ti < t.count {
            if pi < p.count, p[pi] == "?" || p[pi] == t[ti] {
                pi += 1; ti += 1
            } else if pi < p.count, p[pi] == "*" {
                star = pi; mark = ti; pi += 1
            } else if star >= 0 {
                pi = star + 1; mark += 1; ti = mark
            } else {
                return false
            }
        }
        while pi < p.count, p[pi] == "*" { pi += 1 }
        return pi == p.count
    }

    public static func expandTilde(_ path: String) -> String {
        if path == "~" { return NSHomeDirectory() }
        if path.hasPrefix("~/") { return NSHomeDirectory() + String(path.dropFirst(1)) }
        return path
    }

    private static func splitKeyValue(_ line: String) -> (String, String) {
        if let i = line.firstIndex(where: { $0 == " " || $0 == "\t" || $0 == "=" }) {
            let key = String(line[..<i])
            var rest = line[i...].drop(while: { $0 == " " || $0 == "\t" })
            if rest.first == "=" { rest = rest.dropFirst().drop(while: { $0 == " " || $0 == "\t" }) }
            return (key, String(rest).trimmingCharacters(in: .whitespaces))
        }
        return (line, "")
    }

    private static func unquote(_ v: String) -> String {
        if v.count >= 2, v.hasPrefix("\""), v.hasSuffix("\"") { return String(v.dropFirst().dropLast()) }
        return v
    }
}

/// One bastion as `ProxyJump` and the inventory's `jump:` write it:
/// `[user@]host[:port]` (also `ssh://[user@]host[:port]`, and `[v6]:port`).
public struct JumpSpec: Sendable, Equatable, Codable, CustomStringConvertible {
    public var user: String?
    public var host: String
    public var port: Int?

    public init(user: String? = nil, host: String, port: Int? = nil) {
        self.user = user
        self.host = host
        self.port = port
    }

    public var description: String {
        let h = host.contains(":") ? "[\(host)]" : host
        return (user.map { $0 + "@" } ?? "") + h + (port.map { ":\($0)" } ?? "")
    }

    /// Reads one hop; a comma-separated chain is refused (rollctl goes through one bastion).
    public static func parse(_ text: String) -> Result<JumpSpec, JumpSpecError> {
        var v = Substring(text.trimmingCharacters(in: .whitespaces))
        if v.isEmpty { return .failure(JumpSpecError("no bastion given")) }
        let hops = v.split(separator: ",", omittingEmptySubsequences: false)
        if hops.count > 1 {
            return .failure(JumpSpecError("a chain of \(hops.count) bastions; rollctl goes through one bastion only"))
        }
        if v.lowercased().hasPrefix("ssh://") { v = v.dropFirst(6) }
        if v.hasSuffix("/") { v = v.dropLast() }
        var spec = JumpSpec(host: "")
        if let at = v.lastIndex(of: "@") {
            let user = v[..<at]
            if user.isEmpty { return .failure(JumpSpecError("an empty user before '@'")) }
            spec.user = String(user)
            v = v[v.index(after: at)...]
        }
        var portText: Substring?
        if v.hasPrefix("[") {
            guard let close = v.firstIndex(of: "]") else { return .failure(JumpSpecError("'[' without ']'")) }
            let rest = v[v.index(after: close)...]
            spec.host = String(v[v.index(after: v.startIndex)..<close])
            if !rest.isEmpty {
                guard rest.hasPrefix(":") else { return .failure(JumpSpecError("'\(rest)' after ']'")) }
                portText = rest.dropFirst()
            }
        } else if v.filter({ $0 == ":" }).count == 1, let colon = v.firstIndex(of: ":") {
            spec.host = String(v[..<colon])
            portText = v[v.index(after: colon)...]
        } else {
            spec.host = String(v)  // a bare IPv6 address has no port
        }
        if let portText {
            guard let p = Int(portText), (1...65535).contains(p) else {
                return .failure(JumpSpecError("port '\(portText)' is not a number between 1 and 65535"))
            }
            spec.port = p
        }
        if spec.host.isEmpty { return .failure(JumpSpecError("no host name")) }
        if spec.host.hasPrefix("-") || spec.user?.hasPrefix("-") == true {
            return .failure(JumpSpecError("'\(SSHConfig.printable(text))' is not [user@]host[:port]"))
        }
        // Nothing a shell, an option parser or a log line would read as more than a name.
        let bad: (Character) -> Bool = { !$0.isASCII || $0.isWhitespace || ($0.asciiValue ?? 0) < 32 || $0 == "\u{7F}" || "[]/,;'\"$`\\".contains($0) }
        if spec.host.contains(where: { bad($0) || $0 == "@" }) || spec.user?.contains(where: bad) == true {
            return .failure(JumpSpecError("'\(SSHConfig.printable(text))' is not [user@]host[:port]"))
        }
        return .success(spec)
    }
}

public struct JumpSpecError: Error, Sendable, Equatable, CustomStringConvertible {
    public var description: String
    public init(_ d: String) { description = d }
}
