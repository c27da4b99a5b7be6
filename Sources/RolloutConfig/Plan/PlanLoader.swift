import Foundation
import Yams
import Basics
import SSH

/// Reads a plan file strictly: every problem (YAML syntax, unknown keys with a
/// "did you mean", wrong types, impossible values) is collected with its
/// file:line:col and thrown at once as `InputErrors`. Nothing here touches a host.
///
/// The format is documented in `docs/plan-reference.md`; relative paths
/// (inventory, customers, templates) are relative to the plan file's folder.
public enum PlanLoader {
    static let topKeys = ["name", "description", "kernel", "bootloader", "inventory", "select", "waves", "reboot", "gate",
                          "notify", "on_failure", "schedule", "hooks", "silence"]

    /// Loads and validates a plan. Throws `InputErrors` with every problem found.
    /// Cross-checks against the inventory and the customers file are `check(_:inventory:)`.
    public static func load(path: String) throws -> Plan {
        let reader = YAMLReader(file: path)
        guard let data = FileManager.default.contents(atPath: path) else {
            _ = reader.load(path: path)
            throw InputErrors(reader.errors)
        }
        return try parse(data: data, path: path, reader: reader)
    }

    /// Parses plan text (tests, stdin); `path` names the file in messages and anchors relative paths.
    /// `checkFiles: false` for a plan the journal keeps: `kernel.packages` files are not looked at
    /// (their sizes are 0), so a rollout whose package files are gone can still be aborted or
    /// rolled back; a resume checks them when it ships them.
    public static func parse(text: String, path: String, checkFiles: Bool = true) throws -> Plan {
        try parse(data: Data(text.utf8), path: path, reader: YAMLReader(file: path), checkFiles: checkFiles)
    }

    static func parse(data: Data, path: String, reader r: YAMLReader, checkFiles: Bool = true) throws -> Plan {
        guard let root = r.parse(data: data) else { throw InputErrors(r.errors.map { placeDuplicate($0, data: data) }) }
        let text = String(decoding: data, as: UTF8.self)
        var parser = PlanParser(reader: r, path: path, text: text)
        parser.checkFiles = checkFiles
        let plan = parser.parse(root)
        if !r.errors.isEmpty || plan == nil {
            if r.errors.isEmpty { r.error(root, "the plan is incomplete") }
            throw InputErrors(r.errors)
        }
        return plan!
    }

    /// The composer reports a duplicate key at its mapping; point at the second occurrence instead.
    static func placeDuplicate(_ e: InputError, data: Data) -> InputError {
        guard e.message.hasPrefix("duplicate key '"), let line = e.line else { return e }
        let key = e.message.dropFirst("duplicate key '".count).prefix { $0 != "'" }
        let lines = String(decoding: data, as: UTF8.self).split(separator: "\n", omittingEmptySubsequences: false)
        guard line >= 1, line <= lines.count else { return e }
        // Keys of the same mapping share the indentation of the line the mapping starts on.
        let indent = lines[line - 1].prefix { $0 == " " || $0 == "-" }.count
        var seen = 0
        for (i, l) in lines.enumerated().dropFirst(line - 1) {
            let body = l.dropFirst(indent)
            guard l.prefix(indent).allSatisfy({ $0 == " " || $0 == "-" }), body.hasPrefix(key + ":") else { continue }
            seen += 1
            if seen == 2 {
                var out = e
                out.line = i + 1
                out.column = indent + 1
                return out
            }
        }
        return e
    }

    /// Checks a valid plan against its inventory (and customers file, templates):
    /// an empty selection, hosts named by the plan but missing from the inventory,
    /// a failure-domain label that selected hosts lack, a customers file that is
    /// missing or names unknown hosts. Returns every problem, none thrown.
    public static func check(_ plan: Plan, inventory: Inventory) -> [InputError] {
        checkLoading(plan, inventory: inventory).errors
    }

    /// `check`, also returning the customers file it read (nil without `notify` or when invalid).
    static func checkLoading(_ plan: Plan, inventory: Inventory) -> (errors: [InputError], customers: Customers?) {
        var customers: Customers?
        var errors: [InputError] = []
        let file = plan.path
        let lines = PlanLines(text: plan.text)
        func err(_ key: String, _ message: String, hint: String? = nil) {
            let (l, c) = lines.position(of: key)
            errors.append(InputError(file: file, line: l, column: c, message, hint: hint))
        }
        let known = Set(inventory.hosts.map(\.name))
        let names = inventory.hosts.map(\.name)
        for (key, list) in [("hosts", plan.selection.hosts), ("exclude", plan.selection.exclude)] {
            for name in list where !known.contains(name) {
                err("select.\(key)", "select.\(key) names host '\(Inventory.printable(name))', which is not in the inventory \(inventory.path)",
                    hint: nearest(name, in: names).map { "did you mean '\($0)'?" })
            }
        }
        for (label, value) in plan.selection.labels.sorted(by: { $0.key < $1.key }) {
            let values = Set(inventory.hosts.compactMap { $0.labels[label] }.flatMap { $0.split(separator: ",").map(String.init) })
            if values.isEmpty {
                err("select.labels", "no host in the inventory has the label '\(label)'",
                    hint: nearest(label, in: Array(Set(inventory.hosts.flatMap(\.labels.keys)))).map { "did you mean '\($0)'?" })
            } else if !values.contains(value) {
                err("select.labels", "no host in the inventory has \(label)=\(value)",
                    hint: nearest(value, in: values.sorted()).map { "did you mean '\($0)'?" } ?? "values in the inventory: \(values.sorted().prefix(10).joined(separator: ", "))")
            }
        }
        let selected = selectedHosts(plan, inventory: inventory)
        let remaining = selected.filter { !plan.selection.exclude.contains($0.name) }
        if remaining.isEmpty {
            err("select", "the selection is empty: no host of \(inventory.path) (\(inventory.hosts.count) hosts) matches the plan's select\(selected.isEmpty ? "" : " once the exclude list is applied")",
                hint: "check select.labels, select.hosts and select.exclude against the inventory")
        }
        if let domain = plan.waves.failureDomain, !remaining.isEmpty {
            let lacking = remaining.filter { $0.labels[domain] == nil }
            if lacking.count == remaining.count {
                err("waves.failure_domain", "no selected host has the failure-domain label '\(domain)'",
                    hint: nearest(domain, in: Array(Set(remaining.flatMap(\.labels.keys))).sorted()).map { "did you mean '\($0)'?" }
                        ?? "add a '\(domain)' label to every host in the inventory, or remove waves.failure_domain")
            } else if !lacking.isEmpty {
                let list = lacking.prefix(5).map(\.name).joined(separator: ", ") + (lacking.count > 5 ? " and \(lacking.count - 5) more" : "")
                err("waves.failure_domain", "\(lacking.count) selected host\(lacking.count == 1 ? "" : "s") lack the failure-domain label '\(domain)': \(list)",
                    hint: "give every selected host a '\(domain)' label in the inventory")
            }
        }
        if let notify = plan.notify {
            do {
                customers = try Customers.load(path: notify.customersPath, inventory: inventory)
            } catch let e as InputErrors {
                if e.errors.count == 1, e.errors[0].line == nil, e.errors[0].file == notify.customersPath {
                    err("notify.customers", "customers file \(notify.customersPath): \(e.errors[0].message)", hint: e.errors[0].hint)
                } else {
                    errors += e.errors
                }
            } catch {
                err("notify.customers", "customers file \(notify.customersPath): \(error)")
            }
            if case let .smtp(_, _, _, _, _, _, file?) = notify.channel, !FileManager.default.isReadableFile(atPath: file) {
                err("notify.channel", "the SMTP password file \(file) does not exist or cannot be read",
                    hint: "create it (mode 0600) or use password_env")
            }
            if let dir = notify.templateDir {
                errors += NoticeTemplate.checkDirectory(dir, plan: file, position: lines.position(of: "notify.templates"))
            }
        } else if plan.waves.separateCustomers {
            err("waves.separate_customers", "waves.separate_customers needs a customers file", hint: "set notify.customers, or remove separate_customers")
        }
        return (errors, customers)
    }

    /// The inventory hosts the plan's `select` picks (labels and hosts), before `exclude`.
    /// A label matches a wanted value when it is that value or lists it (`group` of an Ansible
    /// inventory: `webservers,atlanta`; label values never hold a comma otherwise).
    public static func label(_ value: String?, has wanted: String) -> Bool {
        guard let value else { return false }
        return value == wanted || (value.contains(",") && value.split(separator: ",").contains { $0 == wanted })
    }

    public static func selectedHosts(_ plan: Plan, inventory: Inventory) -> [InventoryHost] {
        let wanted = Set(plan.selection.hosts)
        return inventory.hosts.filter { h in
            (wanted.isEmpty || wanted.contains(h.name)) && plan.selection.labels.allSatisfy { Self.label(h.labels[$0.key], has: $0.value) }
        }
    }
}

/// Finds where a dotted key (`waves.failure_domain`) is written in the plan text,
/// so cross-checks made after loading still point at a line and column.
public struct PlanLines {
    public var text: String
    public init(text: String) { self.text = text }

    public func position(of dotted: String) -> (Int?, Int?) {
        guard let root = try? Yams.compose(yaml: text) else { return (nil, nil) }
        var node = root
        var best: (Int?, Int?) = (nil, nil)
        for part in dotted.split(separator: ".") {
            guard case let .mapping(m) = node, let pair = m.first(where: { $0.key.scalar?.string == String(part) }) else { break }
            best = (pair.key.mark?.line, pair.key.mark?.column)
            node = pair.value
        }
        return best
    }
}

/// A plan with its inventory and customers, all validated together.
public struct LoadedPlan: Sendable {
    public var plan: Plan
    public var inventory: Inventory
    public var customers: Customers?
}

extension PlanLoader {
    /// Loads the plan, its inventory (or `inventoryPath` instead of the plan's)
    /// and its customers file, and cross-checks them. Throws `InputErrors` with
    /// every problem of all of them at once. Reads files only.
    ///
    /// `sshConfig` (by default `~/.ssh/config`) is checked for the hosts the
    /// plan selects: a `ProxyCommand` or a chain of bastions that applies to
    /// one of them (or to its bastion), an `Include` that applies, or any
    /// `Match` is an error at the config's file and line (rollctl would ignore
    /// them and dial the host, or its bastion, directly).
    public static func loadChecked(path: String, inventoryPath: String? = nil,
                                   sshConfig: SSHConfig = SSHConfig.load()) throws -> LoadedPlan {
        var errors: [InputError] = []
        var plan: Plan?
        do { plan = try load(path: path) } catch let e as InputErrors { errors += e.errors }
        guard let invPath = inventoryPath ?? plan?.inventoryPath else { throw InputErrors(errors) }
        var inventory: Inventory?
        do { inventory = try Inventory.load(path: invPath) } catch let e as InputErrors {
            if inventoryPath == nil, let plan, e.errors.count == 1, e.errors[0].line == nil {
                let (l, c) = PlanLines(text: plan.text).position(of: "inventory")
                errors.append(InputError(file: path, line: l, column: c, "inventory \(invPath): \(e.errors[0].message)", hint: e.errors[0].hint))
            } else {
                errors += e.errors
            }
        }
        guard var plan, let inventory else { throw InputErrors(errors) }
        plan.inventoryPath = invPath
        let (problems, customers) = checkLoading(plan, inventory: inventory)
        errors += problems
        let touched = selectedHosts(plan, inventory: inventory).filter { !plan.selection.exclude.contains($0.name) }
        errors += inventory.sshConfigProblems(sshConfig, hosts: touched)
        if !errors.isEmpty { throw InputErrors(errors) }
        return LoadedPlan(plan: plan, inventory: inventory, customers: customers)
    }
}
