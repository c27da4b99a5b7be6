import Foundation
import Basics
import NetIO
import SSH
import HealthGate
import RolloutConfig
import RolloutJournal
import Notices

/// The wave loop: waves in order, each from check to commit with the gate between,
/// waiting for lead times and keeping the customers' windows.
extension Orchestrator {
    // MARK: - run

    /// Runs (or resumes) the rollout until it completes, halts or is interrupted.
    /// Takes the driver lease first (`LeaseHeld` when another process drives it).
    /// A journal that cannot be written stops the run (interrupted, resumable).
    public func run() async throws -> RolloutOutcome {
        try takeLease()
        do {
            let outcome = try await runWaves()
            // A rollout that ended (or halted: rollback reboots are not silenced) leaves no silence open.
            if outcome != .interrupted && !leaseLost { try await expireSilences() }
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
        if let lost = error as? LeaseLost {
            // Another driver took over (this one was cut from the journal for a whole TTL): it finishes.
            say(nil, "STOPPING: \(lost)", problem: true)
            return .interrupted
        }
        say(nil, "STOPPING: \(error) — no further step is taken; the journal holds what happened up to here; resume with `rollctl rollout resume \(rolloutID)`", problem: true)
        if !leaseLost {
            try? journal.setRolloutState(rolloutID, .interrupted, note: "stopped: \(error)")
        }
        return .interrupted
    }

    func runWaves() async throws -> RolloutOutcome {
        try journal.setRolloutState(rolloutID, .running, clearingNote: true)
        let waves = try journal.waves(rolloutID)
        if let notices {
            // Templates, channel settings, the password's source: fail before any host is touched.
            do { try notices.preflight() } catch {
                return try halt(reason: "customer notices cannot be sent: \(error)")
            }
            await catchUpNotices(notices)
        }
        // The packages' digests first: a file changed since the rollout began stops it here.
        try await preparePackages()
        try await releaseFinishedHosts()
        try await expireSettledSilences()
        // `plan apply --at`: nothing touches a host before then (across a resume too).
        if let at = try journal.rollout(rolloutID)?.startAt.flatMap(TimeText.parse), at > clock.now {
            if let outcome = try await waitUntil(at, "scheduled start (plan apply --at)") { return outcome }
        }
        for wave in waves {
            if wave.state == .passed { continue }
            if wave.state == .failed || wave.state == .rolledBack {
                // A halted rollout resumed: the failed wave's hosts were rolled back; halt stays explicit.
                return try halt(reason: "wave \(wave.number) failed earlier; start a new rollout after fixing the cause")
            }
            if stopping() { return try interrupt() }
            if let outcome = try await pauseBefore(wave: wave.number, state: wave.state) { return outcome }
            try journal.setWave(rolloutID, wave.number, state: .running)
            say(nil, "wave \(wave.number)/\(waves.count): starting")
            let outcome = try await runWave(wave.number, of: waves.count)
            if outcome != .completed { return outcome }
        }
        try journal.setRolloutState(rolloutID, .completed)
        try journal.releaseSettledLocks(rolloutID: rolloutID)
        // Hosts that failed within the plan's failure budget: the rollout completed, but not on them.
        let failed = try journal.hosts(rolloutID, in: [.failed, .rolledBack, .rollbackFailed]).map(\.name).sorted()
        if failed.isEmpty {
            say(nil, "rollout \(rolloutID) completed: every host committed to \(plan.kernel.release)")
        } else {
            let committed = try journal.count(rolloutID, in: [.committed], wave: 0).all
            let names = failed.prefix(10).joined(separator: ", ") + (failed.count > 10 ? ", …" : "")
            say(nil, "rollout \(rolloutID) completed: \(committed) of \(committed + failed.count) hosts committed to \(plan.kernel.release); "
                + "\(failed.count) failed within the failure budget (\(names))", problem: true)
        }
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
        let sizes = try budgetSizes(wave: number)
        // The wave's batches by host name (a wave of 50k hosts: names, not journal rows, are kept).
        let (batches, pending): ([[String]], [String]) = try {
            let all = try journal.hosts(rolloutID, wave: number)
            let batches = Dictionary(grouping: all, by: { $0.batch ?? 1 }).sorted { $0.key < $1.key }.map { $0.value.map(\.name) }
            return (batches, all.filter { $0.state == .pending }.map(\.name))
        }()
        var batchOf: [String: Int] = [:]
        for (i, b) in batches.enumerated() { for h in b { batchOf[h] = i } }

        // 1. Pre-checks for the whole wave (no disruption yet).
        try await forEach(pending, limit: 32) { name in try await self.check(name) }
        if let stop = try budgetExceeded(wave: number, sizes: sizes) { return try halt(reason: stop, wave: number) }
        if stopping() { return try interrupt() }

        // 2. Install and stage boot-once (nothing restarts yet: customers are told next,
        //    so the window they are given starts from the end of the staging).
        try await forEach(try journal.hosts(rolloutID, wave: number, in: [.checked, .notified]),
                          limit: 32) { h in try await self.stage(h.name) }
        if let stop = try budgetExceeded(wave: number, sizes: sizes) { return try halt(reason: stop, wave: number) }
        if stopping() { return try interrupt() }

        // 3. Tell the customers of the staged hosts; honour the lead time (across resume too).
        var rebootsFrom = clock.now
        if let notices {
            let toTell = try journal.hosts(rolloutID, wave: number, in: [.staged]).map(\.name)
            do {
                if !toTell.isEmpty {
                    let plan = self.plan
                    let batchIndex = batchOf
                    let times = MaintenanceWindow.batchTimes(from: clock.after(notices.spec.leadTime), count: batches.count, plan: plan)
                    rebootsFrom = try await notices.maintenance(wave: number, hosts: toTell, window: { theirs in
                        MaintenanceWindow.forCustomer(batchTimes: times, lastBatch: theirs.compactMap { batchIndex[$0] }.max() ?? 0, plan: plan)
                    })
                } else {
                    rebootsFrom = try notices.earliestReboot(wave: number)
                }
            } catch let e as NoticeError {
                return try halt(reason: "wave \(number): customer notices could not be delivered and the plan blocks on that: \(e)", wave: number)
            }
        }
        if let stopped = try await waitUntil(rebootsFrom, "wave \(number): the lead time of its notices") { return stopped }

        // 4. Reboots, batch by batch (a batch never holds two hosts of one failure domain), each
        //    inside the schedule's windows and keeping the customers' windows.
        var previousEnd = try lastBatchEnd(wave: number)
        // The hosts staged now, by batch, for what is checked before each batch (the schedule's slot,
        // the customers' windows, the alert hold): read once, not before every batch (a 50k-host wave
        // has ~1000 batches). Only this driver moves them, batch by batch, so a later batch's hosts
        // are still staged when it comes.
        var staged = plan.schedule != nil || notices != nil || plan.alertBlock != nil
            ? try StagedHosts(try journal.hosts(rolloutID, wave: number, in: [.staged]).map(\.name), batchOf: batchOf, count: batches.count,
                              customers: notices?.customers)
            : nil
        for (i, batch) in batches.enumerated() {
            // Only a schedule waits for a slot, and only for a batch that still reboots a host.
            let rebootsHere = plan.schedule != nil && !(staged?.byBatch[i].isEmpty ?? true)
            if rebootsHere, let outcome = try await waitForSlot(wave: number, batch: i, of: batches.count, after: previousEnd) { return outcome }
            if let notices, staged != nil, let outcome = try await keepWindows(notices, wave: number, batch: i, batchOf: batchOf, staged: &staged!) {
                return outcome
            }
            // A corrected notice's lead time may have moved past the slot.
            if rebootsHere, let outcome = try await waitForSlot(wave: number, batch: i, of: batches.count, after: previousEnd) { return outcome }
            if plan.alertBlock != nil, let here = staged?.byBatch[i] {
                var toReboot: [(name: String, address: String)] = []
                for name in here { toReboot.append((name, await connections.address(name))) }
                if let outcome = try await holdForAlerts(wave: number, batch: i, of: batches.count, hosts: toReboot) { return outcome }
            }
            if stopping() { return try interrupt() }
            try await forEach(batch, limit: plan.waves.maxParallel) { name in try await self.rebootAndVerify(name) }
            if rebootsHere { previousEnd = clock.now }
            if let stop = try budgetExceeded(wave: number, sizes: sizes) { return try halt(reason: stop, wave: number) }
            if stopping() { return try interrupt() }
            if let outcome = try await pauseAfterBatch(wave: number, batch: i, of: batches.count) { return outcome }
        }

        // 5–6. Soak, gate and commit; meanwhile the next wave's pre-checks run (`PrecheckAhead`).
        let ahead = try precheckAhead(after: number, of: total)
        let outcome: RolloutOutcome
        do {
            outcome = try await soakGateAndCommit(number, of: total, sizes: sizes)
        } catch {
            await ahead?.stop()
            throw error
        }
        if outcome != .completed { await ahead?.stop() }
        try await ahead?.finish()
        return outcome
    }

    /// Steps 5 and 6 of a wave: soak and gate, then commit, the wave passes and its "done" notices go.
    func soakGateAndCommit(_ number: Int, of total: Int, sizes: (wave: Int, all: Int)?) async throws -> RolloutOutcome {
        // 5. Soak and gate (hosts a resume finds verified get their post_boot hooks first). An inconclusive gate under `on_inconclusive: pause` waits for a person
        //    (also when a resume finds the wave waiting for one: the soak is not run again).
        if !plan.hooks.postBoot.isEmpty {
            try await forEach(try journal.hosts(rolloutID, wave: number, in: [.verified]).map(\.name), limit: 32) { name in
                try await self.postBootHooks(name, wave: number)
            }
            if let stop = try budgetExceeded(wave: number, sizes: sizes) { return try halt(reason: stop, wave: number) }
        }
        let ready = try journal.hosts(rolloutID, wave: number, in: [.verified, .soaking])
        if !ready.isEmpty {
            var undecided: String?
            if plan.failure.onInconclusive == .pause, let w = try journal.waves(rolloutID).first(where: { $0.number == number }),
               w.verdict == GateVerdict.inconclusive.rawValue, ready.allSatisfy({ $0.state == .soaking }) {
                undecided = "wave \(number) gate inconclusive (before this run)"
            } else {
                guard let report = try await gate(ready.map(\.name), wave: number) else { return try interrupt() }
                if report.verdict == .inconclusive && plan.failure.onInconclusive == .pause {
                    undecided = Self.gateHaltReason(report, wave: number)
                } else if !report.verdict.allowsProgress {
                    return try halt(reason: Self.gateHaltReason(report, wave: number), wave: number)
                }
            }
            if let undecided, let outcome = try await acceptInconclusive(wave: number, undecided) { return outcome }
        }
        if let stop = try budgetExceeded(wave: number, sizes: sizes) { return try halt(reason: stop, wave: number) }

        // 6. Commit: the new kernel becomes the default, only after the gate passed.
        let healthy = try journal.hosts(rolloutID, wave: number, in: [.healthy])
        try await forEach(healthy.map(\.name), limit: 32) { name in try await self.commit(name) }
        if let stop = try budgetExceeded(wave: number, sizes: sizes) { return try halt(reason: stop, wave: number) }
        // The wave passes and its "done" notices are owed in one transaction: a crash right
        // after cannot lose them (resume delivers what is queued).
        let committed = try journal.hosts(rolloutID, wave: number, in: [.committed]).map(\.name)
        if !plan.hooks.afterCommit.isEmpty {
            try await forEach(committed, limit: 32) { name in try await self.afterCommitHooks(name, wave: number) }
            if stopping() { return try interrupt() }
        }
        try journal.setWave(rolloutID, number, state: .passed, queueing: try notices?.owed(.done, wave: number, hosts: committed) ?? [])
        say(nil, "wave \(number)/\(total): passed, \(healthy.count) host\(healthy.count == 1 ? "" : "s") committed")
        if let notices {
            do { try await notices.deliverUndelivered(wave: number, kinds: [.done]) } catch {
                say(nil, "wave \(number): 'done' notices not all delivered: \(error); the next resume retries them", problem: true)
            }
        }
        return .completed
    }

    /// The next wave's pre-checks (`check`: read-only but for each host's lease), run while this
    /// wave soaks, so that the next wave starts with its hosts checked instead of spending that
    /// time after the gate. Not when a person is to decide before the next wave (`pause_after`, a
    /// pause asked for), nor for a next wave that already started. Its failures are the next
    /// wave's (its budget counts them when it starts; this wave's budget counts only waves up to
    /// this one). A halt stops it (checks under way finish) and `finishHalt` releases the leases
    /// of hosts left `checked`.
    func precheckAhead(after number: Int, of total: Int) throws -> PrecheckAhead? {
        guard number < total, !stopping(), !plan.waves.pauseAfter.contains(number), try journal.pauseState(rolloutID).requested == nil,
              try journal.waves(rolloutID).first(where: { $0.number == number + 1 })?.state == .pending else { return nil }
        let pending = try journal.hosts(rolloutID, wave: number + 1, in: [.pending]).map(\.name)
        guard !pending.isEmpty else { return nil }
        say(nil, "wave \(number + 1)/\(total): pre-checking \(pending.count) host\(pending.count == 1 ? "" : "s") while wave \(number) soaks")
        let stop = PrecheckAhead.Flag()
        let task = Task {
            try await self.forEach(pending, limit: 32) { name in
                if stop.isSet || self.stopping() { return }
                try await self.check(name)
            }
        }
        return PrecheckAhead(task: task, flag: stop)
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

    /// Sleeps until `instant`, ending early on a stop (returns `.interrupted` then). The rollout is
    /// `waiting` meanwhile, its note saying for what and until when.
    func waitUntil(_ instant: Date, _ what: String) async throws -> RolloutOutcome? {
        let wait = instant.timeIntervalSince(clock.now)
        guard wait > 0 else { return nil }
        let local = plan.schedule.map { " = \($0.local(instant))" } ?? ""
        say(nil, "\(what) — until \(TimeText.iso(instant))\(local) (in \(PlanFormat.duration(.seconds(wait.rounded(.up)))))")
        try journal.setRolloutState(rolloutID, .waiting, note: "\(what): until \(TimeText.iso(instant))\(local)")
        if await sleepUnlessStopped(until: instant) { return try interrupt() }
        try journal.setRolloutState(rolloutID, .running, clearingNote: true)
        return nil
    }

    /// Before a batch that reboots hosts: waits for the schedule's next slot that holds it — inside
    /// a window, its allowance ending by the window's end minus the cutoff, and `min_batch_interval`
    /// after the previous batch of the wave ended.
    func waitForSlot(wave: Int, batch: Int, of total: Int, after previousEnd: Date?) async throws -> RolloutOutcome? {
        guard let schedule = plan.schedule else { return nil }
        let now = clock.now
        let spaced = previousEnd.map { $0.addingTimeInterval(schedule.minBatchInterval.seconds) } ?? now
        let notBefore = max(now, spaced)
        guard let start = schedule.slot(notBefore: notBefore, length: MaintenanceWindow.batchAllowance(plan)) else {
            return try halt(reason: "wave \(wave): no maintenance window in the next two weeks can hold a batch (\(schedule.summary))", wave: wave)
        }
        let why = start > notBefore ? "the maintenance window (\(schedule.summary))" : "\(PlanFormat.duration(schedule.minBatchInterval)) between batches"
        return try await waitUntil(start, "wave \(wave), batch \(batch + 1)/\(total): waiting for \(why)")
    }

    /// When the wave's last batch that rebooted ended, as the journal knows it (a resumed run keeps
    /// `min_batch_interval` too): the latest change of a host that came up and waits for the soak.
    func lastBatchEnd(wave: Int) throws -> Date? {
        guard let schedule = plan.schedule, schedule.minBatchInterval > .zero else { return nil }
        return try journal.hosts(rolloutID, wave: wave, in: [.up, .verified]).compactMap { TimeText.parse($0.updatedAt) }.max()
    }

    /// Before batch `batch`: every customer of its hosts must still be inside the window
    /// they were told, with room for their remaining batches. Customers whose window can no
    /// longer hold (a resume long after, slow batches) get one corrected notice, and the
    /// batch waits its lead time; a second break is reported, never silent.
    func keepWindows(_ notices: NoticeSender, wave: Int, batch: Int, batchOf: [String: Int], staged: inout StagedHosts) async throws -> RolloutOutcome? {
        let now = clock.now
        let here = staged.byBatch[batch]
        guard !here.isEmpty else { return nil }
        let promised = try staged.promised ?? notices.promisedWindows(wave: wave)
        staged.promised = promised
        // A customer of this batch: their last batch among the hosts still to reboot is their last among all.
        let lastBatch = staged.lastBatch
        var broken: Set<String> = []
        let customersHere = notices.customers.customers(onHosts: here)
        // The remaining batches laid out once, as far as the furthest customer of this batch needs.
        let furthest = customersHere.map { (lastBatch[$0.id] ?? batch) - batch + 1 }.max() ?? 1
        let remainingTimes = MaintenanceWindow.batchTimes(from: now, count: furthest, plan: plan)
        for c in customersHere {
            guard let w = promised[c.id] else { continue }  // never told (skipped by on_failure: skip)
            if !w.holds(batchTimes: remainingTimes, batchesLeft: (lastBatch[c.id] ?? batch) - batch + 1, plan: plan) { broken.insert(c.id) }
        }
        guard !broken.isEmpty else { return nil }
        let already = try notices.rescheduledCustomers(wave: wave)
        let again = broken.intersection(already)
        if !again.isEmpty {
            let text = "wave \(wave): the corrected window of \(again.sorted().joined(separator: ", ")) cannot hold either; they were told once already — rebooting anyway"
            say(nil, text, problem: true)
            try await journal.event(rolloutID, kind: .info, text)
        }
        let correct = broken.subtracting(already)
        guard !correct.isEmpty else { return nil }
        say(nil, "wave \(wave): the window told to \(correct.count) customer\(correct.count == 1 ? "" : "s") cannot hold any more; sending one corrected notice")
        let plan = self.plan
        let toReboot = staged.byBatch[batch...].flatMap { $0 }
        let remaining = (toReboot.compactMap { batchOf[$0] }.max() ?? batch) - batch + 1
        let times = MaintenanceWindow.batchTimes(from: clock.after(notices.spec.leadTime), count: remaining, plan: plan)
        // The corrected windows are the promised ones from here on.
        staged.promised = nil
        let start: Date
        do {
            start = try await notices.reschedule(wave: wave, hosts: toReboot, only: correct, window: { theirs in
                MaintenanceWindow.forCustomer(batchTimes: times, lastBatch: (theirs.compactMap { batchOf[$0] }.max() ?? batch) - batch, plan: plan)
            })
        } catch let e as NoticeError {
            return try halt(reason: "wave \(wave): corrected notices could not be delivered and the plan blocks on that: \(e)", wave: wave)
        }
        return try await waitUntil(start, "wave \(wave): lead time of the corrected notices")
    }

    /// The wave's and the rollout's numbers of hosts to roll, which share budgets are of: counted
    /// once per wave (they never change), and only when a budget is a share.
    func budgetSizes(wave: Int) throws -> (wave: Int, all: Int)? {
        let f = plan.failure
        let shares = [f.maxFailedHostsPerWave, f.maxFailedHostsTotal, f.maxUnhealthyHosts].contains { if case .share = $0 { true } else { false } }
        return shares ? try journal.count(rolloutID, in: HostState.allCases.filter { $0 != .skipped }, wave: wave) : nil
    }

    /// Failures of this wave and of the whole rollout against the plan's budgets: more failed hosts
    /// than a budget tolerates halts. Shares are of the wave's hosts, of the rollout's hosts (`sizes`).
    func budgetExceeded(wave: Int, sizes: (wave: Int, all: Int)?) throws -> String? {
        let f = plan.failure
        // Counted in SQL: this runs after every batch, and a batch is a few hosts of many.
        let failedStates: [HostState] = [.failed, .rollingBack, .rolledBack, .rollbackFailed]
        let failed = try journal.count(rolloutID, in: failedStates, wave: wave, throughWave: wave)
        let perWave = f.maxFailedHostsPerWave.limit(of: sizes?.wave ?? 0), total = f.maxFailedHostsTotal.limit(of: sizes?.all ?? 0)
        func budget(_ b: FailureBudget, _ limit: Int) -> String { if case .share = b { return "\(b) = \(limit)" } else { return "\(limit)" } }
        if failed.wave > perWave {
            let failedHere = try journal.hosts(rolloutID, wave: wave, in: failedStates)
            let detail = failedHere.map { "\($0.name): \($0.reason ?? "failed")" }.joined(separator: "; ")
            return "wave \(wave): \(failedHere.count) host\(failedHere.count == 1 ? "" : "s") failed (budget \(budget(f.maxFailedHostsPerWave, perWave))) — \(detail)"
        }
        if failed.all > total && failed.all > failed.wave {
            return "\(failed.all) hosts failed across the rollout (budget \(budget(f.maxFailedHostsTotal, total)))"
        }
        if let u = f.maxUnhealthyHosts {
            let limit = u.limit(of: sizes?.all ?? 0)
            let unhealthy = try journal.count(rolloutID, in: [.failed, .rollingBack, .rollbackFailed], wave: wave, throughWave: wave).all
            if unhealthy > limit {
                return "\(unhealthy) hosts failed or rolling back at once (max_unhealthy_hosts \(budget(u, limit)))"
            }
        }
        return nil
    }
}

/// A wave's staged hosts by batch when its reboots begin, for the checks before each batch (whether
/// it still reboots a host, the alert hold) and what keeping the customers' windows needs of them
/// (`Orchestrator.keepWindows`): read and worked out once per wave, not per batch.
struct StagedHosts {
    /// Batch i's staged hosts.
    var byBatch: [[String]]
    /// Each customer's last batch among them.
    var lastBatch: [String: Int] = [:]
    /// The windows the wave's customers were told (cached until a corrected notice changes them).
    var promised: [String: MaintenanceWindow]?

    init(_ names: [String], batchOf: [String: Int], count: Int, customers: Customers?) {
        byBatch = Array(repeating: [], count: count)
        for name in names {
            let b = batchOf[name] ?? 0
            if b < count { byBatch[b].append(name) }
            for c in customers?.customers(onHost: name) ?? [] { lastBatch[c.id] = max(lastBatch[c.id] ?? b, b) }
        }
    }
}

/// The next wave's pre-checks under way (`Orchestrator.precheckAhead`).
struct PrecheckAhead: Sendable {
    final class Flag: @unchecked Sendable {
        private let lock = NSLock()
        private var set = false
        var isSet: Bool { lock.withLock { set } }
        func raise() { lock.withLock { set = true } }
    }
    let task: Task<Void, any Error>
    let flag: Flag

    /// Waits for the pre-checks; a journal failure in one of them is thrown (the run stops).
    func finish() async throws { try await task.value }

    /// No new pre-check starts; the ones under way finish. Their errors are left to the caller's own.
    func stop() async {
        flag.raise()
        _ = try? await task.value
    }
}
