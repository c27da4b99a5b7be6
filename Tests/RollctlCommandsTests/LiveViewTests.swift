import Foundation
import Testing
import RolloutJournal
@testable import RollctlCommands

/// The live view's soak readings (issue 20): what the gate has seen of a host so far.
@Suite struct LiveViewTests {
    static let mib = 1024.0 * 1024

    @Test func aSoakingHostShowsItsSUnreclaimSlopeSiteAndOOM() {
        var p = SoakProgress(host: "web-001", wave: 2, samples: 5, planned: 10, sUnreclaimBytes: 312 << 20,
                             slopeBytesPerHour: 40 * Self.mib, siteOK: 58, siteTotal: 60, oomKills: 1)
        #expect(LiveView.soakText(p) == "SUnreclaim 312 MiB +40.0 MiB/h · site 58/60 · 1 OOM")
        p.slopeBytesPerHour = -2 * Self.mib
        p.siteTotal = 0
        p.oomKills = 0
        #expect(LiveView.soakText(p) == "SUnreclaim 312 MiB -2.0 MiB/h")
        p.sUnreclaimBytes = nil
        #expect(LiveView.soakText(p) == "SUnreclaim unread")
    }

    @Test func growthOverTheLimitSiteFailuresAndOOMKillsWorry() {
        let calm = SoakProgress(host: "a", wave: 1, samples: 3, planned: 10, sUnreclaimBytes: 1 << 20, slopeBytesPerHour: 100 * Self.mib,
                                siteOK: 6, siteTotal: 6)
        #expect(!LiveView.worrying(calm, growthLimit: 512 * Self.mib))
        var steep = calm
        steep.slopeBytesPerHour = 600 * Self.mib
        #expect(LiveView.worrying(steep, growthLimit: 512 * Self.mib))
        #expect(!LiveView.worrying(steep, growthLimit: nil))
        var failing = calm
        failing.siteOK = 5
        #expect(LiveView.worrying(failing, growthLimit: nil))
        var killed = calm
        killed.oomKills = 1
        #expect(LiveView.worrying(killed, growthLimit: nil))
    }

    @Test func aWaveTooBigToListIsSummedUp() {
        let rows: [SoakProgress] = (0..<500).map { (i: Int) -> SoakProgress in
            let bytes: UInt64 = UInt64(200 + i % 7) << 20
            let slope: Double = Double(i == 123 ? 900 : i % 50) * Self.mib
            return SoakProgress(host: String(format: "web-%03d", i), wave: 3, samples: 4, planned: 10, sUnreclaimBytes: bytes,
                                slopeBytesPerHour: slope, siteOK: i == 7 ? 1 : 2, siteTotal: 2)
        }
        #expect(LiveView.soakSummary(rows) == "soak 500 hosts · SUnreclaim up to 206 MiB (web-006) · steepest +900 MiB/h (web-123) · site 999/1000")
        #expect(LiveView.soakSummary([]) == nil)
    }
}
