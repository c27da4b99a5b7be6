import Foundation

/// The subset of `~/.ssh/config` users expect rollctl to honour: `Host`
/// patterns (with `*`, `?` and `!` negation), `HostName`, `User`, `Port`,
/// `IdentityFile`. As in OpenSSH, the first value found for a key wins.
/// Inventory values take precedence over everything read here.
public struct SSHConfig: Sendable {
    public struct Block: Sendable {
        public var patterns: [String]
        public var options: [(key: String, value: String)]
    }

    /// What the config says about one host.
    public struct Resolved: Sendable, Equatable {
        public var hostName: String?
        public var user: String?
        public var port: Int?
        public var identityFiles: [String] = []
        public init() {}
    }

    public var blocks: [Block]

    public init(blocks: [Block] = []) { self.blocks = blocks }

    /// Parses config text. Unknown keywords are ignored (OpenSSH has hundreds);
    /// `Match` blocks are skipped as a whole.
    public static func parse(_ text: String) -> SSHConfig {
        var blocks: [Block] = [Block(patterns: ["*"], options: [])]
        var skipping = false
        for raw in text.split(separator: "\n", omittingEmptySubsequences: false) {
            var line = raw.trimmingCharacters(in: .whitespaces)
            if line.hasSuffix("\r") { line.removeLast() }
            if line.isEmpty || line.hasPrefix("#") { continue }
            let (key, value) = splitKeyValue(line)
            switch key.lowercased() {
            case "host":
                skipping = false
                blocks.append(Block(patterns: value.split(whereSeparator: { $0 == " " || $0 == "\t" }).map(String.init), options: []))
            case "match":
                skipping = true
            default:
                if !skipping { blocks[blocks.count - 1].options.append((key.lowercased(), unquote(value))) }
            }
        }
        return SSHConfig(blocks: blocks)
    }

    /// Reads `~/.ssh/config` (or `path`); a missing file is an empty config.
    public static func load(path: String? = nil) -> SSHConfig {
        let p = path ?? (NSHomeDirectory() + "/.ssh/config")
        guard let text = try? String(contentsOfFile: p, encoding: .utf8) else { return SSHConfig() }
        return parse(text)
    }

    public func resolve(host: String) -> Resolved {
        var r = Resolved()
        for block in blocks where Self.matches(host: host, patterns: block.patterns) {
            for (key, value) in block.options {
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
