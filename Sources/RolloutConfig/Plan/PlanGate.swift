import Yams
import Basics
import NetIO
import HealthGate
import WebAPI

// The `reboot` and `gate` sections (with `gate.test_site` and `gate.checks`).

extension PlanLoader {
    static let rebootKeys = ["command", "timeout", "settle"]
    static let gateKeys = ["soak", "interval", "probe_timeout", "sunreclaim_max", "sunreclaim_max_share", "sunreclaim_growth_max",
                           "min_slope_points", "max_new_oom_kills", "oom_kills_since", "min_good_samples", "test_site", "checks",
                           "on_inconclusive", "prometheus", "block_on_alerts"]
    static let prometheusKeys = ["url", "ca_file", "checks"]
    static let promCheckKeys = ["name", "query", "max", "min"]
    static let alertBlockKeys = ["url", "ca_file", "matchers", "max_wait", "interval"]
    static let silenceKeys = ["url", "ca_file", "matchers", "comment"]
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
            case "prometheus": if let p = optional(v, { parsePrometheus($0) }) { g.prometheus = p }
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
                "prometheus.url": "prometheus", "prometheus.checks": "prometheus",
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

    /// `gate.prometheus: {url, ca_file, checks: [{name, query, max, min}]}`.
    func parsePrometheus(_ node: Node) -> PrometheusChecks? {
        guard let pairs = r.mapping(node, "gate.prometheus", allowed: PlanLoader.prometheusKeys) else { return nil }
        var url: String?, caFile: String?, checks: [PrometheusCheck]?
        for (k, _, v) in pairs {
            switch k {
            case "url": url = webURL(v, "gate.prometheus.url")
            case "ca_file": caFile = r.string(v, "gate.prometheus.ca_file").map(resolve)
            case "checks": checks = parsePromChecks(v)
            default: break
            }
        }
        if !pairs.contains(where: { $0.key == "url" }) { r.error(node, "gate.prometheus needs a 'url'", hint: "e.g. url: http://prometheus.internal:9090") }
        if !pairs.contains(where: { $0.key == "checks" }) { r.error(node, "gate.prometheus needs 'checks'") }
        guard let url, let checks else { return nil }
        return PrometheusChecks(url: url, caFile: caFile, checks: checks)
    }

    func parsePromChecks(_ node: Node) -> [PrometheusCheck]? {
        guard case let .sequence(seq) = node, !seq.isEmpty else {
            r.error(node, "gate.prometheus.checks must be a list of {name, query, max}, found \(r.kind(node))")
            return nil
        }
        var out: [PrometheusCheck] = []
        var names: [String: Int] = [:]
        let errorsBefore = r.errors.count
        for item in seq {
            guard let pairs = r.mapping(item, "a Prometheus check", allowed: PlanLoader.promCheckKeys) else { continue }
            var check = PrometheusCheck(name: "", query: "")
            var bytes = false
            for (k, _, v) in pairs {
                switch k {
                case "name":
                    if let n = r.string(v, "check name") {
                        if let line = names[n] { r.error(v, "duplicate check name '\(n)' (first at line \(line))") }
                        else { names[n] = v.mark?.line ?? 0; check.name = n }
                    }
                case "query":
                    if let q = r.string(v, "check query") {
                        do { try Placeholders.checkPromQL(q); check.query = q } catch {
                            r.error(v, "gate.prometheus check query: \(error.reason)")
                        }
                    }
                case "max", "min":
                    if let (x, isBytes) = limit(v, "gate.prometheus check \(k)") {
                        if k == "max" { check.max = x } else { check.min = x }
                        bytes = bytes || isBytes
                    }
                default: break
                }
            }
            if !pairs.contains(where: { $0.key == "name" }) { r.error(item, "a Prometheus check needs a 'name'") }
            if !pairs.contains(where: { $0.key == "query" }) { r.error(item, "a Prometheus check needs a 'query'") }
            if !pairs.contains(where: { $0.key == "max" || $0.key == "min" }) {
                r.error(item, "a Prometheus check needs 'max', 'min' or both", hint: "e.g. max: 2GiB or max: 0.5")
            }
            check.unit = bytes ? .bytes : .number
            out.append(check)
        }
        return r.errors.count == errorsBefore ? out : nil
    }

    /// A limit: a plain number (`0.5`, `100`) or a size (`2GiB`, then the values print as bytes).
    func limit(_ node: Node, _ what: String) -> (Double, Bool)? {
        guard case let .scalar(s) = node else {
            r.error(node, "\(what) must be a number or a size like 2GiB, found \(r.kind(node))")
            return nil
        }
        let t = s.string.trimmed
        if let x = Double(t), x.isFinite { return (x, false) }
        if let b = Quantity.bytes(t), !t.hasPrefix("-") { return (Double(b), true) }
        r.error(node, "\(what) must be a number or a size like 2GiB, found '\(Inventory.printable(t))'")
        return nil
    }

    /// An http(s) URL without credentials.
    func webURL(_ node: Node, _ what: String) -> String? {
        guard let u = r.string(node, what) else { return nil }
        do { _ = try WebClient.check(u) } catch {
            r.error(node, "\(what): \(error.message)", hint: "write e.g. http://alertmanager.internal:9093")
            return nil
        }
        return u
    }

    func matchers(_ node: Node, _ what: String) -> [AlertMatcher]? {
        guard let list = r.stringList(node, what) else { return nil }
        guard !list.isEmpty else { r.error(node, "\(what) needs at least one matcher, e.g. severity=\"critical\""); return nil }
        var out: [AlertMatcher] = []
        for text in list {
            do { out.append(try AlertMatcher.parse(text)) } catch {
                r.error(node, "\(what): '\(Inventory.printable(text))': \(error.reason)")
                return nil
            }
        }
        return out
    }

    /// `gate.block_on_alerts: {url, matchers, max_wait, interval, ca_file}`.
    func parseAlertBlock(_ gate: Node) -> AlertBlock? {
        guard case let .mapping(m) = gate, let node = m.first(where: { $0.key.scalar?.string == "block_on_alerts" })?.value,
              let pairs = r.mapping(node, "gate.block_on_alerts", allowed: PlanLoader.alertBlockKeys) else { return nil }
        var block = AlertBlock(url: "", matchers: [])
        var ok = true
        for (k, _, v) in pairs {
            switch k {
            case "url": if let u = webURL(v, "gate.block_on_alerts.url") { block.url = u } else { ok = false }
            case "ca_file": block.caFile = r.string(v, "gate.block_on_alerts.ca_file").map(resolve)
            case "matchers": if let ms = matchers(v, "gate.block_on_alerts.matchers") { block.matchers = ms } else { ok = false }
            case "max_wait": if let d = duration(v, "gate.block_on_alerts.max_wait", min: .seconds(1), max: .seconds(7 * 86400)) { block.maxWait = d }
            case "interval": if let d = duration(v, "gate.block_on_alerts.interval", min: .milliseconds(100), max: .seconds(3600)) { block.interval = d }
            default: break
            }
        }
        for key in ["url", "matchers"] where !pairs.contains(where: { $0.key == key }) {
            r.error(node, "gate.block_on_alerts needs '\(key)'", hint: key == "url" ? "e.g. url: http://alertmanager.internal:9093" : "e.g. matchers: ['severity=\"critical\"']")
            ok = false
        }
        return ok ? block : nil
    }

    /// `silence: {url, matchers, comment, ca_file}`.
    func parseSilence(_ node: Node) -> SilenceSpec? {
        guard let pairs = r.mapping(node, "silence", allowed: PlanLoader.silenceKeys) else { return nil }
        var spec = SilenceSpec(url: "", matchers: [])
        var ok = true
        for (k, _, v) in pairs {
            switch k {
            case "url": if let u = webURL(v, "silence.url") { spec.url = u } else { ok = false }
            case "ca_file": spec.caFile = r.string(v, "silence.ca_file").map(resolve)
            case "matchers":
                if let ms = matchers(v, "silence.matchers") {
                    spec.matchers = ms
                    if !ms.contains(where: \.perHost) {
                        r.error(v, "silence.matchers must name the host ({name} or {address}): a silence without it would mute the whole fleet",
                                hint: "e.g. instance=~\"{address}:.*\"")
                        ok = false
                    }
                } else { ok = false }
            case "comment": if let c = r.string(v, "silence.comment") { spec.comment = String(c.prefix(500)) }
            default: break
            }
        }
        for key in ["url", "matchers"] where !pairs.contains(where: { $0.key == key }) {
            r.error(node, "silence needs '\(key)'")
            ok = false
        }
        return ok ? spec : nil
    }
}
