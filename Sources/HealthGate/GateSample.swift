import Basics
import WebAPI
/// Everything the gate observed on one host at one instant of the soak.
/// Stored as evidence: the journal keeps the samples of every verdict.
public struct GateSample: Sendable, Equatable, Codable {
    /// 0 for the sample taken when the soak starts.
    public var index: Int
    /// Seconds since the start of the gate (by the runner's clock).
    public var seconds: Double
    /// The facts read from the host, or `nil` when reading them failed.
    public var facts: HostFacts?
    /// Why the facts could not be read (timeout, connection lost, …).
    public var factsError: String?
    /// The test-site requests of this sample.
    public var site: [SiteAttempt]
    /// One run of each custom check.
    public var checks: [CheckRun]
    /// One answer of each Prometheus check.
    public var metrics: [MetricReading]

    public init(index: Int, seconds: Double, facts: HostFacts? = nil, factsError: String? = nil,
                site: [SiteAttempt] = [], checks: [CheckRun] = [], metrics: [MetricReading] = []) {
        self.index = index
        self.seconds = seconds
        self.facts = facts
        self.factsError = factsError
        self.site = site
        self.checks = checks
        self.metrics = metrics
    }

    private enum CodingKeys: String, CodingKey { case index, seconds, facts, factsError, site, checks, metrics }

    /// Samples journaled before Prometheus checks existed have no `metrics`.
    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        index = try c.decode(Int.self, forKey: .index)
        seconds = try c.decode(Double.self, forKey: .seconds)
        facts = try c.decodeIfPresent(HostFacts.self, forKey: .facts)
        factsError = try c.decodeIfPresent(String.self, forKey: .factsError)
        site = try c.decodeIfPresent([SiteAttempt].self, forKey: .site) ?? []
        checks = try c.decodeIfPresent([CheckRun].self, forKey: .checks) ?? []
        metrics = try c.decodeIfPresent([MetricReading].self, forKey: .metrics) ?? []
    }

    /// True when the sample holds every fact the gate judges (SUnreclaim,
    /// MemTotal, `oom_kill`, boot id). A sample without them is not evidence.
    public var isGood: Bool { missingFacts.isEmpty }

    /// The facts this sample lacks, by name.
    public var missingFacts: [String] {
        guard let f = facts else { return ["all facts"] }
        var missing: [String] = []
        if f.memory.sUnreclaim == nil { missing.append("SUnreclaim") }
        if f.memory.memTotal == nil { missing.append("MemTotal") }
        if f.oomKill == nil { missing.append("oom_kill") }
        if f.bootID == nil { missing.append("boot id") }
        return missing
    }
}

/// One run of a custom check.
public struct CheckRun: Sendable, Equatable, Codable {
    public var name: String
    /// `nil` when the command could not be run (then `error` says why).
    public var exitStatus: Int32?
    public var error: String?
    /// The first line of its output (stderr first), cut to 200 characters, to
    /// show what a failing check said.
    public var output: String?

    public init(name: String, exitStatus: Int32?, error: String? = nil, output: String? = nil) {
        self.name = name
        self.exitStatus = exitStatus
        self.error = error
        self.output = output
    }

    public var passed: Bool { exitStatus == 0 }
    public var ran: Bool { exitStatus != nil }
}

/// One Prometheus check's answer at one sample: its series, or why there is no usable value.
public struct MetricReading: Sendable, Equatable, Codable {
    public var name: String
    /// The series' values with their labels (at most `PrometheusAPI.maxSeries`).
    public var series: [PromSeries]
    /// The query failed (Prometheus unreachable, a PromQL error, a range vector).
    public var error: String?

    public init(name: String, series: [PromSeries] = [], error: String? = nil) {
        self.name = name
        self.series = series
        self.error = error
    }

    /// A value the gate can judge: an answer with series, none of them NaN.
    public var conclusive: Bool { error == nil && !series.isEmpty && !series.contains { $0.value.isNaN } }

    /// Why the reading cannot be judged, if it cannot.
    public var problem: String? {
        if let error { return error }
        if series.isEmpty { return "the query returned no series" }
        if series.contains(where: { $0.value.isNaN }) { return "the query returned NaN" }
        return nil
    }
}
