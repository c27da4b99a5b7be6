import ArgumentParser
import Dispatch
import Foundation
import Basics
import SSH
import HealthGate
import RolloutConfig
import RolloutJournal
import Engine

/// `--journal PATH|URL` (or `ROLLCTL_JOURNAL`), shared by every command that reads or writes the journal.
struct JournalOption: ParsableArguments {
    @Option(help: ArgumentHelp("The journal: a SQLite file, or a PostgreSQL database as postgres://user@host:port/db (the password from PGPASSWORD or ~/.pgpass, never the URL). Default: $ROLLCTL_JOURNAL, else $XDG_STATE_HOME/rollctl/journal.sqlite, else ~/.local/state/rollctl/journal.sqlite.", valueName: "path|url"))
    var journal: String?

    @Flag(help: "Allow a PostgreSQL journal on another machine without TLS (sslmode other than require, verify-ca or verify-full); also ROLLCTL_JOURNAL_ALLOW_PLAINTEXT=1.")
    var journalAllowPlaintext = false

    func location() throws -> JournalLocation {
        try Self.location(journal, allowPlaintext: journalAllowPlaintext)
    }

    /// `value` (nil: the default) as a journal location; bad input (exit 2) names where it came from.
    static func location(_ value: String?, allowPlaintext: Bool) throws -> JournalLocation {
        let env = ProcessInfo.processInfo.environment
        let source = value != nil ? "--journal" : (env["ROLLCTL_JOURNAL"].map { $0.isEmpty ? nil : "ROLLCTL_JOURNAL" } ?? nil) ?? "journal"
        let allow = allowPlaintext || env["ROLLCTL_JOURNAL_ALLOW_PLAINTEXT"] == "1"
        do { return try JournalLocation.parse(value ?? Journal.defaultPath(), allowPlaintext: allow) } catch let e as JournalLocation.Invalid {
            throw InputError(file: source, e.message, hint: e.hint)
        }
    }

    func open() throws -> Journal { try Self.open(location()) }

    static func open(_ location: JournalLocation) throws -> Journal {
        do { return try Journal(location: location) } catch {
            throw InputError(file: location.display, "cannot open the journal: \(error)")
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
