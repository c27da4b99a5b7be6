/// The outcome of a gate. `inconclusive` stops a rollout like `fail` does, but
/// says the gate could not see enough to judge (probes erred, too few samples),
/// not that the host is unhealthy.
public enum GateVerdict: String, Sendable, Codable, Comparable, CaseIterable {
    case pass
    case inconclusive
    case fail

    /// Orders by severity, so the verdict of a wave is the `max` of its hosts'.
    public static func < (a: GateVerdict, b: GateVerdict) -> Bool {
        allCases.firstIndex(of: a)! < allCases.firstIndex(of: b)!
    }

    /// True only for `pass`: the rollout may go on.
    public var allowsProgress: Bool { self == .pass }
}

/// One judged check of the gate, with what was measured and the threshold.
public struct GateFinding: Sendable, Equatable, Codable {
    /// Status of one check. `notJudged`: the soak ended before this check could
    /// be judged (early stop); it does not count for the verdict.
    public enum Status: String, Sendable, Codable {
        case pass, fail, inconclusive, notJudged
    }

    /// Stable identifier: `samples`, `boot`, `release`, `sunreclaim.level`,
    /// `sunreclaim.share`, `sunreclaim.growth`, `oom`, `site`, `check:<name>`.
    public var check: String
    public var status: Status
    /// The measured value, in the check's unit (bytes, bytes/h, count, ratio).
    public var measured: Double?
    /// The threshold it was judged against, same unit.
    public var limit: Double?
    /// One line for a person: what was seen, against what, and by how much.
    public var summary: String

    public init(check: String, status: Status, measured: Double? = nil, limit: Double? = nil, summary: String) {
        self.check = check
        self.status = status
        self.measured = measured
        self.limit = limit
        self.summary = summary
    }
}

/// Why a host's soak ended.
public enum GateEnd: String, Sendable, Codable {
    /// Every planned sample was taken.
    case completed
    /// A hard failure (OOM kill, SUnreclaim over its ceiling, success ratio out
    /// of reach, reboot, failing check) ended the soak at once.
    case earlyFail
    /// So many samples failed that the gate could no longer conclude.
    case earlyInconclusive
    /// The gate's task was cancelled.
    case cancelled
    /// Another host of the wave failed, so this one's soak was cut short.
    case stoppedWithWave
}

/// The test-site requests of a soak, counted by outcome.
public struct SiteTally: Sendable, Equatable, Codable {
    public var attempts: Int
    public var byOutcome: [SiteOutcome: Int]
    /// Latency of the successful requests: median, 95th percentile, maximum.
    public var latencyP50Seconds: Double?
    public var latencyP95Seconds: Double?
    public var latencyMaxSeconds: Double?
    /// Distinct failure details with their counts, most frequent first (at most 5).
    public var failureDetails: [String: Int]

    public init(_ attempts: [SiteAttempt]) {
        self.attempts = attempts.count
        var counts: [SiteOutcome: Int] = [:]
        for a in attempts { counts[a.outcome, default: 0] += 1 }
        byOutcome = counts
        let ok = attempts.filter { $0.outcome == .ok }.map(\.latencySeconds).sorted()
        func pct(_ p: Double) -> Double? {
            guard !ok.isEmpty else { return nil }
            let rank = Int((p * Double(ok.count)).rounded(.up))
            return ok[min(ok.count, max(rank, 1)) - 1]
        }
        latencyP50Seconds = pct(0.5)
        latencyP95Seconds = pct(0.95)
        latencyMaxSeconds = ok.last
        var details: [String: Int] = [:]
        for a in attempts where a.outcome != .ok { details[a.detail ?? a.outcome.rawValue, default: 0] += 1 }
        failureDetails = Dictionary(uniqueKeysWithValues: details.sorted { $0.value > $1.value }.prefix(5).map { ($0.key, $0.value) })
    }

    public var ok: Int { byOutcome[.ok] ?? 0 }
    public var failures: Int { attempts - ok }
    public var successRatio: Double? { attempts == 0 ? nil : Double(ok) / Double(attempts) }

    /// "reset 6, timeout 1" in a fixed order.
    public var failureBreakdown: String {
        SiteOutcome.allCases.filter { $0 != .ok }.compactMap { c in byOutcome[c].map { "\(c.rawValue) \($0)" } }
            .joined(separator: ", ")
    }
}

extension SiteOutcome: CodingKeyRepresentable {}

/// The OOM-kill counter over the soak.
public struct OOMTally: Sendable, Equatable, Codable {
    /// `oom_kill` at the first and the last good sample (kills since boot).
    public var atStart: UInt64
    public var atEnd: UInt64
    /// Kills counted against `maxNewOOMKills` (since boot or since the gate
    /// started, per `GateSettings.oomKillsSince`).
    public var counted: UInt64
    public var origin: OOMCountOrigin

    /// Kills during the soak itself, whatever `origin` says.
    public var sinceGateStart: UInt64 { atEnd >= atStart ? atEnd - atStart : 0 }
}

/// The gate's verdict on one host with all its evidence.
public struct HostGateReport: Sendable, Equatable, Codable {
    public var host: String
    public var verdict: GateVerdict
    public var end: GateEnd
    /// Every check, judged or not, in a fixed order.
    public var findings: [GateFinding]
    public var samples: [GateSample]
    public var plannedSamples: Int
    /// SUnreclaim growth over the soak, when at least two memory samples exist.
    public var growth: SlopeEstimate?
    public var baseline: GrowthBaseline?
    /// "slope 2.1 MiB/h vs 2.4 GiB/h before: 99.9% less", with a baseline.
    public var baselineComparison: String?
    /// Projected time until SUnreclaim reaches its ceiling (absolute, or the
    /// share of MemTotal), from the slope; `nil` when it does not grow.
    public var secondsToSUnreclaimLimit: Double?
    public var site: SiteTally?
    public var oom: OOMTally?
    /// Release and boot id the host reported (last good sample).
    public var release: String?
    public var bootID: String?
    /// Seconds from the start of the soak to the verdict.
    public var decidedAtSeconds: Double

    /// The checks that made the verdict what it is (failed, or inconclusive).
    public var reasons: [GateFinding] {
        findings.filter { $0.status == .fail || ($0.status == .inconclusive && verdict != .pass) }
    }
}

/// The gate's verdict on a wave: the worst of its hosts'.
public struct WaveGateReport: Sendable, Equatable, Codable {
    public var verdict: GateVerdict
    public var hosts: [HostGateReport]

    public init(hosts: [HostGateReport]) {
        self.hosts = hosts
        verdict = hosts.map(\.verdict).max() ?? .inconclusive
    }

    // Names only: no copy of the reports (a wave of 50k hosts holds their samples).
    public var failed: [String] { hosts.compactMap { $0.verdict == .fail ? $0.host : nil } }
    public var inconclusive: [String] { hosts.compactMap { $0.verdict == .inconclusive ? $0.host : nil } }
    public var passed: [String] { hosts.compactMap { $0.verdict == .pass ? $0.host : nil } }
}
