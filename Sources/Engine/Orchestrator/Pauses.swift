import Foundation
import Basics
import RolloutConfig
import RolloutJournal

/// Waiting for a person: at the plan's pause points (`waves.pause_after`) and when someone ran
/// `rollout pause`. The pause lives in the journal, not in this process: a driver stopped while
/// paused leaves the rollout paused (its locks kept), and `rollout promote` releases it whether a
/// driver polls for it now or a later `rollout resume` finds it released.
extension Orchestrator {
    /// How often a paused driver looks for a promote (real time: a person answers).
    static let promotePoll: Duration = .milliseconds(250)

    /// Before wave `number` starts: the plan's pause point after the wave before it (only before
    /// the wave's first step, never again once it runs), or a pause someone asked for.
    func pauseBefore(wave number: Int, state: WaveState) async throws -> RolloutOutcome? {
        let p = try journal.pauseState(rolloutID)
        let previous = number - 1
        if state == .pending, previous >= 1, plan.waves.pauseAfter.contains(previous), !p.released(after: previous) {
            return try await waitForPerson("after wave \(previous) passed its gate (waves.pause_after)") { $0.released(after: previous) }
        }
        if let who = p.requested {
            return try await waitForPerson("before wave \(number), as \(who) asked") { $0.requested == nil }
        }
        return nil
    }

    /// After a batch of reboots: a pause someone asked for (`rollout pause`).
    func pauseAfterBatch(wave: Int, batch: Int, of total: Int) async throws -> RolloutOutcome? {
        guard let who = try journal.pauseState(rolloutID).requested else { return nil }
        return try await waitForPerson("after batch \(batch + 1)/\(total) of wave \(wave), as \(who) asked") { $0.requested == nil }
    }

    /// `gate.on_inconclusive: pause`: the wave's gate neither passed nor failed. A person decides:
    /// a promote accepts it (the hosts still soaking become healthy and are committed, journaled as
    /// that person's decision); to refuse it, a person runs `rollout abort`, then `rollout rollback`.
    func acceptInconclusive(wave: Int, _ why: String) async throws -> RolloutOutcome? {
        if let outcome = try await waitForPerson("on an inconclusive gate — \(why); a promote accepts the wave") { $0.released(after: wave) } {
            return outcome
        }
        let soaking = try journal.hosts(rolloutID, wave: wave, in: [.soaking]).map(\.name)
        for name in soaking {
            try await journal.move(rolloutID, host: name, to: .healthy, reason: "gate inconclusive, accepted by a person (rollout promote)")
        }
        try await journal.event(rolloutID, kind: .info, "wave \(wave): the inconclusive gate was accepted by a person; \(soaking.count) host\(soaking.count == 1 ? "" : "s") treated as healthy")
        return nil
    }

    /// Marks the rollout paused and waits until `released` holds (a promote) or the driver must
    /// stop; a stopped driver leaves the rollout paused and returns `.interrupted`.
    func waitForPerson(_ why: String, until released: (PauseState) -> Bool) async throws -> RolloutOutcome? {
        try journal.setRolloutState(rolloutID, .paused, note: "paused \(why); `rollctl rollout promote \(rolloutID)` continues it")
        say(nil, "PAUSED \(why) — `rollctl rollout promote \(rolloutID)` (from any terminal) continues; the hosts stay locked")
        while !released(try journal.pauseState(rolloutID)) {
            if stopping() {
                say(nil, "stopped while paused: the rollout stays paused; `rollctl rollout promote \(rolloutID)`, then `rollctl rollout resume \(rolloutID)`")
                return .interrupted
            }
            try? await Task.sleep(for: Self.promotePoll)
        }
        try journal.setRolloutState(rolloutID, .running, clearingNote: true)
        say(nil, "promoted: continuing")
        return nil
    }
}
