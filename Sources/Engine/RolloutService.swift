import Foundation
import Logging
import RolloutConfig
import RolloutJournal
import SSH

/// The rollout use cases, as the CLI (and anything else) calls them: apply (survey →
/// plan → create → drive, with halt-then-rollback), resume, abort and rollback. The
/// service decides and acts; it prints nothing: progress goes to `log`, results come
/// back as values, and refusals are typed errors (`LeaseHeld`, `Journal.LockConflict`,
/// `RolloutService.Refusal`) for the caller to word and map to exit codes.
public struct RolloutService: Sendable {
    public let journal: Journal
    public let sshConfig: SSHConfig
    /// Set by a signal or a caller: the driver finishes the steps in flight and stops.
    public let stopRequested: @Sendable () -> Bool
    /// The engine's log: progress, problems, and (at `debug`) the hosts' dialogue.
    public let logger: Logger
    /// How hosts are reached: SSH by default; in-process hosts in the engine's tests.
    public let transport: (@Sendable (InventoryHost) -> any RemoteHost)?
    /// The driver lease's time to live (`--lease-ttl`): a driver not heard from for this long
    /// is taken over by a driver on another machine; it stops touching hosts after half of it.
    public var leaseTTL: Duration = .seconds(60)

    public init(journal: Journal, sshConfig: SSHConfig = SSHConfig(), transport: (@Sendable (InventoryHost) -> any RemoteHost)? = nil,
                stopRequested: @escaping @Sendable () -> Bool = { false },
                logger: Logger = Logger(label: "rollctl", factory: { _ in SwiftLogNoOpLogHandler() })) {
        self.journal = journal
        self.sshConfig = sshConfig
        self.transport = transport
        self.stopRequested = stopRequested
        self.logger = logger
    }

    /// Why the service will not do what was asked; nothing was changed.
    public enum Refusal: Error, Sendable, Equatable, CustomStringConvertible {
        /// `resume` of a halted rollout: fix the cause and start anew, or roll it back.
        case halted(id: String, note: String?)
        /// `abort` of a rollout that ended as intended (completed, rolled back).
        case nothingToAbort(id: String, state: RolloutState)
        /// `abort`: the driver was asked to stop and has not let go within the wait.
        case stillDriven(id: String, holder: DriverIdentity, waited: Duration)

        public var description: String {
            switch self {
            case let .halted(id, note):
                "rollout \(id) halted: \(note ?? "see rollctl rollout show \(id)"). Fix the cause and start a new rollout; `rollctl rollout rollback \(id)` undoes it."
            case let .nothingToAbort(id, state):
                "rollout \(id) is \(state.rawValue): there is nothing to abort; `rollctl rollout rollback \(id) --all` undoes it"
            case let .stillDriven(id, holder, waited):
                "\(holder) still drives rollout \(id) after \(PlanFormat.duration(waited)); it was asked to stop — run abort again once it has"
            }
        }
    }

    // MARK: - apply

    /// A rollout journaled by `create`, ready to drive.
    public struct Created: Sendable {
        public let orchestrator: Orchestrator
        public let layout: RolloutLayout
        public var id: String { orchestrator.rolloutID }
    }

    /// `plan apply`, first half: the read-only survey (the same the dry-run makes: current
    /// kernels and reachability decide the layout, boot files each host's bootloader), the waves,
    /// and one transaction that journals the rollout with each host's bootloader driver, takes its
    /// hosts' locks and the driver lease. Throws `Journal.LockConflict` when another rollout holds
    /// a host, `InputErrors` when `bootloader: auto` cannot tell a host's; nothing is journaled then.
    /// `startAt`: `plan apply --at` (the survey and the locks now, the first step then).
    public func create(_ loaded: LoadedPlan, parallel: Int, startAt: Date? = nil) async throws -> Created {
        let (plan, inventory, customers) = (loaded.plan, loaded.inventory, loaded.customers)
        let excluded = Set(plan.selection.exclude)
        let selected = PlanLoader.selectedHosts(plan, inventory: inventory).filter { !excluded.contains($0.name) }
        // One connection per host from the survey to the pre-check (issue 19: one handshake per
        // host per boot): the survey reads each host over the pool the orchestrator then uses.
        let pool = Connections(inventory: inventory, transport: transport ?? Orchestrator.sshTransport(inventory, sshConfig, logger))
        let survey = await PlanSurvey(inventory: inventory, parallelism: parallel, sshConfig: sshConfig, transport: transport, readsGrubSafety: false)
            .run(hosts: selected, keepingIn: pool)
        let layout = WavePlanner.plan(plan, inventory: inventory, currentRelease: survey.releases, unreachable: survey.unreachable,
                                      customers: customers)
        // Each host's bootloader driver (`bootloader: auto`: told from its files by the survey); a host
        // whose bootloader cannot be told is bad input (`InputErrors`), before any host is touched.
        let choice = BootloaderChoice.resolve(plan: plan, hosts: layout.waves.flatMap(\.hosts), detected: survey.bootloaders)
        guard choice.errors.isEmpty else {
            await pool.closeAll()
            throw InputErrors(choice.errors)
        }
        await pool.keepOnly(layout.waves.flatMap { $0.hosts.map(\.name) })
        let id: String
        do {
            id = try Orchestrator.create(plan: plan, inventory: inventory, layout: layout, journal: journal, startAt: startAt,
                                         bootloaders: choice.drivers)
        } catch {
            await pool.closeAll()
            throw error
        }
        let o = Orchestrator(rolloutID: id, plan: plan, inventory: inventory, journal: journal, sshConfig: sshConfig,
                             customers: customers, transport: transport, stopRequested: stopRequested, leaseTTL: leaseTTL, logger: logger,
                             connections: pool)
        return Created(orchestrator: o, layout: layout)
    }

    /// Drives a rollout to its end under this process's driver lease (`LeaseHeld` when
    /// another live process holds it): on a halt, the hosts are rolled back as the plan's
    /// policy says before this returns. The lease is released whatever happens.
    public func drive(_ o: Orchestrator) async throws -> RolloutOutcome {
        defer { o.releaseLease() }
        try o.takeLease()
        let outcome = try await o.run()
        if case .halted(let reason) = outcome { try await o.finishHalt(reason: reason) }
        return outcome
    }

    // MARK: - resume

    /// An orchestrator for a journaled rollout, from the plan text stored with it (not the
    /// file as it is now); the inventory, ssh_config and customers files are read anew.
    public func reopen(_ r: Journal.RolloutRow) throws -> Orchestrator {
        let plan = try PlanLoader.parse(text: r.planText, path: r.planPath, checkFiles: false)
        let inventory = try Inventory.load(path: plan.inventoryPath)
        try inventory.checkSSHConfig(sshConfig, hosts: inventory.hosts)
        let customers = try plan.notify.map { try Customers.load(path: $0.customersPath, inventory: inventory) }
        return Orchestrator(rolloutID: r.id, plan: plan, inventory: inventory, journal: journal, sshConfig: sshConfig,
                            customers: customers, transport: transport, stopRequested: stopRequested, leaseTTL: leaseTTL, logger: logger)
    }

    public enum Resumption: Sendable {
        /// The rollout is over; notices an earlier run owed were delivered.
        case over(RolloutState)
        /// It is ready to drive (`drive`); `previous` is the state it was found in.
        case ready(Orchestrator, previous: Journal.RolloutRow)
    }

    /// `rollout resume`: refused (`LeaseHeld`) while another live process drives it, and
    /// (`Refusal.halted`) when it halted — after finishing what the halt owes when its driver
    /// died before it did (known-bad, on_halt hooks, the rollback policy); an ended rollout
    /// only gets its owed notices.
    public func resume(_ r: Journal.RolloutRow) async throws -> Resumption {
        if let lease = r.liveDriver { throw LeaseHeld(rolloutID: r.id, lease: lease) }
        if r.state.isOver {
            let o = try reopen(r)
            defer { o.releaseLease() }
            try o.takeLease()
            try await o.deliverOwedNotices()
            return .over(r.state)
        }
        if r.state == .halted {
            if try journal.haltFollowUpOwed(r.id) {
                let o = try reopen(r)
                defer { o.releaseLease() }
                try o.takeLease()
                logger.warning("rollout \(r.id) halted, and its driver stopped before finishing what the halt owes: finishing it now")
                try await o.finishHalt(reason: r.note ?? "halted")
            }
            // The rollback may have ended it (`rolled_back`).
            if let now = try journal.rollout(r.id), now.state.isOver { return .over(now.state) }
            throw Refusal.halted(id: r.id, note: r.note)
        }
        return .ready(try reopen(r), previous: r)
    }

    // MARK: - abort

    public struct Abort: Sendable {
        /// How the live driver, if any, was asked to stop.
        public enum Signalled: Sendable, Equatable { case none, sigterm(DriverIdentity), journal(DriverIdentity) }
        public var signalled: Signalled
        public var alreadyAborted = false
        /// Host leases that could not be removed (they expire; `fleet unlock --force`).
        public var keptHostLeases: [String] = []
        /// Hosts left mid-rollout: `rollout rollback` restores them.
        public var changed: [String] = []
    }

    /// `rollout abort`: a live driver is asked to stop (SIGTERM to that very process when it
    /// runs here, by pid and start time; through the journal otherwise) and waited for up to
    /// `wait`; then, under the driver lease, the rollout is marked aborted, its locks and
    /// host leases released. `asked` is called once the driver was asked (for progress).
    public func abort(_ id: String, wait: Duration, by who: String,
                      asked: @Sendable (Abort.Signalled) -> Void = { _ in }) async throws -> Abort {
        guard let r = try journal.rollout(id) else { throw JournalError("no rollout '\(id)'") }
        if r.state == .completed || r.state == .rolledBack { throw Refusal.nothingToAbort(id: id, state: r.state) }
        if r.state == .aborted { return Abort(signalled: .none, alreadyAborted: true) }
        var result = Abort(signalled: .none)
        if let lease = r.liveDriver {
            try journal.requestStop(id, by: "rollout abort by \(who)")
            if lease.holder.isRunningHere() == true {
                kill(lease.holder.pid, SIGTERM)
                result.signalled = .sigterm(lease.holder)
            } else {
                result.signalled = .journal(lease.holder)
            }
            asked(result.signalled)
            let deadline = ContinuousClock.now + wait
            while ContinuousClock.now < deadline, (try journal.rollout(id))?.liveDriver != nil { try await Task.sleep(for: .milliseconds(200)) }
            if let still = try journal.rollout(id)?.liveDriver { throw Refusal.stillDriven(id: id, holder: still.holder, waited: wait) }
        }
        // The lease, so that no resume starts while the rollout is being aborted.
        let o = try reopen(try journal.rollout(id) ?? r)
        defer { o.releaseLease() }
        try o.takeLease()
        // Host leases first, then the journal's locks and state: an abort that dies half-way
        // is run again (the rollout is not aborted yet) and finds the same hosts to release.
        let hosts = try journal.hosts(id)
        let locked = Set(try journal.lockedHosts(id))
        let leased = hosts.filter { $0.wave != nil && (locked.contains($0.name) || ![.pending, .committed, .rolledBack, .skipped].contains($0.state)) }
        result.keptHostLeases = await o.releaseHostLeases(leased.map(\.name))
        // The stopped driver left its hosts' silences open (an interrupted run keeps them for a resume):
        // an aborted rollout watches no host any more, so none of them stays muted.
        try await o.expireSilences()
        try journal.setRolloutState(id, .aborted, note: "aborted by \(who)")
        try journal.releaseLocks(rolloutID: id)
        result.changed = hosts.filter { $0.state.staysLocked(releaseBefore: $0.releaseBefore) }.map(\.name)
        return result
    }

    // MARK: - rollback

    /// `rollout rollback`, first half: under the driver lease (`LeaseHeld` when another live
    /// process holds it), the hosts `selection` picks. The caller may ask a person, then
    /// calls `rollback(_:_:)` (an empty list still settles the rollout's state) and
    /// `o.releaseLease()`.
    public func rollbackTargets(_ r: Journal.RolloutRow, _ selection: Orchestrator.RollbackSelection) throws -> (Orchestrator, [Journal.HostRow]) {
        if let lease = r.liveDriver { throw LeaseHeld(rolloutID: r.id, lease: lease) }
        let o = try reopen(r)
        try o.takeLease()
        do { return (o, try o.rollbackTargets(selection)) } catch { o.releaseLease(); throw error }
    }

    /// Rolls `hosts` back; returns those whose rollback failed.
    public func rollback(_ o: Orchestrator, _ hosts: [String]) async throws -> [String] {
        try await o.rollback(hosts)
        let failed = Set(try journal.hosts(o.rolloutID).filter { $0.state == .rollbackFailed }.map(\.name))
        return hosts.filter(failed.contains)
    }
}

extension Journal.RolloutRow {
    /// The lease of another live process driving this rollout right now.
    public var liveDriver: LeaseRow? {
        guard let lease, lease.holder != DriverIdentity.current, lease.isLive() else { return nil }
        return lease
    }
}
