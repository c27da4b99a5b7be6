import Foundation
import Prometheus
import Basics
import RolloutJournal

/// rollctl's own metrics in the Prometheus text format, read from the journal: the same page
/// for a live run (`plan apply --metrics-listen`, scraped while the driver writes) and for a
/// finished rollout (`rollctl rollout metrics ID`). Built from the journal, not counted in the
/// engine, so the two can never disagree and a resumed run's page still counts the first run.
///
/// The format is swift-prometheus's (`PrometheusCollectorRegistry`); a fresh registry per
/// page, so a value that vanished from the journal (none should) vanishes from the page too.
public enum RolloutMetrics {
    /// Buckets of the reboot histogram, seconds from the reboot command to the new boot id.
    public static let rebootBuckets: [Double] = [5, 10, 20, 30, 45, 60, 90, 120, 180, 300, 600, 1200]

    public static func page(journal: Journal, rolloutID: String) throws -> String {
        try page(journal: journal, rolloutIDs: [rolloutID])
    }

    /// One page for several rollouts (`rollctl serve`), each series labelled with its rollout.
    public static func page(journal: Journal, rolloutIDs: [String]) throws -> String {
        let registry = PrometheusCollectorRegistry()
        for id in rolloutIDs { try add(id, journal: journal, to: registry) }
        return registry.emitToString()
    }

    static func add(_ rolloutID: String, journal: Journal, to registry: PrometheusCollectorRegistry) throws {
        guard let rollout = try journal.rollout(rolloutID) else { throw JournalError("no rollout \(rolloutID) in this journal") }
        let id = ("rollout", rolloutID)

        for state in RolloutState.allCases {
            registry.makeGauge(name: "rollctl_rollout_state", labels: [id, ("state", state.rawValue)],
                               help: "1 for the rollout's current state, 0 for the others")
                .set(to: rollout.state == state ? 1.0 : 0.0)
        }

        let hosts = try journal.hosts(rolloutID)
        var byState: [HostState: Int] = [:]
        for h in hosts { byState[h.state, default: 0] += 1 }
        for state in HostState.allCases {
            registry.makeGauge(name: "rollctl_hosts", labels: [id, ("state", state.rawValue)], help: "Hosts of the rollout by state")
                .set(to: Double(byState[state] ?? 0))
        }
        let reboots = hosts.reduce(0) { $0 + $1.reboots }
        registry.makeCounter(name: "rollctl_reboots_total", labels: [id], help: "Reboot commands sent (resends after a crash included)")
            .increment(by: Int64(reboots))

        let waves = try journal.waves(rolloutID)
        let current = waves.first { $0.state != .passed }?.number ?? waves.last?.number ?? 0
        registry.makeGauge(name: "rollctl_wave_current", labels: [id], help: "The wave being rolled (the last one once all passed)")
            .set(to: Double(current))
        registry.makeGauge(name: "rollctl_waves", labels: [id], help: "Waves in the rollout").set(to: Double(waves.count))
        registry.makeGauge(name: "rollctl_waves_passed", labels: [id], help: "Waves whose gate passed and whose hosts committed")
            .set(to: Double(waves.filter { $0.state == .passed }.count))

        var verdicts: [String: Int] = [:]
        for r in try journal.gateReports(rolloutID) { verdicts[r.verdict, default: 0] += 1 }
        for v in ["pass", "inconclusive", "fail"] {
            registry.makeCounter(name: "rollctl_gate_verdicts_total", labels: [id, ("verdict", v)], help: "Hosts' gate verdicts")
                .increment(by: Int64(verdicts[v] ?? 0))
        }

        let histogram = registry.makeValueHistogram(name: "rollctl_reboot_duration_seconds", labels: [id], buckets: rebootBuckets,
                                                    help: "From the reboot command to the host's new boot id")
        for d in try rebootDurations(journal: journal, rolloutID: rolloutID) { histogram.record(d) }

        var sent: [String: Int] = [:], failed: [String: Int] = [:]
        for n in try journal.notices(rolloutID) {
            switch n.status {
            case .sent: sent[n.kind.rawValue, default: 0] += 1
            case .failed: failed[n.kind.rawValue, default: 0] += 1
            default: break
            }
        }
        for kind in NoticeKind.allCases {
            registry.makeCounter(name: "rollctl_notices_sent_total", labels: [id, ("kind", kind.rawValue)], help: "Customer notices delivered")
                .increment(by: Int64(sent[kind.rawValue] ?? 0))
            registry.makeCounter(name: "rollctl_notices_failed_total", labels: [id, ("kind", kind.rawValue)], help: "Customer notices given up on")
                .increment(by: Int64(failed[kind.rawValue] ?? 0))
        }
    }

    /// Each reboot's seconds, from a host's move to `rebooting` to its next move to `up`
    /// (the journal's state events, in order).
    static func rebootDurations(journal: Journal, rolloutID: String) throws -> [Double] {
        struct Move: Decodable { var to: String }
        var started: [String: Date] = [:]
        var out: [Double] = []
        let decoder = JSONDecoder()
        for e in try journal.events(rolloutID) where e.kind == .state {
            guard let host = e.host, let data = e.data, let move = try? decoder.decode(Move.self, from: Data(data.utf8)),
                  let at = TimeText.parse(e.at) else { continue }
            if move.to == HostState.rebooting.rawValue {
                if started[host] == nil { started[host] = at }   // a resend keeps the first command's time
            } else if move.to == HostState.up.rawValue, let t0 = started.removeValue(forKey: host) {
                out.append(max(0, at.timeIntervalSince(t0)))
            } else if move.to != HostState.rebooting.rawValue {
                started.removeValue(forKey: host)
            }
        }
        return out
    }
}
