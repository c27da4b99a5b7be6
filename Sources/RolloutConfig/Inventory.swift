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
    /// The host's own `jump:`; nil: the defaults' (then `~/.ssh/config`'s `ProxyJump`).
    public var jump: InventoryJump?

    public init(name: String, address: String, port: Int? = nil, user: String? = nil,
                identityFiles: [String]? = nil, labels: [String: String] = [:], line: Int? = nil, jump: InventoryJump? = nil) {
        self.jump = jump
        self.name = name
        self.address = address
        self.port = port
        self.user = user
        self.identityFiles = identityFiles
        self.labels = labels
        self.line = line
    }
}

/// How the inventory says a host is reached.
public enum InventoryJump: Sendable, Equatable, Codable, CustomStringConvertible {
    /// `jump: none`: directly, whatever the defaults or `~/.ssh/config` say.
    case direct
    /// Through one bastion: another host of the inventory by name (its address,
    /// port, user and identity), or `[user@]host[:port]`.
    case through(JumpSpec)

    public var description: String {
        switch self {
        case .direct: "none"
        case .through(let spec): spec.description
        }
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
    /// The bastion of every host that has no `jump` of its own (the bastion itself is reached directly).
    public var jump: InventoryJump?
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
///   jump: jump-1                        # a bastion for every host (optional)
/// hosts:
///   - name: web-001
///     address: 10.1.0.1
///     labels: {rack: r1, cluster: c1}
///   - name: jump-1                      # the default bastion: reached directly
///     address: 203.0.113.5
///   - name: db-001
///     address: 10.2.0.1
///     jump: admin@bastion.example.net:2222   # or none
/// ```
/// Relative paths are relative to the inventory file's folder. `jump` is the
/// name of another host of the inventory, or `[user@]host[:port]`, or `none`;
/// one level only (a bastion is reached directly).
public struct Inventory: Sendable {
    public var path: String
    public var defaults: InventoryDefaults
    public var hosts: [InventoryHost] { didSet { index = Self.index(hosts) } }
    /// Host name -> position in `hosts` (the first, if a name repeats): bastions are looked up by name.
    private var index: [String: Int]

    public init(path: String, defaults: InventoryDefaults = InventoryDefaults(), hosts: [InventoryHost]) {
        self.path = path
        self.defaults = defaults
        self.hosts = hosts
        self.index = Self.index(hosts)
    }

    private static func index(_ hosts: [InventoryHost]) -> [String: Int] {
        var d: [String: Int] = [:]
        for (i, h) in hosts.enumerated() where d[h.name] == nil { d[h.name] = i }
        return d
    }

    /// The host of this name.
    public func host(named name: String) -> InventoryHost? { index[name].map { hosts[$0] } }

    static let topKeys = ["defaults", "hosts"]
    static let defaultKeys = ["user", "port", "identity", "known_hosts", "host_key_policy", "connect_timeout", "ssh_config", "jump"]
    static let hostKeys = ["name", "address", "port", "user", "identity", "labels", "jump"]

    /// Loads and validates an inventory. Throws `InputErrors` with every problem found.
    public static func load(path: String) throws -> Inventory {
        let reader = YAMLReader(file: path)
        // Bounded first: a huge file is refused unread, whatever its format.
        guard let data = reader.read(path: path) else { throw InputErrors(reader.errors) }
        // An Ansible inventory (INI or YAML) is read as one (AnsibleInventory): INI is
        // told by its text; YAML only after the reader's checks (binary, depth) passed.
        let text = String(decoding: data, as: UTF8.self)
        if AnsibleInventory.isINIOrScript(path: path, text: text) { return try AnsibleInventory.load(path: path, text: text) }
        guard let root = reader.parse(data: data) else { throw InputErrors(reader.errors) }
        if AnsibleInventory.isAnsibleYAML(path: path, root) { return try AnsibleInventory.load(path: path, text: text, node: root) }
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
        var positions: [(line: Int?, column: Int?, addressLine: Int?, addressColumn: Int?, jump: Mark?)] = []
        var defaultsJump: Mark?
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
                    case "jump":
                        defaults.jump = parseJump(v, r)
                        defaultsJump = v.mark
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
                        positions.append((n?.line, n?.column, a?.line, a?.column, h.jump == nil ? nil : mark("jump")))
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
        let inv = Inventory(path: path, defaults: defaults, hosts: hosts)
        for (h, at) in zip(hosts, positions) {
            if let first = names[h.name] {
                r.errors.append(InputError(file: path, line: at.line, column: at.column,
                                           "duplicate host name '\(h.name)' (first at line \(first.line ?? 0), column \(first.column ?? 0))",
                                           hint: "host names must be unique: rename or remove one of them"))
            } else {
                names[h.name] = (at.line, at.column)
            }
            // Hosts behind different bastions may share a private address.
            var ep = "\(h.address):\(h.port ?? defaults.port ?? 22)"
            if case .through(let spec) = inv.inventoryJump(for: h) { ep += " via \(spec)" }
            if let other = endpoints[ep] {
                r.errors.append(InputError(file: path, line: at.addressLine, column: at.addressColumn,
                                           "hosts '\(other)' and '\(h.name)' have the same address and port \(ep)"))
            } else {
                endpoints[ep] = h.name
            }
        }
        r.errors += inv.jumpProblems(hostJumps: positions.map(\.jump), defaultsJump: defaultsJump)
        return inv
    }

    /// `jump:` as written: `none`, or one `[user@]host[:port]` (a host of the
    /// inventory is told apart when the whole inventory is read).
    static func parseJump(_ v: Node, _ r: YAMLReader) -> InventoryJump? {
        guard let text = r.string(v, "jump") else { return nil }
        if text.lowercased() == "none" { return .direct }
        switch JumpSpec.parse(text) {
        case .failure(let e):
            r.error(v, "jump '\(printable(text))': \(e)", hint: "write the name of a host of the inventory, [user@]host[:port], or none")
            return nil
        case .success(let spec):
            if let u = spec.user, !isValidUserName(u) {
                r.error(v, "jump '\(printable(text))': user '\(printable(u))' is not a valid user name")
                return nil
            }
            return .through(spec)
        }
    }

    /// What is wrong with the inventory's jumps, at the place of each: a name
    /// that is no host of the inventory, a host that jumps through itself, a
    /// bastion that itself goes through a bastion (one level only), a value
    /// that is no address. `hostJumps[i]` is where host i's `jump` is written.
    func jumpProblems(hostJumps: [Mark?], defaultsJump: Mark?) -> [InputError] {
        jumpProblems(hostJumps: hostJumps.map { $0.map { Place(line: $0.line, column: $0.column) } },
                     defaultsJump: defaultsJump.map { Place(line: $0.line, column: $0.column) })
    }

    /// A line and column in the inventory file.
    struct Place { var line: Int?; var column: Int? }

    func jumpProblems(hostJumps: [Place?], defaultsJump: Place?) -> [InputError] {
        var errors: [InputError] = []
        func error(_ at: Place?, _ message: String, hint: String? = nil) {
            errors.append(InputError(file: path, line: at?.line, column: at?.column, message, hint: hint))
        }
        /// Problems with `spec` as a bastion outside the inventory (nil: it is a host of the inventory).
        func outside(_ spec: JumpSpec, _ at: Place?, _ what: String) -> Bool {
            if host(named: spec.host) != nil { return false }
            if spec.user == nil && spec.port == nil && !spec.host.contains(".") && !spec.host.contains(":") {
                error(at, "\(what) '\(Self.printable(spec.host))' is not a host of the inventory",
                      hint: nearest(spec.host, in: hosts.map(\.name)).map { "did you mean '\($0)'?" }
                        ?? "name a host of the inventory, or write a bastion outside it as its DNS name, its address or user@host")
            } else if !Self.isValidAddress(spec.host) {
                error(at, "\(what) '\(Self.printable(spec.host))' is not an IPv4/IPv6 address or DNS name")
            }
            return true
        }
        if case .through(let spec) = defaults.jump, !outside(spec, defaultsJump, "defaults.jump:"), let b = host(named: spec.host),
           case .through(let next) = b.jump {
            let at = zip(hosts, hostJumps).first { $0.0.name == b.name }?.1
            error(at ?? defaultsJump, "'\(b.name)' is the default bastion (defaults.jump) but itself jumps through '\(Self.printable(next.description))': rollctl goes through one bastion only",
                  hint: "remove its jump, or set jump: none on it if rollctl's machine reaches it directly")
        }
        for (h, at) in zip(hosts, hostJumps) {
            guard case .through(let spec) = h.jump else { continue }
            if outside(spec, at, "jump:") {
                if spec.host == h.address && (spec.port ?? defaults.port ?? 22) == (h.port ?? defaults.port ?? 22) {
                    error(at, "host '\(h.name)' jumps through itself (\(Self.printable(spec.description)) is its own address)")
                }
                continue
            }
            let b = host(named: spec.host)!
            if b.name == h.name {
                error(at, "host '\(h.name)' jumps through itself", hint: "name another host as its bastion, or remove the jump")
            } else if case .through(let next) = inventoryJump(for: b) {
                let inherited = b.jump == nil ? " (defaults.jump)" : ""
                error(at, "host '\(h.name)' jumps through '\(b.name)', which itself jumps through '\(Self.printable(next.description))'\(inherited): rollctl goes through one bastion only",
                      hint: "give '\(b.name)' jump: none if rollctl's machine reaches it directly, or jump through '\(Self.printable(next.host))' straight to '\(h.name)'")
            }
        }
        return errors
    }

    static func parseHost(_ node: Node, _ r: YAMLReader, _ resolvePath: (String) -> String) -> InventoryHost? {
        guard let pairs = r.mapping(node, "a host", allowed: hostKeys) else { return nil }
        var name: String?, address: String?, port: Int?, user: String?, identity: [String]?, jump: InventoryJump?
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
            case "jump": jump = parseJump(v, r)
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
        return InventoryHost(name: n, address: a, port: port, user: user, identityFiles: identity, labels: labels, line: node.mark?.line, jump: jump)
    }

    static func validUser(_ v: Node, _ r: YAMLReader) -> String? {
        guard let u = r.string(v, "user") else { return nil }
        let ok = isValidUserName(u)
        if !ok { r.error(v, "user '\(printable(u))' is not a valid user name") }
        return ok ? u : nil
    }

    static func isValidUserName(_ u: String) -> Bool {
        !u.isEmpty && u.count <= 32 && u.first.map { $0.isLetter || $0 == "_" } == true
            && u.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || "_.-".contains($0)) }
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
    /// (user root, port 22, ~/.ssh/id_{ed25519,ecdsa,rsa}, ~/.ssh/known_hosts);
    /// and the bastion it is reached through (`jump(for:sshConfig:)`), if any.
    public func sshTarget(for host: InventoryHost, sshConfig: SSHConfig = SSHConfig()) -> (SSHEndpoint, SSHConnectOptions) {
        var (endpoint, options) = directTarget(for: host, sshConfig: sshConfig)
        options.jump = jump(for: host, sshConfig: sshConfig)
        return (endpoint, options)
    }

    func directTarget(for host: InventoryHost, sshConfig: SSHConfig) -> (SSHEndpoint, SSHConnectOptions) {
        let cfg = defaults.useSSHConfig ? sshConfig.resolve(host: host.name) : SSHConfig.Resolved()
        let user = host.user ?? defaults.user ?? cfg.user ?? "root"
        let port = host.port ?? defaults.port ?? cfg.port ?? 22
        var identities = host.identityFiles ?? defaults.identityFiles ?? []
        if identities.isEmpty { identities = cfg.identityFiles }
        if identities.isEmpty { identities = Self.defaultIdentities() }
        let endpoint = SSHEndpoint(name: host.name, address: host.address, port: port, user: user)
        return (endpoint, connectOptions(identities))
    }

    func connectOptions(_ identities: [String]) -> SSHConnectOptions {
        let known = defaults.knownHosts ?? NSHomeDirectory() + "/.ssh/known_hosts"
        return SSHConnectOptions(connectTimeout: defaults.connectTimeout, knownHostsPath: known,
                                 hostKeyPolicy: defaults.hostKeyPolicy, identityFiles: identities)
    }

    static func defaultIdentities() -> [String] {
        ["id_ed25519", "id_ecdsa", "id_rsa"].map { NSHomeDirectory() + "/.ssh/" + $0 }
            .filter { FileManager.default.fileExists(atPath: $0) }
    }

    /// What the inventory says about how `host` is reached: its own `jump`,
    /// else the defaults' (except for the default bastion itself, reached
    /// directly); nil when the inventory says nothing (`~/.ssh/config` may).
    public func inventoryJump(for host: InventoryHost) -> InventoryJump? {
        if let j = host.jump { return j }
        guard let d = defaults.jump else { return nil }
        if case .through(let spec) = d, isBastion(spec, host) { return .direct }
        return d
    }

    /// True when `spec` names `host`: by its inventory name, or its address (and port).
    func isBastion(_ spec: JumpSpec, _ host: InventoryHost) -> Bool {
        if spec.host == host.name { return true }
        guard spec.host == host.address, spec.port == nil || spec.port == (host.port ?? defaults.port ?? 22) else { return false }
        return self.host(named: spec.host) == nil
    }

    /// The bastion spec that applies to `host` and where it comes from (nil: directly):
    /// the inventory's `jump` (host, then defaults) wins over `~/.ssh/config`'s `ProxyJump`.
    public func jumpSpec(for host: InventoryHost, sshConfig: SSHConfig) -> (spec: JumpSpec, fromSSHConfigLine: Int?)? {
        switch inventoryJump(for: host) {
        case .direct: return nil
        case .through(let spec): return (spec, nil)
        case nil:
            guard defaults.useSSHConfig, let p = sshConfig.proxyJump(forHost: host.name) else { return nil }
            // `Host *` with `ProxyJump bastion` applies to the bastion too: it is reached directly.
            if isBastion(p.jump, host) { return nil }
            return (p.jump, p.line)
        }
    }

    /// The bastion `host` is reached through, with its own endpoint and options;
    /// nil: directly. A host of the inventory as bastion is reached as that host
    /// is (its address, port, user, identity), with the user and port of the
    /// `jump` value if it gives them; a bastion outside the inventory takes user,
    /// port and identity from the value, then `~/.ssh/config`'s entry for its
    /// name (and its `HostName`), then the inventory defaults, then root and 22.
    /// known_hosts, its policy and the connect timeout are the inventory's.
    public func jump(for host: InventoryHost, sshConfig: SSHConfig = SSHConfig()) -> SSHJump? {
        guard let (spec, _) = jumpSpec(for: host, sshConfig: sshConfig) else {
            if inventoryJump(for: host) == nil, defaults.useSSHConfig, let p = sshConfig.proxy(forHost: host.name),
               p.keyword == "ProxyCommand" || sshConfig.proxyJump(forHost: host.name) == nil {
                // A proxy rollctl cannot follow: refused before connecting (sshConfigProblems). Should
                // it get here anyway, a bastion that cannot be reached, never a direct connection.
                return SSHJump(endpoint: SSHEndpoint(name: "\(p.keyword) \(Self.printable(p.value)) (not supported)", address: "", port: 22),
                               options: connectOptions([]))
            }
            return nil
        }
        if let b = self.host(named: spec.host) {
            var (endpoint, options) = directTarget(for: b, sshConfig: sshConfig)
            if let u = spec.user { endpoint.user = u }
            if let p = spec.port { endpoint.port = p }
            options.jump = nil
            return SSHJump(endpoint: endpoint, options: options)
        }
        let cfg = defaults.useSSHConfig ? sshConfig.resolve(host: spec.host) : SSHConfig.Resolved()
        var identities = cfg.identityFiles
        if identities.isEmpty { identities = defaults.identityFiles ?? [] }
        if identities.isEmpty { identities = Self.defaultIdentities() }
        let endpoint = SSHEndpoint(name: spec.host, address: cfg.hostName ?? spec.host, port: spec.port ?? cfg.port ?? defaults.port ?? 22,
                                   user: spec.user ?? cfg.user ?? defaults.user ?? "root")
        return SSHJump(endpoint: endpoint, options: connectOptions(identities))
    }
}

extension Inventory {
    /// What `~/.ssh/config` (as read into `sshConfig`) says about `hosts` that
    /// rollctl cannot honour (`ProxyCommand`, a chain of bastions, `Include`,
    /// `Match`: see `SSHConfig.unsupported`; a proxy only when the inventory
    /// has no `jump` for the host; and a proxy for the host's bastion, which
    /// is reached directly), as input errors at the config's file and
    /// line, one per line of the config with the hosts it concerns. Empty when
    /// the inventory says `ssh_config: false`. Callers refuse to run on any
    /// error, before connecting to a host.
    public func sshConfigProblems(_ sshConfig: SSHConfig, hosts: [InventoryHost]) -> [InputError] {
        guard defaults.useSSHConfig else { return [] }
        var order: [Int] = []
        var byLine: [Int: (first: SSHConfig.Unsupported, hosts: [String])] = [:]
        for h in hosts {
            // A proxy in the config does not matter when the inventory says how the host is reached.
            var found = sshConfig.unsupported(forHost: h.name, proxies: inventoryJump(for: h) == nil)
            // The bastion is reached directly (one level), and what rollctl reads of its entry must be readable.
            if let (spec, _) = jumpSpec(for: h, sshConfig: sshConfig) {
                let b = self.host(named: spec.host)
                if b.map({ inventoryJump(for: $0) == nil }) ?? true, let u = sshConfig.chainedProxy(bastion: spec.host, of: h.name) {
                    found.append(u)
                }
                found += sshConfig.unsupported(forHost: spec.host, proxies: false).filter { $0.keyword == "Include" }
            }
            var seen = Set<Int>()
            for u in found.sorted(by: { $0.line < $1.line }) where seen.insert(u.line).inserted {
                if byLine[u.line] == nil { order.append(u.line); byLine[u.line] = (u, []) }
                if byLine[u.line]!.hosts.last != h.name { byLine[u.line]!.hosts.append(h.name) }
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
