import ArgumentParser
import Foundation
import Basics
import RolloutConfig
import RolloutJournal

struct RolloutPromote: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "promote",
        abstract: "Let a paused rollout continue (a person's decision, journaled with who and when).",
        discussion: """
        Releases the pause the rollout is in: the plan's pause point after the wave that passed last \
        (`waves.pause_after`), one asked for with `rollctl rollout pause`, or a wave whose gate was inconclusive under \
        `gate.on_inconclusive: pause` (a promote accepts that wave: its hosts are committed). With --full it also \
        releases every later pause point of the plan. A driver that waits for it continues within a second; with no driver attached, \
        `rollctl rollout resume ID` continues the rollout.
        """
    )
    @OptionGroup var journal: JournalOption
    @Argument(help: "Rollout id (see `rollctl rollout list`).") var id: String
    @Flag(help: "Also release every later pause point (waves.pause_after) of this rollout.") var full = false
    @Flag(help: "One JSON line.") var json = false

    func run() async throws {
        let (j, r) = try journal.goingRollout(id, toBe: "promote")
        let c = Console.shared
        let pause = try j.pauseState(id)
        if r.state != .paused && pause.requested == nil && !full {
            throw InputError(file: j.path, "rollout \(id) is \(r.state.rawValue), not paused: there is nothing to promote",
                             hint: "--full releases the plan's pause points still ahead")
        }
        let waves = try j.waves(id)
        // A wave waiting for a decision on its inconclusive gate is the one released; else the
        // pause point after the last wave that passed.
        let passed = waves.first { $0.state == .running && $0.verdict == "inconclusive" }?.number ?? waves.filter { $0.state == .passed }.count
        let who = Journal.whoami()
        try j.promote(id, throughWave: passed, fully: full, by: who)
        let driver = r.lease.flatMap { $0.isLive() ? $0.holder : nil }
        if json {
            c.out(JSONLine.encode(["rollout": id, "promoted_by": who, "through_wave": passed, "full": full, "driver_attached": driver != nil]))
        } else if let driver {
            c.out("promoted by \(who)\(full ? " (every remaining pause released)" : ""): \(driver) continues rollout \(id)")
        } else {
            c.out("promoted by \(who)\(full ? " (every remaining pause released)" : ""); no driver is attached: `rollctl rollout resume \(id)` continues it")
        }
    }
}
