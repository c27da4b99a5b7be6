import Foundation
import Basics
import SSH
import HealthGate
import Configuration

/// What `plan apply --dry-run` reads from each host, in one read-only SSH
/// round trip: the `HostFacts` files (release, boot id, uptime, memory, OOM
/// counter) and the free space on `/boot`. Nothing is written anywhere.
public struct PlanSurvey: Sendable {
    /// `HostFacts.command`, then a `boot-free` section with `df`'s available bytes.
    public static let command = HostFacts.command + "; echo '@@rollctl-file boot-free'; df -B1 --output=avail /boot 2>&1 | tail -n 1"

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
        /// Host name -> why it could not be read (`[code] message` for SSH errors).
        public var unreachable: [String: String] = [:]
    }

    public var inventory: Inventory
    public var parallelism: Int
    public var sshConfig: SSHConfig
    public var timeout: Duration

    public init(inventory: Inventory, parallelism: Int = 64, sshConfig: SSHConfig = SSHConfig(), timeout: Duration = .seconds(20)) {
        self.inventory = inventory
        self.parallelism = parallelism
        self.sshConfig = sshConfig
        self.timeout = timeout
    }

    /// Reads `hosts`; `progress` is called once per finished host.
    public func run(hosts: [InventoryHost], progress: (@Sendable () -> Void)? = nil) async -> Result {
        let exec = FleetExec(inventory: inventory, parallelism: parallelism, sshConfig: sshConfig, timeout: timeout)
        let outcomes = await exec.run(Self.command, hosts: hosts) { _ in progress?() }
        var out = Result()
        for o in outcomes {
            let name = o.host.name
            if let e = o.error {
                out.unreachable[name] = "[\(e.code.rawValue)] \(e.message)"
                continue
            }
            let (facts, free) = Self.parse(o.result?.stdoutText ?? "")
            guard let release = facts.release else {
                out.unreachable[name] = "no kernel release read (exit \(o.result?.exitStatus ?? -1)): \(o.result?.stderrText.prefix(200) ?? "")"
                continue
            }
            out.releases[name] = release
            out.hostFacts[name] = facts
            if let free { out.bootFree[name] = free }
        }
        return out
    }
}
