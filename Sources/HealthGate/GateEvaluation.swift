import Basics
import WebAPI
/// The gate's judgement: a pure function of the samples and the settings, so
/// the same evidence always gives the same verdict (the journal can re-judge a
/// stored soak) and tests need no host.
///
/// Checks are either *hard* — they can only get worse as the soak goes on, so
/// the first sample that breaks them ends the soak (`earlyStop`): an OOM kill
/// beyond the maximum, SUnreclaim over its ceiling, a test-site success ratio
/// no longer reachable with the requests left, a failing custom check, a reboot
/// or a wrong kernel — or *soft*, judged only when the soak is complete: the
/// growth slope, the minimum numbers of requests and samples.
public enum GateEvaluation {
    /// The verdict on a soak that ended with `end` (normally `.completed`; for
    /// `.cancelled` or `.stoppedWithWave` only the hard checks are judged and the
    /// verdict is at best `inconclusive`).
    public static func evaluate(host: String, samples: [GateSample], settings: GateSettings,
                                baseline: GrowthBaseline? = nil, expectedRelease: String? = nil,
                                end: GateEnd = .completed) -> HostGateReport {
        let j = Judgement(samples: samples, settings: settings, baseline: baseline, expectedRelease: expectedRelease,
                          complete: end == .completed)
        var findings = j.findings
        var verdict: GateVerdict = findings.contains { $0.status == .fail } ? .fail
            : findings.contains { $0.status == .inconclusive } ? .inconclusive : .pass
        if end != .completed && verdict == .pass {
            verdict = .inconclusive
            let why = end == .stoppedWithWave ? "another host of the wave failed" : "the gate was cancelled"
            if let i = findings.firstIndex(where: { $0.check == "samples" }) {
                findings[i].status = .inconclusive
                findings[i].summary = "soak cut short after \(samples.count) of \(settings.plannedSamples) samples: \(why)"
            }
        }
        return j.report(host: host, verdict: verdict, end: end, findings: findings)
    }

    /// During the soak, after each sample: the report that ends the soak now (a
    /// hard failure → `fail`; too many failed probes to ever conclude →
    /// `inconclusive`), or `nil` to go on sampling.
    public static func earlyStop(host: String, samples: [GateSample], settings: GateSettings,
                                 baseline: GrowthBaseline? = nil, expectedRelease: String? = nil) -> HostGateReport? {
        let j = Judgement(samples: samples, settings: settings, baseline: baseline, expectedRelease: expectedRelease,
                          complete: false)
        if j.findings.contains(where: { $0.status == .fail }) {
            return j.report(host: host, verdict: .fail, end: .earlyFail, findings: j.findings)
        }
        if j.findings.contains(where: { $0.status == .inconclusive }) {
            return j.report(host: host, verdict: .inconclusive, end: .earlyInconclusive, findings: j.findings)
        }
        return nil
    }
}

/// One pass over the samples. With `complete == false` the soft checks are
/// `notJudged` and the inconclusive ones are only those already beyond repair.
struct Judgement {
    let samples: [GateSample]
    let settings: GateSettings
    let baseline: GrowthBaseline?
    let complete: Bool
    private(set) var findings: [GateFinding] = []
    private(set) var growth: SlopeEstimate?
    private(set) var secondsToLimit: Double?
    private(set) var baselineComparison: String?
    private(set) var site: SiteTally?
    private(set) var oom: OOMTally?

    init(samples: [GateSample], settings: GateSettings, baseline: GrowthBaseline?, expectedRelease: String?, complete: Bool) {
        self.samples = samples
        self.settings = settings
        self.baseline = baseline
        self.complete = complete
        judgeSamples()
        judgeBoot()
        if let expectedRelease { judgeRelease(expectedRelease) }
        judgeLevel()
        judgeShare()
        judgeGrowth()
        judgeOOM()
        if let site = settings.testSite { judgeSite(site) }
        for check in settings.customChecks { judgeCheck(check) }
        for check in settings.prometheus?.checks ?? [] { judgePrometheus(check) }
    }

    func report(host: String, verdict: GateVerdict, end: GateEnd, findings: [GateFinding]) -> HostGateReport {
        let last = samples.last(where: \.isGood)?.facts
        return HostGateReport(host: host, verdict: verdict, end: end, findings: findings, samples: samples,
                              plannedSamples: settings.plannedSamples, growth: growth, baseline: baseline,
                              baselineComparison: baselineComparison, secondsToSUnreclaimLimit: secondsToLimit,
                              site: site, oom: oom, release: last?.release, bootID: last?.bootID,
                              decidedAtSeconds: samples.last?.seconds ?? 0)
    }

    private var planned: Int { settings.plannedSamples }
    private var neededGood: Int { Int((settings.minGoodSampleShare * Double(planned)).rounded(.up)) }
    private var good: [GateSample] { samples.filter(\.isGood) }
    /// Soft status: judged only on a complete soak.
    private func soft(_ status: GateFinding.Status) -> GateFinding.Status { complete ? status : .notJudged }

    private mutating func add(_ check: String, _ status: GateFinding.Status, _ measured: Double? = nil, _ limit: Double? = nil,
                              _ summary: String) {
        findings.append(GateFinding(check: check, status: status, measured: measured, limit: limit, summary: summary))
    }

    private mutating func judgeSamples() {
        let goodCount = good.count
        let bad = samples.filter { !$0.isGood }
        let firstProblem = bad.first.map { s in
            s.factsError.map { "sample \(s.index): \($0)" } ?? "sample \(s.index) lacks \(s.missingFacts.joined(separator: ", "))"
        }
        let needed = neededGood
        if bad.count > planned - needed {
            add("samples", .inconclusive, Double(goodCount), Double(needed),
                "\(bad.count) of \(planned) planned samples unreadable, at most \(planned - needed) allowed; \(firstProblem ?? "")")
        } else if complete && goodCount < needed {
            add("samples", .inconclusive, Double(goodCount), Double(needed),
                "only \(goodCount) of \(planned) samples readable (need \(needed))\(firstProblem.map { "; " + $0 } ?? "")")
        } else {
            add("samples", complete ? .pass : .notJudged, Double(goodCount), Double(needed),
                "\(goodCount) of \(complete ? planned : samples.count) samples readable" + (firstProblem.map { "; " + $0 } ?? ""))
        }
    }

    private mutating func judgeBoot() {
        let ids = good.compactMap { s in s.facts?.bootID.map { (s, $0) } }
        guard let first = ids.first else { return }
        if let change = ids.first(where: { $0.1 != first.1 }) {
            add("boot", .fail, nil, nil,
                "host rebooted during the soak: boot id \(first.1.prefix(8))… → \(change.1.prefix(8))… by sample \(change.0.index) (\(Format.duration(change.0.seconds)))")
        } else {
            add("boot", .pass, nil, nil, "no reboot during the soak (boot id \(first.1.prefix(8))…)")
        }
    }

    private mutating func judgeRelease(_ expected: String) {
        let releases = samples.compactMap { s in s.facts?.release.map { (s, $0) } }
        if let wrong = releases.first(where: { $0.1 != expected }) {
            add("release", .fail, nil, nil, "running kernel \(wrong.1), expected \(expected) (sample \(wrong.0.index))")
        } else if releases.isEmpty {
            add("release", soft(.inconclusive), nil, nil, "kernel release never read (expected \(expected))")
        } else {
            add("release", .pass, nil, nil, "running kernel \(expected)")
        }
    }

    private var memorySamples: [(GateSample, UInt64)] {
        samples.compactMap { s in s.facts?.memory.sUnreclaim.map { (s, $0) } }
    }

    private mutating func judgeLevel() {
        guard let limit = settings.sUnreclaimMax else { return }
        guard let peak = memorySamples.max(by: { $0.1 < $1.1 }) else {
            add("sunreclaim.level", soft(.inconclusive), nil, Double(limit), "SUnreclaim never read")
            return
        }
        if peak.1 > limit {
            add("sunreclaim.level", .fail, Double(peak.1), Double(limit),
                "SUnreclaim \(Format.bytes(peak.1)) > limit \(Format.bytes(limit)) (by \(Format.bytes(peak.1 - limit))) at \(Format.duration(peak.0.seconds))")
        } else {
            add("sunreclaim.level", .pass, Double(peak.1), Double(limit),
                "SUnreclaim peak \(Format.bytes(peak.1)) ≤ limit \(Format.bytes(limit))")
        }
    }

    private mutating func judgeShare() {
        guard let limit = settings.sUnreclaimMaxShare else { return }
        let shares = samples.compactMap { s in s.facts?.memory.sUnreclaimShare.map { (s, $0) } }
        guard let peak = shares.max(by: { $0.1 < $1.1 }), let mem = peak.0.facts?.memory,
              let s = mem.sUnreclaim, let total = mem.memTotal else {
            add("sunreclaim.share", soft(.inconclusive), nil, limit, "SUnreclaim share of MemTotal never read")
            return
        }
        let text = "SUnreclaim \(Format.percent(peak.1 * 100))% of MemTotal (\(Format.bytes(s)) of \(Format.bytes(total)))"
        if peak.1 > limit {
            add("sunreclaim.share", .fail, peak.1, limit,
                text + " > \(Format.percent(limit * 100))% (by \(Format.percent((peak.1 - limit) * 100)) points) at \(Format.duration(peak.0.seconds))")
        } else {
            add("sunreclaim.share", .pass, peak.1, limit, text + " ≤ \(Format.percent(limit * 100))%")
        }
    }

    private mutating func judgeGrowth() {
        let points = memorySamples.map { SeriesPoint(seconds: $0.0.seconds, value: Double($0.1)) }
        let limit = settings.sUnreclaimGrowthMaxPerHour.map { Double($0) }
        growth = SlopeEstimate.theilSen(points)
        if let g = growth {
            var ceilings: [Double] = []
            if let m = settings.sUnreclaimMax { ceilings.append(Double(m)) }
            if let share = settings.sUnreclaimMaxShare, let total = memorySamples.last?.0.facts?.memory.memTotal {
                ceilings.append(share * Double(total))
            }
            if let ceiling = ceilings.min() { secondsToLimit = g.secondsUntil(reaching: ceiling) }
            if let baseline { baselineComparison = baseline.comparison(to: g.bytesPerHour) }
        }
        guard limit != nil || baseline != nil else { return }
        guard complete else {
            add("sunreclaim.growth", .notJudged, growth?.bytesPerHour, limit,
                growth.map { "slope so far \(Format.rate($0.bytesPerHour)) (\($0.note))" } ?? "not enough samples yet")
            return
        }
        guard let g = growth, points.count >= settings.minSlopePoints else {
            add("sunreclaim.growth", .inconclusive, growth?.bytesPerHour, limit,
                "only \(points.count) SUnreclaim samples; the slope needs \(settings.minSlopePoints)")
            return
        }
        var text = "growth \(Format.rate(g.bytesPerHour))"
        var status = GateFinding.Status.pass
        if let limit {
            if g.bytesPerHour > limit && g.lowerBytesPerHour > 0 {
                status = .fail
                text += " > limit \(Format.rate(limit)) (by \(Format.rate(g.bytesPerHour - limit)))"
            } else if g.bytesPerHour > limit {
                // Above the limit but the confidence interval still includes no growth at
                // all: that is sampling noise on a flat series, not evidence of a leak.
                text += " above the limit \(Format.rate(limit)) but not significant (the 95% interval includes zero growth)"
            } else {
                text += " ≤ limit \(Format.rate(limit))"
            }
        }
        text += "; \(g.note)"
        if let t = secondsToLimit { text += "; at this rate reaches the ceiling in \(Format.duration(t))" }
        add("sunreclaim.growth", status, g.bytesPerHour, limit, text)
    }

    private mutating func judgeOOM() {
        let counts = samples.compactMap { s in s.facts?.oomKill.map { (s, $0) } }
        guard let first = counts.first, let peak = counts.max(by: { $0.1 < $1.1 }) else {
            add("oom", soft(.inconclusive), nil, Double(settings.maxNewOOMKills), "oom_kill never read")
            return
        }
        let origin = settings.oomKillsSince
        let counted = origin == .boot ? peak.1 : peak.1 - min(peak.1, first.1)
        oom = OOMTally(atStart: first.1, atEnd: counts.last!.1, counted: counted, origin: origin)
        let since = origin == .boot ? "since boot" : "since the gate started"
        if counted > settings.maxNewOOMKills {
            let base = origin == .boot ? 0 : first.1
            let seen = counts.first(where: { $0.1 > base })!.0
            add("oom", .fail, Double(counted), Double(settings.maxNewOOMKills),
                "\(counted) OOM kill\(counted == 1 ? "" : "s") \(since) (max \(settings.maxNewOOMKills)), first seen at sample \(seen.index) (\(Format.duration(seen.seconds)))")
        } else {
            add("oom", .pass, Double(counted), Double(settings.maxNewOOMKills),
                "\(counted) OOM kills \(since) (max \(settings.maxNewOOMKills))")
        }
    }

    private mutating func judgeSite(_ s: TestSiteSettings) {
        let attempts = samples.flatMap(\.site)
        let tally = SiteTally(attempts)
        site = tally
        let remaining = max(0, settings.plannedRequests - attempts.count)
        let best = Double(tally.ok + remaining) / Double(max(1, attempts.count + remaining))
        let ratio = tally.successRatio ?? 0
        let breakdown = tally.failureBreakdown
        var text = "\(tally.ok)/\(tally.attempts) ok (\(Format.percent(ratio * 100))%)"
        if best + 1e-12 < s.minSuccessRatio {
            text += " < \(Format.percent(s.minSuccessRatio * 100))%"
            if remaining > 0 { text += ", out of reach with \(remaining) requests left" }
            add("site", .fail, ratio, s.minSuccessRatio, text + ": " + breakdown)
        } else if complete && attempts.count < s.minRequests {
            add("site", .inconclusive, ratio, s.minSuccessRatio, "only \(attempts.count) requests (need \(s.minRequests))")
        } else if complete && ratio + 1e-12 < s.minSuccessRatio {
            add("site", .fail, ratio, s.minSuccessRatio, text + " < \(Format.percent(s.minSuccessRatio * 100))%: " + breakdown)
        } else {
            text += complete ? " ≥ \(Format.percent(s.minSuccessRatio * 100))%" : " so far"
            if let p50 = tally.latencyP50Seconds, let p95 = tally.latencyP95Seconds {
                text += ", p50 \(Format.millis(p50)), p95 \(Format.millis(p95))"
            }
            if !breakdown.isEmpty { text += "; " + breakdown }
            add("site", complete ? .pass : .notJudged, ratio, s.minSuccessRatio, text)
        }
    }

    private mutating func judgeCheck(_ check: CustomCheck) {
        let runs = samples.flatMap { $0.checks.filter { $0.name == check.name } }
        let failed = runs.filter { $0.ran && !$0.passed }
        let errors = runs.filter { !$0.ran }
        let id = "check:\(check.name)"
        if failed.count > check.maxFailures {
            let f = failed[0]
            let said = (f.output ?? "").isEmpty ? "" : ": \(f.output!)"
            add(id, .fail, Double(failed.count), Double(check.maxFailures),
                "\(check.name): failed \(failed.count) of \(runs.count) runs (max \(check.maxFailures)), exit \(f.exitStatus!)\(said)")
        } else if errors.count > planned - neededGood {
            add(id, .inconclusive, nil, nil, "\(check.name): could not run \(errors.count) of \(planned) times: \(errors[0].error ?? "")")
        } else if complete && runs.count - errors.count < neededGood {
            add(id, .inconclusive, nil, nil, "\(check.name): ran only \(runs.count - errors.count) of \(planned) times")
        } else {
            add(id, complete ? .pass : .notJudged, Double(failed.count), Double(check.maxFailures),
                "\(check.name): \(runs.count - failed.count - errors.count)/\(runs.count) runs passed")
        }
    }

    /// A Prometheus check: every series of every answer within max/min (hard: the first one
    /// beyond ends the soak); answers that are errors, empty or NaN count as unreadable samples.
    private mutating func judgePrometheus(_ check: PrometheusCheck) {
        let readings = samples.compactMap { s in s.metrics.first { $0.name == check.name }.map { (s, $0) } }
        let id = "prometheus:\(check.name)"
        func show(_ v: Double) -> String {
            check.unit == .bytes && v >= 0 && v < 1.8e19 ? Format.bytes(UInt64(v)) : Format.number(v)
        }
        let limits = [check.max.map { "max \(show($0))" }, check.min.map { "min \(show($0))" }].compactMap { $0 }.joined(separator: ", ")
        for (sample, reading) in readings where reading.error == nil {
            for series in reading.series where !series.value.isNaN {
                var broken: String?
                if let max = check.max, series.value > max { broken = "> max \(show(max))" }
                if let min = check.min, series.value < min { broken = "< min \(show(min))" }
                if let broken {
                    add(id, .fail, series.value, check.max ?? check.min,
                        "\(check.name): \(show(series.value)) \(broken) at sample \(sample.index) (\(Format.duration(sample.seconds))), series \(series.labelText); query \(check.query)")
                    return
                }
            }
        }
        let bad = readings.filter { !$0.1.conclusive }
        let answered = readings.count - bad.count
        let firstProblem = bad.first.map { "sample \($0.0.index): \($0.1.problem ?? "")" } ?? ""
        let values = readings.flatMap { $0.1.series.map(\.value) }.filter { !$0.isNaN }
        let peak = check.max != nil ? values.max() : values.min()
        if bad.count > planned - neededGood {
            add(id, .inconclusive, peak, check.max ?? check.min,
                "\(check.name): no usable answer in \(bad.count) of \(planned) samples (\(firstProblem)); query \(check.query)")
        } else if complete && answered < neededGood {
            add(id, .inconclusive, peak, check.max ?? check.min,
                "\(check.name): usable answers in only \(answered) of \(planned) samples (need \(neededGood)); \(firstProblem)")
        } else {
            let seen = peak.map { "\(check.max != nil ? "peak" : "lowest") \(show($0))" } ?? "no value yet"
            add(id, complete ? .pass : .notJudged, peak, check.max ?? check.min,
                "\(check.name): \(seen) within \(limits) over \(answered) answers" + (bad.isEmpty ? "" : "; \(firstProblem)"))
        }
    }
}
