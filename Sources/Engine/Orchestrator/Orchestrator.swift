import Foundation
import Logging
import Basics
import NetIO
import SSH
import HealthGate
import RolloutConfig
import RolloutJournal
import Notices
import WebAPI

/// How a run of `plan apply` / `rollout resume` ended.
public enum RolloutOutcome: Sendable, Equatable {
    case completed
    /// A gate, a host or the failure budget stopped the rollout; rollback (per policy) ran.
    case halted(reason: String)
    /// SIGINT/SIGTERM: in-flight steps finished, the journal says where; resume continues.
    case interrupted
    case aborted
}

/// Drives one rollout from the journal: every host from its journaled state to
/// the end of its wave, wave by wave, with the gate between waves. Every side
/// effect is journaled as an intent first and its outcome after, so a run killed
/// at any point resumes from the journal without rebooting a host twice.
public final class Orchestrator: Sendable {
    public let rolloutID: String
    public let plan: Plan
    public let inventory: Inventory
    public let journal: Journal
    /// Progress for the admin (`notice`), problems (`error`), the hosts' dialogue (`debug`);
    /// every line carries the rollout id, and the host's name when it concerns one host.
    let logger: Logger
    let stopRequested: @Sendable () -> Bool
    let connections: Connections
    /// Customer notices (maintenance before a wave's reboots, done, rolled back); nil when the plan has none.
    let notices: NoticeSender?
    /// The driver lease while this process drives the rollout.
    let leaseBox = LeaseBox()
    public let leaseTTL: Duration
    /// Who this orchestrator drives as (this process; tests make others).
    public let identity: DriverIdentity
    /// `kernel.packages`: their digests, the upload slots and the bandwidth pacer.
    let shipment: Shipment

    /// `transport` makes the connection to a host; the default is SSH (`SSHHost`).
    /// bench-core passes in-process hosts to measure the orchestration core alone.
    public init(rolloutID: String, plan: Plan, inventory: Inventory, journal: Journal, sshConfig: SSHConfig = SSHConfig(),
                customers: Customers? = nil,
                transport: (@Sendable (InventoryHost) -> any RemoteHost)? = nil,
                stopRequested: @escaping @Sendable () -> Bool = { false },
                leaseTTL: Duration = .seconds(60),
                identity: DriverIdentity = .current,
                logger: Logger = Logger(label: "rollctl", factory: { _ in SwiftLogNoOpLogHandler() }),
                connections: Connections? = nil) {
        self.leaseTTL = leaseTTL
        self.identity = identity
        var tagged = logger
        tagged[metadataKey: "rollout"] = "\(rolloutID)"
        let logger = tagged
        self.logger = logger
        if let spec = plan.notify, let customers {
            notices = NoticeSender(spec: spec, customers: customers, journal: journal, rolloutID: rolloutID, planName: plan.name,
                                   release: plan.kernel.release, logger: logger)
        } else {
            notices = nil
        }
        self.rolloutID = rolloutID
        self.plan = plan
        self.shipment = Shipment(plan.kernel)
        self.inventory = inventory
        self.journal = journal
        self.stopRequested = stopRequested
        self.connections = connections ?? Connections(inventory: inventory, transport: transport ?? Self.sshTransport(inventory, sshConfig, logger))
    }

    /// SSH to the inventory's hosts (the default transport), logging through `logger`.
    static func sshTransport(_ inventory: Inventory, _ sshConfig: SSHConfig, _ logger: Logger) -> @Sendable (InventoryHost) -> any RemoteHost {
        { h in
            var (endpoint, options) = inventory.sshTarget(for: h, sshConfig: sshConfig)
            options.logger = logger
            return SSHHost(endpoint: endpoint, options: options)
        }
    }

    /// The bootloader that stages, commits and restores host `h`'s boot entries: the driver
    /// journaled for it at creation (`bootloader: auto` detects it per host), else the plan's.
    func bootloader(_ h: Journal.HostRow) throws -> any BootloaderDriver {
        try BootloaderDrivers.driver(journaled: h.bootloader, plan: plan.bootloader)
    }

    /// Journals a new rollout for `layout`, takes the hosts' locks and this process's
    /// driver lease, in one transaction. `bootloaders`: host name -> its driver's name
    /// (`BootloaderChoice.resolve`), journaled with the host.
    /// Throws `Journal.LockConflict` when another rollout holds any of them.
    public static func create(plan: Plan, inventory: Inventory, layout: RolloutLayout, journal: Journal,
                              driver: DriverIdentity = .current, startAt: Date? = nil, bootloaders: [String: String] = [:]) throws -> String {
        let id = newRolloutID()
        var rows: [(name: String, address: String, lockKey: String, wave: Int?, batch: Int?, state: HostState, reason: String?)] = []
        for wave in layout.waves {
            for (b, batch) in wave.batches.enumerated() {
                for h in batch {
                    rows.append((h.name, h.address, lockKey(h, inventory), wave.number, b + 1, .pending, nil))
                }
            }
        }
        for s in layout.skipped {
            rows.append((s.host.name, s.host.address, lockKey(s.host, inventory), nil, nil, .skipped, s.reason))
        }
        try journal.createRollout(id: id, plan: plan, planHash: sha256Hex(plan.text), hosts: rows, waves: layout.waves.count, driver: driver,
                                  startAt: startAt, bootloaders: bootloaders)
        return id
    }

    /// The host's lock across journals: its address and port, and the bastion the inventory
    /// reaches it through (hosts behind different bastions may share a private address).
    static func lockKey(_ h: InventoryHost, _ inv: Inventory) -> String {
        var key = "\(h.address):\(h.port ?? inv.defaults.port ?? 22)"
        if case .through(let spec) = inv.inventoryJump(for: h) { key += " via \(spec)" }
        return key
    }

    static func newRolloutID() -> String {
        let f = DateFormatter()
        f.dateFormat = "yyyyMMdd-HHmmss"
        f.timeZone = TimeZone(identifier: "UTC")
        let suffix = String(format: "%04x", UInt32.random(in: 0...0xffff))
        return "r\(f.string(from: Date()))-\(suffix)"
    }

    // MARK: - the driver lease

    /// Takes the rollout's driver lease for this process (or keeps it: idempotent).
    /// Throws `LeaseHeld`, naming the holder, when another live process drives it.
    public func takeLease() throws {
        try leaseBox.with { box in
            if box.lease == nil { box.lease = try DriverLease(journal: journal, rolloutID: rolloutID, ttl: leaseTTL, as: identity) }
        }
    }

    /// Gives the lease up (end of the command).
    public func releaseLease() {
        leaseBox.with { box in
            box.lease?.release()
            box.lease = nil
        }
    }

    /// Stop touching hosts: a signal, a stop request through the journal (`rollout abort`), or the lease lost.
    func stopping() -> Bool { stopRequested() || leaseBox.with { $0.lease?.shouldStop ?? false } }

    /// The time the rollout runs on: the journal's (the system's, or a test's virtual clock),
    /// so waits, windows, notices and the journal's timestamps agree.
    var clock: any RolloutClock { journal.clock }

    /// Sleeps until `instant` on the rollout's clock; true when a stop (a signal, `rollout
    /// abort`, the lease lost) ended the wait first. The stop is polled in real time: it is a
    /// flag, not a moment.
    func sleepUnlessStopped(until instant: Date) async -> Bool {
        if stopping() { return true }
        let slept: Bool? = await unlessStopped { (try? await self.clock.sleep(until: instant)) != nil }
        return slept != true
    }

    /// Runs `work` until it ends or a stop is requested (polled every 200 ms, real time), whichever
    /// comes first; nil when the stop came first (`work` is cancelled then).
    func unlessStopped<T: Sendable>(_ work: @escaping @Sendable () async -> T) async -> T? {
        await withTaskGroup(of: T?.self) { group in
            group.addTask { await work() }
            group.addTask {
                while !Task.isCancelled {
                    if self.stopping() { return nil }
                    try? await Task.sleep(for: .milliseconds(200))
                }
                return nil
            }
            let first = await group.next() ?? nil
            group.cancelAll()
            return first
        }
    }

    /// Whether the lease is still ours with margin: checked right before every reboot.
    func leaseHeld() -> Bool { leaseBox.with { $0.lease?.stillHeld ?? true } }

    var leaseLost: Bool { leaseBox.with { $0.lease?.wasLost ?? false } }

    // MARK: - helpers

    func fail(_ name: String, _ reason: String) async throws {
        guard let h = try journal.host(rolloutID, name), h.state.canMove(to: .failed), h.state != .failed else { return }
        try await journal.move(rolloutID, host: name, to: .failed, reason: reason, set: ["last_error": reason])
        say(name, "FAILED: \(reason)", problem: true)
        try await expireSilences([name])
    }

    @discardableResult
    func mustRun(_ host: any RemoteHost, _ command: String, _ what: String, timeout: Duration = .seconds(60)) async throws -> String {
        let r = try await host.run(command, timeout: timeout)
        guard r.exitStatus == 0 && r.exitSignal == nil else {
            let err = r.stderr.trimmed.split(separator: "\n").suffix(3).joined(separator: " / ")
            throw StepError("\(what) failed (`\(command.prefix(120))` → \(r.exitSignal.map { "SIG\($0)" } ?? "exit \(r.exitStatus)")\(err.isEmpty ? "" : ": \(err)"))")
        }
        return r.stdout
    }

    func describe(_ error: Error) -> String {
        if let e = error as? SSHError { return "[\(e.code.rawValue)] \(e.message)" }
        return "\(error)"
    }

    /// Progress for the admin (`notice`), or a problem (`error`), about `host` or the rollout.
    func say(_ host: String?, _ message: String, problem: Bool = false) {
        let metadata: Logger.Metadata? = host.map { ["host": "\($0)"] }
        if problem { logger.error("\(message)", metadata: metadata) } else { logger.notice("\(message)", metadata: metadata) }
    }

    /// Runs `body` for every item, at most `limit` at once. A host's own failures are
    /// journaled inside `body`; what `body` throws (the journal cannot be written) is
    /// rethrown here after every task ended, and stops the run.
    func forEach<T: Sendable>(_ items: [T], limit: Int, _ body: @escaping @Sendable (T) async throws -> Void) async throws {
        let errors = await concurrentMap(items, limit: limit) { _, item -> String? in
            do { try await body(item); return nil } catch { return "\(error)" }
        }
        if let first = errors.compactMap({ $0 }).first { throw StepAbort(description: first) }
    }
}

/// A step could not journal its outcome: the run stops (interrupted, resumable).
struct StepAbort: Error, CustomStringConvertible {
    var description: String
}

struct StepError: Error, CustomStringConvertible {
    var description: String
    init(_ d: String) { description = d }
}

/// The orchestrator's lease and the journal's identity, behind a lock.
final class LeaseBox: @unchecked Sendable {
    private let lock = NSLock()
    var lease: DriverLease?
    var journalID: String?
    func with<T>(_ body: (LeaseBox) throws -> T) rethrows -> T { lock.lock(); defer { lock.unlock() }; return try body(self) }
}
