import ArgumentParser
import Dispatch
import Foundation
import Basics
import SSH
import HealthGate
import RolloutConfig
import RolloutJournal
import Engine

struct RolloutShow: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "show", abstract: "Waves, hosts, states, gate verdicts and events of a rollout.")
    @OptionGroup var journal: JournalOption
    @Argument(help: "Rollout id (see `rollctl rollout list`).") var id: String
    @Flag(help: "One JSON document.") var json = false
    @Flag(help: "Also list every event.") var events = false

    func run() async throws {
        let (j, r) = try journal.rollout(id)
        let hosts = try j.hosts(id), waves = try j.waves(id), gates = try j.gateReports(id)
        let c = Console.shared
        if json {
            let doc: [String: Any?] = [
                "id": r.id, "state": r.state.rawValue, "plan": r.planName, "plan_path": r.planPath, "plan_hash": r.planHash,
                "release": r.targetRelease, "started_at": r.startedAt, "started_by": r.startedBy, "updated_at": r.updatedAt, "note": r.note,
                "waves": waves.map { ["number": $0.number, "state": $0.state.rawValue, "verdict": $0.verdict as Any] },
                "windows": try Self.windows(j, id).map { ["wave": $0.0, "start": TimeText.iso($0.1.start), "end": TimeText.iso($0.1.end)] },
                "driver": r.lease.map { ["host": $0.holder.host, "pid": Int($0.holder.pid), "since": $0.since, "heartbeat": $0.heartbeat, "live": $0.isLive()] as [String: Any] },
                "locked": try j.lockedHosts(id),
                "hooks": try j.hookRuns(id).map { h -> [String: Any] in
                    var o: [String: Any] = ["host": h.host, "phase": h.phase, "wave": h.wave, "index": h.index, "status": h.status.rawValue,
                                            "started_at": h.startedAt]
                    o["exit_status"] = h.exitStatus; o["output"] = h.output; o["error"] = h.error; o["ended_at"] = h.endedAt
                    return o.compactMapValues { $0 }
                },
                "hosts": hosts.map { h -> [String: Any] in
                    var o: [String: Any] = ["name": h.name, "address": h.address, "state": h.state.rawValue, "reboots": h.reboots]
                    o["wave"] = h.wave; o["batch"] = h.batch; o["reason"] = h.reason
                    o["release_before"] = h.releaseBefore; o["release_after"] = h.releaseAfter
                    o["boot_id_before"] = h.bootIDBefore; o["boot_id_after"] = h.bootIDAfter
                    o["bootloader"] = h.bootloader
                    return o.compactMapValues { $0 }
                },
                "gate": gates.map { g -> [String: Any] in
                    ["wave": g.wave, "host": g.host, "verdict": g.verdict,
                     "report": (try? JSONSerialization.jsonObject(with: Data(g.report.utf8))) ?? g.report]
                },
                "events": events ? try j.events(id).map { e -> [String: Any] in
                    var o: [String: Any] = ["at": e.at, "host": e.host as Any, "kind": e.kind.rawValue, "message": e.message]
                    if let d = e.data, let v = try? JSONSerialization.jsonObject(with: Data(d.utf8)) { o["data"] = v }
                    return o
                } : nil,
            ]
            c.out(JSONLine.encode(doc))
            return
        }
        c.out(c.paint("rollout \(r.id)", .bold) + "  \(r.state.rawValue)  plan '\(r.planName)' → \(r.targetRelease)")
        c.out("started \(r.startedAt) by \(r.startedBy); updated \(r.updatedAt)")
        if let note = r.note { c.out("note: \(note)") }
        c.out("")
        for w in waves {
            let n = hosts.filter { $0.wave == w.number }.count
            c.out("wave \(w.number): \(w.state.rawValue)\(w.verdict.map { ", gate \($0)" } ?? ""), \(n) host\(n == 1 ? "" : "s")")
        }
        c.out("")
        if let lease = r.lease {
            c.out("driven by \(lease.holder) since \(lease.since), last heartbeat \(lease.heartbeat)\(lease.isLive() ? "" : " (that process is gone: `rollctl rollout resume \(r.id)` takes over)")")
        }
        for (wave, w) in try Self.windows(j, id) {
            c.out("wave \(wave): customers told reboots happen between \(w.humanStart) and \(w.humanEnd)")
        }
        let drivers = Dictionary(hosts.compactMap { h in h.bootloader.map { (h.name, $0) } }, uniquingKeysWith: { a, _ in a })
        if !drivers.isEmpty { c.out("bootloader: " + BootloaderChoice.summary(drivers)) }
        c.out("")
        Self.renderHosts(hosts)
        Self.renderAdvice(r, hosts, locked: try j.lockedHosts(id))
        let hookRuns = try j.hookRuns(id)
        if !hookRuns.isEmpty {
            var counts: [String: [String: Int]] = [:]
            for h in hookRuns { counts[h.phase, default: [:]][h.status.rawValue, default: 0] += 1 }
            c.out("")
            c.out("hooks: " + counts.sorted { $0.key < $1.key }.map { phase, s in
                "\(phase) " + s.sorted { $0.key < $1.key }.map { "\($0.value) \($0.key)" }.joined(separator: ", ")
            }.joined(separator: "; "))
            for h in hookRuns where h.status != .ok {
                let last = (h.output ?? "").split(separator: "\n").last.map { ": \($0.prefix(160))" } ?? ""
                c.out("  \(h.host.isEmpty ? "rollout" : h.host) \(h.phase)[\(h.index)] \(h.status.rawValue) (\(h.error ?? h.exitStatus.map { "exit \($0)" } ?? "no outcome yet"))\(last)")
            }
        }
        let failedGates = gates.filter { $0.verdict != "pass" }
        for g in failedGates {
            if let data = g.report.data(using: .utf8), let report = try? JSONDecoder().decode(HostGateReport.self, from: data) {
                c.out("")
                c.out(c.paint("gate \(g.verdict) — wave \(g.wave), \(g.host):", .bold))
                report.render().split(separator: "\n").forEach { c.out("  " + $0) }
            }
        }
        if events {
            c.out("")
            for e in try j.events(id) { c.out("\(e.at)  \(e.host ?? "-")  \(e.kind.rawValue)  \(e.message)") }
        }
    }

    /// Per wave, the widest window its customers were told (maintenance, or rescheduled when corrected).
    static func windows(_ j: Journal, _ id: String) throws -> [(Int, MaintenanceWindow)] {
        var out: [Int: MaintenanceWindow] = [:]
        for n in try j.notices(id) where n.status == .sent && (n.kind == .maintenance || n.kind == .rescheduled) {
            guard let w = n.window else { continue }
            if let o = out[n.wave] { out[n.wave] = MaintenanceWindow(start: min(o.start, w.start), end: max(o.end, w.end)) } else { out[n.wave] = w }
        }
        return out.sorted { $0.key < $1.key }.map { ($0.key, $0.value) }
    }

    /// What to do, for each host that still needs a person or a command.
    static func renderAdvice(_ r: Journal.RolloutRow, _ hosts: [Journal.HostRow], locked: [String]) {
        let c = Console.shared
        var lines: [String] = []
        let live = r.lease?.isLive() ?? false
        for h in hosts {
            let todo: String?
            switch h.state {
            case .rollbackFailed:
                let down = ["connect_refused", "connect_timeout", "host_unreachable", "did not come back", "connection_lost"].contains { (h.reason ?? "").contains($0) }
                todo = down ? "power-cycle it (boot-once brings it up on its old kernel), then `rollctl rollout rollback \(r.id) --failed`"
                            : "fix the cause above, then `rollctl rollout rollback \(r.id) --hosts \(h.name)`"
            case .failed where h.releaseBefore != nil:
                todo = "`rollctl rollout rollback \(r.id) --hosts \(h.name)` puts it back on \(h.releaseBefore!)"
            case .staged, .rebooting, .up, .verified, .soaking, .healthy, .rollingBack:
                todo = live ? nil : r.state == .halted || r.state == .aborted
                    ? "`rollctl rollout rollback \(r.id) --hosts \(h.name)`"
                    : "`rollctl rollout resume \(r.id)` continues it (or `rollctl rollout abort \(r.id)`, then rollback)"
            default: todo = nil
            }
            if let todo { lines.append("  \(h.name)\(locked.contains(h.name) ? " (locked)" : ""): \(todo)") }
        }
        guard !lines.isEmpty else { return }
        c.out("")
        c.out(c.paint("What to do", .bold))
        lines.forEach(c.out)
    }

    static func renderHosts(_ hosts: [Journal.HostRow]) {
        let c = Console.shared
        var table = Table(header: ["HOST", "WAVE", "STATE", "KERNEL BEFORE", "KERNEL AFTER", "REBOOTS", "REASON"])
        for h in hosts {
            let state = [.failed, .rollbackFailed].contains(h.state) ? c.paint(h.state.rawValue, .red) : h.state.rawValue
            table.rows.append([h.name, h.wave.map(String.init) ?? "-", state, h.releaseBefore ?? "-", h.releaseAfter ?? "-", "\(h.reboots)", h.reason ?? ""])
        }
        table.render().forEach(c.out)
    }
}
