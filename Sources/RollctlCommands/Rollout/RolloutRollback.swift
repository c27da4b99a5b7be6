import ArgumentParser
import Dispatch
import Foundation
import Basics
import SSH
import HealthGate
import RolloutConfig
import RolloutJournal
import Engine

struct RolloutRollback: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "rollback",
        abstract: "Put hosts this rollout changed back on the kernel they ran before, and restore their boot default.",
        discussion: """
        Without options: every host the rollout changed, except committed hosts of waves that passed (those run \
        the new kernel as intended; --all includes them). --failed retries only hosts whose rollback failed \
        (e.g. after you power-cycled a host that hung: it comes up on its old kernel, as boot-once intends, and is \
        then simply marked rolled back). --hosts names hosts. The hosts are listed first; on a terminal rollctl \
        asks before it reboots anything, unless --yes. Exit 1 when a host's rollback fails.
        """
    )
    @OptionGroup var journal: JournalOption
    @OptionGroup var log: LogOptions
    @Argument(help: "Rollout id.") var id: String
    @Flag(help: "Also revert committed hosts of passed waves.") var all = false
    @Flag(help: "Only hosts whose rollback failed.") var failed = false
    @Option(help: ArgumentHelp("Only these hosts (comma-separated).", valueName: "names")) var hosts: String?
    @Flag(name: .shortAndLong, help: "Do not ask.") var yes = false
    @Flag(help: "JSON lines.") var json = false

    func validate() throws {
        if [all, failed, hosts != nil].filter({ $0 }).count > 1 { throw ValidationError("--all, --failed and --hosts exclude each other") }
    }

    func run() async throws {
        let (j, r) = try journal.rollout(id)
        let c = Console.shared
        let stop = StopFlag()
        let service = RolloutDriver.service(j, json: json, log: log, stop: stop)
        let selection: Orchestrator.RollbackSelection =
            failed ? .failed : all ? .all : hosts.map { .hosts($0.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }) } ?? .changed
        let (o, targets): (Orchestrator, [Journal.HostRow])
        do { (o, targets) = try service.rollbackTargets(r, selection) } catch let e as LeaseHeld { throw RolloutDriver.refusal(e) }
        defer { o.releaseLease() }
        if targets.isEmpty {
            c.out("nothing to roll back in rollout \(id)" + (selection == .changed ? " (committed hosts of passed waves stay; --all reverts them too)" : ""))
            _ = try await service.rollback(o, [])
            return
        }
        c.out("will roll back \(targets.count) host\(targets.count == 1 ? "" : "s") to their previous kernel (rebooting those that run another):")
        for h in targets { c.out("  \(h.name)  \(h.state.rawValue)  \(h.releaseAfter ?? h.releaseBefore ?? "?") → \(h.releaseBefore ?? "?")\(h.reason.map { "  (\($0))" } ?? "")") }
        if !yes && !json && isatty(0) == 1 {
            c.out("Proceed? [y/N] ")
            guard let answer = readLine(), ["y", "yes"].contains(answer.lowercased()) else {
                c.out("nothing done")
                throw ExitCode(ExitStatus.hostFailure)
            }
        }
        stop.install()
        let left = try await service.rollback(o, targets.map(\.name))
        let after = try j.hosts(id)
        RolloutShow.renderHosts(after)
        RolloutShow.renderAdvice(try j.rollout(id) ?? r, after, locked: try j.lockedHosts(id))
        if !left.isEmpty { throw ExitCode(ExitStatus.hostFailure) }
    }
}
