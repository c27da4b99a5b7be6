import Foundation
import Basics
import HealthGate
import RolloutJournal

/// Collects what the gate sees while a wave soaks (latest SUnreclaim, the slope so far, test-site
/// successes, new OOM kills, the SUnreclaim series) and hands the hosts that changed to the
/// journal at most once a second, so the live view, `rollout watch` and `rollctl serve` show the
/// soak as it goes without a journal write per sample.
final class SoakProgressRecorder: @unchecked Sendable {
    private let lock = NSLock()
    private let wave: Int
    private var rows: [String: SoakProgress] = [:]
    private var firstOOM: [String: UInt64] = [:]
    private var changed: Set<String> = []

    init(wave: Int) { self.wave = wave }

    /// Called from the gate's progress callback (several host tasks at once): quick, no I/O.
    func record(host: String, sample: GateSample, planned: Int) {
        lock.lock()
        defer { lock.unlock() }
        var p = rows[host] ?? SoakProgress(host: host, wave: wave)
        p.samples = max(p.samples, sample.index + 1)
        p.planned = planned
        if let s = sample.facts?.memory.sUnreclaim {
            p.sUnreclaimBytes = s
            p.series.append([sample.seconds, Double(s)])
        }
        if let oom = sample.facts?.oomKill {
            let first = firstOOM[host] ?? oom
            firstOOM[host] = first
            p.oomKills = oom >= first ? oom - first : 0
        }
        p.siteTotal += sample.site.count
        p.siteOK += sample.site.filter { $0.outcome == .ok }.count
        rows[host] = p
        changed.insert(host)
    }

    /// The hosts that changed since the last call, each with its slope fitted now (Theil–Sen is
    /// quadratic in the samples: once per write, not in the gate's callback at every sample).
    func takeChanged() -> [SoakProgress] {
        lock.lock()
        let out = changed.sorted().compactMap { rows[$0] }
        changed.removeAll()
        lock.unlock()
        return out.map { p in
            var p = p
            if p.series.count >= 3 {
                p.slopeBytesPerHour = SlopeEstimate.theilSen(p.series.map { SeriesPoint(seconds: $0[0], value: $0[1]) })?.bytesPerHour
            }
            return p
        }
    }

    /// Writes the changes every `period` (real time) while `allowed` (the driver still holds its
    /// lease) until cancelled; the caller flushes once more at the end.
    func flushing(to journal: Journal, _ rolloutID: String, every period: Duration = .seconds(1),
                  while allowed: @escaping @Sendable () -> Bool) -> Task<Void, Never> {
        Task {
            while !Task.isCancelled {
                try? await Task.sleep(for: period)
                guard allowed() else { return }
                try? await journal.saveSoakProgress(rolloutID, self.takeChanged())
            }
        }
    }
}
