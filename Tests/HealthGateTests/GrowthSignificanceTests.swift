import Foundation
import Testing
@testable import Basics
@testable import HealthGate

/// A short soak of a flat kernel: ±1 MiB of noise over 10 s can produce a point
/// slope far above a per-hour limit. Seen on fleetsim's fixed kernel: slope
/// 86.9 MiB/h with a 95% interval of −121…470 MiB/h. That is noise, not a leak.
@Suite struct GrowthSignificanceTests {
    var settings: GateSettings {
        var s = GateSettings(soak: .seconds(10), interval: .seconds(1))
        s.sUnreclaimGrowthMaxPerHour = 64 * 1024 * 1024
        s.testSite = nil
        s.probeTimeout = .seconds(1)
        return s
    }

    @Test func noisyFlatShortSoakIsNotALeak() throws {
        // 60 KiB/s (211 MiB/h) of drift under ±3 MiB of noise, over 10 s.
        let noise: [Int64] = [0, 3072, -3072, 2250, -2700, 3000, -3072, 1536, -2250, 3072, -3072]
        let samples = soakSamples(settings, state: { t in
            HostState(sUnreclaimKiB: UInt64(Int64(200 * 1024) + Int64(60 * t) + noise[Int(t.rounded()) % noise.count]))
        })
        let r = GateEvaluation.evaluate(host: "web1", samples: samples, settings: settings)
        let g = try #require(finding(r, "sunreclaim.growth"))
        let slope = try #require(r.growth)
        // The point estimate is above the limit, but the interval includes zero…
        #expect(slope.bytesPerHour > 64 * 1024 * 1024, "\(slope)")
        #expect(slope.lowerBytesPerHour <= 0)
        // …so the gate does not call it a leak, and says why.
        #expect(g.status == .pass, "\(g.summary)")
        #expect(g.summary.contains("not significant"))
        #expect(r.verdict == .pass, "\(r.render())")
    }

    @Test func realLeakInTheSameShortSoakFails() {
        // fleetsim's leaky kernel: 40 MiB/min.
        let samples = soakSamples(settings, state: leaking(perMinuteKiB: 40 * 1024))
        let r = GateEvaluation.evaluate(host: "web1", samples: samples, settings: settings)
        #expect(r.verdict == .fail, "\(r.render())")
        #expect(r.reasons.map(\.check) == ["sunreclaim.growth"])
    }
}
