import Foundation
import Yams
import Basics
import SSH
import HealthGate

/// One pass over the plan tree; errors go to the reader. The core is here (the top-level
/// keys, relative paths, the typed value readers); each section's parser is an extension
/// next to its allowed keys: PlanKernel, PlanWaves, PlanGate, PlanNotify.
struct PlanParser {
    let reader: YAMLReader
    let path: String
    let text: String
    /// Whether `kernel.packages` files are looked at (false: a plan the journal keeps, read
    /// back to resume, abort or roll back; the files are checked when they are shipped).
    var checkFiles = true
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
        var bootloader = Bootloader.auto
        var selection = Selection(), waves = WaveSpec(), reboot = RebootSpec(), gate = GateSettings()
        var notify: NotifySpec?
        var failure = FailurePolicy()
        var schedule: (RebootSchedule, [Node])?
        var onInconclusive: FailurePolicy.Inconclusive?
        var hooks = HookSpec()
        var alertBlock: AlertBlock?, silence: SilenceSpec?
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
            case "gate":
                if let g = parseGate(v) { gate = g }
                onInconclusive = parseOnInconclusive(v)
                alertBlock = parseAlertBlock(v)
            case "notify": notify = parseNotify(v)
            case "on_failure": if let f = parseFailure(v) { failure = f }
            case "schedule": schedule = parseSchedule(v)
            case "hooks": if let h = parseHooks(v) { hooks = h }
            case "silence": silence = parseSilence(v)
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
        if let (s, nodes) = schedule { checkWindowsHoldABatch(s, nodes, reboot: reboot) }
        if let onInconclusive { failure.onInconclusive = onInconclusive }
        guard let name, var kernel, let inventory else { return nil }
        // A RHEL-family host installs kernels with dnf: grub-bls's default unless the plan says how.
        if bootloader == .grubBLS, case let .mapping(m)? = top.first(where: { $0.key == "kernel" })?.value,
           !m.keys.contains(where: { $0.scalar?.string == "install" }) {
            kernel.install = KernelSpec.dnfInstall
        }
        var plan = Plan(name: name, description: description, path: path, text: text, kernel: kernel, bootloader: bootloader,
                    inventoryPath: inventory, selection: selection, waves: waves, reboot: reboot, gate: gate,
                    notify: notify, failure: failure, schedule: schedule?.0)
        plan.hooks = hooks
        plan.alertBlock = alertBlock
        plan.silence = silence
        return plan
    }
}

// MARK: typed values

extension PlanParser {
    func fmt(_ d: Duration) -> String { PlanFormat.duration(d) }

    /// `null`, `~`, `none`, `off`, `false` turn an optional check off.
    func optional<T>(_ node: Node, _ parse: (Node) -> T?) -> T?? {
        if case let .scalar(s) = node, s.style == .plain, ["", "~", "null", "none", "off", "false", "no"].contains(s.string.lowercased()) {
            return .some(nil)
        }
        guard let v = parse(node) else { return nil }
        return .some(v)
    }

    /// One of `E`'s raw values: "`what` must be a, b or c, found 'x'", with a did-you-mean.
    func choice<E: RawRepresentable & CaseIterable>(_ node: Node, _ what: String) -> E? where E.RawValue == String {
        guard let s = r.string(node, what) else { return nil }
        if let e = E(rawValue: s) { return e }
        let names = E.allCases.map(\.rawValue)
        let list = names.dropLast().joined(separator: ", ") + " or " + (names.last ?? "")
        r.error(node, "\(what) must be \(list), found '\(Inventory.printable(s))'", hint: nearest(s, in: names).map { "did you mean '\($0)'?" })
        return nil
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
