import ArgumentParser
import Foundation
import SSH
import Basics
import RolloutConfig

/// Exit codes (documented in the README):
/// 0 ok, 1 failure on some host, 2 bad input (nothing run), 3 halted by a gate
/// or budget, 4 interrupted (resumable).
public enum ExitStatus {
    public static let ok: Int32 = 0
    public static let hostFailure: Int32 = 1
    public static let badInput: Int32 = 2
    public static let halted: Int32 = 3
    public static let interrupted: Int32 = 4
}

public struct Rollctl: AsyncParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "rollctl",
        abstract: "Roll a kernel across a Linux fleet: waves, health gates, automatic halt and rollback.",
        discussion: """
        Exit codes: 0 ok; 1 a command failed on some host or a host was unreachable; \
        2 bad input (nothing was run); 3 halted by a health gate or failure budget; 4 interrupted (resumable).
        """,
        version: "0.1.0",
        subcommands: [Fleet.self, PlanCommand.self, RolloutGroup.self, KernelGroup.self, GateGroup.self, JournalGroup.self, ServeCommand.self]
    )

    public init() {}

    /// One SSH connection per host stays open for a run: lift the soft limit on open
    /// files (1024 on many systems) to the hard limit, as Go and OpenSSH's tools do.
    static func raiseOpenFileLimit() {
        var lim = rlimit()
        guard getrlimit(__rlimit_resource_t(RLIMIT_NOFILE.rawValue), &lim) == 0, lim.rlim_cur < lim.rlim_max else { return }
        lim.rlim_cur = lim.rlim_max
        _ = setrlimit(__rlimit_resource_t(RLIMIT_NOFILE.rawValue), &lim)
    }

    /// Runs the CLI and exits. Usage errors exit 2, like every other kind of bad input.
    public static func runMain() async -> Never {
        raiseOpenFileLimit()
        limitMallocArenas()
        do {
            var command = try parseAsRoot()
            if var async = command as? AsyncParsableCommand {
                try await async.run()
            } else {
                try command.run()
            }
            Foundation.exit(ExitStatus.ok)
        } catch let e as InputErrors {
            for err in e.errors { Console.shared.err(err.description) }
            Console.shared.err("\(e.errors.count) problem\(e.errors.count == 1 ? "" : "s") found; nothing was run.")
            Foundation.exit(ExitStatus.badInput)
        } catch let e as InputError {
            Console.shared.err(e.description)
            Foundation.exit(ExitStatus.badInput)
        } catch {
            let code = exitCode(for: error)
            if error is ExitCode { Foundation.exit(code.rawValue) }
            let message = fullMessage(for: error)
            if code == .success {
                if !message.isEmpty { Console.shared.out(message) }
                Foundation.exit(ExitStatus.ok)
            }
            if code == .validationFailure {
                Console.shared.err(message)
                Foundation.exit(ExitStatus.badInput)
            }
            if !message.isEmpty { Console.shared.error(message) }
            Foundation.exit(code.rawValue == 0 ? 1 : code.rawValue)
        }
    }
}

struct Fleet: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Read-only survey and ad-hoc commands across the fleet.",
        subcommands: [FleetFacts.self, FleetExecCommand.self, FleetLocks.self, FleetUnlock.self]
    )
}

/// Options every command that reaches hosts shares.
struct ConnectionOptions: ParsableArguments {
    @Option(name: .shortAndLong, help: ArgumentHelp("Inventory file (YAML).", valueName: "file"))
    var inventory: String

    @Option(help: ArgumentHelp("How many hosts to work on at once.", valueName: "n"))
    var parallel: Int = 64

    @Option(help: ArgumentHelp("Only these hosts (comma-separated inventory names).", valueName: "names"))
    var hosts: String?

    @Option(help: ArgumentHelp("OpenSSH client config to read for values the inventory leaves open.", valueName: "file"))
    var sshConfig: String?

    func validate() throws {
        guard (1...4096).contains(parallel) else {
            throw ValidationError("--parallel must be between 1 and 4096, got \(parallel)")
        }
    }

    /// Loads the inventory and picks the selected hosts; warns when host keys are
    /// not checked; refuses hosts whose SSH config rollctl cannot honour.
    func load() throws -> (Inventory, [InventoryHost], SSHConfig) {
        let inv = try Inventory.load(path: inventory)
        var selected = inv.hosts
        if let hosts {
            let names = hosts.split(separator: ",").map { String($0).trimmingCharacters(in: .whitespaces) }
            let known = Set(inv.hosts.map(\.name))
            let unknown = names.filter { !known.contains($0) }
            if !unknown.isEmpty {
                throw InputError(file: "--hosts", "unknown host\(unknown.count > 1 ? "s" : "") \(unknown.joined(separator: ", ")) (not in \(inventory))")
            }
            let wanted = Set(names)
            selected = inv.hosts.filter { wanted.contains($0.name) }
        }
        if inv.defaults.hostKeyPolicy == .off {
            Console.shared.warn("host_key_policy is 'off' in \(inventory): host keys are NOT verified; anyone on the path can impersonate these hosts")
        }
        // ProxyCommand, chained ProxyJump, Include, Match: refused here, before any host is touched.
        let cfg = SSHConfig.load(path: sshConfig)
        try inv.checkSSHConfig(cfg, hosts: selected)
        return (inv, selected, cfg)
    }
}
