import ArgumentParser
import Foundation
import Basics
import RolloutConfig
import Engine

/// `fleet locks`: the host leases (`/var/lib/rollctl/lease`) across the fleet, from any journal.
struct FleetLocks: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "locks",
        abstract: "List the rollctl leases held on the hosts themselves (by rollouts of any journal).",
        discussion: """
        A rollout takes a lease on each host at its pre-check (\(HostLease.path)) and gives it up when the host is \
        committed, rolled back or the rollout is aborted, so two rollouts from two journals never roll one host at once. \
        Exit code 0 when every host answered.
        """
    )
    @OptionGroup var connection: ConnectionOptions
    @Flag(help: "JSON lines: one object per host with a lease (or an error).") var json = false

    func run() async throws {
        let (inv, hosts, cfg) = try connection.load()
        let c = Console.shared
        let results = await FleetExec(inventory: inv, parallelism: connection.parallel, sshConfig: cfg, timeout: .seconds(20))
            .run(HostLease.readCommand, hosts: hosts)
        let now = Int(Date().timeIntervalSince1970)
        var table = Table(header: ["HOST", "ROLLOUT", "JOURNAL", "DRIVER", "SINCE", "EXPIRES", "STATE"])
        var held = 0, errors = 0
        for r in results.sorted(by: { $0.host.name < $1.host.name }) {
            guard let x = r.result, x.exitStatus == 0 else {
                errors += 1
                let why = r.error.map { "[\($0.code.rawValue)] \($0.message)" } ?? r.result.map { "exit \($0.exitStatus): \($0.stderrText)" } ?? "?"
                if json { c.out(JSONLine.encode(["host": r.host.name, "error": why])) } else { c.err("\(r.host.name): \(why)") }
                continue
            }
            guard let h = HostLease.Holder.parse(x.stdoutText) else { continue }
            held += 1
            let live = h.expires > now
            if json {
                c.out(JSONLine.encode(["host": r.host.name, "rollout": h.rollout, "journal": h.journal, "driver": h.driver,
                                       "since": h.since, "expires": h.expires, "expired": !live]))
            } else {
                table.rows.append([r.host.name, h.rollout, String(h.journal.prefix(8)), h.driver,
                                   HostLease.Holder.time(h.since), HostLease.Holder.time(h.expires), live ? "held" : "expired"])
            }
        }
        if !json {
            if held > 0 { table.render().forEach(c.out) }
            c.out("\(results.count) hosts: \(held) with a lease, \(results.count - held - errors) free, \(errors) unreachable")
        }
        if errors > 0 { throw ExitCode(ExitStatus.hostFailure) }
    }
}

/// `fleet unlock HOST --force`: removes a host's lease whatever rollout holds it.
struct FleetUnlock: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "unlock",
        abstract: "Remove a host's rollctl lease (for a rollout that is gone for good).",
        discussion: "Another rollout may then roll the host. Without --force nothing is removed: the command shows the lease."
    )
    @Option(name: .shortAndLong, help: ArgumentHelp("Inventory file (YAML).", valueName: "file")) var inventory: String
    @Argument(help: "Host names (inventory), comma-separated.") var host: String
    @Flag(help: "Really remove the lease.") var force = false
    @Option(help: ArgumentHelp("OpenSSH client config to read for values the inventory leaves open.", valueName: "file"))
    var sshConfig: String?

    func run() async throws {
        let opts = try ConnectionOptions.parse(["-i", inventory, "--hosts", host] + (sshConfig.map { ["--ssh-config", $0] } ?? []))
        let (inv, hosts, cfg) = try opts.load()
        let c = Console.shared
        let command = force ? HostLease.forceReleaseCommand : HostLease.readCommand
        let results = await FleetExec(inventory: inv, parallelism: 16, sshConfig: cfg, timeout: .seconds(30)).run(command, hosts: hosts)
        var bad = 0
        for r in results {
            guard let x = r.result, x.exitStatus == 0 else {
                bad += 1
                c.error("\(r.host.name): " + (r.error.map { "[\($0.code.rawValue)] \($0.message)" } ?? "exit \(r.result?.exitStatus ?? -1)"))
                continue
            }
            if force {
                c.out("\(r.host.name): lease removed")
            } else if let h = HostLease.Holder.parse(x.stdoutText) {
                c.out("\(r.host.name): held by \(h); add --force to remove it")
            } else {
                c.out("\(r.host.name): no lease")
            }
        }
        if bad > 0 { throw ExitCode(ExitStatus.hostFailure) }
    }
}
