import Foundation
import Basics
import SSH
import HealthGate
import RolloutConfig

/// What `plan apply --dry-run` reads from each host, in one read-only SSH
/// round trip: the `HostFacts` files (release, boot id, uptime, memory, OOM
/// counter), the free space on `/boot` and what tells its bootloader
/// (`BootloaderDetection`, for `bootloader: auto`), and what makes GRUB's boot-once safe
/// (`GrubSafety`, shown by the dry-run for `grub` hosts). Nothing is written anywhere.
public struct PlanSurvey: Sendable {
    /// `HostFacts.command`, then a `boot-free` section with `df`'s available bytes, then
    /// `GrubSafety.command`'s section (ended by its `end` line), then `BootloaderDetection.command`'s
    /// (last: what the host printed before it cannot forge it).
    public static let command = factsAndBootFree + GrubSafety.command + "; " + BootloaderDetection.command

    /// `plan apply`'s survey: `command` without `GrubSafety`'s section. Only the dry-run shows those
    /// findings; a rollout's pre-check reads them anew on each host when its wave comes (they run
    /// `grub-probe`, which probes /boot's devices: work not to do twice).
    public static let applyCommand = factsAndBootFree + BootloaderDetection.command

    static let factsAndBootFree = HostFacts.command + "; echo '@@rollctl-file boot-free'; df -B1 --output=avail /boot 2>&1 | tail -n 1; "

    /// The facts, and /boot's free bytes when `df` gave a number.
    public static func parse(_ output: String) -> (facts: HostFacts, bootFreeBytes: UInt64?) {
        let facts = HostFacts.parse(output)
        guard let r = output.range(of: "@@rollctl-file boot-free\n") else { return (facts, nil) }
        let value = output[r.upperBound...].split(whereSeparator: \.isNewline).first.map { String($0).trimmed }
        return (facts, value.flatMap { UInt64($0) })
    }

    /// Everything the survey learned, keyed by host name.
    public struct Result: Sendable {
        public var releases: [String: String] = [:]
        public var hostFacts: [String: HostFacts] = [:]
        public var bootFree: [String: UInt64] = [:]
        /// Host name -> what its files tell of its bootloader (every host read).
        public var bootloaders: [String: BootloaderDetection] = [:]
        /// Host name -> its GRUB safety facts (hosts whose section was read whole).
        public var grubSafety: [String: GrubSafety] = [:]
        /// Host name -> why it could not be read (`[code] message` for SSH errors).
        public var unreachable: [String: String] = [:]
    }

    public var inventory: Inventory
    public var parallelism: Int
    public var sshConfig: SSHConfig
    public var timeout: Duration
    /// Reads hosts through this instead of SSH (the engine's in-process hosts in tests).
    public var transport: (@Sendable (InventoryHost) -> any RemoteHost)?
    /// What each host runs: `command` (the dry-run), or `applyCommand` (`plan apply`: no GrubSafety).
    public var command: String

    public init(inventory: Inventory, parallelism: Int = 64, sshConfig: SSHConfig = SSHConfig(), timeout: Duration = .seconds(20),
                transport: (@Sendable (InventoryHost) -> any RemoteHost)? = nil, readsGrubSafety: Bool = true) {
        self.command = readsGrubSafety ? Self.command : Self.applyCommand
        self.inventory = inventory
        self.parallelism = parallelism
        self.sshConfig = sshConfig
        self.timeout = timeout
        self.transport = transport
    }

    /// Reads `hosts`; `progress` is called once per finished host. With `keepingIn`, each host
    /// is read over that pool's connection, left open for the rollout's pre-check (a host that
    /// could not be read is dropped from it).
    public func run(hosts: [InventoryHost], keepingIn pool: Connections? = nil, progress: (@Sendable () -> Void)? = nil) async -> Result {
        // Per host: its output and exit status, or why it could not be read.
        let outcomes: [(name: String, read: Swift.Result<HostCommandResult, any Error>)]
        if let pool {
            let (command, timeout) = (command, timeout)
            outcomes = await concurrentMap(hosts, limit: parallelism) { _, h in
                let host = await pool.host(h.name)
                defer { progress?() }
                do {
                    return (h.name, .success(try await host.run(command, timeout: timeout)))
                } catch {
                    await pool.drop(h.name)
                    return (h.name, .failure(error))
                }
            }
        } else if let transport {
            let (command, timeout) = (command, timeout)
            outcomes = await concurrentMap(hosts, limit: parallelism) { _, h in
                let host = transport(h)
                defer { progress?() }
                do {
                    let r = try await host.run(command, timeout: timeout)
                    await host.close()
                    return (h.name, .success(r))
                } catch {
                    await host.close()
                    return (h.name, .failure(error))
                }
            }
        } else {
            let exec = FleetExec(inventory: inventory, parallelism: parallelism, sshConfig: sshConfig, timeout: timeout)
            outcomes = await exec.run(command, hosts: hosts) { _ in progress?() }.map { o in
                if let e = o.error { return (o.host.name, .failure(e)) }
                return (o.host.name, .success(HostCommandResult(stdout: o.result?.stdoutText ?? "", stderr: o.result?.stderrText ?? "",
                                                               exitStatus: o.result?.exitStatus ?? -1)))
            }
        }
        var out = Result()
        for (name, read) in outcomes {
            let r: HostCommandResult
            switch read {
            case .failure(let e as SSHError):
                out.unreachable[name] = "[\(e.code.rawValue)] \(e.message)"
                continue
            case .failure(let e):
                out.unreachable[name] = "\(e)"
                continue
            case .success(let result):
                r = result
            }
            let (facts, free) = Self.parse(r.stdout)
            guard let release = facts.release else {
                out.unreachable[name] = "no kernel release read (exit \(r.exitStatus)): \(r.stderr.prefix(200))"
                continue
            }
            out.releases[name] = release
            out.hostFacts[name] = facts
            if let free { out.bootFree[name] = free }
            out.bootloaders[name] = BootloaderDetection.parse(r.stdout)
            if let g = GrubSafety.parse(r.stdout) { out.grubSafety[name] = g }
        }
        return out
    }
}
