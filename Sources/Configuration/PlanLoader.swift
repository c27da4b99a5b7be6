import Foundation
#if canImport(Glibc)
import Glibc
#endif
import Yams
import Basics
import NetIO
import SSH
import HealthGate

/// Reads a plan file strictly: every problem (YAML syntax, unknown keys with a
/// "did you mean", wrong types, impossible values) is collected with its
/// file:line:col and thrown at once as `InputErrors`. Nothing here touches a host.
///
/// The format is documented in `docs/plan-reference.md`; relative paths
/// (inventory, customers, templates) are relative to the plan file's folder.
public enum PlanLoader {
    static let topKeys = ["name", "description", "kernel", "bootloader", "inventory", "select", "waves", "reboot", "gate",
                          "notify", "on_failure"]
    static let kernelKeys = ["release", "install", "min_boot_free"]
    static let bootloaderKeys = ["type", "stage", "commit", "rollback"]
    static let selectKeys = ["labels", "hosts", "exclude"]
    static let waveKeys = ["sizes", "max_parallel", "failure_domain", "separate_customers"]
    static let rebootKeys = ["command", "timeout", "settle"]
    static let gateKeys = ["soak", "interval", "probe_timeout", "sunreclaim_max", "sunreclaim_max_share", "sunreclaim_growth_max",
                           "min_slope_points", "max_new_oom_kills", "oom_kills_since", "min_good_samples", "test_site", "checks"]
    static let siteKeys = ["url", "min_success", "min_requests", "requests_per_sample", "timeout"]
    static let checkKeys = ["name", "command", "max_failures"]
    static let notifyKeys = ["customers", "channel", "lead_time", "company", "templates", "on_failure"]
    static let smtpKeys = ["type", "host", "port", "from", "starttls", "username", "password_env", "password_file",
                           "allow_plaintext_auth"]
    static let webhookKeys = ["type", "url"]
    static let failureKeys = ["rollback", "max_failed_hosts_per_wave", "max_failed_hosts"]

    /// The systemd-boot commands rollctl runs (`bootloader: {type: systemd-boot}`):
    /// the boot entry id is the one `kernel-install` writes,
    /// `<entry token>-<release>.conf`, the entry token from `/etc/kernel/entry-token`
    /// or else the machine id.
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
    public static func parse(text: String, path: String) throws -> Plan {
        try parse(data: Data(text.utf8), path: path, reader: YAMLReader(file: path))
    }

    static func parse(data: Data, path: String, reader r: YAMLReader) throws -> Plan {
        guard let root = r.parse(data: data) else { throw InputErrors(r.errors.map { placeDuplicate($0, data: data) }) }
        let text = String(decoding: data, as: UTF8.self)
        let plan = PlanParser(reader: r, path: path, text: text).parse(root)
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
            let values = Set(inventory.hosts.compactMap { $0.labels[label] })
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
    public static func selectedHosts(_ plan: Plan, inventory: Inventory) -> [InventoryHost] {
        let wanted = Set(plan.selection.hosts)
        return inventory.hosts.filter { h in
            (wanted.isEmpty || wanted.contains(h.name)) && plan.selection.labels.allSatisfy { h.labels[$0.key] == $0.value }
        }
    }
}

/// Finds where a dotted key (`waves.failure_domain`) is written in the plan text,
/// so cross-checks made after loading still point at a line and column.
struct PlanLines {
    var text: String

    func position(of dotted: String) -> (Int?, Int?) {
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

/// One pass over the plan tree; errors go to the reader.
struct PlanParser {
    let reader: YAMLReader
    let path: String
    let text: String
    var r: YAMLReader { reader }

    func resolve(_ p: String) -> String {
        let base = (path as NSString).deletingLastPathComponent
        let t = SSHConfig.expandTilde(p)
        return Self.normalize(t.hasPrefix("/") || base.isEmpty ? t : base + "/" + t)
    }

    /// `plans/../.fleetsim/x` -> `.fleetsim/x`: drops `.` and folds `dir/..`, keeps leading `..`.
    static func normalize(_ path: String) -> String {
        var parts: [Substring] = []
        for c in path.split(separator: "/", omittingEmptySubsequences: true) {
            if c == "." { continue }
            if c == "..", let last = parts.last, last != ".." { parts.removeLast(); continue }
            if c == "..", path.hasPrefix("/"), parts.isEmpty { continue }
            parts.append(c)
        }
        let joined = parts.joined(separator: "/")
        return path.hasPrefix("/") ? "/" + joined : (joined.isEmpty ? "." : joined)
    }

    func parse(_ root: Node) -> Plan? {
        guard let top = r.mapping(root, "the plan", allowed: PlanLoader.topKeys) else { return nil }
        var name: String?, description: String?, kernel: KernelSpec?, inventory: String?
        var bootloader = Bootloader.grub
        var selection = Selection(), waves = WaveSpec(), reboot = RebootSpec(), gate = GateSettings()
        var notify: NotifySpec?
        var failure = FailurePolicy()
        for (key, _, v) in top {
            switch key {
            case "name":
                if let n = r.string(v, "name") {
                    if n.trimmed.isEmpty || n.count > 100 || n.contains(where: { $0.isNewline || ($0.asciiValue ?? 32) < 32 }) {
                        r.error(v, "name must be one line of 1 to 100 characters")
                    } else { name = n }
                }
            case "description": description = r.string(v, "description")
            case "kernel": kernel = parseKernel(v)
            case "bootloader": if let b = parseBootloader(v) { bootloader = b }
            case "inventory": inventory = r.string(v, "inventory").map(resolve)
            case "select": if let s = parseSelection(v) { selection = s }
            case "waves": if let w = parseWaves(v) { waves = w }
            case "reboot": if let rb = parseReboot(v) { reboot = rb }
            case "gate": if let g = parseGate(v) { gate = g }
            case "notify": notify = parseNotify(v)
            case "on_failure": if let f = parseFailure(v) { failure = f }
            default: break
            }
        }
        // A misspelt key already has its error ("did you mean 'kernel'?"): no second one for the missing key.
        var keys = Set(top.map(\.key))
        if case let .mapping(m) = root {
            for k in m.keys { if let s = k.scalar?.string, let near = nearest(s, in: PlanLoader.topKeys) { keys.insert(near) } }
        }
        if !keys.contains("name") { r.error(root, "the plan needs a 'name'", hint: "add name: socket-bind-fix") }
        if !keys.contains("kernel") { r.error(root, "the plan needs a 'kernel' with the target 'release'", hint: "add kernel: {release: 6.1.0-19-hosting}") }
        if !keys.contains("inventory") { r.error(root, "the plan needs an 'inventory' file", hint: "add inventory: inventory.yaml (relative to the plan)") }
        if waves.separateCustomers && notify == nil && !keys.contains("notify") {
            let (l, c) = PlanLines(text: text).position(of: "waves.separate_customers")
            r.errors.append(InputError(file: path, line: l, column: c, "waves.separate_customers needs a customers file",
                                       hint: "set notify.customers, or remove separate_customers"))
        }
        guard let name, let kernel, let inventory else { return nil }
        return Plan(name: name, description: description, path: path, text: text, kernel: kernel, bootloader: bootloader,
                    inventoryPath: inventory, selection: selection, waves: waves, reboot: reboot, gate: gate,
                    notify: notify, failure: failure)
    }

    // MARK: sections

    func parseKernel(_ node: Node) -> KernelSpec? {
        guard let pairs = r.mapping(node, "kernel", allowed: PlanLoader.kernelKeys) else { return nil }
        var release: String?
        var spec = KernelSpec(release: "")
        for (k, _, v) in pairs {
            switch k {
            case "release":
                if let s = r.string(v, "kernel.release") {
                    if Self.isValidRelease(s) { release = s } else {
                        r.error(v, "kernel.release '\(Inventory.printable(s))' is not a kernel release as /proc/sys/kernel/osrelease shows it",
                                hint: "letters, digits, '.', '-', '_', '+', e.g. 6.1.0-19-hosting")
                    }
                }
            case "install":
                if let list = commands(v, "kernel.install", placeholders: ["release"]) { spec.install = list }
            case "min_boot_free":
                if let b = size(v, "kernel.min_boot_free") { spec.minBootFreeBytes = b }
            default: break
            }
        }
        if !pairs.contains(where: { $0.key == "release" }) {
            r.error(node, "kernel needs a 'release' (the target, as /proc/sys/kernel/osrelease shows it)", hint: "add release: 6.1.0-19-hosting")
        }
        guard let release else { return nil }
        spec.release = release
        return spec
    }

    static func isValidRelease(_ s: String) -> Bool {
        !s.isEmpty && s.count <= 128 && s.first!.isASCII && (s.first!.isNumber || s.first!.isLetter)
            && s.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || "._-+~".contains($0)) }
    }

    func parseBootloader(_ node: Node) -> Bootloader? {
        // `bootloader: grub` is a short form of `{type: grub}`.
        if case let .scalar(s) = node {
            switch s.string {
            case "grub": return .grub
            case "systemd-boot": return .systemdBoot
            case "custom":
                r.error(node, "bootloader 'custom' needs its commands", hint: "write bootloader: {type: custom, stage: [...], commit: [...], rollback: [...]}")
                return nil
            default:
                r.error(node, "bootloader must be grub, systemd-boot or custom, found '\(Inventory.printable(s.string))'",
                        hint: nearest(s.string, in: ["grub", "systemd-boot", "custom"]).map { "did you mean '\($0)'?" })
                return nil
            }
        }
        guard let pairs = r.mapping(node, "bootloader", allowed: PlanLoader.bootloaderKeys) else { return nil }
        var type = "grub"
        var stage: [String]?, commit: [String]?, rollback: [String]?
        for (k, _, v) in pairs {
            switch k {
            case "type":
                if let t = r.string(v, "bootloader.type") {
                    if ["grub", "systemd-boot", "custom"].contains(t) { type = t } else {
                        r.error(v, "bootloader.type must be grub, systemd-boot or custom, found '\(Inventory.printable(t))'",
                                hint: nearest(t, in: ["grub", "systemd-boot", "custom"]).map { "did you mean '\($0)'?" })
                        return nil
                    }
                }
            case "stage": stage = commands(v, "bootloader.stage", placeholders: ["release"])
            case "commit": commit = commands(v, "bootloader.commit", placeholders: ["release"])
            case "rollback": rollback = commands(v, "bootloader.rollback", placeholders: ["release", "previous_release"])
            default: break
            }
        }
        switch type {
        case "custom":
            var ok = true
            for (key, list) in [("stage", stage), ("commit", commit), ("rollback", rollback)] where list == nil {
                if !pairs.contains(where: { $0.key == key }) {
                    r.error(node, "a custom bootloader needs '\(key)' commands",
                            hint: "stage boots {release} once, commit makes it the default, rollback restores {previous_release}")
                }
                ok = false
            }
            guard ok, let stage, let commit, let rollback else { return nil }
            return .custom(stage: stage, commit: commit, rollback: rollback)
        default:
            for (k, keyNode, _) in pairs where k != "type" {
                r.error(keyNode, "bootloader.\(k) is only for type: custom (\(type) commands are built in)", hint: "remove it, or set type: custom")
            }
            return type == "grub" ? .grub : .systemdBoot
        }
    }

    func parseSelection(_ node: Node) -> Selection? {
        guard let pairs = r.mapping(node, "select", allowed: PlanLoader.selectKeys) else { return nil }
        var s = Selection()
        for (k, _, v) in pairs {
            switch k {
            case "labels":
                guard case let .mapping(m) = v else {
                    r.error(v, "select.labels must be a mapping like {role: web}, found \(r.kind(v))")
                    continue
                }
                for (lk, lv) in m {
                    guard let key = r.string(lk, "a label name"), let value = r.string(lv, "label '\(lk.string ?? "")'") else { continue }
                    if !Inventory.isValidLabel(key) || !Inventory.isValidLabel(value) {
                        r.error(lk, "label \(Inventory.printable(key))=\(Inventory.printable(value)) is not valid: use letters, digits, '.', '-', '_', '/', ':'")
                        continue
                    }
                    s.labels[key] = value
                }
            case "hosts", "exclude":
                guard let names = hostNames(v, "select.\(k)") else { continue }
                if k == "hosts" { s.hosts = names } else { s.exclude = names }
            default: break
            }
        }
        return s
    }

    func hostNames(_ node: Node, _ what: String) -> [String]? {
        let items: [Node]
        switch node {
        case .sequence(let seq): items = Array(seq)
        case .scalar: items = [node]
        default:
            r.error(node, "\(what) must be a list of host names, found \(r.kind(node))")
            return nil
        }
        var out: [String] = []
        for item in items {
            guard let n = r.string(item, "each entry of \(what)") else { continue }
            if !Inventory.isValidHostName(n) {
                r.error(item, "\(what): '\(Inventory.printable(n))' is not a valid host name (letters, digits, '.', '-', '_')")
                continue
            }
            out.append(n)
        }
        return out
    }

    func parseWaves(_ node: Node) -> WaveSpec? {
        guard let pairs = r.mapping(node, "waves", allowed: PlanLoader.waveKeys) else { return nil }
        var w = WaveSpec()
        for (k, _, v) in pairs {
            switch k {
            case "sizes": if let s = waveSizes(v) { w.sizes = s }
            case "max_parallel": if let n = int(v, "waves.max_parallel", range: 1...10_000) { w.maxParallel = n }
            case "failure_domain":
                if let d = r.string(v, "waves.failure_domain") {
                    if Inventory.isValidLabel(d) { w.failureDomain = d } else {
                        r.error(v, "waves.failure_domain '\(Inventory.printable(d))' is not a label name")
                    }
                }
            case "separate_customers": if let b = r.bool(v, "waves.separate_customers") { w.separateCustomers = b }
            default: break
            }
        }
        return w
    }

    func waveSizes(_ node: Node) -> [WaveSize]? {
        guard case let .sequence(seq) = node else {
            r.error(node, "waves.sizes must be a list like [1, 5%, 25%, 100%], found \(r.kind(node))")
            return nil
        }
        if seq.isEmpty {
            r.error(node, "waves.sizes is empty", hint: "write e.g. [1, 25%, 100%]: a canary, then growing waves")
            return nil
        }
        if seq.count > 100 {
            r.error(node, "waves.sizes has \(seq.count) waves; at most 100")
            return nil
        }
        var out: [WaveSize] = []
        var ok = true
        var lastCount: Int?, lastPercent: Double?
        for item in seq {
            guard case let .scalar(s) = item else {
                r.error(item, "each wave size must be a host count (5) or a share (25%), found \(r.kind(item))")
                ok = false
                continue
            }
            let t = s.string.trimmed
            if t.hasSuffix("%") {
                guard let p = Double(String(t.dropLast()).trimmed), p.isFinite else {
                    r.error(item, "wave size '\(Inventory.printable(t))' is not a share like 25%"); ok = false; continue
                }
                guard p > 0 && p <= 100 else {
                    r.error(item, "wave size \(t) is impossible: a share must be above 0% and at most 100%"); ok = false; continue
                }
                if let last = lastPercent, p <= last {
                    r.error(item, "wave sizes must grow: \(t) after \(Self.percentText(last))",
                            hint: "sizes are cumulative targets (hosts done after the wave), e.g. [1, 5%, 25%, 100%]")
                    ok = false
                }
                lastPercent = p
                out.append(.percent(p))
            } else {
                guard let n = Int(t) else {
                    let digits = !t.isEmpty && t.allSatisfy { $0.isNumber || $0 == "-" }
                    r.error(item, digits ? "wave size \(t.prefix(40)) is out of range" : "wave size '\(Inventory.printable(t))' must be a host count (5) or a share (25%)")
                    ok = false; continue
                }
                guard n >= 1 else {
                    r.error(item, "wave size \(n) is impossible: a wave needs at least 1 host"); ok = false; continue
                }
                guard n <= 1_000_000 else { r.error(item, "wave size \(n) is out of range (at most 1000000)"); ok = false; continue }
                if let last = lastCount, n <= last {
                    r.error(item, "wave sizes must grow: \(n) after \(last)",
                            hint: "sizes are cumulative targets (hosts done after the wave), e.g. [1, 10, 50%, 100%]")
                    ok = false
                }
                if lastPercent != nil {
                    r.error(item, "a host count (\(n)) after a share: write counts first, then shares, e.g. [1, 10, 25%, 100%]")
                    ok = false
                }
                lastCount = n
                out.append(.count(n))
            }
        }
        if ok, lastPercent != 100 {
            r.error(seq.last!, "the last wave size must be 100% so every selected host is covered",
                    hint: "end the list with 100%, e.g. [1, 25%, 100%]")
            ok = false
        }
        return ok ? out : nil
    }

    static func percentText(_ p: Double) -> String {
        p == p.rounded() ? "\(Int(p))%" : "\(p)%"
    }

    func parseReboot(_ node: Node) -> RebootSpec? {
        guard let pairs = r.mapping(node, "reboot", allowed: PlanLoader.rebootKeys) else { return nil }
        var rb = RebootSpec()
        for (k, _, v) in pairs {
            switch k {
            case "command": if let c = command(v, "reboot.command") { rb.command = c }
            case "timeout": if let d = duration(v, "reboot.timeout", min: .seconds(5), max: .seconds(86400)) { rb.timeout = d }
            case "settle": if let d = duration(v, "reboot.settle", max: .seconds(3600)) { rb.settle = d }
            default: break
            }
        }
        return rb
    }

    func parseGate(_ node: Node) -> GateSettings? {
        let errorsBefore = r.errors.count
        guard let pairs = r.mapping(node, "gate", allowed: PlanLoader.gateKeys) else { return nil }
        var g = GateSettings()
        var nodes: [String: Node] = [:]
        for (k, _, v) in pairs {
            nodes[k] = v
            switch k {
            case "soak": if let d = duration(v, "gate.soak", max: .seconds(7 * 86400)) { g.soak = d }
            case "interval": if let d = duration(v, "gate.interval", min: .milliseconds(100), max: .seconds(86400)) { g.interval = d }
            case "probe_timeout": if let d = duration(v, "gate.probe_timeout", min: .milliseconds(100), max: .seconds(3600)) { g.probeTimeout = d }
            case "sunreclaim_max": if let b = optional(v, { size($0, "gate.sunreclaim_max") }) { g.sUnreclaimMax = b }
            case "sunreclaim_max_share":
                if let x = optional(v, { ratio($0, "gate.sunreclaim_max_share", allowZero: false) }) { g.sUnreclaimMaxShare = x }
            case "sunreclaim_growth_max":
                if let b = optional(v, { sizePerHour($0, "gate.sunreclaim_growth_max") }) { g.sUnreclaimGrowthMaxPerHour = b }
            case "min_slope_points": if let n = int(v, "gate.min_slope_points", range: 2...100_000) { g.minSlopePoints = n }
            case "max_new_oom_kills": if let n = int(v, "gate.max_new_oom_kills", range: 0...1_000_000) { g.maxNewOOMKills = UInt64(n) }
            case "oom_kills_since":
                if let s = r.string(v, "gate.oom_kills_since") {
                    switch s {
                    case "boot": g.oomKillsSince = .boot
                    case "gate_start": g.oomKillsSince = .gateStart
                    default: r.error(v, "gate.oom_kills_since must be boot or gate_start, found '\(Inventory.printable(s))'",
                                     hint: nearest(s, in: ["boot", "gate_start"]).map { "did you mean '\($0)'?" })
                    }
                }
            case "min_good_samples": if let x = ratio(v, "gate.min_good_samples", allowZero: true) { g.minGoodSampleShare = x }
            case "test_site": if let t = optional(v, { parseSite($0, &nodes) }) { g.testSite = t }
            case "checks": if let c = parseChecks(v) { g.customChecks = c }
            default: break
            }
        }
        guard r.errors.count == errorsBefore else { return nil }
        // Cross-field rules, pointed at the key that can fix them.
        if g.soak < g.interval {
            r.error(nodes["soak"] ?? nodes["interval"] ?? node,
                    "gate.soak \(fmt(g.soak)) is shorter than two samples at gate.interval \(fmt(g.interval)): the gate could not see a trend",
                    hint: "make the soak at least one interval long (a few minutes is usual)")
            return nil
        }
        do {
            try g.validate()
        } catch {
            let map: [String: String] = [
                "soak": "soak", "interval": "interval", "probeTimeout": "probe_timeout", "sUnreclaimMaxShare": "sunreclaim_max_share",
                "minGoodSampleShare": "min_good_samples", "minSlopePoints": "min_slope_points", "customChecks": "checks",
                "testSite.requestsPerSample": "test_site.requests_per_sample", "testSite.minSuccessRatio": "test_site.min_success",
                "testSite.timeout": "test_site.timeout", "testSite.minRequests": "test_site.min_requests", "testSite.urlTemplate": "test_site.url",
            ]
            let key = map[error.field] ?? error.field
            let at = nodes[key] ?? nodes[key.split(separator: ".").first.map(String.init) ?? key] ?? node
            r.error(at, "gate.\(key): \(error.reason)")
            return nil
        }
        return g
    }

    func parseSite(_ node: Node, _ nodes: inout [String: Node]) -> TestSiteSettings? {
        guard let pairs = r.mapping(node, "gate.test_site", allowed: PlanLoader.siteKeys) else { return nil }
        var s = TestSiteSettings()
        for (k, _, v) in pairs {
            nodes["test_site.\(k)"] = v
            switch k {
            case "url":
                if let u = r.string(v, "gate.test_site.url") {
                    do {
                        _ = try SiteURL.expand(template: u, address: "192.0.2.1", name: "host")
                        s.urlTemplate = u
                    } catch {
                        r.error(v, "gate.test_site.url: \(error.reason)", hint: "write e.g. http://{address}/ or http://{name}.example.com/health")
                    }
                }
            case "min_success": if let x = ratio(v, "gate.test_site.min_success", allowZero: true) { s.minSuccessRatio = x }
            case "min_requests": if let n = int(v, "gate.test_site.min_requests", range: 1...1_000_000) { s.minRequests = n }
            case "requests_per_sample": if let n = int(v, "gate.test_site.requests_per_sample", range: 1...100) { s.requestsPerSample = n }
            case "timeout": if let d = duration(v, "gate.test_site.timeout", min: .milliseconds(100), max: .seconds(600)) { s.timeout = d }
            default: break
            }
        }
        return s
    }

    func parseChecks(_ node: Node) -> [CustomCheck]? {
        guard case let .sequence(seq) = node else {
            r.error(node, "gate.checks must be a list of {name, command}, found \(r.kind(node))")
            return nil
        }
        var out: [CustomCheck] = []
        var names: [String: Int] = [:]
        for item in seq {
            guard let pairs = r.mapping(item, "a gate check", allowed: PlanLoader.checkKeys) else { continue }
            var name: String?, cmd: String?, maxFailures = 0
            for (k, _, v) in pairs {
                switch k {
                case "name":
                    name = r.string(v, "check name")
                    if let n = name {
                        if let line = names[n] { r.error(v, "duplicate check name '\(n)' (first at line \(line))"); name = nil }
                        else { names[n] = v.mark?.line ?? 0 }
                    }
                case "command": cmd = command(v, "check command")
                case "max_failures": if let n = int(v, "check max_failures", range: 0...1_000_000) { maxFailures = n }
                default: break
                }
            }
            if !pairs.contains(where: { $0.key == "name" }) { r.error(item, "a gate check needs a 'name'") }
            if !pairs.contains(where: { $0.key == "command" }) { r.error(item, "a gate check needs a 'command'") }
            if let name, let cmd { out.append(CustomCheck(name: name, command: cmd, maxFailures: maxFailures)) }
        }
        return out
    }

    func parseNotify(_ node: Node) -> NotifySpec? {
        guard let pairs = r.mapping(node, "notify", allowed: PlanLoader.notifyKeys) else { return nil }
        var customers: String?, channel: NotifySpec.Channel?
        var spec = NotifySpec(customersPath: "", channel: .webhook(url: ""))
        for (k, _, v) in pairs {
            switch k {
            case "customers": customers = r.string(v, "notify.customers").map(resolve)
            case "channel": channel = parseChannel(v)
            case "lead_time": if let d = duration(v, "notify.lead_time", max: .seconds(30 * 86400)) { spec.leadTime = d }
            case "company":
                if let c = r.string(v, "notify.company") {
                    if c.trimmed.isEmpty || c.count > 200 || c.contains(where: \.isNewline) { r.error(v, "notify.company must be one line of 1 to 200 characters") }
                    else { spec.company = c }
                }
            case "templates": spec.templateDir = r.string(v, "notify.templates").map(resolve)
            case "on_failure":
                if let s = r.string(v, "notify.on_failure") {
                    switch s {
                    case "block": spec.blockOnFailure = true
                    case "skip": spec.blockOnFailure = false
                    default: r.error(v, "notify.on_failure must be block or skip, found '\(Inventory.printable(s))'",
                                     hint: nearest(s, in: ["block", "skip"]).map { "did you mean '\($0)'?" })
                    }
                }
            default: break
            }
        }
        if !pairs.contains(where: { $0.key == "customers" }) { r.error(node, "notify needs a 'customers' file (CSV host,customer_id,name,email)") }
        if !pairs.contains(where: { $0.key == "channel" }) { r.error(node, "notify needs a 'channel' (type: smtp or webhook)") }
        guard let customers, let channel else { return nil }
        spec.customersPath = customers
        spec.channel = channel
        return spec
    }

    /// Loopback: `localhost`, 127.0.0.0/8 and `::1` (in any spelling). A password
    /// sent there in clear text never leaves the machine.
    static func isLoopbackHost(_ host: String) -> Bool {
        let h = host.lowercased().trimmingCharacters(in: CharacterSet(charactersIn: "[]"))
        if h == "localhost" || h == "localhost." { return true }
        var v4 = in_addr()
        if inet_pton(AF_INET, h, &v4) == 1 { return UInt32(bigEndian: v4.s_addr) >> 24 == 127 }
        var v6 = in6_addr()
        if inet_pton(AF_INET6, h, &v6) == 1 {
            return withUnsafeBytes(of: &v6) { b in b.prefix(15).allSatisfy { $0 == 0 } && b[15] == 1 }
        }
        return false
    }

    func parseChannel(_ node: Node) -> NotifySpec.Channel? {
        guard case let .mapping(m) = node else {
            r.error(node, "notify.channel must be a mapping with a type (smtp or webhook), found \(r.kind(node))")
            return nil
        }
        let typeNode = m.first(where: { $0.key.scalar?.string == "type" })?.value
        guard let typeNode, let type = r.string(typeNode, "notify.channel.type") else {
            if typeNode == nil { r.error(node, "notify.channel needs a 'type': smtp or webhook") }
            return nil
        }
        switch type {
        case "smtp":
            guard let pairs = r.mapping(node, "an smtp channel", allowed: PlanLoader.smtpKeys) else { return nil }
            var host: String?, port = 25, from: String?, starttls = true, user: String?, env: String?, file: String?
            var userNode: Node?, allowPlaintextAuth = false
            for (k, _, v) in pairs {
                switch k {
                case "host":
                    host = r.string(v, "smtp host")
                    if let h = host, !Inventory.isValidAddress(h) { r.error(v, "smtp host '\(Inventory.printable(h))' is not an address or DNS name"); host = nil }
                case "port": port = int(v, "smtp port", range: 1...65535) ?? port
                case "from":
                    from = r.string(v, "smtp from")
                    if let f = from, !Customers.isValidEmail(f) { r.error(v, "smtp from '\(Inventory.printable(f))' is not an email address"); from = nil }
                case "starttls": starttls = r.bool(v, "smtp starttls") ?? starttls
                case "username": user = r.string(v, "smtp username"); userNode = v
                case "allow_plaintext_auth": allowPlaintextAuth = r.bool(v, "smtp allow_plaintext_auth") ?? allowPlaintextAuth
                case "password_env":
                    env = r.string(v, "smtp password_env")
                    if let e = env, !(e.first.map { $0.isLetter || $0 == "_" } ?? false) || !e.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "_") }) {
                        r.error(v, "smtp password_env '\(Inventory.printable(e))' is not an environment variable name"); env = nil
                    }
                case "password_file": file = r.string(v, "smtp password_file").map(resolve)
                default: break
                }
            }
            if !pairs.contains(where: { $0.key == "host" }) { r.error(node, "an smtp channel needs a 'host'") }
            if !pairs.contains(where: { $0.key == "from" }) { r.error(node, "an smtp channel needs a 'from' address") }
            if env != nil && file != nil { r.error(node, "give the SMTP password by password_env or password_file, not both") }
            if user != nil && env == nil && file == nil {
                r.error(node, "smtp username without a password source", hint: "add password_env: SMTP_PASSWORD (never the password itself)")
            }
            // AUTH without STARTTLS sends the password in clear text (base64 is no cipher):
            // only to this machine, or when the plan says so.
            if user != nil, !starttls, !allowPlaintextAuth, let host, !Self.isLoopbackHost(host) {
                r.error(userNode ?? node, "smtp username with starttls: false would send the SMTP password to \(Inventory.printable(host)) in clear text",
                        hint: "set starttls: true (the server must offer STARTTLS), or, if the network path to the server is trusted, add allow_plaintext_auth: true to notify.channel")
            }
            guard let host, let from else { return nil }
            return .smtp(host: host, port: port, from: from, starttls: starttls, username: user, passwordEnv: env, passwordFile: file)
        case "webhook":
            guard let pairs = r.mapping(node, "a webhook channel", allowed: PlanLoader.webhookKeys) else { return nil }
            guard let urlNode = pairs.first(where: { $0.key == "url" })?.value else {
                r.error(node, "a webhook channel needs a 'url'")
                return nil
            }
            guard let url = r.string(urlNode, "webhook url") else { return nil }
            guard let u = URL(string: url), ["http", "https"].contains(u.scheme ?? ""), u.host != nil, !url.contains(where: \.isWhitespace) else {
                r.error(urlNode, "webhook url '\(Inventory.printable(url))' is not an http(s) URL")
                return nil
            }
            return .webhook(url: url)
        default:
            r.error(typeNode, "notify.channel.type must be smtp or webhook, found '\(Inventory.printable(type))'",
                    hint: nearest(type, in: ["smtp", "webhook"]).map { "did you mean '\($0)'?" })
            return nil
        }
    }

    func parseFailure(_ node: Node) -> FailurePolicy? {
        guard let pairs = r.mapping(node, "on_failure", allowed: PlanLoader.failureKeys) else { return nil }
        var f = FailurePolicy()
        for (k, _, v) in pairs {
            switch k {
            case "rollback":
                if let s = r.string(v, "on_failure.rollback") {
                    if let x = FailurePolicy.Rollback(rawValue: s) { f.rollback = x } else {
                        r.error(v, "on_failure.rollback must be wave, all or none, found '\(Inventory.printable(s))'",
                                hint: nearest(s, in: FailurePolicy.Rollback.allCases.map(\.rawValue)).map { "did you mean '\($0)'?" })
                    }
                }
            case "max_failed_hosts_per_wave": if let n = int(v, "on_failure.max_failed_hosts_per_wave", range: 0...1_000_000) { f.maxFailedHostsPerWave = n }
            case "max_failed_hosts": if let n = int(v, "on_failure.max_failed_hosts", range: 0...1_000_000) { f.maxFailedHostsTotal = n }
            default: break
            }
        }
        if f.maxFailedHostsTotal < f.maxFailedHostsPerWave, let n = pairs.first(where: { $0.key == "max_failed_hosts" })?.value {
            r.error(n, "on_failure.max_failed_hosts (\(f.maxFailedHostsTotal)) is below max_failed_hosts_per_wave (\(f.maxFailedHostsPerWave))",
                    hint: "the fleet-wide budget must be at least the per-wave budget")
        }
        return f
    }

    // MARK: typed values

    func fmt(_ d: Duration) -> String { PlanFormat.duration(d) }

    /// `null`, `~`, `none`, `off`, `false` turn an optional check off.
    func optional<T>(_ node: Node, _ parse: (Node) -> T?) -> T?? {
        if case let .scalar(s) = node, s.style == .plain, ["", "~", "null", "none", "off", "false", "no"].contains(s.string.lowercased()) {
            return .some(nil)
        }
        guard let v = parse(node) else { return nil }
        return .some(v)
    }

    func duration(_ node: Node, _ what: String, min: Duration = .zero, max: Duration) -> Duration? {
        if case let .scalar(s) = node {
            let t = s.string.trimmed
            if t.hasPrefix("-") {
                r.error(node, "\(what) must not be negative, found \(Inventory.printable(t))")
                return nil
            }
            if !t.isEmpty, t.allSatisfy(\.isNumber) {
                r.error(node, "\(what) needs a unit: write \(t.prefix(12))s, \(t.prefix(12))m or \(t.prefix(12))h")
                return nil
            }
        }
        guard let d = r.duration(node, what, min: min) else { return nil }
        if d > max {
            r.error(node, "\(what) is \(fmt(d)); at most \(fmt(max)) makes sense here")
            return nil
        }
        return d
    }

    /// A whole number in `range`; says "too large" rather than "not a number" for long digit strings.
    func int(_ node: Node, _ what: String, range: ClosedRange<Int>) -> Int? {
        if case let .scalar(s) = node, Int(s.string) == nil, s.string.count > 18,
           s.string.trimmed.drop(while: { $0 == "-" || $0 == "+" }).allSatisfy(\.isNumber) {
            r.error(node, "\(what) is out of range: \(s.string.prefix(24))… (must be between \(range.lowerBound) and \(range.upperBound))")
            return nil
        }
        return r.int(node, what, range: range)
    }

    func size(_ node: Node, _ what: String) -> UInt64? {
        guard case let .scalar(s) = node, let b = Quantity.bytes(s.string), !s.string.trimmed.hasPrefix("-") else {
            let found = r.kind(node)
            r.error(node, "\(what) must be a size like 512MiB or 2GiB, found \(found)")
            return nil
        }
        return b
    }

    /// Growth per hour: `64MiB`, `64MiB/h` or `64MiB/hour`.
    func sizePerHour(_ node: Node, _ what: String) -> UInt64? {
        if case let .scalar(s) = node {
            var t = s.string.trimmed
            for suffix in ["/hour", "/h"] where t.hasSuffix(suffix) { t = String(t.dropLast(suffix.count)) }
            if ["/min", "/m", "/s"].contains(where: { t.hasSuffix($0) }) {
                r.error(node, "\(what) is a growth per hour: write e.g. 32MiB or 32MiB/h")
                return nil
            }
            if let b = Quantity.bytes(t), !t.hasPrefix("-") { return b }
        }
        r.error(node, "\(what) must be a size per hour like 32MiB/h, found \(r.kind(node))")
        return nil
    }

    func ratio(_ node: Node, _ what: String, allowZero: Bool) -> Double? {
        guard case let .scalar(s) = node else {
            r.error(node, "\(what) must be a share like 99.5% or 0.995, found \(r.kind(node))")
            return nil
        }
        let t = s.string.trimmed
        guard let x = Quantity.ratio(t) else {
            let n = Double(t.hasSuffix("%") ? String(t.dropLast()) : t)
            if n != nil {
                r.error(node, "\(what) \(t) is impossible: a share is between 0% and 100%")
            } else {
                r.error(node, "\(what) must be a share like 99.5% or 0.995, found \(r.kind(node))")
            }
            return nil
        }
        if !allowZero && x == 0 {
            r.error(node, "\(what) of 0 would fail every host", hint: "use a positive share, or null to turn the check off")
            return nil
        }
        return x
    }

    /// One shell command: a single line, not empty. `placeholders` are the ones
    /// rollctl replaces in this command; with none, the command runs as written
    /// and only a misplaced `{release}`/`{previous_release}` is an error.
    func command(_ node: Node, _ what: String, placeholders allowed: [String] = []) -> String? {
        guard let c = r.string(node, what) else { return nil }
        if c.trimmed.isEmpty { r.error(node, "\(what) is empty"); return nil }
        if c.contains(where: \.isNewline) {
            r.error(node, "\(what) must be one line; write several commands as a list")
            return nil
        }
        if c.count > 4096 { r.error(node, "\(what) is longer than 4096 characters"); return nil }
        let known = ["release", "previous_release"]
        for p in Self.placeholders(in: c) where !allowed.contains(p) && (!allowed.isEmpty || known.contains(p)) {
            if known.contains(p) {
                r.error(node, "\(what) cannot use {\(p)}", hint: allowed.isEmpty ? "nothing is replaced in this command"
                        : "here rollctl replaces only \(allowed.map { "{\($0)}" }.joined(separator: ", "))")
            } else {
                r.error(node, "\(what) uses an unknown placeholder {\(p)}",
                        hint: nearest(p, in: allowed).map { "did you mean {\($0)}?" } ?? "known here: \(allowed.map { "{\($0)}" }.joined(separator: ", "))")
            }
            return nil
        }
        return c
    }

    func commands(_ node: Node, _ what: String, placeholders allowed: [String]) -> [String]? {
        switch node {
        case .scalar: return command(node, what, placeholders: allowed).map { [$0] }
        case .sequence(let seq):
            if seq.isEmpty { r.error(node, "\(what) is an empty list"); return nil }
            let list = seq.compactMap { command($0, "each command of \(what)", placeholders: allowed) }
            return list.count == seq.count ? list : nil
        default:
            r.error(node, "\(what) must be a command or a list of commands, found \(r.kind(node))")
            return nil
        }
    }

    /// `{word}` placeholders; shell braces like `${VAR}` or `{a,b}` are not placeholders.
    static func placeholders(in s: String) -> [String] {
        var out: [String] = []
        let chars = Array(s)
        var i = 0
        while i < chars.count {
            if chars[i] == "{", i == 0 || chars[i - 1] != "$", let close = chars[(i + 1)...].firstIndex(of: "}") {
                let word = String(chars[(i + 1)..<close])
                if !word.isEmpty, word.allSatisfy({ $0.isLetter || $0 == "_" }) { out.append(word) }
                i = close + 1
            } else {
                i += 1
            }
        }
        return out
    }
}

/// Short human renderings used in messages and the dry-run.
public enum PlanFormat {
    /// `90s`, `10m`, `1h30m`, `500ms`.
    public static func duration(_ d: Duration) -> String {
        let ms = d.components.seconds * 1000 + d.components.attoseconds / 1_000_000_000_000_000
        if ms == 0 { return "0s" }
        if ms < 1000 { return "\(ms)ms" }
        if ms % 1000 != 0 { return "\(Double(ms) / 1000)s" }
        var s = ms / 1000
        var out = ""
        if s >= 86400 && s % 3600 == 0 { out += "\(s / 86400)d"; s %= 86400 }
        if s >= 3600 { out += "\(s / 3600)h"; s %= 3600 }
        if s >= 60 { out += "\(s / 60)m"; s %= 60 }
        if s > 0 { out += "\(s)s" }
        return out
    }

    public static func waveSize(_ w: WaveSize) -> String {
        switch w {
        case .count(let n): "\(n)"
        case .percent(let p): PlanParser.percentText(p)
        }
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
    /// plan selects: a `ProxyJump`/`ProxyCommand` that applies to one of them,
    /// an `Include` that applies, or any `Match` is an error at the config's
    /// file and line (rollctl would ignore them and dial the host directly).
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
