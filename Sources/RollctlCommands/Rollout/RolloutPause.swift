import ArgumentParser
import Foundation
import Basics
import RolloutConfig
import RolloutJournal

struct RolloutPause: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "pause",
        abstract: "Pause a rollout after its current batch, for a person to look; `rollout promote` continues it.",
        discussion: """
        The request is written to the journal: the driver, on this machine or another, pauses after the batch it is \
        rebooting (or before the next wave), keeps every lock, and waits for `rollctl rollout promote ID`. With no \
        driver attached, the rollout pauses when it is resumed, before its next batch. A rollout also pauses by itself \
        after the waves of the plan's `waves.pause_after`.
        """
    )
    @OptionGroup var journal: JournalOption
    @Argument(help: "Rollout id (see `rollctl rollout list`).") var id: String
    @Flag(help: "One JSON line.") var json = false

    func run() async throws {
        let (j, r) = try journal.goingRollout(id, toBe: "pause")
        let c = Console.shared
        if r.state == .paused {
            if json { c.out(JSONLine.encode(["rollout": id, "state": "paused", "requested": false])) } else { c.out("rollout \(id) is already paused: \(r.note ?? "")") }
            return
        }
        try j.requestPause(id, by: Journal.whoami())
        let driver = r.lease.flatMap { $0.isLive() ? $0.holder : nil }
        if json {
            c.out(JSONLine.encode(["rollout": id, "state": r.state.rawValue, "requested": true, "driver_attached": driver != nil]))
        } else if let driver {
            c.out("pause requested: \(driver) pauses rollout \(id) after its current batch; `rollctl rollout promote \(id)` continues it")
        } else {
            c.out("pause requested: no driver is attached; rollout \(id) pauses before its next batch when it is resumed")
        }
    }
}
