import ArgumentParser
import Foundation
import Basics
import RolloutConfig
import RolloutJournal

struct RolloutStatus: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "status",
        abstract: "Where a rollout is, what it waits for (a window, a lead time, a person), and what to do next."
    )
    @OptionGroup var journal: JournalOption
    @Argument(help: "Rollout id (see `rollctl rollout list`).") var id: String
    @Flag(help: "One JSON document.") var json = false

    /// What a rollout in state `state` with `note` waits for, in one word; nil when it does not wait.
    static func waitingFor(_ state: RolloutState, note: String?) -> String? {
        switch state {
        case .paused: return "person"
        case .waiting:
            let n = note ?? ""
            if n.contains("maintenance window") { return "window" }
            if n.contains("between batches") { return "batch_interval" }
            if n.contains("lead time") { return "lead_time" }
            if n.contains("held by alerts") { return "alerts" }
            return "time"
        default: return nil
        }
    }

    func run() async throws {
        let (j, r) = try journal.rollout(id)
        let c = Console.shared
        let waves = try j.waves(id), hosts = try j.hosts(id), pause = try j.pauseState(id)
        let plan = try? PlanLoader.parse(text: r.planText, path: r.planPath, checkFiles: false)
        let passed = waves.filter { $0.state == .passed }.count
        let ahead = (plan?.waves.pauseAfter ?? []).filter { $0 > passed && !pause.released(after: $0) && $0 < waves.count }
        var counts: [String: Int] = [:]
        for h in hosts { counts[h.state.rawValue, default: 0] += 1 }
        let driver = r.lease.flatMap { $0.isLive() ? $0.holder : nil }
        let waiting = Self.waitingFor(r.state, note: r.note)
        var next: String?
        switch r.state {
        case .paused: next = "rollctl rollout promote \(id)" + (driver == nil ? "; then rollctl rollout resume \(id)" : "")
        case .running, .waiting: next = driver == nil ? "rollctl rollout resume \(id) (no driver is attached)" : nil
        case .interrupted: next = "rollctl rollout resume \(id)"
        case .halted: next = "rollctl rollout show \(id); rollctl rollout rollback \(id)"
        case .completed, .aborted, .rolledBack: next = nil
        }
        if json {
            let doc: [String: Any?] = [
                "id": id, "state": r.state.rawValue, "note": r.note, "waiting_for": waiting,
                "waves": waves.map { ["number": $0.number, "state": $0.state.rawValue] },
                "hosts": counts,
                "driver": driver.map { ["host": $0.host, "pid": Int($0.pid)] as [String: Any] },
                "pause": ["requested": pause.requested as Any, "promoted_through": pause.promotedThrough, "promoted_fully": pause.promotedFully,
                          "points_ahead": ahead] as [String: Any],
                "next": next,
            ]
            c.out(JSONLine.encode(doc))
            return
        }
        c.out(c.paint("rollout \(id)", .bold) + "  \(r.state.rawValue)  plan '\(r.planName)' → \(r.targetRelease)")
        if let note = r.note { c.out((waiting == nil ? "note: " : "waiting: ") + note) }
        c.out("waves: " + waves.map { "\($0.number) \($0.state.rawValue)" }.joined(separator: ", "))
        c.out("hosts: " + counts.sorted { $0.key < $1.key }.map { "\($0.value) \($0.key)" }.joined(separator: ", "))
        c.out("driver: " + (driver.map { "\($0)" } ?? "none attached"))
        if let who = pause.requested { c.out("pause requested by \(who)") }
        if !ahead.isEmpty { c.out("pauses ahead: after wave " + ahead.map(String.init).joined(separator: ", after wave ")) }
        if let next { c.out("next: \(next)") }
    }
}
