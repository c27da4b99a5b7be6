import Foundation
import Yams
import Basics
import SSH

/// One host of the fleet as the inventory describes it.
public struct InventoryHost: Sendable, Equatable, Codable {
    public var name: String
    public var address: String
    public var port: Int?
    public var user: String?
    public var identityFiles: [String]?
    public var labels: [String: String]
    /// Line of the host's entry in the inventory file, for messages.
    public var line: Int?

    public init(name: String, address: String, port: Int? = nil, user: String? = nil,
                identityFiles: [String]? = nil, labels: [String: String] = [:], line: Int? = nil) {
        self.name = name
        self.address = address
        self.port = port
        self.user = user
        self.identityFiles = identityFiles
        self.labels = labels
        self.line = line
    }
}

/// SSH settings for every host unless the host says otherwise.
public struct InventoryDefaults: Sendable, Equatable {
    public var user: String?
    public var port: Int?
    public var identityFiles: [String]?
    public var knownHosts: String?
    public var hostKeyPolicy: HostKeyPolicy = .strict
    public var connectTimeout: Duration = .seconds(10)
    /// Read `~/.ssh/config` for values the inventory leaves open.
    public var useSSHConfig = true
    public init() {}
}

/// The fleet: hosts with addresses and labels, and SSH defaults.
///
/// ```yaml
/// defaults:
///   user: root
///   port: 22
///   identity: ~/.ssh/fleet_ed25519     # or a list
///   known_hosts: ~/.ssh/known_hosts
///   host_key_policy: strict             # strict | accept-new | off
///   connect_timeout: 10s
/// hosts:
///   - name: web-001
///     address: 10.1.0.1
///     labels: {rack: r1, cluster: c1}
/// ```
/// Relative paths are relative to the inventory file's folder.
public struct Inventory: Sendable {
    public var path: String
    public var defaults: InventoryDefaults
    public var hosts: [InventoryHost]

    public init(path: String, defaults: InventoryDefaults = InventoryDefaults(), hosts: [InventoryHost]) {
        self.path = path
        self.defaults = defaults
        self.hosts = hosts
    }

    static let topKeys = ["defaults", "hosts"]
    static let defaultKeys = ["user", "port", "identity", "known_hosts", "host_key_policy", "connect_timeout", "ssh_config"]
    static let hostKeys = ["name", "address", "port", "user", "identity", "labels"]

    /// Loads and validates an inventory. Throws `InputErrors` with every problem found.
    public static func load(path: String) throws -> Inventory {
        // An Ansible inventory (INI or YAML) is read as one (AnsibleInventory).
        if let data = FileManager.default.contents(atPath: path), data.count < 64 << 20 {
            let text = String(decoding: data, as: UTF8.self)
            if AnsibleInventory.looksLikeAnsible(path: path, text: text) { return try AnsibleInventory.load(path: path, text: text) }
        }
        let reader = YAMLReader(file: path)
        guard let root = reader.load(path: path) else { throw InputErrors(reader.errors) }
        let inv = parse(root, path: path, reader: reader)
        if !reader.errors.isEmpty { throw InputErrors(reader.errors) }
        return inv!
    }

    /// Parses from text (tests, stdin).
    public static func parse(text: String, path: String) throws -> Inventory {
        let reader = YAMLReader(file: path)
        guard let root = reader.parse(data: Data(text.utf8)) else { throw InputErrors(reader.errors) }
        let inv = parse(root, path: path, reader: reader)
        if !reader.errors.isEmpty { throw InputErrors(reader.errors) }
        return inv!
    }

    static func parse(_ root: Node, path: String, reader r: YAMLReader) -> Inventory? {
        guard let top = r.mapping(root, "the inventory", allowed: topKeys) else { return nil }
        let base = (path as NSString).deletingLastPathComponent
        func resolvePath(_ p: String) -> String {
            let t = SSHConfig.expandTilde(p)
            return t.hasPrefix("/") || base.isEmpty ? t : base + "/" + t
        }
        var defaults = InventoryDefaults()
        var hosts: [InventoryHost] = []
        var positions: [(line: Int?, column: Int?, addressLine: Int?, addressColumn: Int?)] = []
        var sawHosts = false
        for (key, _, value) in top {
            switch key {
            case "defaults":
                guard let pairs = r.mapping(value, "defaults", allowed: defaultKeys) else { continue }
                for (k, _, v) in pairs {
                    switch k {
                    case "user": defaults.user = validUser(v, r)
                    case "port": defaults.port = r.int(v, "port", range: 1...65535)
                    case "identity": defaults.identityFiles = r.stringList(v, "identity")?.map(resolvePath)
                    case "known_hosts": defaults.knownHosts = r.string(v, "known_hosts").map(resolvePath)
                    case "host_key_policy":
                        if let s = r.string(v, "host_key_policy") {
                            if let p = HostKeyPolicy(rawValue: s) { defaults.hostKeyPolicy = p } else {
                                r.error(v, "host_key_policy must be one of strict, accept-new, off; found '\(s)'",
                                        hint: nearest(s, in: HostKeyPolicy.allCases.map(\.rawValue)).map { "did you mean '\($0)'?" })
                            }
                        }
                    case "connect_timeout":
                        if let d = r.duration(v, "connect_timeout", min: .milliseconds(100)) { defaults.connectTimeout = d }
                    case "ssh_config": defaults.useSSHConfig = r.bool(v, "ssh_config") ?? true
                    default: break
                    }
                }
            case "hosts":
                sawHosts = true
                guard case let .sequence(seq) = value else {
                    r.error(value, "hosts must be a list of hosts, found \(r.kind(value))")
                    continue
                }
                for item in seq {
                    if let h = parseHost(item, r, resolvePath) {
                        hosts.append(h)
                        // Where the host's name and address are written, for duplicate errors.
                        func mark(_ key: String) -> Mark? {
                            guard case let .mapping(m) = item, let v = m.first(where: { $0.key.scalar?.string == key })?.value else { return item.mark }
                            return v.mark ?? item.mark
                        }
                        let n = mark("name"), a = mark("address")
                        positions.append((n?.line, n?.column, a?.line, a?.column))
                    }
                }
            default: break
            }
        }
        if !sawHosts {
            r.error(root, "the inventory has no 'hosts' list", hint: "add hosts: [{name: web-001, address: 10.0.0.1}]")
        } else if hosts.isEmpty && r.errors.isEmpty {
            r.error(root, "the inventory lists no hosts")
        }
        var names: [String: (line: Int?, column: Int?)] = [:]
        var endpoints: [String: String] = [:]
        for (h, at) in zip(hosts, positions) {
            if let first = names[h.name] {
                r.errors.append(InputError(file: path, line: at.line, column: at.column,
                                           "duplicate host name '\(h.name)' (first at line \(first.line ?? 0), column \(first.column ?? 0))",
                                           hint: "host names must be unique: rename or remove one of them"))
            } else {
                names[h.name] = (at.line, at.column)
            }
            let ep = "\(h.address):\(h.port ?? defaults.port ?? 22)"
            if let other = endpoints[ep] {
                r.errors.append(InputError(file: path, line: at.addressLine, column: at.addressColumn,
                                           "hosts '\(other)' and '\(h.name)' have the same address and port \(ep)"))
            } else {
                endpoints[ep] = h.name
            }
        }
        return Inventory(path: path, defaults: defaults, hosts: hosts)
    }

    static func parseHost(_ node: Node, _ r: YAMLReader, _ resolvePath: (String) -> String) -> InventoryHost? {
        guard let pairs = r.mapping(node, "a host", allowed: hostKeys) else { return nil }
        var name: String?, address: String?, port: Int?, user: String?, identity: [String]?
        var labels: [String: String] = [:]
        var ok = true
        for (k, _, v) in pairs {
            switch k {
            case "name":
                name = r.string(v, "name")
                if let n = name, !isValidHostName(n) {
                    r.error(v, "host name '\(printable(n))' is not valid: use letters, digits, '.', '-', '_' (at most 253 characters)")
                    ok = false
                }
            case "address":
                address = r.string(v, "address")
                if let a = address, !isValidAddress(a) {
                    r.error(v, "address '\(printable(a))' is not an IPv4/IPv6 address or DNS name")
                    ok = false
                }
            case "port": port = r.int(v, "port", range: 1...65535)
            case "user": user = validUser(v, r)
            case "identity": identity = r.stringList(v, "identity")?.map(resolvePath)
            case "labels":
                guard case let .mapping(m) = v else {
                    r.error(v, "labels must be a mapping like {rack: r1}, found \(r.kind(v))")
                    continue
                }
                for (lk, lv) in m {
                    guard let key = r.string(lk, "a label name"), let value = r.string(lv, "label '\(lk.string ?? "")'") else { continue }
                    if !isValidLabel(key) || !isValidLabel(value) {
                        r.error(lk, "label \(printable(key))=\(printable(value)) is not valid: use letters, digits, '.', '-', '_', '/', ':'")
                        continue
                    }
                    labels[key] = value
                }
            default: break
            }
        }
        guard ok else { return nil }
        guard let n = name else {
            r.error(node, "a host needs a 'name'")
            return nil
        }
        guard let a = address ?? (isValidAddress(n) ? n : nil) else {
            r.error(node, "host '\(n)' needs an 'address'")
            return nil
        }
        return InventoryHost(name: n, address: a, port: port, user: user, identityFiles: identity, labels: labels, line: node.mark?.line)
    }

    static func validUser(_ v: Node, _ r: YAMLReader) -> String? {
        guard let u = r.string(v, "user") else { return nil }
        let ok = !u.isEmpty && u.count <= 32 && u.first.map { $0.isLetter || $0 == "_" } == true
            && u.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || "_.-".contains($0)) }
        if !ok { r.error(v, "user '\(printable(u))' is not a valid user name") }
        return ok ? u : nil
    }

    public static func isValidHostName(_ s: String) -> Bool {
        !s.isEmpty && s.count <= 253 && s.first!.isASCII && (s.first!.isLetter || s.first!.isNumber)
            && s.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || "._-".contains($0)) }
    }

    public static func isValidAddress(_ s: String) -> Bool {
        var v4 = in_addr(), v6 = in6_addr()
        if inet_pton(AF_INET, s, &v4) == 1 || inet_pton(AF_INET6, s, &v6) == 1 { return true }
        let labels = s.split(separator: ".", omittingEmptySubsequences: false)
        return s.count <= 253 && !labels.isEmpty && labels.allSatisfy { l in
            !l.isEmpty && l.count <= 63 && l.first != "-" && l.last != "-" && l.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "-") }
        }
    }

    static func isValidLabel(_ s: String) -> Bool {
        !s.isEmpty && s.count <= 128 && s.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || "._-/:".contains($0)) }
    }

    /// A value shown in an error message without control characters.
    static func printable(_ s: String) -> String {
        String(s.prefix(60).map { $0.isASCII && !$0.isNewline && $0 != "\t" && ($0.asciiValue ?? 0) >= 32 ? $0 : "?" })
    }
}

extension Inventory {
    /// The endpoint and connect options for a host: the host's own values, then
    /// the inventory defaults, then `~/.ssh/config`, then built-in defaults
    /// (user root, port 22, ~/.ssh/id_{ed25519,ecdsa,rsa}, ~/.ssh/known_hosts).
    public func sshTarget(for host: InventoryHost, sshConfig: SSHConfig = SSHConfig()) -> (SSHEndpoint, SSHConnectOptions) {
        let cfg = defaults.useSSHConfig ? sshConfig.resolve(host: host.name) : SSHConfig.Resolved()
        let user = host.user ?? defaults.user ?? cfg.user ?? "root"
        let port = host.port ?? defaults.port ?? cfg.port ?? 22
        var identities = host.identityFiles ?? defaults.identityFiles ?? []
        if identities.isEmpty { identities = cfg.identityFiles }
        if identities.isEmpty {
            identities = ["id_ed25519", "id_ecdsa", "id_rsa"].map { NSHomeDirectory() + "/.ssh/" + $0 }
                .filter { FileManager.default.fileExists(atPath: $0) }
        }
        let known = defaults.knownHosts ?? NSHomeDirectory() + "/.ssh/known_hosts"
        let endpoint = SSHEndpoint(name: host.name, address: host.address, port: port, user: user)
        let options = SSHConnectOptions(connectTimeout: defaults.connectTimeout, knownHostsPath: known,
                                        hostKeyPolicy: defaults.hostKeyPolicy, identityFiles: identities)
        return (endpoint, options)
    }
}

extension Inventory {
    /// What `~/.ssh/config` (as read into `sshConfig`) says about `hosts` that
    /// rollctl cannot honour (`ProxyJump`, `ProxyCommand`, `Include`, `Match`:
    /// see `SSHConfig.unsupported`), as input errors at the config's file and
    /// line, one per line of the config with the hosts it concerns. Empty when
    /// the inventory says `ssh_config: false`. Callers refuse to run on any
    /// error, before connecting to a host.
    public func sshConfigProblems(_ sshConfig: SSHConfig, hosts: [InventoryHost]) -> [InputError] {
        guard defaults.useSSHConfig else { return [] }
        var order: [Int] = []
        var byLine: [Int: (first: SSHConfig.Unsupported, hosts: [String])] = [:]
        for h in hosts {
            for u in sshConfig.unsupported(forHost: h.name) {
                if byLine[u.line] == nil { order.append(u.line); byLine[u.line] = (u, []) }
                byLine[u.line]!.hosts.append(h.name)
            }
        }
        return order.sorted().map { line in
            let (u, names) = byLine[line]!
            var message = u.message
            if names.count > 1 {
                let others = names.dropFirst()
                let list = others.prefix(5).joined(separator: ", ") + (others.count > 5 ? " and \(others.count - 5) more" : "")
                message = message.replacingOccurrences(of: "host '\(names[0])'", with: "host '\(names[0])' (and \(list))")
            }
            return InputError(file: u.file, line: u.line, column: nil, message, hint: u.hint)
        }
    }

    /// `sshConfigProblems`, thrown as `InputErrors` when there are any.
    public func checkSSHConfig(_ sshConfig: SSHConfig, hosts: [InventoryHost]) throws {
        let problems = sshConfigProblems(sshConfig, hosts: hosts)
        if !problems.isEmpty { throw InputErrors(problems) }
    }
}
