import Testing
@testable import Basics
@testable import HealthGate

let MiB = 1024.0 * 1024
let GiB = 1024.0 * MiB

/// A deterministic pseudo-random generator so noisy series are the same every run.
struct SplitMix: RandomNumberGenerator {
    var state: UInt64
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

/// `count` samples every `interval` seconds: base + slope·t + uniform noise.
func series(count: Int = 21, interval: Double = 30, base: Double = 200 * MiB, perHour: Double,
            noise: Double = 0, seed: UInt64 = 1) -> [SeriesPoint] {
    var rng = SplitMix(state: seed)
    return (0..<count).map { i in
        let t = Double(i) * interval
        let n = noise == 0 ? 0 : Double.random(in: -noise...noise, using: &rng)
        return SeriesPoint(seconds: t, value: base + perHour / 3600 * t + n)
    }
}

@Suite struct SlopeEstimateTests {
    @Test func exactLineIsRecovered() throws {
        let s = try #require(SlopeEstimate.theilSen(series(perHour: 60 * MiB)))
        #expect(abs(s.bytesPerHour - 60 * MiB) < 1)
        #expect(abs(s.interceptBytes - 200 * MiB) < 1)
        #expect(s.points == 21)
        #expect(s.spanSeconds == 600)
        #expect(s.lowerBytesPerHour <= s.bytesPerHour && s.bytesPerHour <= s.upperBytesPerHour)
    }

    @Test func flatWithNoiseStaysUnderTheDefaultLimit() throws {
        let limit = Double(GateSettings().sUnreclaimGrowthMaxPerHour!)
        var zeroInsideCI = 0
        for seed in 1...40 as ClosedRange<UInt64> {
            let s = try #require(SlopeEstimate.theilSen(series(perHour: 0, noise: 2 * MiB, seed: seed)))
            #expect(abs(s.bytesPerHour) < limit, "seed \(seed): \(s.bytesPerHour / MiB) MiB/h")
            if s.lowerBytesPerHour < 0 && s.upperBytesPerHour > 0 { zeroInsideCI += 1 }
        }
        // A 95% interval holds the true slope (0) in about 38 of 40 series.
        #expect(zeroInsideCI >= 34)
    }

    @Test func oneMiBPerMinuteLeakExceedsTheDefaultLimit() throws {
        let limit = Double(GateSettings().sUnreclaimGrowthMaxPerHour!)
        let s = try #require(SlopeEstimate.theilSen(series(perHour: 60 * MiB, noise: 2 * MiB)))
        #expect(s.bytesPerHour > limit)
        #expect(abs(s.bytesPerHour - 60 * MiB) < 10 * MiB)
        #expect(s.lowerBytesPerHour > limit, "even the low end of the CI is above the limit")
    }

    @Test func singleSpikeFoolsLeastSquaresButNotTheilSen() throws {
        var pts = series(perHour: 0, noise: 512 * 1024)
        pts[18].value += 3 * GiB  // one sample during a burst of connections
        let limit = Double(GateSettings().sUnreclaimGrowthMaxPerHour!)
        let ols = try #require(SlopeEstimate.leastSquaresBytesPerHour(pts))
        let sen = try #require(SlopeEstimate.theilSen(pts))
        #expect(ols > limit, "least squares sees a leak: \(ols / MiB) MiB/h")
        #expect(abs(sen.bytesPerHour) < 2 * MiB, "Theil–Sen does not: \(sen.bytesPerHour / MiB) MiB/h")
    }

    @Test func tooFewPoints() {
        #expect(SlopeEstimate.theilSen([]) == nil)
        #expect(SlopeEstimate.theilSen([SeriesPoint(seconds: 0, value: 1)]) == nil)
        #expect(SlopeEstimate.theilSen([SeriesPoint(seconds: 5, value: 1), SeriesPoint(seconds: 5, value: 9)]) == nil)
        #expect(SlopeEstimate.theilSen([SeriesPoint(seconds: 0, value: 0), SeriesPoint(seconds: 3600, value: 10)])?.bytesPerHour == 10)
    }

    @Test func projectionLikePredictLinear() throws {
        // 1 GiB now, growing 1 GiB/h: reaches 4 GiB in 3 hours after the last point.
        let pts = (0...10).map { SeriesPoint(seconds: Double($0) * 360, value: 1 * GiB + Double($0) * 0.1 * GiB) }
        let s = try #require(SlopeEstimate.theilSen(pts))
        let eta = try #require(s.secondsUntil(reaching: 4 * GiB))
        #expect(abs(eta - 2 * 3600) < 1, "2 GiB now (after 1 h), 2 GiB to go at 1 GiB/h: \(eta)")
        #expect(s.secondsUntil(reaching: 1 * GiB) == 0)
        let flat = try #require(SlopeEstimate.theilSen(series(perHour: -5 * MiB)))
        #expect(flat.secondsUntil(reaching: 4 * GiB) == nil)
    }

    @Test func baselineWording() {
        let b = GrowthBaseline(bytesPerHour: 2.4 * GiB, method: "test")
        #expect(b.comparison(to: 2.1 * MiB) == "slope 2.1 MiB/h vs 2.4 GiB/h before: 99.9% less")
        #expect(b.comparison(to: 1.2 * GiB) == "slope 1.2 GiB/h vs 2.4 GiB/h before: 50% less")
        #expect(b.comparison(to: 3.6 * GiB) == "slope 3.6 GiB/h vs 2.4 GiB/h before: 50% more")
        let none = GrowthBaseline(bytesPerHour: 0, method: "test")
        #expect(none.comparison(to: 10 * MiB).hasSuffix("grows where the old kernel did not"))
    }

    @Test func baselineFromOneSurveySample() throws {
        var facts = HostFacts(release: "5.10.0-old", uptimeSeconds: 10 * 86400)
        facts.memory.sUnreclaim = UInt64(24 * GiB)
        let b = try #require(GrowthBaseline.averageSinceBoot(facts))
        #expect(abs(b.bytesPerHour - 0.1 * GiB) < 1)
        #expect(b.release == "5.10.0-old")
        facts.uptimeSeconds = 600
        #expect(GrowthBaseline.averageSinceBoot(facts) == nil)
    }

    @Test func baselineFromTwoSurveyReads() throws {
        var a = HostFacts(release: "5.10.0-old", bootID: "b1", uptimeSeconds: 86400)
        a.memory.sUnreclaim = UInt64(10 * GiB)
        var b = a
        b.uptimeSeconds = 86400 + 7200
        b.memory.sUnreclaim = UInt64(12 * GiB)
        let base = try #require(GrowthBaseline.between(a, b))
        #expect(base.bytesPerHour == 1 * GiB)
        #expect(base.method == "two reads 2h apart")
        var rebooted = b
        rebooted.bootID = "b2"
        #expect(GrowthBaseline.between(a, rebooted) == nil)
        var soon = b
        soon.uptimeSeconds = 86400 + 60
        #expect(GrowthBaseline.between(a, soon) == nil)
    }
}
