import Foundation
import Basics
import NetIO
import SSH
import HealthGate
import RolloutConfig
import RolloutJournal
import Notices

/// Halting, interrupting and rolling back (after a failed gate, or on request).
extension Orchestrator {
    // MARK: - halt, interrupt, rollback

    func halt(reason: String, wave: Int? = nil) throws -> RolloutOutcome {
        say(nil, "HALT: \(reason)", problem: true)
        try journal.event(rolloutID, kind: .halt, reason)
        if let wave { try journal.setWave(rolloutID, wave, state: .failed) }
        try journal.setRolloutState(rolloutID, .halted, note: reason)
        return .halted(reason: reason)
    }

    /// What a halt owes after it is journaled: the known-bad record, the on_halt hooks and the
    /// plan's rollback policy, then a marker that they were done (event `outcome`, data
    /// `{"after_halt":"done"}`). Each step may run again: known-bad is recorded once, each hook
    /// is journaled (a finished one is not run again), the rollback goes by the hosts' states.
    public func finishHalt(reason: String) async throws {
        try recordKnownBad(reason: reason)
        await haltHooks(reason: reason)
        try await rollbackAfterHalt()
        await releaseCheckedHostLeases()
        try await journal.event(rolloutID, kind: .outcome, "after the halt: known-bad check, on_halt hooks and rollback policy done",
                                data: Journal.afterHaltDone)
    }

    /// After a halt: hosts only pre-checked (`checked`: nothing on them changed but their lease,
    /// e.g. the next wave's, checked during the failed wave's soak) get their host lease back, so
    /// that a new rollout can take them; a halted rollout never goes on.
    func releaseCheckedHostLeases() async {
        guard let checked = try? journal.hosts(rolloutID, in: [.checked]).map(\.name), !checked.isEmpty else { return }
        _ = await concurrentMap(checked, limit: 32) { _, name in await self.releaseHostLease(name) }
        say(nil, "released the host leases of \(checked.count) host\(checked.count == 1 ? "" : "s") checked but never changed")
    }

    /// After a halt: when the failed wave's gate failed on a host, or hosts did not boot the new
    /// kernel (another kernel came up, or none within the reboot timeout), the release is recorded
    /// as known bad with the halt's reason and those hosts. Judged from the journal's fields (gate
    /// verdicts, releases and boot ids after the reboot), not from the words of the reasons.
    public func recordKnownBad(reason: String) throws {
        guard let wave = try journal.waves(rolloutID).first(where: { $0.state == .failed })?.number else { return }
        let gateFailed = try journal.gateReports(rolloutID).filter { $0.wave == wave && $0.verdict == GateVerdict.fail.rawValue }.map(\.host)
        let release = plan.kernel.release
        let notBooted = try journal.hosts(rolloutID, wave: wave, in: [.failed]).filter { h in
            h.reboots > 0 && ((h.releaseAfter.map { $0 != release } ?? false) || h.bootIDAfter == nil)
        }.map(\.name)
        let (source, hosts): (KnownBadKernel.Source, [String]) = !gateFailed.isEmpty ? (.gate, gateFailed) : (.boot, notBooted)
        guard !hosts.isEmpty else { return }
        if try journal.recordKnownBad(release, source: source, rolloutID: rolloutID, hosts: hosts.sorted(), evidence: reason) {
            say(nil, "kernel \(release) recorded as known bad: a plan targeting it is refused unless --allow-known-bad (`rollctl kernel list`)", problem: true)
        }
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
        try await releaseFinishedHosts()
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
        } else if before?.state == .running || before?.state == .waiting || before?.state == .interrupted {
            try journal.setRolloutState(rolloutID, .halted)
        }
    }

    func needsRollback(_ h: Journal.HostRow) -> Bool {
        switch h.state {
        case .staged, .rebooting, .up, .verified, .soaking, .healthy, .committed, .rollingBack, .rollbackFailed: return true
        // A driver the journal names but this rollctl does not know: the rollback itself reports it.
        case .failed: return h.releaseBefore != nil && ((try? bootloader(h))?.entryListing == nil || h.bootEntryBefore != nil)
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
}
