import Foundation
import Testing
@testable import Basics
@testable import HealthGate

/// Samples of a soak taken every `interval` seconds from a host in `state(t)`.
func soakSamples(_ settings: GateSettings = GateSettings(), count: Int? = nil,
                 state: (Double) -> HostState, site: (Int) -> SiteOutcome = { _ in .ok },
                 unreadable: (Int) -> Bool = { _ in false }) -> [GateSample] {
    let interval = settings.interval.seconds
    let perSample = settings.testSite?.requestsPerSample ?? 0
    return (0..<(count ?? settings.plannedSamples)).map { i in
        let t = Double(i) * interval
        let attempts = (0..<perSample).map { r in
            let o = site(i * perSample + r)
            return SiteAttempt(outcome: o, latencySeconds: 0.003, status: o == .ok ? 200 : nil, detail: o == .ok ? nil : o.rawValue)
        }
        if unreadable(i) { return GateSample(index: i, seconds: t, factsError: "reading facts: timed out", site: attempts) }
        return GateSample(index: i, seconds: t, facts: HostFacts.parse(factsOutput(state(t))), site: attempts)
    }
}

func finding(_ r: HostGateReport, _ check: String) -> GateFinding? { r.findings.first { $0.check == check } }

@Suite struct GateEvaluationTests {
    let settings = GateSettings()

    @Test func flatHostPasses() {
        let r = GateEvaluation.evaluate(host: "web1", samples: soakSamples(state: flat()), settings: settings)
        #expect(r.verdict == .pass, "\(r.render())")
        #expect(r.findings.allSatisfy { $0.status == .pass })
        #expect(r.site?.attempts == 42)
        #expect(r.oom?.counted == 0)
        #expect(r.release == "6.1.0-fixed")
    }

    @Test func leakFailsOnSlopeAlone() throws {
        let r = GateEvaluation.evaluate(host: "web1", samples: soakSamples(state: leaking(perMinuteKiB: 1024)), settings: settings)
        #expect(r.verdict == .fail)
        #expect(r.reasons.map(\.check) == ["sunreclaim.growth"])
        let g = try #require(finding(r, "sunreclaim.growth"))
        #expect(abs(try #require(g.measured) - 60 * MiB) < 1 * MiB)
        #expect(g.limit == 32 * MiB)
        #expect(g.summary.contains("> limit 32.0 MiB/h (by 28.0 MiB/h)"), "\(g.summary)")
        #expect(finding(r, "oom")?.status == .pass)
        // No hard check broke: the leak does not end the soak early…
        #expect(GateEvaluation.earlyStop(host: "web1", samples: soakSamples(state: leaking(perMinuteKiB: 1024)), settings: settings) == nil)
        // …and the projection says when the 10% ceiling (3.2 GiB) would be reached: ~51 h.
        let eta = try #require(r.secondsToSUnreclaimLimit)
        #expect(abs(eta / 3600 - (3.2 * 1024 - 210) / 60) < 0.5)
    }

    @Test func newOOMKillEndsTheSoakAtTheSampleThatShowsIt() throws {
        let state: (Double) -> HostState = { t in HostState(oomKill: t >= 95 ? 1 : 0) }
        let all = soakSamples(state: state)
        var stoppedAt: Int?
        for n in 1...all.count {
            if let r = GateEvaluation.earlyStop(host: "web1", samples: Array(all.prefix(n)), settings: settings) {
                stoppedAt = n
                #expect(r.verdict == .fail)
                #expect(r.end == .earlyFail)
                #expect(r.reasons.map(\.check) == ["oom"])
                #expect(r.reasons[0].summary.contains("1 OOM kill since boot (max 0), first seen at sample 4 (2m)"), "\(r.reasons[0].summary)")
                #expect(r.decidedAtSeconds - 95 <= settings.interval.seconds)
                break
            }
        }
        #expect(stoppedAt == 5)
    }

    @Test func oomCountedSinceGateStartIgnoresOldKills() throws {
        var s = settings
        s.oomKillsSince = .gateStart
        let old = soakSamples(s, state: { _ in HostState(oomKill: 3) })
        #expect(GateEvaluation.evaluate(host: "h", samples: old, settings: s).verdict == .pass)
        #expect(GateEvaluation.evaluate(host: "h", samples: old, settings: settings).verdict == .fail)
        let fresh = soakSamples(s, state: { t in HostState(oomKill: t > 300 ? 4 : 3) })
        let tally = try #require(GateEvaluation.evaluate(host: "h", samples: fresh, settings: s).oom)
        #expect(tally.counted == 1 && tally.sinceGateStart == 1 && tally.atEnd == 4)
        #expect(GateEvaluation.evaluate(host: "h", samples: fresh, settings: settings).oom?.counted == 4)
    }

    @Test func unreadableSamplesMakeItInconclusiveNotPass() throws {
        // 5 of 21 unreadable is more than the 20% allowed.
        let samples = soakSamples(state: flat(), unreadable: { $0 % 4 == 1 })
        let r = GateEvaluation.evaluate(host: "web1", samples: samples, settings: settings)
        #expect(r.verdict == .inconclusive)
        let f = try #require(finding(r, "samples"))
        #expect(f.status == .inconclusive)
        #expect(f.summary.contains("timed out"))
        // 4 of 21 is within the allowance.
        let fine = soakSamples(state: flat(), unreadable: { $0 % 5 == 1 })
        #expect(GateEvaluation.evaluate(host: "web1", samples: fine, settings: settings).verdict == .pass)
    }

    @Test func hopelessSoakIsAbandonedEarly() throws {
        let samples = soakSamples(count: 5, state: flat(), unreadable: { _ in true })
        let r = try #require(GateEvaluation.earlyStop(host: "web1", samples: samples, settings: settings))
        #expect(r.verdict == .inconclusive)
        #expect(r.end == .earlyInconclusive)
        #expect(GateEvaluation.earlyStop(host: "web1", samples: Array(samples.prefix(4)), settings: settings) == nil)
    }

    @Test func tooFewPointsForTheSlopeIsInconclusive() throws {
        // 5 samples planned cannot feed a slope that needs 6: refused up front.
        var s = GateSettings(soak: .seconds(600), interval: .seconds(150), minSlopePoints: 6, testSite: nil)
        #expect(throws: GateSettingsError.self) { try s.validate() }
        s.interval = .seconds(100)
        try s.validate()
        s.minGoodSampleShare = 0
        let samples = soakSamples(s, state: flat(), unreadable: { $0 < 3 })
        let r = GateEvaluation.evaluate(host: "h", samples: samples, settings: s)
        #expect(finding(r, "sunreclaim.growth")?.status == .inconclusive)
        #expect(r.verdict == .inconclusive)
    }

    @Test func resetsFailTheSiteCheckWithTheirClass() throws {
        // Every third-ish request reset: 30%.
        let samples = soakSamples(state: flat(), site: { $0 % 10 < 3 ? .reset : .ok })
        let r = GateEvaluation.evaluate(host: "web1", samples: samples, settings: settings)
        #expect(r.verdict == .fail)
        let site = try #require(r.site)
        #expect(site.byOutcome[.reset] == 14)
        #expect(site.byOutcome[.ok] == 28)
        let f = try #require(finding(r, "site"))
        #expect(f.status == .fail)
        #expect(f.summary.contains("reset 14"), "\(f.summary)")
    }

    @Test func siteRatioOutOfReachEndsTheSoak() throws {
        // 95% of 42 planned = at most 2 failures; the 3rd makes it impossible.
        let samples = soakSamples(state: flat(), site: { [0, 3, 6].contains($0) ? .timeout : .ok })
        var stoppedAt: Int?
        for n in 1...samples.count {
            if let r = GateEvaluation.earlyStop(host: "h", samples: Array(samples.prefix(n)), settings: settings) {
                stoppedAt = n
                #expect(r.reasons.map(\.check) == ["site"])
                #expect(r.reasons[0].summary.contains("out of reach"))
                break
            }
        }
        #expect(stoppedAt == 4)  // request 6 belongs to sample 3
        // Two failures stay within 95%.
        let two = soakSamples(state: flat(), site: { [0, 3].contains($0) ? .timeout : .ok })
        #expect(GateEvaluation.evaluate(host: "h", samples: two, settings: settings).verdict == .pass)
    }

    @Test func tooFewRequestsIsInconclusive() {
        var s = settings
        s.testSite?.minRequests = 42
        let samples = soakSamples(s, state: flat())
        var short = samples
        short[20].site = []
        #expect(GateEvaluation.evaluate(host: "h", samples: samples, settings: s).verdict == .pass)
        let r = GateEvaluation.evaluate(host: "h", samples: short, settings: s)
        #expect(r.verdict == .inconclusive)
        #expect(finding(r, "site")?.summary == "only 40 requests (need 42)")
    }

    @Test func sUnreclaimOverItsCeilingsIsAHardFailure() throws {
        var s = settings
        s.sUnreclaimMax = 4 << 30
        let big = soakSamples(s, count: 3, state: { t in HostState(sUnreclaimKiB: t >= 60 ? 5 * 1024 * 1024 : 200 * 1024) })
        let r = try #require(GateEvaluation.earlyStop(host: "h", samples: big, settings: s))
        #expect(r.reasons.map(\.check).contains("sunreclaim.level"))
        #expect(finding(r, "sunreclaim.level")!.summary.contains("5.0 GiB > limit 4.0 GiB (by 1.0 GiB)"))
        // 3.5 GiB of 32 GiB is under 4 GiB but over the 10% share.
        let share = soakSamples(s, count: 2, state: { _ in HostState(sUnreclaimKiB: 3584 * 1024) })
        let r2 = try #require(GateEvaluation.earlyStop(host: "h", samples: share, settings: s))
        #expect(r2.reasons.map(\.check) == ["sunreclaim.share"])
        #expect(r2.reasons[0].summary.contains("11% of MemTotal (3.5 GiB of 32.0 GiB) > 10% (by 0.9 points)"), "\(r2.reasons[0].summary)")
    }

    @Test func rebootOrWrongKernelDuringTheSoakFails() throws {
        let rebooted = soakSamples(count: 4, state: { t in var s = HostState(); if t > 50 { s.bootID = "99999999-new" }; return s })
        let r = try #require(GateEvaluation.earlyStop(host: "h", samples: rebooted, settings: settings))
        #expect(r.reasons.map(\.check) == ["boot"])
        let old = soakSamples(count: 1, state: { _ in HostState(release: "5.10.0-leaky") })
        let r2 = try #require(GateEvaluation.earlyStop(host: "h", samples: old, settings: settings, expectedRelease: "6.1.0-fixed"))
        #expect(r2.reasons.map(\.check) == ["release"])
        #expect(r2.reasons[0].summary == "running kernel 5.10.0-leaky, expected 6.1.0-fixed (sample 0)")
    }

    @Test func customCheckFailuresAndErrors() throws {
        var s = settings
        s.customChecks = [CustomCheck(name: "php-fpm", command: "systemctl is-active php-fpm", maxFailures: 1)]
        var samples = soakSamples(s, state: flat())
        for i in samples.indices { samples[i].checks = [CheckRun(name: "php-fpm", exitStatus: 0)] }
        #expect(GateEvaluation.evaluate(host: "h", samples: samples, settings: s).verdict == .pass)
        samples[3].checks = [CheckRun(name: "php-fpm", exitStatus: 3, output: "inactive")]
        #expect(GateEvaluation.evaluate(host: "h", samples: samples, settings: s).verdict == .pass)
        samples[7].checks = [CheckRun(name: "php-fpm", exitStatus: 3, output: "inactive")]
        let r = try #require(GateEvaluation.earlyStop(host: "h", samples: Array(samples.prefix(8)), settings: s))
        #expect(r.reasons.first?.summary == "php-fpm: failed 2 of 8 runs (max 1), exit 3: inactive")
        // A check that cannot run is not a pass.
        for i in samples.indices { samples[i].checks = [CheckRun(name: "php-fpm", exitStatus: nil, error: "timeout")] }
        #expect(GateEvaluation.evaluate(host: "h", samples: samples, settings: s).verdict == .inconclusive)
    }

    @Test func baselineComparisonInTheReport() throws {
        let base = GrowthBaseline(bytesPerHour: 2.4 * GiB, method: "Theil–Sen over 20 samples", release: "5.10.0-leaky")
        let r = GateEvaluation.evaluate(host: "web1", samples: soakSamples(state: leaking(perMinuteKiB: 2.1 * 1024 / 60)),
                                        settings: settings, baseline: base)
        #expect(r.verdict == .pass)
        #expect(r.baselineComparison == "slope 2.1 MiB/h vs 2.4 GiB/h before: 99.9% less")
        #expect(r.render().contains("99.9% less (Theil–Sen over 20 samples, kernel 5.10.0-leaky)"))
        let worse = GateEvaluation.evaluate(host: "web1", samples: soakSamples(state: leaking(perMinuteKiB: 1024)),
                                            settings: settings, baseline: GrowthBaseline(bytesPerHour: 30 * MiB, method: "m"))
        #expect(worse.baselineComparison == "slope 60.0 MiB/h vs 30.0 MiB/h before: 100% more")
    }

    @Test func cutShortSoakIsAtBestInconclusive() {
        let part = soakSamples(count: 6, state: flat())
        let r = GateEvaluation.evaluate(host: "h", samples: part, settings: settings, end: .cancelled)
        #expect(r.verdict == .inconclusive)
        #expect(finding(r, "samples")?.summary == "soak cut short after 6 of 21 samples: the gate was cancelled")
        let oom = soakSamples(count: 6, state: { _ in HostState(oomKill: 2) })
        #expect(GateEvaluation.evaluate(host: "h", samples: oom, settings: settings, end: .stoppedWithWave).verdict == .fail)
    }

    @Test func waveIsTheWorstOfItsHosts() {
        let pass = GateEvaluation.evaluate(host: "a", samples: soakSamples(state: flat()), settings: settings)
        let fail = GateEvaluation.evaluate(host: "b", samples: soakSamples(state: leaking(perMinuteKiB: 1024)), settings: settings)
        let inc = GateEvaluation.evaluate(host: "c", samples: soakSamples(state: flat(), unreadable: { _ in true }), settings: settings)
        #expect(WaveGateReport(hosts: [pass, pass]).verdict == .pass)
        #expect(WaveGateReport(hosts: [pass, inc]).verdict == .inconclusive)
        let w = WaveGateReport(hosts: [pass, inc, fail])
        #expect(w.verdict == .fail)
        #expect(w.failed == ["b"] && w.inconclusive == ["c"] && w.passed == ["a"])
        #expect(WaveGateReport(hosts: []).verdict == .inconclusive)
        let text = w.render()
        #expect(text.hasPrefix("wave gate: FAIL — 1 passed, 1 failed, 1 inconclusive of 3"))
        #expect(text.range(of: "b: FAIL")!.lowerBound < text.range(of: "c: INCONCLUSIVE")!.lowerBound)
    }

    @Test func reportIsJSONAndOneScreen() throws {
        var s = settings
        s.customChecks = [CustomCheck(name: "nginx", command: "pgrep -x nginx")]
        var samples = soakSamples(s, state: leaking(perMinuteKiB: 1024), site: { $0 % 10 < 3 ? .reset : .ok })
        for i in samples.indices { samples[i].checks = [CheckRun(name: "nginx", exitStatus: 0)] }
        let r = GateEvaluation.evaluate(host: "web17", samples: samples, settings: s,
                                        baseline: GrowthBaseline(bytesPerHour: 2.4 * GiB, method: "m"))
        let data = try JSONEncoder().encode(r)
        let back = try JSONDecoder().decode(HostGateReport.self, from: data)
        #expect(back == r)
        let json = String(decoding: data, as: UTF8.self)
        #expect(json.contains("\"reset\":14"))
        let text = r.render()
        let lines = text.split(separator: "\n")
        #expect(lines.count <= 20, "\(text)")
        #expect(lines.allSatisfy { $0.count <= 160 }, "\(text)")
        #expect(lines[0].hasPrefix("web17: FAIL — soak complete: 21 samples over 10m"))
        #expect(text.contains("FAIL slab growth"))
        #expect(text.contains("FAIL test site"))
    }
}

@Suite struct GateSettingsTests {
    @Test func defaultsAreValid() throws {
        let s = GateSettings()
        try s.validate()
        #expect(s.plannedSamples == 21)
        #expect(s.plannedRequests == 42)
    }

    @Test func plannedSamplesAreExact() {
        #expect(GateSettings(soak: .milliseconds(600), interval: .milliseconds(100)).plannedSamples == 7)
        #expect(GateSettings(soak: .seconds(0.3), interval: .seconds(0.1)).plannedSamples == 4)
        #expect(GateSettings(soak: .seconds(599), interval: .seconds(30)).plannedSamples == 20)
        #expect(GateSettings(soak: .zero).plannedSamples == 1)
    }

    @Test func invalidSettingsNameTheField() {
        func field(_ change: (inout GateSettings) -> Void) -> String? {
            var s = GateSettings()
            change(&s)
            do { try s.validate(); return nil } catch { return error.field }
        }
        #expect(field { $0.interval = .zero } == "interval")
        #expect(field { $0.testSite?.minRequests = 100 } == "testSite.minRequests")
        #expect(field { $0.testSite?.urlTemplate = "https://{address}/" } == "testSite.urlTemplate")
        #expect(field { $0.sUnreclaimMaxShare = 1.5 } == "sUnreclaimMaxShare")
        #expect(field { $0.soak = .seconds(60) } == "soak")
        #expect(field { $0.probeTimeout = .seconds(31) } == "probeTimeout")
        #expect(field { $0.testSite?.timeout = .seconds(16) } == "testSite.timeout")
        #expect(field { $0.customChecks = [CustomCheck(name: "a", command: "true"), CustomCheck(name: "a", command: "true")] } == "customChecks")
        #expect(field { _ in } == nil)
    }

    @Test func decodesPartialSettingsWithDefaults() throws {
        let json = #"{"soak": 300, "interval": 15, "sUnreclaimMax": 4294967296, "testSite": {"urlTemplate": "http://{address}:8080/t"}}"#
        let s = try JSONDecoder().decode(GateSettings.self, from: Data(json.utf8))
        #expect(s.soak == .seconds(300))
        #expect(s.interval == .seconds(15))
        #expect(s.sUnreclaimMax == 4 << 30)
        #expect(s.sUnreclaimMaxShare == 0.10)
        #expect(s.testSite?.urlTemplate == "http://{address}:8080/t")
        #expect(s.testSite?.minRequests == 20)
        let none = try JSONDecoder().decode(GateSettings.self, from: Data(#"{"testSite": null, "sUnreclaimMaxShare": null}"#.utf8))
        #expect(none.testSite == nil && none.sUnreclaimMaxShare == nil)
        let round = try JSONDecoder().decode(GateSettings.self, from: JSONEncoder().encode(s))
        #expect(round == s)
    }

    @Test func durationsAsPeopleWriteThem() throws {
        let json = #"{"soak": "15m", "interval": "1m30s", "probeTimeout": "500ms", "testSite": {"timeout": "2s"}}"#
        let s = try JSONDecoder().decode(GateSettings.self, from: Data(json.utf8))
        #expect(s.soak == .seconds(900))
        #expect(s.interval == .seconds(90))
        #expect(s.probeTimeout == .milliseconds(500))
        #expect(s.testSite?.timeout == .seconds(2))
        for bad in ["10 minutes", "m", "5x", "1.2.3s", "-5s", ""] {
            #expect(throws: DecodingError.self, "\(bad)") {
                try JSONDecoder().decode(GateSettings.self, from: Data(#"{"soak": "\#(bad)"}"#.utf8))
            }
        }
    }
}
