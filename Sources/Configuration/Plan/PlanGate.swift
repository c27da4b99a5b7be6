import Yams
import Basics
import NetIO
import HealthGate

// The `reboot` and `gate` sections (with `gate.test_site` and `gate.checks`).

extension PlanLoader {
    static let rebootKeys = ["command", "timeout", "settle"]
    static let gateKeys = ["soak", "interval", "probe_timeout", "sunreclaim_max", "sunreclaim_max_share", "sunreclaim_growth_max",
                           "min_slope_points", "max_new_oom_kills", "oom_kills_since", "min_good_samples", "test_site", "checks",
                           "on_inconclusive"]
    static let siteKeys = ["url", "min_success", "min_requests", "requests_per_sample", "timeout"]
    static let checkKeys = ["name", "command", "max_failures"]
}

extension PlanParser {
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

    /// `gate.on_inconclusive` (`halt` | `pause`): orchestration policy, kept in `FailurePolicy`.
    func parseOnInconclusive(_ gate: Node) -> FailurePolicy.Inconclusive? {
        guard case let .mapping(m) = gate, let v = m.first(where: { $0.key.scalar?.string == "on_inconclusive" })?.value else { return nil }
        return choice(v, "gate.on_inconclusive")
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
                        _ = try HTTPURL.expand(template: u, address: "192.0.2.1", name: "host")
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
}
