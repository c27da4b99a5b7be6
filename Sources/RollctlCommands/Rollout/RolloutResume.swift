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
        discussion: """
        A host journaled as rebooting is judged by its boot id: it is not rebooted again if it already did. The plan \
        text stored in the journal is used, not the file as it is now. While another process drives the rollout it is \
        refused (naming that driver's machine and pid), unless that driver is gone: on this machine its process is \
        checked, from another machine its lease must have lapsed (--lease-ttl). With --wait this command is a \
        standby: it waits for that and then drives.
        """
    )
    @OptionGroup var journal: JournalOption
    @OptionGroup var log: LogOptions
    @Argument(help: "Rollout id.") var id: String
    @Flag(help: "JSON lines.") var json = false
    @Flag(help: ArgumentHelp("Stand by: while another process drives the rollout, wait until its driver lease lapses (the driver ended, died, or lost the journal for a whole --lease-ttl) and then drive it. Ctrl-C stops waiting (exit 4).")) var wait = false
    @OptionGroup var metrics: MetricsOption
    @OptionGroup var lease: LeaseOption

    func run() async throws {
        var (j, r) = try journal.rollout(id)
        let stop = StopFlag()
        var service = RolloutDriver.service(j, json: json, log: log, stop: stop)
        service.leaseTTL = lease.ttl
        let resumption: RolloutService.Resumption
        var waitingFor: String?
        while true {
            do {
                resumption = try await service.resume(r)
                break
            } catch let e as LeaseHeld where wait {
                // A standby: the holder's lease is judged again at every look (its expiry, or on
                // this machine its process), so a driver that dies or is cut off is taken over.
                if waitingFor != e.lease.holder.token {
                    waitingFor = e.lease.holder.token
                    stop.install()
                    Console.shared.out("standby: rollout \(id) is driven by \(e.lease.holder) (last heartbeat \(e.lease.heartbeat)); "
                                       + "taking over when its lease lapses (expires \(e.lease.expires) unless renewed)")
                }
                try await Task.sleep(for: .seconds(1))
                if stop.isSet { Console.shared.warn("stopped waiting; nothing was touched"); throw ExitCode(ExitStatus.interrupted) }
                guard let again = try j.rollout(id) else { throw InputError(file: j.path, "rollout '\(id)' is gone from the journal") }
                r = again
            } catch let e as LeaseHeld {
                throw RolloutDriver.refusal(e)
            } catch let e as RolloutService.Refusal {
                Console.shared.error(e.description)
                throw ExitCode(ExitStatus.halted)
            }
        }
        switch resumption {
        case .over(let state):
            // Nothing to drive; notices an earlier run owed were still delivered.
            Console.shared.out("rollout \(id) is \(state.rawValue); nothing to resume")
        case let .ready(o, previous):
            stop.install()
            if !json {
                let gone = previous.lease.map { l in ", driven by \(l.holder) " + (l.holder.isRunningHere() == nil ? "whose lease lapsed" : "which is gone") } ?? ""
                Console.shared.out("resuming rollout \(id) (was \(previous.state.rawValue)\(gone))")
            }
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
