import Basics
import SSH
import HealthGate
import RolloutConfig

/// What `fleet facts` learned about one host, or why it could not.
public struct HostSurvey: Sendable {
    public var host: InventoryHost
    public var facts: HostFacts?
    public var error: SSHError?
    /// Other failures (the facts command itself failed).
    public var problem: String?
    public var elapsed: Duration
    /// SUnreclaim over the warning threshold.
    public var flagged: Bool
    /// What its files tell of its distribution and bootloader (what `bootloader: auto` would pick).
    public var boot: BootloaderDetection?

    public var reachable: Bool { facts != nil }
}

/// When SUnreclaim is worth a warning: a share of MemTotal, or an absolute size.
public enum SUnreclaimThreshold: Sendable, Equatable, CustomStringConvertible {
    case share(Double)
    case bytes(UInt64)

    public static func parse(_ text: String) -> SUnreclaimThreshold? {
        if text.trimmed.hasSuffix("%"), let r = Quantity.ratio(text) { return .share(r) }
        if let b = Quantity.bytes(text) { return .bytes(b) }
        return nil
    }

    public func exceeded(by m: MemInfo) -> Bool {
        guard let s = m.sUnreclaim else { return false }
        switch self {
        case .share(let r): return m.sUnreclaimShare.map { $0 > r } ?? false
        case .bytes(let b): return s > b
        }
    }

    public var description: String {
        switch self {
        case .share(let r): "\(String(format1: r * 100))% of MemTotal"
        case .bytes(let b): Quantity.formatBytes(b)
        }
    }
}

/// A read-only survey of the fleet: one SSH connection and one command per host (`HostFacts`'
/// files, then `BootloaderDetection`'s section, last).
public struct FleetSurvey: Sendable {
    public static let command = HostFacts.command + "; " + BootloaderDetection.command

    public var inventory: Inventory
    public var parallelism: Int
    public var threshold: SUnreclaimThreshold
    public var sshConfig: SSHConfig
    public var commandTimeout: Duration = .seconds(20)

    public init(inventory: Inventory, parallelism: Int = 64, threshold: SUnreclaimThreshold = .share(0.10), sshConfig: SSHConfig = SSHConfig()) {
        self.inventory = inventory
        self.parallelism = parallelism
        self.threshold = threshold
        self.sshConfig = sshConfig
    }

    /// Surveys `hosts` (default: all). `progress` is called once per finished host.
    public func run(hosts: [InventoryHost]? = nil, progress: (@Sendable (HostSurvey) -> Void)? = nil) async -> [HostSurvey] {
        let threshold = threshold
        let exec = FleetExec(inventory: inventory, parallelism: parallelism, sshConfig: sshConfig, timeout: commandTimeout)
        return await exec.collect(Self.command, hosts: hosts, map: { r in
            var survey = HostSurvey(host: r.host, facts: nil, error: r.error, problem: nil, elapsed: r.elapsed, flagged: false)
            if let out = r.result {
                let facts = HostFacts.parse(out.stdoutText)
                if facts.release == nil && facts.memory.memTotal == nil {
                    survey.problem = "the facts command gave no readable output (exit \(out.exitStatus)): \(out.stderrText.prefix(200))"
                } else {
                    survey.facts = facts
                    survey.flagged = threshold.exceeded(by: facts.memory)
                    survey.boot = BootloaderDetection.parse(out.stdoutText)
                }
            }
            progress?(survey)
            return survey
        })
    }
}

/// The outcome of one command on one host (`fleet exec`).
public struct HostExec: Sendable {
    public var host: InventoryHost
    public var result: ExecResult?
    public var error: SSHError?
    public var elapsed: Duration
    public var succeeded: Bool { result?.succeeded ?? false }
}

/// Runs one command on every host.
public struct FleetExec: Sendable {
    public var inventory: Inventory
    public var parallelism: Int
    public var sshConfig: SSHConfig
    public var timeout: Duration?

    public init(inventory: Inventory, parallelism: Int = 64, sshConfig: SSHConfig = SSHConfig(), timeout: Duration? = nil) {
        self.inventory = inventory
        self.parallelism = parallelism
        self.sshConfig = sshConfig
        self.timeout = timeout
    }

    public func run(_ command: String, hosts: [InventoryHost]? = nil, progress: (@Sendable (HostExec) -> Void)? = nil) async -> [HostExec] {
        await collect(command, hosts: hosts, map: { r in progress?(r); return r })
    }

    /// Runs `command` everywhere (one connection per host, closed after) and turns
    /// each host's outcome into `R` as soon as it is known, in input order.
    public func collect<R: Sendable>(_ command: String, hosts: [InventoryHost]?, map: @escaping @Sendable (HostExec) -> R) async -> [R] {
        let inv = inventory, cfg = sshConfig, timeout = timeout
        return await concurrentMap(hosts ?? inventory.hosts, limit: parallelism) { _, host in
            let start = ContinuousClock.now
            let (endpoint, options) = inv.sshTarget(for: host, sshConfig: cfg)
            let conn = SSHHost(endpoint: endpoint, options: options)
            var out = HostExec(host: host, result: nil, error: nil, elapsed: .zero)
            do {
                out.result = try await conn.exec(command, timeout: timeout)
            } catch let e as SSHError {
                out.error = e
            } catch {
                out.error = SSHError(.channelFailure, host: host.name, "\(error)")
            }
            await conn.close()
            out.elapsed = ContinuousClock.now - start
            return map(out)
        }
    }
}
