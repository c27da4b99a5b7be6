import Foundation
import GRDB
import Basics
import NetIO
import SSH
import HealthGate
import Configuration
import RolloutJournal
import Notices

/// How a run of `plan apply` / `rollout resume` ended.
public enum RolloutOutcome: Sendable, Equatable {
    case completed
    /// A gate, a host or the failure budget stopped the rollout; rollback (per policy) ran.
    case halted(reason: String)
    /// SIGINT/SIGTERM: in-flight steps finished, the journal says where; resume continues.
    case interrupted
    case aborted
}

/// A line of progress for the admin (the CLI renders it; tests collect it).
public struct RolloutLogLine: Sendable {
    public var host: String?
    public var message: String
    public var isProblem: Bool
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
    let log: @Sendable (RolloutLogLine) -> Void
    let stopRequested: @Sendable () -> Bool
    let connections: Connections
    /// Customer notices (maintenance before a wave's reboots, done, rolled back); nil when the plan has none.
    let notices: NoticeSender?
    /// The driver lease while this process drives the rollout.
    let leaseBox = LeaseBox()
    public let leaseTTL: Duration
    /// Who this orchestrator drives as (this process; tests make others).
    public let identity: DriverIdentity

    /// `transport` makes the connection to a host; the default is SSH (`SSHHost`).
    /// bench-core passes in-process hosts to measure the orchestration core alone.
    public init(rolloutID: String, plan: Plan, inventory: Inventory, journal: Journal, sshConfig: SSHConfig = SSHConfig(),
                customers: Customers? = nil,
                transport: (@Sendable (InventoryHost) -> any RemoteHost)? = nil,
                stopRequested: @escaping @Sendable () -> Bool = { false },
                leaseTTL: Duration = .seconds(60),
                identity: DriverIdentity = .current,
                log: @escaping @Sendable (RolloutLogLine) -> Void = { _ in }) {
        self.leaseTTL = leaseTTL
        self.identity = identity
        if let spec = plan.notify, let customers {
            notices = NoticeSender(spec: spec, customers: customers, journal: journal, rolloutID: rolloutID, planName: plan.name,
                                   release: plan.kernel.release, log: { log(RolloutLogLine(host: nil, message: $0, isProblem: false)) })
        } else {
            notices = nil
        }
        self.rolloutID = rolloutID
        self.plan = plan
        self.inventory = inventory
        self.journal = journal
        self.stopRequested = stopRequested
        self.log = log
        self.connections = Connections(inventory: inventory, transport: transport ?? { h in
            let (endpoint, options) = inventory.sshTarget(for: h, sshConfig: sshConfig)
            return SSHHost(endpoint: endpoint, options: options)
        })
    }

    /// Journals a new rollout for `layout`, takes the hosts' locks and this process's
    /// driver lease, in one transaction.
    /// Throws `Journal.LockConflict` when another rollout holds any of them.
    public static func create(plan: Plan, inventory: Inventory, layout: RolloutLayout, journal: Journal,
                              driver: DriverIdentity = .current) throws -> String {
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
        try journal.createRollout(id: id, plan: plan, planHash: sha256Hex(plan.text), hosts: rows, waves: layout.waves.count, driver: driver)
        return id
    }

    static func lockKey(_ h: InventoryHost, _ inv: Inventory) -> String {
        "\(h.address):\(h.port ?? inv.defaults.port ?? 22)"
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

    /// Whether the lease is still ours with margin: checked right before every reboot.
    func leaseHeld() -> Bool { leaseBox.with { $0.lease?.stillHeld ?? true } }

    var leaseLost: Bool { leaseBox.with { $0.lease?.wasLost ?? false } }

    // MARK: - run

    /// Runs (or resumes) the rollout until it completes, halts or is interrupted.
    /// Takes the driver lease first (`LeaseHeld` when another process drives it).
    /// A journal that cannot be written stops the run (interrupted, resumable).
    public func run() async throws -> RolloutOutcome {
        try takeLease()
        do {
            let outcome = try await runWaves()
            await connections.closeAll()
            return outcome
        } catch {
            await connections.closeAll()
            return try stopBlind(error)
        }
    }

    /// An error no step could journal (the journal is unwritable, or a bug): stop
    /// here rather than go on without a record; resume continues from the journal.
    func stopBlind(_ error: Error) throws -> RolloutOutcome {
        say(nil, "STOPPING: \(error) — no further step is taken; the journal holds what happened up to here; resume with `rollctl rollout resume \(rolloutID)`", problem: true)
        if !leaseLost {
            try? journal.setRolloutState(rolloutID, .interrupted, note: "stopped: \(error)")
        }
        return .interrupted
    }

    func runWaves() async throws -> RolloutOutcome {
        try journal.setRolloutState(rolloutID, .running)
        let waves = try journal.waves(rolloutID)
        if let notices {
            // Templates, channel settings, the password's source: fail before any host is touched.
            do { try notices.preflight() } catch {
                return try halt(reason: "customer notices cannot be sent: \(error)", rollback: false)
            }
            await catchUpNotices(notices)
        }
        for wave in waves {
            if wave.state == .passed { continue }
            if wave.state == .failed || wave.state == .rolledBack {
                // A halted rollout resumed: the failed wave's hosts were rolled back; halt stays explicit.
                return try halt(reason: "wave \(wave.number) failed earlier; start a new rollout after fixing the cause", rollback: false)
            }
            if stopping() { return try interrupt() }
            try journal.setWave(rolloutID, wave.number, state: .running)
            say(nil, "wave \(wave.number)/\(waves.count): starting")
            let outcome = try await runWave(wave.number, of: waves.count)
            if outcome != .completed { return outcome }
        }
        try journal.setRolloutState(rolloutID, .completed)
        try journal.releaseSettledLocks(rolloutID: rolloutID)
        say(nil, "rollout \(rolloutID) completed: every host committed to \(plan.kernel.release)")
        return .completed
    }

    /// For a rollout with nothing left to drive: delivers what earlier runs owed.
    public func deliverOwedNotices() async throws {
        try takeLease()
        if let notices { await catchUpNotices(notices) }
    }

    /// Notices an earlier run owed and may not have sent (it died after a wave passed
    /// or a host was rolled back): queued now if missing, then delivered. Delivery
    /// problems are reported; they do not stop the rollout.
    func catchUpNotices(_ notices: NoticeSender) async {
        do {
            let hosts = try journal.hosts(rolloutID)
            var rows: [Journal.NoticeRow] = []
            for w in try journal.waves(rolloutID) {
                let inWave = hosts.filter { $0.wave == w.number }
                if w.state == .passed { rows += try notices.owed(.done, wave: w.number, hosts: inWave.filter { $0.state == .committed }.map(\.name)) }
                rows += try notices.owed(.rolledBack, wave: w.number, hosts: inWave.filter { $0.state == .rolledBack }.map(\.name))
            }
            if !rows.isEmpty {
                say(nil, "\(rows.count) notice\(rows.count == 1 ? "" : "s") owed by an earlier run were never queued: queuing them now")
                try journal.queueNotices(rows)
            }
            try await notices.deliverUndelivered(kinds: [.done, .rolledBack])
        } catch {
            say(nil, "notices owed by an earlier run not all delivered: \(error)", problem: true)
        }
    }

    func runWave(_ number: Int, of total: Int) async throws -> RolloutOutcome {
        let all = try journal.hosts(rolloutID, wave: number)
        let batches = Dictionary(grouping: all, by: { $0.batch ?? 1 }).sorted { $0.key < $1.key }.map(\.value)
        var batchOf: [String: Int] = [:]
        for (i, b) in batches.enumerated() { for h in b { batchOf[h.name] = i } }

        // 1. Pre-checks for the whole wave (no disruption yet).
        try await forEach(all.filter { $0.state == .pending }, limit: 32) { h in try await self.check(h.name) }
        if let stop = try budgetExceeded(wave: number) { return try halt(reason: stop, wave: number) }
        if stopping() { return try interrupt() }

        // 2. Install and stage boot-once (nothing restarts yet: customers are told next,
        //    so the window they are given starts from the end of the staging).
        try await forEach(try journal.hosts(rolloutID, wave: number, in: [.checked, .notified]),
                          limit: 32) { h in try await self.stage(h.name) }
        if let stop = try budgetExceeded(wave: number) { return try halt(reason: stop, wave: number) }
        if stopping() { return try interrupt() }

        // 3. Tell the customers of the staged hosts; honour the lead time (across resume too).
        var rebootsFrom = Date()
        if let notices {
            let toTell = try journal.hosts(rolloutID, wave: number, in: [.staged]).map(\.name)
            do {
                if !toTell.isEmpty {
                    let from = Date().addingTimeInterval(notices.spec.leadTime.seconds)
                    let plan = self.plan
                    let batchIndex = batchOf
                    rebootsFrom = try await notices.maintenance(wave: number, hosts: toTell, window: { theirs in
                        MaintenanceWindow.forCustomer(rebootsFrom: from, lastBatch: theirs.compactMap { batchIndex[$0] }.max() ?? 0, plan: plan)
                    })
                } else {
                    rebootsFrom = try notices.earliestReboot(wave: number)
                }
            } catch let e as NoticeError {
                return try halt(reason: "wave \(number): customer notices could not be delivered and the plan blocks on that: \(e)", wave: number)
            }
        }
        if let stopped = try await waitUntil(rebootsFrom, "wave \(number): lead time") { return stopped }

        // 4. Reboots, batch by batch (a batch never holds two hosts of one failure domain).
        for (i, batch) in batches.enumerated() {
            if let notices, let outcome = try await keepWindows(notices, wave: number, batch: i, batchOf: batchOf) { return outcome }
            try await forEach(batch.map(\.name), limit: plan.waves.maxParallel) { name in try await self.rebootAndVerify(name) }
            if let stop = try budgetExceeded(wave: number) { return try halt(reason: stop, wave: number) }
            if stopping() { return try interrupt() }
        }

        // 5. Soak and gate.
        let ready = try journal.hosts(rolloutID, wave: number, in: [.verified, .soaking])
        if !ready.isEmpty {
            guard let report = try await gate(ready.map(\.name), wave: number) else { return try interrupt() }
            if !report.verdict.allowsProgress {
                return try halt(reason: Self.gateHaltReason(report, wave: number), wave: number)
            }
        }
        if let stop = try budgetExceeded(wave: number) { return try halt(reason: stop, wave: number) }

        // 6. Commit: the new kernel becomes the default, only after the gate passed.
        let healthy = try journal.hosts(rolloutID, wave: number, in: [.healthy])
        try await forEach(healthy.map(\.name), limit: 32) { name in try await self.commit(name) }
        if let stop = try budgetExceeded(wave: number) { return try halt(reason: stop, wave: number) }
        // The wave passes and its "done" notices are owed in one transaction: a crash right
        // after cannot lose them (resume delivers what is queued).
        let committed = try journal.hosts(rolloutID, wave: number, in: [.committed]).map(\.name)
        try journal.setWave(rolloutID, number, state: .passed, queueing: try notices?.owed(.done, wave: number, hosts: committed) ?? [])
        say(nil, "wave \(number)/\(total): passed, \(healthy.count) host\(healthy.count == 1 ? "" : "s") committed")
        if let notices {
            do { try await notices.deliverUndelivered(wave: number, kinds: [.done]) } catch {
                say(nil, "wave \(number): 'done' notices not all delivered: \(error); the next resume retries them", problem: true)
            }
        }
        return .completed
    }

    /// "wave 1 gate fail: failed web-001; cut short by that: web-002, web-003".
    static func gateHaltReason(_ report: WaveGateReport, wave: Int) -> String {
        var parts: [String] = []
        if !report.failed.isEmpty { parts.append("failed on \(report.failed.joined(separator: ", "))") }
        let cut = report.hosts.filter { $0.verdict == .inconclusive && $0.end == .stoppedWithWave }.map(\.host)
        let unsure = report.hosts.filter { $0.verdict == .inconclusive && $0.end != .stoppedWithWave }.map(\.host)
        if !unsure.isEmpty { parts.append("inconclusive on \(unsure.joined(separator: ", "))") }
        if !cut.isEmpty { parts.append("soak cut short (not failed) on \(cut.joined(separator: ", "))") }
        return "wave \(wave) gate \(report.verdict.rawValue): " + parts.joined(separator: "; ")
    }

    /// Sleeps until `instant`, ending early on a stop (returns `.interrupted` then).
    func waitUntil(_ instant: Date, _ what: String) async throws -> RolloutOutcome? {
        let wait = instant.timeIntervalSinceNow
        guard wait > 0 else { return nil }
        say(nil, "\(what) — reboots start at \(TimeText.iso(instant)) (in \(Int(wait.rounded(.up))) s)")
        while instant.timeIntervalSinceNow > 0 {
            if stopping() { return try interrupt() }
            try? await Task.sleep(for: .milliseconds(Int64(min(1000, max(10, instant.timeIntervalSinceNow * 1000)))))
        }
        return nil
    }

    /// Before batch `batch`: every customer of its hosts must still be inside the window
    /// they were told, with room for their remaining batches. Customers whose window can no
    /// longer hold (a resume long after, slow batches) get one corrected notice, and the
    /// batch waits its lead time; a second break is reported, never silent.
    func keepWindows(_ notices: NoticeSender, wave: Int, batch: Int, batchOf: [String: Int]) async throws -> RolloutOutcome? {
        let staged = try journal.hosts(rolloutID, wave: wave, in: [.staged]).filter { (batchOf[$0.name] ?? 0) >= batch }
        let now = Date()
        let here = staged.filter { batchOf[$0.name] == batch }.map(\.name)
        guard !here.isEmpty else { return nil }
        let promised = try notices.promisedWindows(wave: wave)
        // Each customer's last batch among the hosts still to reboot, in one pass.
        var lastBatch: [String: Int] = [:]
        for h in staged {
            let b = batchOf[h.name] ?? batch
            for c in notices.customers.customers(onHost: h.name) { lastBatch[c.id] = max(lastBatch[c.id] ?? b, b) }
        }
        var broken: Set<String> = []
        for c in notices.customers.customers(onHosts: here) {
            guard let w = promised[c.id] else { continue }  // never told (skipped by on_failure: skip)
            if !w.holds(now: now, batchesLeft: (lastBatch[c.id] ?? batch) - batch + 1, plan: plan) { broken.insert(c.id) }
        }
        guard !broken.isEmpty else { return nil }
        let already = try notices.rescheduledCustomers(wave: wave)
        let again = broken.intersection(already)
        if !again.isEmpty {
            let text = "wave \(wave): the corrected window of \(again.sorted().joined(separator: ", ")) cannot hold either; they were told once already — rebooting anyway"
            say(nil, text, problem: true)
            try await journal.event(rolloutID, kind: "info", text)
        }
        let correct = broken.subtracting(already)
        guard !correct.isEmpty else { return nil }
        say(nil, "wave \(wave): the window told to \(correct.count) customer\(correct.count == 1 ? "" : "s") cannot hold any more; sending one corrected notice")
        let from = Date().addingTimeInterval(notices.spec.leadTime.seconds)
        let plan = self.plan
        let start: Date
        do {
            start = try await notices.reschedule(wave: wave, hosts: staged.map(\.name), only: correct, window: { theirs in
                MaintenanceWindow.forCustomer(rebootsFrom: from, lastBatch: (theirs.compactMap { batchOf[$0] }.max() ?? batch) - batch, plan: plan)
            })
        } catch let e as NoticeError {
            return try halt(reason: "wave \(wave): corrected notices could not be delivered and the plan blocks on that: \(e)", wave: wave)
        }
        return try await waitUntil(start, "wave \(wave): lead time of the corrected notices")
    }

    /// Failures of this wave and of the whole rollout against the plan's budget.
    func budgetExceeded(wave: Int) throws -> String? {
        // Counted in SQL: this runs after every batch, and a batch is a few hosts of many.
        let failedStates: [HostState] = [.failed, .rollingBack, .rolledBack, .rollbackFailed]
        let failed = try journal.count(rolloutID, in: failedStates, wave: wave)
        if failed.wave > plan.failure.maxFailedHostsPerWave {
            let failedHere = try journal.hosts(rolloutID, wave: wave, in: failedStates)
            let detail = failedHere.map { "\($0.name): \($0.reason ?? "failed")" }.joined(separator: "; ")
            return "wave \(wave): \(failedHere.count) host\(failedHere.count == 1 ? "" : "s") failed (budget \(plan.failure.maxFailedHostsPerWave)) — \(detail)"
        }
        if failed.all > plan.failure.maxFailedHostsTotal && failed.all > failed.wave {
            return "\(failed.all) hosts failed across the rollout (budget \(plan.failure.maxFailedHostsTotal))"
        }
        return nil
    }

    // MARK: - halt, interrupt, rollback

    func halt(reason: String, wave: Int? = nil, rollback: Bool = true) throws -> RolloutOutcome {
        say(nil, "HALT: \(reason)", problem: true)
        try journal.event(rolloutID, kind: "halt", reason)
        if let wave { try journal.setWave(rolloutID, wave, state: .failed) }
        try journal.setRolloutState(rolloutID, .halted, note: reason)
        return .halted(reason: reason)
    }

    /// Which hosts a rollback touches.
    public enum RollbackSelection: Sendable, Equatable {
        /// The plan's policy after a halt (`wave`, `all`, `none`).
        case policy
        /// Every changed host, except committed hosts of passed waves (`rollout rollback ID`).
        case changed
        /// Every changed host, committed ones included (`--all`).
        case all
        /// Only the hosts whose rollback failed (`--failed`).
        case failed
        /// These (`--hosts a,b`).
        case hosts([String])
    }

    /// The hosts `selection` names, in wave order. Throws `InputErrors` for a named host
    /// that is not in the rollout or has nothing to roll back.
    public func rollbackTargets(_ selection: RollbackSelection) throws -> [Journal.HostRow] {
        let hosts = try journal.hosts(rolloutID)
        let waves = try journal.waves(rolloutID)
        let passed = Set(waves.filter { $0.state == .passed }.map(\.number))
        switch selection {
        case .policy:
            let haltedWave = waves.first { $0.state == .failed }?.number
            switch plan.failure.rollback {
            case .none: return []
            case .wave: return hosts.filter { $0.wave == haltedWave && needsRollback($0) }
            case .all: return hosts.filter { needsRollback($0) }
            }
        case .changed: return hosts.filter { needsRollback($0) && !($0.state == .committed && passed.contains($0.wave ?? -1)) }
        case .all: return hosts.filter { needsRollback($0) }
        case .failed: return hosts.filter { $0.state == .rollbackFailed }
        case .hosts(let names):
            var out: [Journal.HostRow] = []
            var errors: [InputError] = []
            for n in names {
                guard let h = hosts.first(where: { $0.name == n }) else {
                    errors.append(InputError(file: "--hosts", "no host '\(n)' in rollout \(rolloutID)", hint: "rollctl rollout show \(rolloutID)"))
                    continue
                }
                if needsRollback(h) { out.append(h) } else {
                    errors.append(InputError(file: "--hosts", "\(n) is \(h.state.rawValue): nothing to roll back"))
                }
            }
            if !errors.isEmpty { throw InputErrors(errors) }
            return out
        }
    }

    /// Runs the plan's rollback after a halt. Separate from `halt` so the caller
    /// awaits it (rollback reboots hosts).
    public func rollbackAfterHalt() async throws {
        let targets = try rollbackTargets(.policy)
        if plan.failure.rollback == .none { say(nil, "rollback policy 'none': hosts are left as they are") }
        try await rollback(targets.map(\.name))
    }

    /// Puts `names` back on the kernel they ran before (each waits for an unreachable
    /// host up to the reboot timeout), queues the "rolled back" notices in the same
    /// transaction as the wave's move to `rolled_back`, releases the locks of every host
    /// that reached a final state, and leaves the rollout `rolled_back` when no changed
    /// host remains.
    public func rollback(_ names: [String]) async throws {
        try takeLease()
        let before = try journal.rollout(rolloutID)
        if let notices { await catchUpNotices(notices) }
        if !names.isEmpty {
            // A rollback after an abort (which released the locks) takes them again.
            let byName = Dictionary(inventory.hosts.map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
            try journal.retakeLocks(rolloutID: rolloutID, hosts: names.compactMap { n in byName[n].map { (n, Self.lockKey($0, inventory)) } })
            say(nil, "rolling back \(names.count) host\(names.count == 1 ? "" : "s") to their previous kernel: \(names.joined(separator: ", "))")
            try await forEach(names, limit: plan.waves.maxParallel) { name in try await self.rollback(name) }
        }
        let after = try journal.hosts(rolloutID)
        let back = after.filter { $0.state == .rolledBack && names.contains($0.name) }
        let haltedWave = try journal.waves(rolloutID).first { $0.state == .failed }?.number
        var owed: [Journal.NoticeRow] = []
        if let notices {
            for (wave, hosts) in Dictionary(grouping: back, by: { $0.wave ?? 0 }) {
                owed += try notices.owed(.rolledBack, wave: wave, hosts: hosts.map(\.name))
            }
        }
        if let w = haltedWave, !names.isEmpty, after.filter({ $0.wave == w }).allSatisfy({ !$0.state.staysLocked(releaseBefore: $0.releaseBefore) }) {
            try journal.setWave(rolloutID, w, state: .rolledBack, queueing: owed)
        } else if !owed.isEmpty {
            try journal.queueNotices(owed)
        }
        if let notices {
            do { try await notices.deliverUndelivered(kinds: [.rolledBack]) } catch {
                say(nil, "'rolled back' notices not all delivered: \(error); `rollctl rollout rollback \(rolloutID)` or resume retries them", problem: true)
            }
        }
        await connections.closeAll()
        let stuck = try journal.releaseSettledLocks(rolloutID: rolloutID)
        let failed = after.filter { $0.state == .rollbackFailed || $0.state == .rollingBack }
        if !failed.isEmpty {
            say(nil, "rollback FAILED on \(failed.map(\.name).joined(separator: ", ")): see `rollctl rollout show \(rolloutID)` for what to do", problem: true)
        }
        if !stuck.isEmpty { say(nil, "still locked (need a rollback or a person): \(stuck.joined(separator: ", "))") }
        let changedLeft = after.contains { $0.state.staysLocked(releaseBefore: $0.releaseBefore) || $0.state == .committed }
        if !changedLeft && after.contains(where: { $0.state == .rolledBack }) {
            try journal.setRolloutState(rolloutID, .rolledBack, note: "every changed host runs its previous kernel again")
        } else if before?.state == .running || before?.state == .interrupted {
            try journal.setRolloutState(rolloutID, .halted)
        }
    }

    func needsRollback(_ h: Journal.HostRow) -> Bool {
        switch h.state {
        case .staged, .rebooting, .up, .verified, .soaking, .healthy, .committed, .rollingBack, .rollbackFailed: return true
        case .failed: return h.releaseBefore != nil && (plan.bootloader != .grub || h.grubEntryBefore != nil)
        default: return false
        }
    }

    func interrupt() throws -> RolloutOutcome {
        if leaseLost {
            say(nil, "STOPPING: this process lost the driver lease (another process took the rollout over); nothing more is done here", problem: true)
            return .interrupted
        }
        try journal.setRolloutState(rolloutID, .interrupted, note: "stopped by signal or request; resume with: rollctl rollout resume \(rolloutID)")
        say(nil, "interrupted: the journal is consistent; resume with `rollctl rollout resume \(rolloutID)`", problem: true)
        return .interrupted
    }

    // MARK: - host steps
    //
    // Each step journals its intent, acts, and journals the outcome. A failure on the host
    // fails the host (journaled); a failure to journal is thrown: the run stops
    // (`stopBlind`) rather than go on without a record.

    /// pending → checked: reachable, the host's lease (no other rollout, from any journal,
    /// holds it), current release and boot id, the running kernel's boot entry (what
    /// rollback restores), free space on /boot.
    func check(_ name: String) async throws {
        guard let h = try journal.host(rolloutID, name), h.state == .pending else { return }
        do {
            let host = await connections.host(name)
            let facts = try await HostFacts.read(from: host, timeout: .seconds(20))
            guard let release = facts.release, let bootID = facts.bootID else {
                return try await fail(name, "cannot read the kernel release or boot id")
            }
            if release == plan.kernel.release {
                try await journal.move(rolloutID, host: name, to: .checked, set: ["release_before": release, "boot_id_before": bootID])
                try await journal.move(rolloutID, host: name, to: .skipped, reason: "already runs \(release)")
                return say(name, "skipped: already runs \(release)")
            }
            guard try await takeHostLease(name, host) else { return }
            var oldEntry: String? = nil
            if plan.bootloader == .grub {
                let cfg = try await mustRun(host, HostCommands.readGrubConfig, "read GRUB config")
                guard let entry = GrubMenu.parse(cfg).entry(forRelease: release)?.titlePath else {
                    return try await fail(name, "the running kernel \(release) has no entry in /boot/grub/grub.cfg: rollback could not boot it")
                }
                oldEntry = entry
            }
            let free = try await mustRun(host, HostCommands.bootFree, "check /boot space")
            if let bytes = UInt64(free.trimmed), bytes < plan.kernel.minBootFreeBytes {
                return try await fail(name, "/boot has \(Quantity.formatBytes(bytes)) free, the plan needs \(Quantity.formatBytes(plan.kernel.minBootFreeBytes))")
            }
            try await journal.move(rolloutID, host: name, to: .checked,
                                   set: ["release_before": release, "boot_id_before": bootID, "grub_entry_before": oldEntry])
        } catch where !Self.isJournalFailure(error) {
            try await fail(name, describe(error))
        }
    }

    /// Takes (or renews) the host's own lease. False (and the host failed, nothing
    /// changed on it) when another rollout's live lease holds it.
    func takeHostLease(_ name: String, _ host: any RemoteHost) async throws -> Bool {
        let cmd = HostLease.takeCommand(rollout: rolloutID, journal: try journalIdentity(), driver: identity.description)
        switch try HostLease.parseTake(try await mustRun(host, cmd, "take the host lease \(HostLease.path)", timeout: .seconds(30))) {
        case .taken:
            return true
        case .takenOver(let old):
            try await journal.event(rolloutID, host: name, kind: "info", "host lease taken over: the lease of \(old) had expired")
            say(name, "took over the expired host lease of \(old)")
            return true
        case .held(let holder):
            try await fail(name, "held by another rollout: \(holder); nothing was changed. Wait for it, or `rollctl fleet unlock \(name) --force` if it is gone for good")
            return false
        }
    }

    /// Removes the host's lease (committed, rolled back). A host that cannot be reached
    /// now keeps it until it expires: reported, not an error.
    func releaseHostLease(_ name: String) async {
        do { try await removeHostLease(await connections.host(name)) } catch {
            say(name, "could not remove the host lease (\(describe(error))); it expires by itself", problem: true)
        }
    }

    func removeHostLease(_ host: any RemoteHost) async throws {
        _ = try await mustRun(host, HostLease.releaseCommand(rollout: rolloutID, journal: try journalIdentity()), "release the host lease", timeout: .seconds(20))
    }

    /// Releases the host leases of `names` (`rollout abort`); returns the hosts whose lease stays until it expires.
    public func releaseHostLeases(_ names: [String]) async -> [String] {
        let kept = await concurrentMap(names, limit: 32) { _, name -> String? in
            do {
                try await self.removeHostLease(await self.connections.fresh(name))
                return nil
            } catch {
                return "\(name) (\(self.describe(error)))"
            }
        }
        await connections.closeAll()
        return kept.compactMap { $0 }
    }

    func journalIdentity() throws -> String {
        try leaseBox.with { box in
            if let id = box.journalID { return id }
            let id = try journal.journalID()
            box.journalID = id
            return id
        }
    }

    /// checked/notified → staged: install, pin the old default, boot-once the new kernel.
    func stage(_ name: String) async throws {
        guard let h = try journal.host(rolloutID, name), h.state == .checked || h.state == .notified else { return }
        do {
            let host = await connections.host(name)
            guard try await takeHostLease(name, host) else { return }
            try await journal.event(rolloutID, host: name, kind: "intent", "install \(plan.kernel.release) and stage it to boot once")
            for command in HostCommands.install(plan) {
                _ = try await mustRun(host, command, "install", timeout: .seconds(1800))
            }
            switch plan.bootloader {
            case .grub:
                guard let oldEntry = h.grubEntryBefore else { return try await fail(name, "no previous GRUB entry journaled") }
                let cfg = try await mustRun(host, HostCommands.readGrubConfig, "read GRUB config")
                guard let newEntry = GrubMenu.parse(cfg).entry(forRelease: plan.kernel.release)?.titlePath else {
                    return try await fail(name, "after install, /boot/grub/grub.cfg has no entry for \(plan.kernel.release)")
                }
                for command in HostCommands.stage(plan, entryPath: newEntry, previousEntryPath: oldEntry) {
                    _ = try await mustRun(host, command, "stage boot-once")
                }
                try await journal.move(rolloutID, host: name, to: .staged, set: ["grub_entry_after": newEntry])
                say(name, "staged: \(plan.kernel.release) boots once next (\(newEntry))")
            case .custom:
                for command in HostCommands.stage(plan, entryPath: "") {
                    _ = try await mustRun(host, command, "stage boot-once")
                }
                try await journal.move(rolloutID, host: name, to: .staged)
                say(name, "staged: \(plan.kernel.release) boots once next")
            }
        } catch where !Self.isJournalFailure(error) {
            try await fail(name, describe(error))
        }
    }

    /// staged → rebooting → up → verified. A host journaled `rebooting` is judged
    /// by its boot id, never rebooted blindly again.
    func rebootAndVerify(_ name: String) async throws {
        guard var h = try journal.host(rolloutID, name) else { return }
        do {
            if h.state == .staged {
                // The last moment to stop before something a customer notices.
                guard leaseHeld(), !stopping() else { return }
                let host = await connections.host(name)
                guard try await takeHostLease(name, host) else { return }
                let bootID = try await mustRun(host, "cat /proc/sys/kernel/random/boot_id", "read boot id", timeout: MaintenanceWindow.commandAllowance).trimmed
                // Intent first: if we die after this line, resume compares boot ids.
                try await journal.move(rolloutID, host: name, to: .rebooting, message: "staged → rebooting (intent: \(plan.reboot.command))",
                                       set: ["boot_id_before": bootID], countsReboot: true)
                h.bootIDBefore = bootID
                h.state = .rebooting
                try await sendReboot(host, name)
            } else if h.state == .rebooting {
                // Resumed: did the reboot happen?
                var now: String?
                do { now = try await probeBootID(name, timeout: .seconds(5)) } catch let e where Self.isPermanent(e) {
                    return try await fail(name, "cannot reach it after the reboot: \(describe(e))")
                } catch {
                    now = nil
                }
                switch RebootProgress.judge(bootIDBefore: h.bootIDBefore, bootIDNow: now) {
                case .rebooted: break
                case .notYet:
                    // The reboot may have been sent just before the crash, with the host not down
                    // yet: give it a grace period before sending it again.
                    let grace = min(Duration.seconds(20), plan.reboot.timeout / 4)
                    say(name, "resume: same boot id as before the reboot — waiting up to \(PlanFormat.duration(grace)) for it to go down")
                    switch await waitForNewBoot(name, before: h.bootIDBefore, within: grace) {
                    case .newBoot: break
                    case .refused(let why): return try await fail(name, why)
                    case .timedOut:
                        guard leaseHeld(), !stopping() else { return }
                        say(name, "resume: still the same boot — sending the reboot again")
                        try await journal.event(rolloutID, host: name, kind: "intent", "reboot re-sent on resume (boot id unchanged after \(PlanFormat.duration(grace)))")
                        try await journal.move(rolloutID, host: name, to: .rebooting, countsReboot: true)
                        try await sendReboot(await connections.host(name), name)
                    }
                case .unknown: say(name, "resume: host unreachable — waiting for it to come back")
                }
            }
            if h.state == .rebooting {
                switch await waitForNewBoot(name, before: h.bootIDBefore) {
                case .newBoot(let newBoot):
                    try await journal.move(rolloutID, host: name, to: .up, set: ["boot_id_after": newBoot])
                    h.state = .up
                case .refused(let why):
                    return try await fail(name, why)
                case .timedOut:
                    return try await fail(name, "did not come back with a new boot id within \(PlanFormat.duration(plan.reboot.timeout))")
                }
            }
            if h.state == .up {
                let host = await connections.host(name)
                let release = try await mustRun(host, "cat /proc/sys/kernel/osrelease", "read release", timeout: MaintenanceWindow.commandAllowance).trimmed
                guard release == plan.kernel.release else {
                    try await journal.move(rolloutID, host: name, to: .failed, reason: "booted \(release), expected \(plan.kernel.release) (GRUB fell back to the default: the new kernel did not boot, or the entry was wrong)",
                                           set: ["release_after": release])
                    return say(name, "FAILED: booted \(release), expected \(plan.kernel.release)", problem: true)
                }
                try await journal.move(rolloutID, host: name, to: .verified, set: ["release_after": release])
                say(name, "up on \(release) (new boot id)")
            }
        } catch where !Self.isJournalFailure(error) {
            try await fail(name, describe(error))
        }
    }

    func sendReboot(_ host: any RemoteHost, _ name: String) async throws {
        do {
            _ = try await host.run(plan.reboot.command, timeout: .seconds(15))
        } catch let e as SSHError where e.code == .connectionLost || e.code == .commandTimeout {
            // Expected: the connection drops as the host goes down.
        } catch {
            say(name, "reboot command: \(describe(error)) — waiting for a new boot id anyway", problem: true)
        }
        await connections.drop(name)
        try await journal.event(rolloutID, host: name, kind: "outcome", "reboot command sent")
        say(name, "rebooting")
    }

    func probeBootID(_ name: String, timeout: Duration) async throws -> String {
        let host = await connections.fresh(name)
        return try await mustRun(host, "cat /proc/sys/kernel/random/boot_id", "read boot id", timeout: timeout).trimmed
    }

    /// The journal could not be read or written (or refused a transition): not the host's
    /// failure — the run stops (`stopBlind`) rather than journal guesses.
    static func isJournalFailure(_ error: Error) -> Bool {
        error is JournalError || error is DatabaseError || error is StepAbort
    }

    /// An SSH failure that waiting cannot mend: the host's key changed or is unknown
    /// (under `strict`), known_hosts is unreadable, or authentication was refused.
    static func isPermanent(_ error: Error) -> Bool {
        guard let e = error as? SSHError else { return false }
        switch e.code {
        case .hostKeyMismatch, .hostKeyUnknown, .knownHostsError, .authFailed: return true
        default: return false
        }
    }

    enum BootWait: Equatable {
        case newBoot(String)
        case timedOut
        /// A permanent SSH error: waiting longer cannot help.
        case refused(String)
    }

    /// Polls with backoff until the host answers with a boot id different from `before`.
    /// Transient failures (refused, reset, timeout) are what a rebooting host shows and are
    /// retried; a permanent one (a changed host key, auth refused) ends the wait at once.
    func waitForNewBoot(_ name: String, before: String?, within limit: Duration? = nil) async -> BootWait {
        let deadline = ContinuousClock.now + (limit ?? plan.reboot.timeout)
        if limit == nil { try? await Task.sleep(for: plan.reboot.settle) }
        var delay = Duration.milliseconds(500)
        while ContinuousClock.now < deadline {
            do {
                let id = try await probeBootID(name, timeout: .seconds(5))
                if id != before { return .newBoot(id) }
            } catch where Self.isPermanent(error) {
                await connections.drop(name)
                return .refused("after the reboot: \(describe(error)) — not retried (a permanent SSH error: the host key changed or is unknown, or login was refused)")
            } catch {}
            await connections.drop(name)
            try? await Task.sleep(for: delay)
            delay = min(delay * 2, .seconds(5))
        }
        return .timedOut
    }

    /// A connection to a host that may be down (a rollback right after a failed boot):
    /// retried with the reboot wait's backoff up to the reboot timeout; a permanent SSH
    /// error is thrown at once.
    func reachable(_ name: String) async throws -> any RemoteHost {
        let deadline = ContinuousClock.now + plan.reboot.timeout
        var delay = Duration.milliseconds(500)
        var said = false
        while true {
            let host = await connections.fresh(name)
            do {
                _ = try await mustRun(host, "true", "reach the host", timeout: .seconds(20))
                return host
            } catch where !Self.isPermanent(error) && ContinuousClock.now + delay < deadline {
                if !said {
                    say(name, "unreachable (\(describe(error))) — waiting up to \(PlanFormat.duration(plan.reboot.timeout)) for it to come back")
                    said = true
                }
                await connections.drop(name)
                try? await Task.sleep(for: delay)
                delay = min(delay * 2, .seconds(5))
            }
        }
    }

    /// verified → soaking → healthy | failed, for the wave's hosts together.
    func gate(_ names: [String], wave: Int) async throws -> WaveGateReport? {
        try journal.move(rolloutID, hosts: names, to: .soaking)
        var hosts: [GateHost] = []
        for name in names {
            let h = await connections.host(name)
            let address = await connections.address(name)
            hosts.append(GateHost(reader: h, address: address, expectedRelease: plan.kernel.release))
        }
        say(nil, "wave \(wave): soaking \(names.count) host\(names.count == 1 ? "" : "s") for \(PlanFormat.duration(plan.gate.soak)) (sample every \(PlanFormat.duration(plan.gate.interval)))")
        let runner = try GateRunner(settings: plan.gate)
        let log = self.log
        let gateHosts = hosts
        // A stop request ends the soak at once: the hosts stay `soaking` and a resume
        // runs the gate again from the start (a cut-short soak is no evidence).
        let finished: WaveGateReport? = await withTaskGroup(of: WaveGateReport?.self) { group in
            group.addTask {
                await runner.run(gateHosts) { event in
                    if case .hostDecided(let r) = event {
                        log(RolloutLogLine(host: r.host, message: "gate \(r.verdict.rawValue)" + (r.reasons.first.map { ": \($0.summary)" } ?? ""), isProblem: r.verdict != .pass))
                    }
                }
            }
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
        // A driver that lost its lease during the soak (another took the rollout over) writes nothing.
        guard let report = finished, !leaseLost else { return nil }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        try journal.saveGateResults(rolloutID, wave: wave, try report.hosts.map { r in
            let json = String(decoding: try encoder.encode(r), as: UTF8.self)
            let why = r.reasons.map(\.summary).joined(separator: "; ")
            let cut = r.verdict == .inconclusive && r.end == .stoppedWithWave
            return (r.host, r.verdict.rawValue, json, r.verdict == .pass ? .healthy : .failed,
                    r.verdict == .pass ? nil : cut ? "gate inconclusive: soak cut short when another host of the wave failed (this host did not fail)"
                                              : "gate \(r.verdict.rawValue): \(why.isEmpty ? r.end.rawValue : why)")
        })
        // The wave row keeps the verdict and who failed; every host's evidence is in gate_report.
        struct Summary: Encodable { var verdict: String; var passed: Int; var failed: [String]; var inconclusive: [String] }
        let summary = Summary(verdict: report.verdict.rawValue, passed: report.passed.count, failed: report.failed, inconclusive: report.inconclusive)
        let waveJSON = String(decoding: try encoder.encode(summary), as: UTF8.self)
        try journal.setWave(rolloutID, wave, state: .running, verdict: report.verdict.rawValue, report: waveJSON)
        if report.verdict != .pass {
            for r in report.hosts where r.verdict != .pass {
                say(r.host, "gate evidence:\n" + r.render().split(separator: "\n").map { "    " + $0 }.joined(separator: "\n"), problem: true)
            }
        }
        return report
    }

    /// healthy → committed: the new kernel becomes the saved default; the host's locks go.
    func commit(_ name: String) async throws {
        guard let h = try journal.host(rolloutID, name), h.state == .healthy else { return }
        do {
            try await journal.event(rolloutID, host: name, kind: "intent", "make \(plan.kernel.release) the default")
            let host = await connections.host(name)
            if plan.bootloader == .grub && h.grubEntryAfter == nil {
                return try await fail(name, "no GRUB entry journaled for \(plan.kernel.release)")
            }
            for command in HostCommands.commit(plan, entryPath: h.grubEntryAfter ?? "") {
                _ = try await mustRun(host, command, "make the new kernel the default")
            }
            try await journal.move(rolloutID, host: name, to: .committed)
            say(name, "committed: \(plan.kernel.release) is the default")
        } catch where !Self.isJournalFailure(error) {
            return try await fail(name, describe(error))
        }
        try await journal.releaseLock(rolloutID: rolloutID, host: name)
        await releaseHostLease(name)
    }

    /// Back to the kernel the host ran before: restore the default, clear the
    /// one-shot entry, reboot if it runs anything else, verify the old release.
    /// A host that is down (its new kernel hung) is waited for up to the reboot timeout;
    /// one found already on its old kernel with the old default is simply marked rolled back.
    func rollback(_ name: String) async throws {
        guard var h = try journal.host(rolloutID, name), needsRollback(h) else { return }
        // What went wrong first stays beside whatever the rollback meets.
        let original = h.state == .failed ? h.reason : h.state == .rollbackFailed ? h.lastError : nil
        func failed(_ why: String) async throws {
            try await journal.move(rolloutID, host: name, to: .rollbackFailed,
                                   reason: "rollback: \(why)" + (original.map { " (it had failed: \($0))" } ?? ""),
                                   set: original.map { ["last_error": $0] } ?? [:])
            say(name, "ROLLBACK FAILED: \(why)", problem: true)
        }
        guard let oldRelease = h.releaseBefore, plan.bootloader != .grub || h.grubEntryBefore != nil else {
            try await journal.move(rolloutID, host: name, to: .rollingBack)
            return try await failed("no previous kernel journaled")
        }
        if h.state != .rollingBack {
            try await journal.move(rolloutID, host: name, to: .rollingBack, message: "\(h.state.rawValue) → rolling_back (intent: default back to \(oldRelease))")
            h.state = .rollingBack
        }
        do {
            let host = try await reachable(name)
            guard try await takeHostLease(name, host) else {
                // takeHostLease failed the host: a rollback never touches another rollout's host.
                return
            }
            if plan.bootloader == .grub { _ = try? await host.run(HostCommands.clearOneShot, timeout: .seconds(30)) }
            for command in HostCommands.restoreDefault(plan, previousRelease: oldRelease, previousEntryPath: h.grubEntryBefore) {
                _ = try await mustRun(host, command, "restore the previous default")
            }
            let running = try await mustRun(host, "cat /proc/sys/kernel/osrelease", "read release").trimmed
            if running != oldRelease {
                let bootID = try await mustRun(host, "cat /proc/sys/kernel/random/boot_id", "read boot id").trimmed
                try await journal.move(rolloutID, host: name, to: .rollingBack, message: "rolling_back (intent: reboot into \(oldRelease))",
                                       set: ["boot_id_before": bootID], countsReboot: true)
                try await sendReboot(host, name)
                switch await waitForNewBoot(name, before: bootID) {
                case .newBoot: break
                case .refused(let why): return try await failed(why)
                case .timedOut: return try await failed("did not come back within \(PlanFormat.duration(plan.reboot.timeout)) after the rollback reboot")
                }
                let after = try await mustRun(await connections.host(name), "cat /proc/sys/kernel/osrelease", "read release").trimmed
                guard after == oldRelease else { return try await failed("booted \(after) after rollback, expected \(oldRelease)") }
            }
            try await journal.move(rolloutID, host: name, to: .rolledBack, message: "rolled_back: runs \(oldRelease) again, default restored")
            say(name, "rolled back: runs \(oldRelease), default restored")
        } catch where !Self.isJournalFailure(error) {
            return try await failed(describe(error))
        }
        try await journal.releaseLock(rolloutID: rolloutID, host: name)
        await releaseHostLease(name)
    }

    // MARK: - helpers

    func fail(_ name: String, _ reason: String) async throws {
        guard let h = try journal.host(rolloutID, name), h.state.canMove(to: .failed), h.state != .failed else { return }
        try await journal.move(rolloutID, host: name, to: .failed, reason: reason, set: ["last_error": reason])
        say(name, "FAILED: \(reason)", problem: true)
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

    func say(_ host: String?, _ message: String, problem: Bool = false) {
        log(RolloutLogLine(host: host, message: message, isProblem: problem))
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

/// A host the orchestrator drives: commands through its shell (`HostReader`) and a
/// connection it can drop (after a reboot). `SSHHost` in production.
public protocol RemoteHost: HostReader {
    func close() async
}

extension SSHHost: RemoteHost {}

/// One reusable connection per host for the whole run; dropped after a reboot.
actor Connections {
    let byName: [String: InventoryHost]
    let transport: @Sendable (InventoryHost) -> any RemoteHost
    var hosts: [String: any RemoteHost] = [:]

    init(inventory: Inventory, transport: @escaping @Sendable (InventoryHost) -> any RemoteHost) {
        self.byName = Dictionary(inventory.hosts.map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
        self.transport = transport
    }

    func address(_ name: String) -> String { byName[name]?.address ?? name }

    func host(_ name: String) -> any RemoteHost {
        if let h = hosts[name] { return h }
        return fresh(name)
    }

    func fresh(_ name: String) -> any RemoteHost {
        let h = transport(byName[name] ?? InventoryHost(name: name, address: name))
        hosts[name] = h
        return h
    }

    func drop(_ name: String) async {
        if let h = hosts.removeValue(forKey: name) { await h.close() }
    }

    func closeAll() async {
        for h in hosts.values { await h.close() }
        hosts = [:]
    }
}

/// The orchestrator's lease and the journal's identity, behind a lock.
final class LeaseBox: @unchecked Sendable {
    private let lock = NSLock()
    var lease: DriverLease?
    var journalID: String?
    func with<T>(_ body: (LeaseBox) throws -> T) rethrows -> T { lock.lock(); defer { lock.unlock() }; return try body(self) }
}
