import Foundation

extension HostGateReport {
    /// The report for a person, one screen: the verdict, why, then every check.
    /// Plain text without colour; the CLI decorates it.
    public func render() -> String {
        var lines: [String] = []
        let how: String = switch end {
        case .completed: "soak complete: \(samples.count) samples over \(Format.duration(decidedAtSeconds))"
        case .earlyFail: "soak halted at \(Format.duration(decidedAtSeconds)), sample \(samples.count) of \(plannedSamples)"
        case .earlyInconclusive: "soak abandoned at \(Format.duration(decidedAtSeconds)), sample \(samples.count) of \(plannedSamples)"
        case .cancelled: "gate cancelled at \(Format.duration(decidedAtSeconds)), sample \(samples.count) of \(plannedSamples)"
        case .stoppedWithWave: "stopped at \(Format.duration(decidedAtSeconds)) because another host of the wave failed"
        }
        var identity: [String] = []
        if let release { identity.append("kernel \(release)") }
        if let bootID { identity.append("boot \(bootID.prefix(8))") }
        lines.append("\(host): \(verdict.rawValue.uppercased()) — \(how)" + (identity.isEmpty ? "" : " (\(identity.joined(separator: ", ")))"))
        for f in findings {
            let mark: String = switch f.status {
            case .pass: "  ok  "
            case .fail: "  FAIL"
            case .inconclusive: "  ??  "
            case .notJudged: "  --  "
            }
            let label = Self.label(f.check)
            let summary = f.summary.hasPrefix(label + ": ") ? String(f.summary.dropFirst(label.count + 2)) : f.summary
            // Long summaries continue on indented lines, one clause each.
            let clauses = summary.count > 100 ? summary.components(separatedBy: "; ") : [summary]
            lines.append("\(mark) \(label.padding(12)) \(clauses[0])")
            for clause in clauses.dropFirst() { lines.append("       \("".padding(12))   \(clause)") }
            if f.check == "sunreclaim.growth", let baselineComparison {
                lines.append("       \("".padding(12)) \(baselineComparison)" + (baseline.map { " (\($0.method)\($0.release.map { ", kernel " + $0 } ?? ""))" } ?? ""))
            }
            if f.check == "site", let site, !site.failureDetails.isEmpty, f.status != .pass {
                let details = site.failureDetails.sorted { $0.value > $1.value }.map { "\($0.value)× \($0.key)" }
                lines.append("       \("".padding(12)) \(details.joined(separator: "; "))")
            }
        }
        return lines.joined(separator: "\n")
    }

    static func label(_ check: String) -> String {
        switch check {
        case "samples": "samples"
        case "boot": "boot"
        case "release": "kernel"
        case "sunreclaim.level": "slab level"
        case "sunreclaim.share": "slab share"
        case "sunreclaim.growth": "slab growth"
        case "oom": "OOM kills"
        case "site": "test site"
        default: check.hasPrefix("check:") ? String(check.dropFirst(6)) : check
        }
    }
}

extension WaveGateReport {
    /// Verdict of the wave, the hosts that stop it, then each host's report
    /// (failed and inconclusive first; passing hosts as one line each).
    public func render() -> String {
        var lines = ["wave gate: \(verdict.rawValue.uppercased()) — \(passed.count) passed, \(failed.count) failed, \(inconclusive.count) inconclusive of \(hosts.count)"]
        if !failed.isEmpty { lines.append("failed: " + failed.joined(separator: ", ")) }
        if !inconclusive.isEmpty { lines.append("inconclusive: " + inconclusive.joined(separator: ", ")) }
        for h in hosts.sorted(by: { $0.verdict > $1.verdict }) {
            lines.append("")
            if h.verdict == .pass {
                let growth = h.growth.map { ", growth \(Format.rate($0.bytesPerHour))" } ?? ""
                let site = h.site.map { ", site \($0.ok)/\($0.attempts)" } ?? ""
                lines.append("\(h.host): PASS — \(h.samples.count) samples\(growth)\(site)")
            } else {
                lines.append(h.render())
            }
        }
        return lines.joined(separator: "\n")
    }
}

extension String {
    func padding(_ width: Int) -> String {
        count >= width ? self : self + String(repeating: " ", count: width - count)
    }
}
