import Foundation
import Basics
import HealthGate
import RolloutConfig
import RolloutJournal

/// Everything a person reading a rollout afterwards wants to see, read from the journal:
/// who ran what, every host's states over time, what each wave's gate saw (SUnreclaim per
/// host over the soak with the limit, the fitted slope and the host's growth on its old kernel;
/// test-site outcomes by class over time; OOM kills; the verdict and its evidence), the notices.
/// `rollctl rollout report ID --json` prints it; `--html` draws it (RollctlCommands).
public struct RolloutReport: Sendable, Codable {
    public struct Segment: Sendable, Codable, Equatable {
        public var state: String
        /// Seconds since the rollout started.
        public var from: Double
        public var to: Double
        public init(state: String, from: Double, to: Double) {
            self.state = state
            self.from = from
            self.to = to
        }
    }

    public struct Host: Sendable, Codable {
        public var name: String
        public var wave: Int?
        public var batch: Int?
        public var state: String
        public var reason: String?
        public var releaseBefore: String?
        public var releaseAfter: String?
        public var reboots: Int
        public var segments: [Segment]
    }

    public struct Point: Sendable, Codable, Equatable {
        public var t: Double
        public var v: Double
    }

    /// One host's soak: SUnreclaim per sample, its limit, the gate's fitted line, the baseline.
    public struct Soak: Sendable, Codable {
        public var host: String
        public var verdict: String
        public var end: String
        public var sunreclaim: [Point]
        /// The lowest SUnreclaim ceiling the gate applied (absolute or share of MemTotal), bytes.
        public var limitBytes: Double?
        /// The fitted growth: bytes per hour and the line's value at t = 0.
        public var slopePerHour: Double?
        public var interceptBytes: Double?
        public var growthLimitPerHour: Double?
        /// The same host's growth on its old kernel: SUnreclaim over uptime at the pre-check.
        public var baselinePerHour: Double?
        public var baselineRelease: String?
        public var oomKills: UInt64?
        public var findings: [GateFinding]
        /// Test-site requests per sample and outcome class.
        public var site: [SiteSample]
    }

    public struct SiteSample: Sendable, Codable, Equatable {
        public var t: Double
        public var counts: [String: Int]
    }

    public struct Wave: Sendable, Codable {
        public var number: Int
        public var state: String
        public var verdict: String?
        public var soaks: [Soak]
        /// While the wave soaks: the planned soak, so a live chart's time axis spans all of it.
        public var soakSeconds: Double?
    }

    public struct Notice: Sendable, Codable {
        public var wave: Int
        public var kind: String
        public var customer: String
        public var channel: String
        public var recipient: String
        public var status: String
        public var attempts: Int
        public var subject: String
    }

    public var id: String
    public var plan: String
    public var planPath: String
    public var planText: String
    public var release: String
    public var state: String
    public var note: String?
    public var startedBy: String
    public var startedAt: String
    public var updatedAt: String
    /// Seconds from the start to the last journaled event.
    public var durationSeconds: Double
    public var hosts: [Host]
    public var waves: [Wave]
    public var notices: [Notice]
    public var generatedAt: String

    /// Hosts the timeline draws at most (a fleet of thousands is summarised by state).
    public static let timelineLimit = 400

    public static func build(journal: Journal, rolloutID id: String, now: Date = Date()) throws -> RolloutReport {
        guard let r = try journal.rollout(id) else { throw JournalError("no rollout \(id) in this journal") }
        let start = TimeText.parse(r.startedAt) ?? now
        func secs(_ text: String) -> Double? { TimeText.parse(text).map { $0.timeIntervalSince(start) } }
        let events = try journal.events(id)
        let end = events.last.flatMap { secs($0.at) } ?? 0

        // Every host's states over time, from the state events (the move's `to`).
        struct Move: Decodable { var to: String }
        struct Before: Decodable { var sunreclaim: Double; var uptime: Double; var release: String? }
        let decoder = JSONDecoder()
        var segments: [String: [Segment]] = [:]
        var baseline: [String: (Double, String?)] = [:]
        for e in events {
            guard let host = e.host, let data = e.data, let t = secs(e.at) else { continue }
            if e.kind == .state, let move = try? decoder.decode(Move.self, from: Data(data.utf8)) {
                var list = segments[host] ?? []
                if let last = list.indices.last { list[last].to = t }
                list.append(Segment(state: move.to, from: t, to: t))
                segments[host] = list
            } else if e.kind == .info, let b = try? decoder.decode(Before.self, from: Data(data.utf8)), b.uptime > 60 {
                baseline[host] = (b.sunreclaim / b.uptime * 3600, b.release)
            }
        }
        let rows = try journal.hosts(id)
        let hosts = rows.map { h -> Host in
            var segs = segments[h.name] ?? []
            // The last state lasts to the end of the rollout (or now, while it runs).
            if let last = segs.indices.last { segs[last].to = max(segs[last].to, end) }
            return Host(name: h.name, wave: h.wave, batch: h.batch, state: h.state.rawValue, reason: h.reason, releaseBefore: h.releaseBefore,
                        releaseAfter: h.releaseAfter, reboots: h.reboots, segments: segs)
        }

        // Each wave's gate: the evidence journaled per host.
        var soaksByWave: [Int: [Soak]] = [:]
        let gateDecoder = JSONDecoder()
        for g in try journal.gateReports(id) {
            guard let rep = try? gateDecoder.decode(HostGateReport.self, from: Data(g.report.utf8)) else { continue }
            let memory = rep.samples.compactMap { s in s.facts?.memory.sUnreclaim.map { Point(t: s.seconds, v: Double($0)) } }
            let share = rep.findings.first { $0.check == "sunreclaim.share" }
            let level = rep.findings.first { $0.check == "sunreclaim.level" }
            var limits: [Double] = []
            if let l = level?.limit { limits.append(l) }
            if let s = share?.limit, let total = rep.samples.last(where: { $0.facts?.memory.memTotal != nil })?.facts?.memory.memTotal {
                limits.append(s * Double(total))
            }
            let site = rep.samples.map { s -> SiteSample in
                var counts: [String: Int] = [:]
                for a in s.site { counts[a.outcome.rawValue, default: 0] += 1 }
                return SiteSample(t: s.seconds, counts: counts)
            }
            let growth = rep.findings.first { $0.check == "sunreclaim.growth" }
            soaksByWave[g.wave, default: []].append(Soak(
                host: rep.host, verdict: rep.verdict.rawValue, end: rep.end.rawValue, sunreclaim: memory, limitBytes: limits.min(),
                slopePerHour: rep.growth?.bytesPerHour, interceptBytes: rep.growth?.interceptBytes, growthLimitPerHour: growth?.limit,
                baselinePerHour: rep.baseline?.bytesPerHour ?? baseline[rep.host]?.0, baselineRelease: rep.baseline?.release ?? baseline[rep.host]?.1,
                oomKills: rep.oom?.counted, findings: rep.findings, site: site))
        }
        // A wave soaking now: its hosts' SUnreclaim so far, from the soak's progress (the
        // verdicts and their evidence come with the gate report when the soak ends).
        let gate = (try? PlanLoader.parse(text: r.planText, path: r.planPath))?.gate
        for w in try journal.waves(id) where w.state == .running {
            let judged = Set((soaksByWave[w.number] ?? []).map(\.host))
            for (host, p) in try journal.soakProgress(id, wave: w.number, series: true) where !judged.contains(host) {
                soaksByWave[w.number, default: []].append(Soak(
                    host: host, verdict: "soaking", end: "running", sunreclaim: p.series.map { Point(t: $0[0], v: $0[1]) },
                    limitBytes: gate?.sUnreclaimMax.map(Double.init), slopePerHour: p.slopeBytesPerHour, interceptBytes: nil,
                    growthLimitPerHour: gate?.sUnreclaimGrowthMaxPerHour.map(Double.init),
                    baselinePerHour: baseline[host]?.0, baselineRelease: baseline[host]?.1, oomKills: p.oomKills, findings: [], site: []))
            }
        }
        let waves = try journal.waves(id).map { w in
            Wave(number: w.number, state: w.state.rawValue, verdict: w.verdict, soaks: (soaksByWave[w.number] ?? []).sorted { $0.host < $1.host },
                 soakSeconds: w.state == .running ? gate?.soak.seconds : nil)
        }
        let notices = try journal.notices(id).map {
            Notice(wave: $0.wave, kind: $0.kind.rawValue, customer: $0.customerName, channel: $0.channel.rawValue, recipient: $0.recipient,
                   status: $0.status.rawValue, attempts: $0.attempts, subject: $0.subject)
        }
        return RolloutReport(id: r.id, plan: r.planName, planPath: r.planPath, planText: r.planText, release: r.targetRelease, state: r.state.rawValue,
                             note: r.note, startedBy: r.startedBy, startedAt: r.startedAt, updatedAt: r.updatedAt, durationSeconds: end,
                             hosts: hosts, waves: waves, notices: notices, generatedAt: TimeText.iso(now))
    }
}
