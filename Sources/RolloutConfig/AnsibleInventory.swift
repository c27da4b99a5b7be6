import Foundation
import Yams
import Basics
import SSH

/// Ansible inventories (INI and YAML, as Ansible's documentation writes them) read as rollctl
/// inventories: every group a host is in (directly or through `children`) becomes a value of its
/// `group` label (`select: {labels: {group: webservers}}` picks the group's hosts), `ansible_host`,
/// `ansible_port`, `ansible_user` and `ansible_ssh_private_key_file` give the connection, and
/// the other host and group variables become labels (host values over child groups' over
/// parent groups'). What rollctl cannot honour is refused with its line: dynamic inventory
/// scripts and plugins, Jinja templates in values, host patterns it cannot expand.
enum AnsibleInventory {
    /// Variables that set the connection, not labels.
    static let connectionVars: Set<String> = ["ansible_host", "ansible_ssh_host", "ansible_port", "ansible_ssh_port", "ansible_user",
                                             "ansible_ssh_user", "ansible_ssh_private_key_file", "ansible_private_key_file",
                                             "ansible_ssh_common_args", "ansible_ssh_extra_args"]

    /// The bastion in `ansible_ssh_common_args`/`ansible_ssh_extra_args` (`-o ProxyJump=b`,
    /// `-o ProxyJump b`, `-J b`); any other option is refused, not ignored: rollctl passes no
    /// ssh options (set them in ~/.ssh/config, which it reads, or in the inventory's keys).
    static func jump(fromSSHArgs args: String) -> Result<InventoryJump?, Inventory.Problem> {
        let words = AnsibleInventory.splitFields(args).map(unquote)
        var jump: InventoryJump?
        var i = 0
        func take(_ value: String) -> Inventory.Problem? {
            if value.lowercased() == "none" { jump = .direct; return nil }
            switch JumpSpec.parse(value) {
            case .success(let spec): jump = .through(spec); return nil
            case .failure(let e): return Inventory.Problem("ProxyJump '\(Inventory.printable(value))': \(e)")
            }
        }
        while i < words.count {
            let w = words[i]
            if w == "-J", i + 1 < words.count { if let e = take(words[i + 1]) { return .failure(e) }; i += 2; continue }
            if w == "-o", i + 1 < words.count {
                let opt = words[i + 1]
                let (key, value): (String, String?) = {
                    if let eq = opt.firstIndex(of: "=") { return (String(opt[..<eq]), String(opt[opt.index(after: eq)...])) }
                    return (opt, i + 2 < words.count ? words[i + 2] : nil)
                }()
                if key.lowercased() == "proxyjump", let value {
                    if let e = take(value) { return .failure(e) }
                    i += opt.contains("=") ? 2 : 3
                    continue
                }
                return .failure(Inventory.Problem("ssh option '\(Inventory.printable(opt))' is not passed by rollctl: set it in ~/.ssh/config (rollctl reads it) or use the inventory's own keys"))
            }
            return .failure(Inventory.Problem("'\(Inventory.printable(w))' is not an ssh option rollctl honours (only -o ProxyJump=… or -J …)"))
        }
        return .success(jump)
    }

    /// INI by its name or its first section header.
    static func isINI(path: String, text: String) -> Bool {
        let ext = (path as NSString).pathExtension.lowercased()
        if ext == "ini" || ext == "cfg" { return true }
        // Only up to the first line that says something: the file may be megabytes.
        var rest = Substring(text)
        while !rest.isEmpty {
            let end = rest.firstIndex(of: "\n") ?? rest.endIndex
            let line = rest[..<end].trimmingCharacters(in: .whitespaces)
            rest = end < rest.endIndex ? rest[rest.index(after: end)...] : ""
            if line.isEmpty || line.hasPrefix("#") || line.hasPrefix(";") { continue }
            return line.hasPrefix("[") && line.hasSuffix("]")
        }
        return false
    }

    /// An Ansible INI inventory, or a dynamic inventory script: told from the text alone.
    static func isINIOrScript(path: String, text: String) -> Bool {
        text.hasPrefix("#!") || isINI(path: path, text: text)
    }

    /// True when a YAML document is an Ansible inventory rather than rollctl's own:
    /// top-level groups (usually `all`) holding `hosts`/`children`/`vars` mappings.
    static func isAnsibleYAML(path: String, _ node: Node) -> Bool {
        let ext = (path as NSString).pathExtension.lowercased()
        guard ext == "yml" || ext == "yaml" || ext.isEmpty, case let .mapping(m) = node else { return false }
        let keys = m.keys.compactMap { $0.scalar?.string }
        if keys.contains("plugin") { return true }
        if keys.contains("hosts"), case .sequence = m.first(where: { $0.key.scalar?.string == "hosts" })?.value { return false }
        return keys.contains("all") || m.values.contains { v in
            guard case let .mapping(g) = v else { return false }
            return g.keys.contains { ["hosts", "children", "vars"].contains($0.scalar?.string ?? "") }
        }
    }

    /// One group as read: its hosts (with their own variables), children and variables.
    struct Group {
        var hosts: [(name: String, vars: [(String, String)], line: Int?, column: Int?)] = []
        var children: [(name: String, line: Int?, column: Int?)] = []
        var vars: [(String, String)] = []
        var line: Int?
    }

    final class Collector {
        let path: String
        var errors: [InputError] = []
        var groups: [String: Group] = [:]
        var order: [String] = []
        init(path: String) { self.path = path }

        func error(_ line: Int?, _ column: Int?, _ message: String, hint: String? = nil) {
            errors.append(InputError(file: path, line: line, column: column, message, hint: hint))
        }

        func group(_ name: String, line: Int?) -> Group {
            if groups[name] == nil { groups[name] = Group(line: line); order.append(name) }
            return groups[name]!
        }

        /// Changes the group in place: a copy per host line made a 20,000-host file take 8 s.
        func update(_ name: String, line: Int?, _ change: (inout Group) -> Void) {
            _ = group(name, line: line)
            change(&groups[name]!)
        }

        /// A value Ansible would template: refused, rollctl does not run Jinja.
        func checkValue(_ value: String, _ key: String, _ line: Int?, _ column: Int?) -> Bool {
            if value.contains("{{") || value.contains("{%") {
                error(line, column, "\(key) uses a Jinja template ('\(Inventory.printable(value))'); rollctl does not evaluate templates",
                      hint: "write the value itself, or render the inventory first (ansible-inventory -i FILE --list --yaml)")
                return false
            }
            return true
        }
    }

    static func load(path: String, text: String, node: Node? = nil) throws -> Inventory {
        if text.hasPrefix("#!") {
            throw InputErrors([InputError(file: path, line: 1, column: 1, "this is a dynamic inventory script; rollctl reads static inventories only",
                                          hint: "write its output to a file first: \(path) --list > inventory.json is not read either; use ansible-inventory -i \(path) --list --yaml > inventory.yaml")])
        }
        let c = Collector(path: path)
        let trimmed = text.trimmingCharacters(in: .whitespacesAndNewlines)
        if trimmed.hasPrefix("{") {
            c.error(1, 1, "a JSON inventory (a dynamic script's output) is not read", hint: "convert it: ansible-inventory -i FILE --list --yaml > inventory.yaml")
        } else if !isINI(path: path, text: text), let node = node ?? (try? Yams.compose(yaml: text)), case .mapping = node {
            readYAML(node, c)
        } else {
            readINI(text, c)
        }
        if !c.errors.isEmpty { throw InputErrors(c.errors) }
        return try build(c)
    }

    // MARK: INI

    static func readINI(_ text: String, _ c: Collector) {
        enum Section { case hosts(String), vars(String), children(String) }
        var section = Section.hosts("ungrouped")
        for (i, raw) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let line = i + 1
            let s = raw.trimmingCharacters(in: .whitespaces)
            if s.isEmpty || s.hasPrefix("#") || s.hasPrefix(";") { continue }
            if s.hasPrefix("[") {
                guard s.hasSuffix("]") else { c.error(line, 1, "a section header needs its closing ']'"); continue }
                let inner = String(s.dropFirst().dropLast())
                let parts = inner.split(separator: ":", maxSplits: 1).map(String.init)
                let name = parts.first ?? ""
                guard isGroupName(name) else { c.error(line, 2, "group name '\(Inventory.printable(name))' is not valid: letters, digits and '_'"); continue }
                switch parts.count == 2 ? parts[1] : "" {
                case "": section = .hosts(name)
                case "vars": section = .vars(name)
                case "children": section = .children(name)
                default: c.error(line, name.count + 3, "[\(name):\(parts[1])] is not a section Ansible knows: use [\(name)], [\(name):vars] or [\(name):children]")
                }
                _ = c.group(name, line: line)
                continue
            }
            switch section {
            case .hosts(let g):
                let fields = splitFields(s)
                guard let pattern = fields.first else { continue }
                var vars: [(String, String)] = []
                var col = pattern.count + 2
                for f in fields.dropFirst() {
                    guard let eq = f.firstIndex(of: "="), eq != f.startIndex else {
                        c.error(line, col, "'\(Inventory.printable(f))' is not key=value", hint: "host variables are written name=value after the host")
                        col += f.count + 1
                        continue
                    }
                    let key = String(f[..<eq]), value = unquote(String(f[f.index(after: eq)...]))
                    if c.checkValue(value, key, line, col) { vars.append((key, value)) }
                    col += f.count + 1
                }
                guard let names = expand(pattern, c, line) else { continue }
                c.update(g, line: nil) { grp in for n in names { grp.hosts.append((n, vars, line, 1)) } }
            case .vars(let g):
                guard let eq = s.firstIndex(of: "=") else { c.error(line, 1, "'\(Inventory.printable(s))' is not key=value in [\(g):vars]"); continue }
                let key = s[..<eq].trimmingCharacters(in: .whitespaces), value = unquote(s[s.index(after: eq)...].trimmingCharacters(in: .whitespaces))
                if c.checkValue(value, key, line, 1) { c.update(g, line: nil) { $0.vars.append((key, value)) } }
            case .children(let g):
                guard isGroupName(s) else { c.error(line, 1, "child group name '\(Inventory.printable(s))' is not valid"); continue }
                c.update(g, line: nil) { $0.children.append((s, line, 1)) }
            }
        }
    }

    /// `host a=1 b="x y"` split on spaces outside quotes.
    static func splitFields(_ s: String) -> [String] {
        var out: [String] = [], cur = "", quote: Character? = nil
        for ch in s {
            if let q = quote { cur.append(ch); if ch == q { quote = nil }; continue }
            if ch == "\"" || ch == "'" { quote = ch; cur.append(ch); continue }
            if ch == "#" && cur.isEmpty { break }
            if ch == " " || ch == "\t" { if !cur.isEmpty { out.append(cur); cur = "" }; continue }
            cur.append(ch)
        }
        if !cur.isEmpty { out.append(cur) }
        return out
    }

    static func unquote(_ v: String) -> String {
        if v.count >= 2, let f = v.first, let l = v.last, f == l, f == "\"" || f == "'" { return String(v.dropFirst().dropLast()) }
        return v
    }

    static func isGroupName(_ s: String) -> Bool {
        !s.isEmpty && s.count <= 128 && s.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "_" || $0 == "-") }
    }

    /// `www[01:50].example.com`, `db-[a:f]`, `[0:10:2]`: Ansible's host ranges, expanded.
    static func expand(_ pattern: String, _ c: Collector, _ line: Int) -> [String]? {
        guard let open = pattern.firstIndex(of: "["), let close = pattern[open...].firstIndex(of: "]") else {
            guard Inventory.isValidHostName(pattern) || Inventory.isValidAddress(pattern) else {
                c.error(line, 1, "host '\(Inventory.printable(pattern))' is not a valid host name or address")
                return nil
            }
            return [pattern]
        }
        let head = String(pattern[..<open]), tail = String(pattern[pattern.index(after: close)...])
        let parts = pattern[pattern.index(after: open)..<close].split(separator: ":", omittingEmptySubsequences: false).map(String.init)
        guard parts.count == 2 || parts.count == 3 else {
            c.error(line, head.count + 1, "host range '[\(parts.joined(separator: ":"))]' must be [start:end] or [start:end:step]")
            return nil
        }
        let step = parts.count == 3 ? Int(parts[2]) : 1
        var items: [String] = []
        if let a = Int(parts[0]), let b = Int(parts[1]), let step, step > 0, a <= b, (b - a) / step < 100_000 {
            let width = parts[0].hasPrefix("0") ? parts[0].count : 0
            for n in stride(from: a, through: b, by: step) { items.append(width > 0 ? String(format: "%0\(width)d", n) : String(n)) }
        } else if parts[0].count == 1, parts[1].count == 1, let a = parts[0].unicodeScalars.first, let b = parts[1].unicodeScalars.first,
                  a.properties.isLowercase == b.properties.isLowercase, a.isASCII, b.isASCII, a.value <= b.value, let step, step > 0 {
            for v in stride(from: a.value, through: b.value, by: step) { items.append(String(UnicodeScalar(v)!)) }
        } else {
            c.error(line, head.count + 1, "host range '[\(parts.joined(separator: ":"))]' is not one rollctl can expand (numbers or single letters, start ≤ end)")
            return nil
        }
        var out: [String] = []
        for item in items {
            guard let more = expand(head + item + tail, c, line) else { return nil }
            out += more
        }
        return out
    }

    // MARK: YAML

    static func readYAML(_ root: Node, _ c: Collector) {
        guard case let .mapping(top) = root else { return }
        if top.keys.contains(where: { $0.scalar?.string == "plugin" }) {
            c.error(root.mark?.line, root.mark?.column, "an inventory plugin configuration ('plugin:') is dynamic; rollctl reads static inventories only",
                    hint: "render it first: ansible-inventory -i FILE --list --yaml > inventory.yaml")
            return
        }
        for (k, v) in top { readYAMLGroup(k, v, c) }
    }

    static func scalarText(_ n: Node) -> String? {
        switch n {
        case .scalar(let s): return s.string
        default: return nil
        }
    }

    static func readYAMLGroup(_ key: Node, _ value: Node, _ c: Collector) {
        guard let name = key.scalar?.string, isGroupName(name) else {
            c.error(key.mark?.line, key.mark?.column, "group name '\(Inventory.printable(key.scalar?.string ?? "?"))' is not valid")
            return
        }
        _ = c.group(name, line: key.mark?.line)
        if case .scalar(let s) = value, ["", "~", "null"].contains(s.string) { return }   // an empty group
        guard case let .mapping(m) = value else {
            c.error(value.mark?.line, value.mark?.column, "group '\(name)' must be a mapping with hosts, children or vars")
            return
        }
        for (k, v) in m {
            let at = (k.mark?.line, k.mark?.column)
            switch k.scalar?.string ?? "" {
            case "hosts":
                if case .scalar(let s) = v, ["", "~", "null"].contains(s.string) { continue }
                guard case let .mapping(hosts) = v else { c.error(at.0, at.1, "'hosts' of group '\(name)' must be a mapping of host names"); continue }
                for (hk, hv) in hosts {
                    guard let pattern = hk.scalar?.string else { continue }
                    let vars = readVars(hv, "host '\(pattern)'", c)
                    guard let names = expand(pattern, c, hk.mark?.line ?? 0) else { continue }
                    c.update(name, line: nil) { g in for n in names { g.hosts.append((n, vars, hk.mark?.line, hk.mark?.column)) } }
                }
            case "children":
                if case .scalar(let s) = v, ["", "~", "null"].contains(s.string) { continue }
                guard case let .mapping(children) = v else { c.error(at.0, at.1, "'children' of group '\(name)' must be a mapping of groups"); continue }
                for (ck, cv) in children {
                    readYAMLGroup(ck, cv, c)
                    if let child = ck.scalar?.string { c.update(name, line: nil) { $0.children.append((child, ck.mark?.line, ck.mark?.column)) } }
                }
            case "vars":
                let vars = readVars(v, "vars of group '\(name)'", c)
                c.update(name, line: nil) { $0.vars += vars }
            default:
                c.error(at.0, at.1, "'\(Inventory.printable(k.scalar?.string ?? "?"))' in group '\(name)': a group holds hosts, children and vars",
                        hint: "a group nested without 'children:' is not a child in Ansible either")
            }
        }
    }

    static func readVars(_ node: Node, _ what: String, _ c: Collector) -> [(String, String)] {
        if case .scalar(let s) = node, ["", "~", "null"].contains(s.string) { return [] }
        guard case let .mapping(m) = node else {
            c.error(node.mark?.line, node.mark?.column, "\(what) must be a mapping of variables")
            return []
        }
        var out: [(String, String)] = []
        for (k, v) in m {
            guard let key = k.scalar?.string else { continue }
            guard let value = scalarText(v) else { continue }   // lists and mappings: not labels, not connection values
            if c.checkValue(value, key, v.mark?.line, v.mark?.column) { out.append((key, value)) }
        }
        return out
    }

    // MARK: to rollctl's inventory

    static func build(_ c: Collector) throws -> Inventory {
        // Every group's ancestors (through children), cycles refused.
        var parents: [String: [String]] = [:]
        for (g, grp) in c.groups {
            for child in grp.children {
                if c.groups[child.name] == nil { c.error(child.line, child.column, "child group '\(child.name)' of '\(g)' is never defined") }
                parents[child.name, default: []].append(g)
            }
        }
        /// A group's ancestors, nearest first; nil when the group is its own ancestor.
        func ancestors(_ g: String) -> [String]? {
            var seen: [String] = [], stack = parents[g] ?? []
            while !stack.isEmpty {
                let p = stack.removeFirst()
                if p == g { return nil }
                if seen.contains(p) { continue }
                seen.append(p)
                stack += parents[p] ?? []
            }
            return seen
        }
        // Hosts in order of first appearance, each with its direct groups and own variables.
        var order: [String] = []
        var hostGroups: [String: [String]] = [:]
        var hostVars: [String: [(String, String)]] = [:]
        var hostLine: [String: Int] = [:]
        for g in c.order {
            for h in c.groups[g]?.hosts ?? [] {
                if hostGroups[h.name] == nil { order.append(h.name); hostLine[h.name] = h.line }
                hostGroups[h.name, default: []].append(g)
                hostVars[h.name, default: []] += h.vars
            }
        }
        var hosts: [InventoryHost] = []
        for name in order {
            var groups: [String] = []
            for g in hostGroups[name] ?? [] {
                guard let seen = ancestors(g) else {
                    c.error(c.groups[g]?.line, 1, "group '\(g)' is its own ancestor through children")
                    break
                }
                // Ancestors first (their vars are overridden by the nearer group's).
                for a in seen.reversed() where !groups.contains(a) { groups.append(a) }
                if !groups.contains(g) { groups.append(g) }
            }
            var vars: [String: String] = [:]
            for g in ["all"] + groups.filter({ $0 != "all" }) { for (k, v) in c.groups[g]?.vars ?? [] { vars[k] = v } }
            for (k, v) in hostVars[name] ?? [] { vars[k] = v }
            let line = hostLine[name]
            let address = vars["ansible_host"] ?? vars["ansible_ssh_host"] ?? name
            guard Inventory.isValidHostName(name) || Inventory.isValidAddress(name) else {
                c.error(line, 1, "host name '\(Inventory.printable(name))' is not valid")
                continue
            }
            guard Inventory.isValidAddress(address) else {
                c.error(line, 1, "ansible_host '\(Inventory.printable(address))' of \(name) is not an IPv4/IPv6 address or DNS name")
                continue
            }
            var port: Int?
            if let p = vars["ansible_port"] ?? vars["ansible_ssh_port"] {
                guard let n = Int(p), (1...65535).contains(n) else { c.error(line, 1, "ansible_port '\(Inventory.printable(p))' of \(name) is not a port"); continue }
                port = n
            }
            let user = vars["ansible_user"] ?? vars["ansible_ssh_user"]
            let key = (vars["ansible_ssh_private_key_file"] ?? vars["ansible_private_key_file"]).map { p -> String in
                let t = SSHConfig.expandTilde(p)
                let base = (c.path as NSString).deletingLastPathComponent
                return t.hasPrefix("/") || base.isEmpty ? t : base + "/" + t
            }
            var jump: InventoryJump?
            for key in ["ansible_ssh_common_args", "ansible_ssh_extra_args"] {
                guard let args = vars[key] else { continue }
                switch Self.jump(fromSSHArgs: args) {
                case .success(let j): if let j { jump = j }
                case .failure(let why): c.error(line, 1, "\(key) of \(name): \(why.reason)")
                }
            }
            var labels: [String: String] = [:]
            let named = groups.filter { $0 != "all" && $0 != "ungrouped" }
            if !named.isEmpty { labels["group"] = named.joined(separator: ",") }
            for (k, v) in vars where !connectionVars.contains(k) && !k.hasPrefix("ansible_") && k != "group" {
                if Inventory.isValidLabel(k) && Inventory.isValidLabel(v) { labels[k] = v }
            }
            hosts.append(InventoryHost(name: name, address: address, port: port, user: user, identityFiles: key.map { [$0] },
                                       labels: labels, line: line, jump: jump))
        }
        if hosts.isEmpty && c.errors.isEmpty { c.error(1, 1, "the Ansible inventory lists no hosts") }
        var seenEndpoints: [String: String] = [:]
        for h in hosts {
            let ep = "\(h.address):\(h.port ?? 22)"
            if let other = seenEndpoints[ep] { c.error(h.line, 1, "hosts '\(other)' and '\(h.name)' have the same address and port \(ep)") }
            seenEndpoints[ep] = h.name
        }
        if !c.errors.isEmpty { throw InputErrors(c.errors) }
        let inv = Inventory(path: c.path, defaults: InventoryDefaults(), hosts: hosts)
        // The same rules as the inventory's own `jump:` (a bastion of the inventory has none of its own, ...).
        let problems = inv.jumpProblems(hostJumps: hosts.map { h in h.jump == nil ? nil : Inventory.Place(line: h.line, column: 1) }, defaultsJump: nil)
        if !problems.isEmpty { throw InputErrors(problems) }
        return inv
    }
}

extension Inventory {
    /// Why a value cannot be used (a message for an `InputError`).
    struct Problem: Error { var reason: String; init(_ r: String) { reason = r } }
}
