import Foundation

/// The subset of `~/.ssh/config` users expect rollctl to honour: `Host`
/// patterns (with `*`, `?` and `!` negation), `HostName`, `User`, `Port`,
/// `IdentityFile`. As in OpenSSH, the first value found for a key wins.
/// Inventory values take precedence over everything read here.
///
/// What rollctl cannot honour must not be ignored silently: `ProxyJump` and
/// `ProxyCommand` (a host meant to be reached through a bastion would be
/// dialled directly), `Include` (settings in files rollctl does not read) and
/// `Match` (conditions rollctl cannot evaluate). `unsupported(forHost:)` names
/// them with file and line; the CLI refuses such hosts before connecting.
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
        /// `ProxyJump`, `ProxyCommand`, `Include` or `Match`, as written in the file.
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

    /// What in this config rollctl would ignore for `host` although it changes
    /// how OpenSSH reaches it: the `ProxyJump`/`ProxyCommand` that applies (the
    /// first one found, as OpenSSH; `none` is no proxy), every `Include` in a
    /// block that applies (one in a `Host` block that does not match cannot
    /// affect the host), and every `Match` (rollctl cannot evaluate them).
    public func unsupported(forHost host: String) -> [Unsupported] {
        var out: [Unsupported] = []
        var proxyDecided = false
        for block in blocks where Self.matches(host: host, patterns: block.patterns) {
            for o in block.options {
                switch o.key {
                case "proxyjump", "proxycommand":
                    if proxyDecided { continue }
                    proxyDecided = true
                    if o.value.lowercased() == "none" { continue }
                    let keyword = o.key == "proxyjump" ? "ProxyJump" : "ProxyCommand"
                    out.append(Unsupported(
                        file: path, line: o.line, keyword: keyword, value: o.value,
                        message: "host '\(host)' is to be reached through a bastion (\(keyword) \(Self.printable(o.value))); rollctl does not support bastions (ProxyJump/ProxyCommand) yet and would dial the host directly",
                        hint: "run rollctl from a machine that reaches the host directly, or add 'ProxyJump none' for it in a Host block above this line if it is reachable directly"))
                case "include":
                    out.append(Unsupported(
                        file: path, line: o.line, keyword: "Include", value: o.value,
                        message: "Include \(Self.printable(o.value)) applies to host '\(host)', but rollctl does not read included files: their settings (User, Port, ProxyJump, ...) would be ignored",
                        hint: "copy the included Host blocks into \(path), or set ssh_config: false under the inventory's defaults to make rollctl ignore the file"))
                default: break
                }
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
