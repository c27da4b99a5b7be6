import Basics
import NetIO
import WebAPI
/// What the health gate measures and the thresholds it judges by. Every field
/// has a default chosen for a shared-hosting web server just rebooted into a
/// new kernel; `docs/health-gate.md` explains each one.
///
/// Codable with durations in seconds and every key optional (a missing key
/// keeps its default), so a plan can set only what it changes.
public struct GateSettings: Sendable, Equatable, Codable {
    /// How long the gate watches a host. Default 10 minutes.
    public var soak: Duration
    /// Time between two samples. Default 30 s. The gate takes `soak / interval + 1`
    /// samples (one at the start, one at the end), and a hard failure halts the
    /// soak at the first sample that shows it.
    public var interval: Duration
    /// Time allowed for one command on a host (facts, custom checks). Default 10 s.
    public var probeTimeout: Duration

    /// Absolute SUnreclaim ceiling in bytes. Default none.
    public var sUnreclaimMax: UInt64?
    /// SUnreclaim ceiling as a share of MemTotal (0...1). Default 0.10.
    public var sUnreclaimMaxShare: Double?
    /// Largest acceptable SUnreclaim growth (Theil–Sen slope) in bytes per hour.
    /// Default 32 MiB/h: a 1 MiB/min leak (60 MiB/h) fails, while the slab a
    /// settled host allocates does not. A host whose services are still warming
    /// up may show more; start the gate after warm-up or raise the limit.
    public var sUnreclaimGrowthMaxPerHour: UInt64?
    /// Fewest memory samples the slope needs; fewer makes the gate inconclusive.
    /// Default 6.
    public var minSlopePoints: Int

    /// Largest acceptable number of new OOM kills. Default 0.
    public var maxNewOOMKills: UInt64
    /// What "new" means: since the host booted (default — right for a host
    /// just rebooted by the rollout) or since the gate started (for a gate
    /// run on a host that has been up for a while).
    public var oomKillsSince: OOMCountOrigin

    /// The share of planned samples that must be read successfully; below it
    /// the verdict is `inconclusive`, because a probe that errs is not evidence
    /// of health. Default 0.8.
    public var minGoodSampleShare: Double

    /// The test-site probe; `nil` disables it.
    public var testSite: TestSiteSettings?
    /// Commands run on the host at every sample; exit status 0 passes.
    public var customChecks: [CustomCheck]
    /// PromQL queries asked of the fleet's Prometheus at every sample; `nil`: none.
    public var prometheus: PrometheusChecks?

    public init(soak: Duration = .seconds(600), interval: Duration = .seconds(30), probeTimeout: Duration = .seconds(10),
                sUnreclaimMax: UInt64? = nil, sUnreclaimMaxShare: Double? = 0.10,
                sUnreclaimGrowthMaxPerHour: UInt64? = 32 << 20, minSlopePoints: Int = 6,
                maxNewOOMKills: UInt64 = 0, oomKillsSince: OOMCountOrigin = .boot, minGoodSampleShare: Double = 0.8,
                testSite: TestSiteSettings? = TestSiteSettings(), customChecks: [CustomCheck] = [],
                prometheus: PrometheusChecks? = nil) {
        self.soak = soak
        self.interval = interval
        self.probeTimeout = probeTimeout
        self.sUnreclaimMax = sUnreclaimMax
        self.sUnreclaimMaxShare = sUnreclaimMaxShare
        self.sUnreclaimGrowthMaxPerHour = sUnreclaimGrowthMaxPerHour
        self.minSlopePoints = minSlopePoints
        self.maxNewOOMKills = maxNewOOMKills
        self.oomKillsSince = oomKillsSince
        self.minGoodSampleShare = minGoodSampleShare
        self.testSite = testSite
        self.customChecks = customChecks
        self.prometheus = prometheus
    }

    /// Samples the soak takes: one at the start and one after every interval.
    public var plannedSamples: Int {
        guard interval > .zero, soak > .zero else { return 1 }
        // In whole nanoseconds: 0.6 s / 0.1 s is 5.999… in floating point.
        return Int(soak.nanoseconds / interval.nanoseconds) + 1
    }

    /// Test-site requests the soak makes.
    public var plannedRequests: Int { (testSite?.requestsPerSample ?? 0) * plannedSamples }

    /// Throws when the settings cannot produce a verdict (e.g. fewer planned
    /// requests than the minimum), so a plan fails at load time, not mid-rollout.
    public func validate() throws(GateSettingsError) {
        func bad(_ field: String, _ reason: String) -> GateSettingsError { GateSettingsError(field: field, reason: reason) }
        guard interval > .zero else { throw bad("interval", "must be positive") }
        guard soak >= .zero else { throw bad("soak", "must not be negative") }
        guard probeTimeout > .zero else { throw bad("probeTimeout", "must be positive") }
        guard probeTimeout <= interval else {
            throw bad("probeTimeout", "longer than the interval: a slow host would fall behind its sampling schedule")
        }
        if let share = sUnreclaimMaxShare, !(share > 0 && share <= 1) { throw bad("sUnreclaimMaxShare", "must be in (0, 1]") }
        guard (0...1).contains(minGoodSampleShare) else { throw bad("minGoodSampleShare", "must be in [0, 1]") }
        guard minSlopePoints >= 2 else { throw bad("minSlopePoints", "must be at least 2") }
        if sUnreclaimGrowthMaxPerHour != nil && plannedSamples < minSlopePoints {
            throw bad("soak", "\(plannedSamples) samples planned but the growth check needs \(minSlopePoints); lengthen the soak or shorten the interval")
        }
        if let site = testSite {
            guard site.requestsPerSample >= 1 else { throw bad("testSite.requestsPerSample", "must be at least 1") }
            guard (0...1).contains(site.minSuccessRatio) else { throw bad("testSite.minSuccessRatio", "must be in [0, 1]") }
            guard site.timeout > .zero else { throw bad("testSite.timeout", "must be positive") }
            guard site.timeout * site.requestsPerSample <= interval else {
                throw bad("testSite.timeout", "\(site.requestsPerSample) requests of up to \(Format.duration(site.timeout.seconds)) do not fit in one \(Format.duration(interval.seconds)) interval")
            }
            guard plannedRequests >= site.minRequests else {
                throw bad("testSite.minRequests", "\(site.minRequests) required but the soak plans only \(plannedRequests) (\(site.requestsPerSample) per sample × \(plannedSamples) samples)")
            }
            do {
                _ = try HTTPURL.expand(template: site.urlTemplate, address: "192.0.2.1", name: "host")
            } catch {
                throw bad("testSite.urlTemplate", error.reason)
            }
        }
        var names = Set<String>()
        for check in customChecks {
            guard !check.name.isEmpty, !check.command.trimmed.isEmpty else { throw bad("customChecks", "a check needs a name and a command") }
            guard names.insert(check.name).inserted else { throw bad("customChecks", "duplicate check name \"\(check.name)\"") }
        }
        if let p = prometheus {
            do { _ = try WebClient.check(p.url) } catch { throw bad("prometheus.url", error.message) }
            guard !p.checks.isEmpty else { throw bad("prometheus.checks", "list at least one check (name, query, max or min)") }
            var promNames = Set<String>()
            for check in p.checks {
                guard !check.name.isEmpty else { throw bad("prometheus.checks", "a check needs a name") }
                guard promNames.insert(check.name).inserted else { throw bad("prometheus.checks", "duplicate check name \"\(check.name)\"") }
                guard check.max != nil || check.min != nil else {
                    throw bad("prometheus.checks", "\(check.name): give max, min or both (a value with no limit judges nothing)")
                }
                do { try Placeholders.checkPromQL(check.query) } catch { throw bad("prometheus.checks", "\(check.name): \(error.reason)") }
            }
        }
    }

    private enum CodingKeys: String, CodingKey {
        case soak, interval, probeTimeout, sUnreclaimMax, sUnreclaimMaxShare, sUnreclaimGrowthMaxPerHour, minSlopePoints
        case maxNewOOMKills, oomKillsSince, minGoodSampleShare, testSite, customChecks, prometheus
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        let d = GateSettings()
        soak = try c.decodeSeconds(.soak) ?? d.soak
        interval = try c.decodeSeconds(.interval) ?? d.interval
        probeTimeout = try c.decodeSeconds(.probeTimeout) ?? d.probeTimeout
        sUnreclaimMax = c.contains(.sUnreclaimMax) ? try c.decodeIfPresent(UInt64.self, forKey: .sUnreclaimMax) : d.sUnreclaimMax
        sUnreclaimMaxShare = c.contains(.sUnreclaimMaxShare)
            ? try c.decodeIfPresent(Double.self, forKey: .sUnreclaimMaxShare) : d.sUnreclaimMaxShare
        sUnreclaimGrowthMaxPerHour = c.contains(.sUnreclaimGrowthMaxPerHour)
            ? try c.decodeIfPresent(UInt64.self, forKey: .sUnreclaimGrowthMaxPerHour) : d.sUnreclaimGrowthMaxPerHour
        minSlopePoints = try c.decodeIfPresent(Int.self, forKey: .minSlopePoints) ?? d.minSlopePoints
        maxNewOOMKills = try c.decodeIfPresent(UInt64.self, forKey: .maxNewOOMKills) ?? d.maxNewOOMKills
        oomKillsSince = try c.decodeIfPresent(OOMCountOrigin.self, forKey: .oomKillsSince) ?? d.oomKillsSince
        minGoodSampleShare = try c.decodeIfPresent(Double.self, forKey: .minGoodSampleShare) ?? d.minGoodSampleShare
        testSite = c.contains(.testSite) ? try c.decodeIfPresent(TestSiteSettings.self, forKey: .testSite) : d.testSite
        customChecks = try c.decodeIfPresent([CustomCheck].self, forKey: .customChecks) ?? []
        prometheus = try c.decodeIfPresent(PrometheusChecks.self, forKey: .prometheus)
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(soak.seconds, forKey: .soak)
        try c.encode(interval.seconds, forKey: .interval)
        try c.encode(probeTimeout.seconds, forKey: .probeTimeout)
        try c.encode(sUnreclaimMax, forKey: .sUnreclaimMax)
        try c.encode(sUnreclaimMaxShare, forKey: .sUnreclaimMaxShare)
        try c.encode(sUnreclaimGrowthMaxPerHour, forKey: .sUnreclaimGrowthMaxPerHour)
        try c.encode(minSlopePoints, forKey: .minSlopePoints)
        try c.encode(maxNewOOMKills, forKey: .maxNewOOMKills)
        try c.encode(oomKillsSince, forKey: .oomKillsSince)
        try c.encode(minGoodSampleShare, forKey: .minGoodSampleShare)
        try c.encode(testSite, forKey: .testSite)
        try c.encode(customChecks, forKey: .customChecks)
        try c.encodeIfPresent(prometheus, forKey: .prometheus)
    }
}

/// Where the OOM-kill count starts.
public enum OOMCountOrigin: String, Sendable, Equatable, Codable {
    case boot
    case gateStart
}

/// The test site each host serves, fetched from the orchestrator.
public struct TestSiteSettings: Sendable, Equatable, Codable {
    /// `http://` URL with `{address}` (the host's address) and/or `{name}` (its
    /// inventory name), path included. Default `http://{address}/`.
    public var urlTemplate: String
    /// Share of requests that must end `ok`. Default 0.95: with the default
    /// 42 requests, two failures pass and a third fails the gate.
    public var minSuccessRatio: Double
    /// Fewest requests a verdict needs. Default 20.
    public var minRequests: Int
    /// Requests per sample, made one after the other. Default 2.
    public var requestsPerSample: Int
    /// Per request, name lookup to the end of the body. Default 5 s.
    public var timeout: Duration

    public init(urlTemplate: String = "http://{address}/", minSuccessRatio: Double = 0.95, minRequests: Int = 20,
                requestsPerSample: Int = 2, timeout: Duration = .seconds(5)) {
        self.urlTemplate = urlTemplate
        self.minSuccessRatio = minSuccessRatio
        self.minRequests = minRequests
        self.requestsPerSample = requestsPerSample
        self.timeout = timeout
    }

    private enum CodingKeys: String, CodingKey { case urlTemplate, minSuccessRatio, minRequests, requestsPerSample, timeout }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        let d = TestSiteSettings()
        urlTemplate = try c.decodeIfPresent(String.self, forKey: .urlTemplate) ?? d.urlTemplate
        minSuccessRatio = try c.decodeIfPresent(Double.self, forKey: .minSuccessRatio) ?? d.minSuccessRatio
        minRequests = try c.decodeIfPresent(Int.self, forKey: .minRequests) ?? d.minRequests
        requestsPerSample = try c.decodeIfPresent(Int.self, forKey: .requestsPerSample) ?? d.requestsPerSample
        timeout = try c.decodeSeconds(.timeout) ?? d.timeout
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(urlTemplate, forKey: .urlTemplate)
        try c.encode(minSuccessRatio, forKey: .minSuccessRatio)
        try c.encode(minRequests, forKey: .minRequests)
        try c.encode(requestsPerSample, forKey: .requestsPerSample)
        try c.encode(timeout.seconds, forKey: .timeout)
    }
}

/// An admin's own check, run on the host through its shell at every sample.
/// It must be read-only and cheap like every probe (no `nginx -t`: see
/// MISSION.md). Exit status 0 passes.
public struct CustomCheck: Sendable, Equatable, Codable {
    public var name: String
    public var command: String
    /// Failing runs tolerated over the soak. Default 0.
    public var maxFailures: Int

    public init(name: String, command: String, maxFailures: Int = 0) {
        self.name = name
        self.command = command
        self.maxFailures = maxFailures
    }

    private enum CodingKeys: String, CodingKey { case name, command, maxFailures }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        name = try c.decode(String.self, forKey: .name)
        command = try c.decode(String.self, forKey: .command)
        maxFailures = try c.decodeIfPresent(Int.self, forKey: .maxFailures) ?? 0
    }
}

/// The fleet's Prometheus, and the queries the gate asks it at every sample.
public struct PrometheusChecks: Sendable, Equatable, Codable {
    /// The server's base URL (`http://prometheus.internal:9090`).
    public var url: String
    /// A CA file for an https server with a private CA; nil: the system's trust store.
    public var caFile: String?
    public var checks: [PrometheusCheck]

    public init(url: String, caFile: String? = nil, checks: [PrometheusCheck]) {
        self.url = url
        self.caFile = caFile
        self.checks = checks
    }
}

/// One PromQL check: an instant query with `{name}`/`{address}` placeholders, judged against
/// `max` and/or `min` at every sample. Every series of the answer must keep within them; an
/// error, an empty answer or NaN makes the sample's reading *inconclusive*, never a pass.
public struct PrometheusCheck: Sendable, Equatable, Codable {
    public var name: String
    public var query: String
    public var max: Double?
    public var min: Double?
    /// How the values print: `bytes` (from a size limit such as 2GiB) or plain numbers.
    public var unit: Unit

    public enum Unit: String, Sendable, Codable { case number, bytes }

    public init(name: String, query: String, max: Double? = nil, min: Double? = nil, unit: Unit = .number) {
        self.name = name
        self.query = query
        self.max = max
        self.min = min
        self.unit = unit
    }

    /// The query for one host.
    public func query(name host: String, address: String) throws(Placeholders.Problem) -> String {
        try Placeholders.expandPromQL(query, values: ["name": host, "address": address])
    }
}

/// Gate settings that cannot work, naming the field and what to change.
public struct GateSettingsError: Error, Sendable, Equatable, CustomStringConvertible {
    public var field: String
    public var reason: String
    public var description: String { "gate setting \(field): \(reason)" }
}

extension KeyedDecodingContainer {
    /// A duration given as seconds (`90`, `2.5`) or as text with a unit
    /// (`"90s"`, `"10m"`, `"1h"`, `"500ms"`, `"1m30s"`).
    func decodeSeconds(_ key: Key) throws -> Duration? {
        guard contains(key), try !decodeNil(forKey: key) else { return nil }
        let seconds: Double
        if let n = try? decode(Double.self, forKey: key) {
            seconds = n
        } else {
            let text = try decode(String.self, forKey: key)
            if let n = Double(text.trimmed) {
                seconds = n
            } else if let d = DurationText.parse(text) {
                seconds = Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18
            } else {
                throw DecodingError.dataCorruptedError(forKey: key, in: self,
                    debugDescription: "\"\(text)\" is not a duration: write seconds (90) or a number with s, m, h or ms (90s, 10m, 1h30m)")
            }
        }
        guard seconds.isFinite, seconds >= 0 else {
            throw DecodingError.dataCorruptedError(forKey: key, in: self, debugDescription: "a duration must be a non-negative number of seconds")
        }
        return .milliseconds(Int64((seconds * 1000).rounded()))
    }
}
