import ArgumentParser
import Dispatch
import Foundation
import Basics
import SSH
import HealthGate
import RolloutConfig
import RolloutJournal
import Engine

/// `--journal PATH` (or `ROLLCTL_JOURNAL`), shared by every command that reads or writes the journal.
struct JournalOption: ParsableArguments {
    @Option(help: ArgumentHelp("The journal (SQLite). Default: $ROLLCTL_JOURNAL, else $XDG_STATE_HOME/rollctl/journal.sqlite, else ~/.local/state/rollctl/journal.sqlite.", valueName: "path"))
    var journal: String?

    func open() throws -> Journal {
        let path = journal ?? Journal.defaultPath()
        do { return try Journal(path: path) } catch {
            throw InputError(file: path, "cannot open the journal: \(error)")
        }
    }

    /// `rollout id`, refused (bad input) when it is over or halted: there is nothing to `verb`.
    func goingRollout(_ id: String, toBe verb: String) throws -> (Journal, Journal.RolloutRow) {
        let (j, r) = try rollout(id)
        if r.state.isOver || r.state == .halted {
            throw InputError(file: j.path, "rollout \(id) is \(r.state.rawValue): there is nothing to \(verb)", hint: "rollctl rollout status \(id)")
        }
        return (j, r)
    }

    /// The journal and the rollout `id` in it; an unknown id is bad input (exit 2).
    func rollout(_ id: String) throws -> (Journal, Journal.RolloutRow) {
        let j = try open()
        guard let r = try j.rollout(id) else { throw InputError(file: j.path, "no rollout '\(id)' in the journal", hint: "rollctl rollout list") }
        return (j, r)
    }
}

struct RolloutGroup: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "rollout",
        abstract: "Inspect, resume, pause, promote, abort or roll back rollouts recorded in the journal.",
        subcommands: [RolloutList.self, RolloutShow.self, RolloutStatus.self, RolloutWatch.self, RolloutMetricsCommand.self, RolloutReportCommand.self, RolloutResume.self, RolloutPause.self, RolloutPromote.self,
                      RolloutAbort.self, RolloutRollback.self, RolloutNotices.self]
    )
}
