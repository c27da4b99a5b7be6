import ArgumentParser
import Dispatch
import Foundation
import Basics
import SSH
import HealthGate
import RolloutConfig
import RolloutJournal
import Engine

struct RolloutResume: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "resume",
        abstract: "Continue an interrupted rollout exactly where the journal says it stopped.",
        discussion: "A host journaled as rebooting is judged by its boot id: it is not rebooted again if it already did. The plan text stored in the journal is used, not the file as it is now."
    )
    @OptionGroup var journal: JournalOption
    @OptionGroup var log: LogOptions
    @Argument(help: "Rollout id.") var id: String
    @Flag(help: "JSON lines.") var json = false
    @OptionGroup var metrics: MetricsOption

    func run() async throws {
        let (j, r) = try journal.rollout(id)
        let stop = StopFlag()
        let service = RolloutDriver.service(j, json: json, log: log, stop: stop)
        let resumption: RolloutService.Resumption
        do { resumption = try await service.resume(r) } catch let e as LeaseHeld {
            throw RolloutDriver.refusal(e)
        } catch let e as RolloutService.Refusal {
            Console.shared.error(e.description)
            throw ExitCode(ExitStatus.halted)
        }
        switch resumption {
        case .over(let state):
            // Nothing to drive; notices an earlier run owed were still delivered.
            Console.shared.out("rollout \(id) is \(state.rawValue); nothing to resume")
        case let .ready(o, previous):
            stop.install()
            if !json { Console.shared.out("resuming rollout \(id) (was \(previous.state.rawValue)\(previous.lease.map { ", driven by \($0.holder) which is gone" } ?? ""))") }
            let rolloutID = id
            let endpoint = try await metrics.start(journal: j, rolloutID: { rolloutID })
            do { try await RolloutDriver.drive(o, with: service, json: json) } catch {
                await endpoint?.close()
                throw error
            }
            await endpoint?.close()
        }
    }
}
