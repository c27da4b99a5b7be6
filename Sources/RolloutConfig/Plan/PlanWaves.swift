import Yams
import Basics

// The `select`, `waves` and `on_failure` sections.

extension PlanLoader {
    static let selectKeys = ["labels", "hosts", "exclude"]
    static let waveKeys = ["sizes", "max_parallel", "failure_domain", "separate_customers", "pause_after"]
    static let failureKeys = ["rollback", "max_failed_hosts_per_wave", "max_failed_hosts", "max_unhealthy_hosts"]
}

extension PlanParser {
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

    /// `waves.pause_after`: wave numbers, each before the last wave, in any order, each once.
    func pausePoints(_ node: Node, waves: Int) -> [Int] {
        let items: [Node]
        switch node {
        case .sequence(let seq): items = Array(seq)
        case .scalar: items = [node]
        default:
            r.error(node, "waves.pause_after must be a list of wave numbers like [1], found \(r.kind(node))")
            return []
        }
        var out: [Int] = []
        for item in items {
            guard let n = int(item, "each entry of waves.pause_after", range: 1...10_000) else { continue }
            if n >= waves {
                r.error(item, "waves.pause_after: wave \(n) is \(n == waves ? "the last wave" : "not in the plan (it has \(waves) waves)"): nothing comes after it to hold back",
                        hint: "pause after waves 1 to \(max(1, waves - 1))")
                continue
            }
            if !out.contains(n) { out.append(n) }
        }
        return out.sorted()
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
        var pauseNode: Node?
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
            case "pause_after": pauseNode = v
            default: break
            }
        }
        // After the sizes (in any key order): a pause after the last wave has nothing to hold back.
        if let v = pauseNode { w.pauseAfter = pausePoints(v, waves: w.sizes.count) }
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

    func parseFailure(_ node: Node) -> FailurePolicy? {
        guard let pairs = r.mapping(node, "on_failure", allowed: PlanLoader.failureKeys) else { return nil }
        var f = FailurePolicy()
        for (k, _, v) in pairs {
            switch k {
            case "rollback": if let x: FailurePolicy.Rollback = choice(v, "on_failure.rollback") { f.rollback = x }
            case "max_failed_hosts_per_wave": if let b = budget(v, "on_failure.max_failed_hosts_per_wave") { f.maxFailedHostsPerWave = b }
            case "max_failed_hosts": if let b = budget(v, "on_failure.max_failed_hosts") { f.maxFailedHostsTotal = b }
            case "max_unhealthy_hosts": if let b = optional(v, { budget($0, "on_failure.max_unhealthy_hosts") }) { f.maxUnhealthyHosts = b }
            default: break
            }
        }
        // Comparable only as counts: a share of a wave and a share of the rollout are of different numbers.
        var below = false
        if case let (.count(t), .count(w)) = (f.maxFailedHostsTotal, f.maxFailedHostsPerWave) { below = t < w }
        if below, let n = pairs.first(where: { $0.key == "max_failed_hosts" })?.value {
            r.error(n, "on_failure.max_failed_hosts (\(f.maxFailedHostsTotal)) is below max_failed_hosts_per_wave (\(f.maxFailedHostsPerWave))",
                    hint: "the fleet-wide budget must be at least the per-wave budget")
        }
        return f
    }

    /// A failure budget: a whole number of hosts (`2`) or a share of them (`2%`).
    func budget(_ node: Node, _ what: String) -> FailureBudget? {
        guard case let .scalar(s) = node else {
            r.error(node, "\(what) must be a number of hosts like 2 or a share like 2%, found \(r.kind(node))")
            return nil
        }
        let t = s.string.trimmed
        if t.hasSuffix("%") {
            guard let x = Quantity.ratio(t) else {
                r.error(node, "\(what) \(Inventory.printable(t)) is impossible: a share is between 0% and 100%")
                return nil
            }
            return .share(x)
        }
        if let n = Int(t), n >= 0, n <= 1_000_000 { return .count(n) }
        if let x = Double(t), x.isFinite, x >= 0, x < 1 {
            r.error(node, "\(what) must be a whole number of hosts or a share with %, found \(Inventory.printable(t))", hint: "write \(String(format: "%g", x * 100))% for a share")
            return nil
        }
        r.error(node, "\(what) must be a number of hosts like 2 or a share like 2%, found \(r.kind(node))")
        return nil
    }
}
