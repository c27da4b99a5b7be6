import ArgumentParser
import Dispatch
import Foundation
import Basics
import SSH
import HealthGate
import RolloutConfig
import RolloutJournal
import Engine

struct RolloutAbort: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "abort",
        abstract: "Stop a rollout for good: no new host is touched; hosts stay as they are; locks are released.",
        discussion: """
        A running driver is asked to stop after its steps in flight: on this machine by SIGTERM to that very \
        process (its pid and start time are in the journal, so an unrelated process that reused the pid is never \
        signalled), on any machine through the journal, which the driver reads at every heartbeat. Use \
        `rollctl rollout rollback ID` to put changed hosts back on their previous kernel (it takes the locks again). \
        A completed rollout cannot be aborted.
        """
    )
    @OptionGroup var journal: JournalOption
    @OptionGroup var log: LogOptions
    @Argument(help: "Rollout id.") var id: String
    @Option(help: ArgumentHelp("How long to wait for a running driver to stop.", valueName: "duration")) var wait: String = "90s"

    func run() async throws {
        let (j, _) = try journal.rollout(id)
        let c = Console.shared
        guard let limit = DurationText.parse(wait) else { throw InputError(file: "--wait", "'\(wait)' is not a duration like 90s") }
        let result: RolloutService.Abort
        do {
            result = try await RolloutDriver.service(j, json: false, log: log).abort(id, wait: limit, by: Journal.whoami()) { signalled in
                switch signalled {
                case .sigterm(let holder): c.out("asked \(holder) to stop after its in-flight steps (SIGTERM)")
                case .journal(let holder): c.out("asked \(holder) to stop through the journal (it reads it at its next heartbeat)")
                case .none: break
                }
            }
        } catch let e as RolloutService.Refusal {
            c.error(e.description)
            throw ExitCode(ExitStatus.hostFailure)
        } catch let e as LeaseHeld {
            throw RolloutDriver.refusal(e)
        }
        if result.alreadyAborted { c.out("rollout \(id) is already aborted"); return }
        c.out("rollout \(id) aborted; locks released")
        if !result.keptHostLeases.isEmpty {
            c.warn("host leases not removed (they expire by themselves, or `rollctl fleet unlock HOST --force`): \(result.keptHostLeases.joined(separator: ", "))")
        }
        if !result.changed.isEmpty {
            c.out("\(result.changed.count) host(s) were mid-rollout (\(result.changed.joined(separator: ", "))); `rollctl rollout rollback \(id)` restores their previous kernel")
        }
    }
}
