import CLibSSH2
import Foundation
import HealthGate
import SSH

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

    /// `transport` makes the connection to a host; the default is SSH (`SSHHost`).
    /// bench-core passes in-process hosts to measure the orchestration core alone.
    public init(rolloutID: String, plan: Plan, inventory: Inventory, journal: Journal, sshConfig: SSHConfig = SSHConfig(),
                customers: Customers? = nil,
                transport: (@Sendable (InventoryHost) -> any RemoteHost)? = nil,
                stopRequested: @escaping @Sendable () -> Bool = { false },
                log: @escaping @Sendable (RolloutLogLine) -> Void = { _ in }) {
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

    /// Journals a new rollout for `layout` and takes the hosts' locks.
    /// Throws `Journal.LockConflict` when another rollout holds any of them.
    public static func create(plan: Plan, inventory: Inventory, layout: RolloutLayout, journal: Journal) throws -> String {
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
        try journal.createRollout(id: id, plan: plan, planHash: sha256Hex(plan.text), hosts: rows, waves: layout.waves.count, pid: getpid())
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

    // MARK: - run

    /// Runs (or resumes) the rollout until it completes, halts or is interrupted.
    public func run() async throws -> RolloutOutcome {
        do {
            let outcome = try await runWaves()
            await connections.closeAll()
            return outcome
        } catch {
            await connections.closeAll()
            throw error
        }
    }

    func runWaves() async throws -> RolloutOutcome {
        try journal.claim(rolloutID: rolloutID, pid: getpid())
        let waves = try journal.waves(rolloutID)
        if let notices {
            // Templates, channel settings, the password's source: fail before any host is touched.
            do { try notices.preflight() } catch {
                return try halt(reason: "customer notices cannot be sent: \(error)", rollback: false)
            }
        }
        for wave in waves {
            if wave.state == "passed" { continue }
            if wave.state == "failed" || wave.state == "rolled_back" {
                // A halted rollout resumed: the failed wave's hosts were rolled back; halt stays explicit.
                return try halt(reason: "wave \(wave.number) failed earlier; start a new rollout after fixing the cause", rollback: false)
            }
            if stopRequested() { return try interrupt() }
            try journal.setWave(rolloutID, wave.number, state: "running")
            say(nil, "wave \(wave.number)/\(waves.count): starting")
            let outcome = try await runWave(wave.number, of: waves.count)
            if outcome != .completed { return outcome }
        }
        try journal.setRolloutState(rolloutID, "completed", clearPID: true)
        try journal.releaseLocks(rolloutID: rolloutID)
        say(nil, "rollout \(rolloutID) completed: every host committed to \(plan.kernel.release)")
        return .completed
    }

    func runWave(_ number: Int, of total: Int) async throws -> RolloutOutcome {
        let all = try journal.hosts(rolloutID, wave: number)
        let batches = Dictionary(grouping: all, by: { $0.batch ?? 1 }).sorted { $0.key < $1.key }.map(\.value)

        // 1. Pre-checks for the whole wave (no disruption yet).
        await forEach(all.filter { $0.state == .pending }, limit: 32) { h in await self.check(h.name) }
        if let stop = try budgetExceeded(wave: number) { return try halt(reason: stop, wave: number) }
        if stopRequested() { return try interrupt() }

        // 2. Tell the customers before anything changes; honour the lead time (across resume too).
        var rebootsFrom = Date()
        let toNotify = try journal.hosts(rolloutID, wave: number, in: [.checked, .notified])
        if let notices, !toNotify.isEmpty {
            do {
                let window = Date().addingTimeInterval(Double((plan.reboot.timeout + plan.gate.soak).components.seconds) * Double(max(1, batches.count)))
                rebootsFrom = try await notices.maintenance(wave: number, hosts: toNotify.map(\.name), windowStart: Date(), windowEnd: window)
                for h in toNotify where h.state == .checked { try await journal.move(rolloutID, host: h.name, to: .notified) }
            } catch {
                return try halt(reason: "wave \(number): customer notices could not be delivered and the plan blocks on that: \(error)", wave: number)
            }
        } else if let notices {
            // Resumed after the notices went out: the lead time still counts from the journaled send time.
            rebootsFrom = (try? notices.earliestReboot(wave: number)) ?? Date()
        }

        // 3. Install and stage boot-once.
        await forEach(try journal.hosts(rolloutID, wave: number, in: [.checked, .notified]),
                      limit: 32) { h in await self.stage(h.name) }
        if let stop = try budgetExceeded(wave: number) { return try halt(reason: stop, wave: number) }
        if stopRequested() { return try interrupt() }
        let wait = rebootsFrom.timeIntervalSinceNow
        if wait > 0 {
            say(nil, "wave \(number): lead time — reboots start at \(rebootsFrom) (in \(Int(wait)) s)")
            while rebootsFrom.timeIntervalSinceNow > 0 {
                if stopRequested() { return try interrupt() }
                try? await Task.sleep(for: .milliseconds(Int64(min(1000, max(10, rebootsFrom.timeIntervalSinceNow * 1000)))))
            }
        }

        // 4. Reboots, batch by batch (a batch never holds two hosts of one failure domain).
        for batch in batches {
            let names = batch.map(\.name)
            await forEach(names, limit: plan.waves.maxParallel) { name in await self.rebootAndVerify(name) }
            if let stop = try budgetExceeded(wave: number) { return try halt(reason: stop, wave: number) }
            if stopRequested() { return try interrupt() }
        }

        // 5. Soak and gate.
        let ready = try journal.hosts(rolloutID, wave: number, in: [.verified, .soaking])
        if !ready.isEmpty {
            guard let report = try await gate(ready.map(\.name), wave: number) else { return try interrupt() }
            if !report.verdict.allowsProgress {
                let bad = report.failed + report.inconclusive
                return try halt(reason: "wave \(number) gate \(report.verdict.rawValue) on \(bad.joined(separator: ", "))", wave: number)
            }
        }
        if let stop = try budgetExceeded(wave: number) { return try halt(reason: stop, wave: number) }

        // 6. Commit: the new kernel becomes the default, only after the gate passed.
        let healthy = try journal.hosts(rolloutID, wave: number, in: [.healthy])
        await forEach(healthy.map(\.name), limit: 32) { name in await self.commit(name) }
        if let stop = try budgetExceeded(wave: number) { return try halt(reason: stop, wave: number) }
        try journal.setWave(rolloutID, number, state: "passed")
        say(nil, "wave \(number)/\(total): passed, \(healthy.count) host\(healthy.count == 1 ? "" : "s") committed")
        if let notices {
            let done = try journal.hosts(rolloutID, wave: number, in: [.committed]).map(\.name)
            do { try await notices.done(wave: number, hosts: done) } catch {
                say(nil, "wave \(number): 'done' notices not all delivered: \(error)", problem: true)
            }
        }
        return .completed
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

    // MARK: - halt, interrupt

    func halt(reason: String, wave: Int? = nil, rollback: Bool = true) throws -> RolloutOutcome {
        say(nil, "HALT: \(reason)", problem: true)
        try journal.event(rolloutID, kind: "halt", reason)
        if let wave { try journal.setWave(rolloutID, wave, state: "failed") }
        try journal.setRolloutState(rolloutID, "halted", note: reason)
        return .halted(reason: reason)
    }

    /// Runs the plan's rollback after a halt. Separate from `halt` so the caller
    /// awaits it (rollback reboots hosts).
    public func rollbackAfterHalt() async throws {
        let hosts = try journal.hosts(rolloutID)
        let haltedWave = try journal.waves(rolloutID).first { $0.state == "failed" }?.number
        let targets: [Journal.HostRow]
        switch plan.failure.rollback {
        case .none:
            say(nil, "rollback policy 'none': hosts are left as they are")
            targets = []
        case .wave:
            targets = hosts.filter { $0.wave == haltedWave && needsRollback($0) }
        case .all:
            targets = hosts.filter { needsRollback($0) }
        }
        if !targets.isEmpty {
            say(nil, "rolling back \(targets.count) host\(targets.count == 1 ? "" : "s") to their previous kernel: \(targets.map(\.name).joined(separator: ", "))")
            await forEach(targets.map(\.name), limit: plan.waves.maxParallel) { name in await self.rollback(name) }
            if let w = haltedWave, plan.failure.rollback != .none { try journal.setWave(rolloutID, w, state: "rolled_back") }
            if let notices {
                let back = try journal.hosts(rolloutID).filter { $0.state == .rolledBack && targets.map(\.name).contains($0.name) }
                for (wave, hosts) in Dictionary(grouping: back, by: { $0.wave ?? 0 }) {
                    do { try await notices.rolledBack(wave: wave, hosts: hosts.map(\.name)) } catch {
                        say(nil, "'rolled back' notices not all delivered: \(error)", problem: true)
                    }
                }
            }
        }
        await connections.closeAll()
        let after = try journal.hosts(rolloutID)
        let failedRollbacks = after.filter { $0.state == .rollbackFailed || $0.state == .rollingBack }
        if failedRollbacks.isEmpty {
            try journal.releaseLocks(rolloutID: rolloutID)
        } else {
            say(nil, "rollback FAILED on \(failedRollbacks.map(\.name).joined(separator: ", ")): hosts stay locked; see `rollctl rollout show \(rolloutID)`", problem: true)
        }
        try journal.setRolloutState(rolloutID, "halted", clearPID: true)
    }

    func needsRollback(_ h: Journal.HostRow) -> Bool {
        switch h.state {
        case .staged, .rebooting, .up, .verified, .soaking, .healthy, .committed, .rollingBack: return true
        case .failed: return h.releaseBefore != nil && (plan.bootloader != .grub || h.grubEntryBefore != nil)
        default: return false
        }
    }

    func interrupt() throws -> RolloutOutcome {
        try journal.setRolloutState(rolloutID, "interrupted", note: "stopped by signal; resume with: rollctl rollout resume \(rolloutID)", clearPID: true)
        say(nil, "interrupted: the journal is consistent; resume with `rollctl rollout resume \(rolloutID)`", problem: true)
        return .interrupted
    }

    // MARK: - host steps

    /// pending → checked: reachable, current release and boot id, the running kernel's
    /// boot entry (what rollback restores), free space on /boot.
    func check(_ name: String) async {
        do {
            guard let h = try journal.host(rolloutID, name), h.state == .pending else { return }
            let host = await connections.host(name)
            do {
                let facts = try await HostFacts.read(from: host, timeout: .seconds(20))
                guard let release = facts.release, let bootID = facts.bootID else {
                    return try await fail(name, "cannot read the kernel release or boot id")
                }
                if release == plan.kernel.release {
                    try await journal.move(rolloutID, host: name, to: .checked, set: ["release_before": release, "boot_id_before": bootID])
                    try await journal.move(rolloutID, host: name, to: .skipped, reason: "already runs \(release)")
                    return say(name, "skipped: already runs \(release)")
                }
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
            }
        } catch {
            try? await fail(name, describe(error))
        }
    }

    /// checked/notified → staged: install, pin the old default, boot-once the new kernel.
    func stage(_ name: String) async {
        do {
            guard let h = try journal.host(rolloutID, name), h.state == .checked || h.state == .notified else { return }
            let host = await connections.host(name)
            do {
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
            }
        } catch {
            try? await fail(name, describe(error))
        }
    }

    /// staged → rebooting → up → verified. A host journaled `rebooting` is judged
    /// by its boot id, never rebooted blindly again.
    func rebootAndVerify(_ name: String) async {
        do {
            guard var h = try journal.host(rolloutID, name) else { return }
            if h.state == .staged {
                let host = await connections.host(name)
                let bootID = try await mustRun(host, "cat /proc/sys/kernel/random/boot_id", "read boot id").trimmed
                // Intent first: if we die after this line, resume compares boot ids.
                try await journal.move(rolloutID, host: name, to: .rebooting, message: "staged → rebooting (intent: \(plan.reboot.command))",
                                 set: ["boot_id_before": bootID], countsReboot: true)
                h.bootIDBefore = bootID
                h.state = .rebooting
                await sendReboot(host, name)
            } else if h.state == .rebooting {
                // Resumed: did the reboot happen?
                let now = try? await probeBootID(name, timeout: .seconds(5))
                switch RebootProgress.judge(bootIDBefore: h.bootIDBefore, bootIDNow: now) {
                case .rebooted: break
                case .notYet:
                    // The reboot may have been sent just before the crash, with the host not down
                    // yet: give it a grace period before sending it again.
                    let grace = min(Duration.seconds(20), plan.reboot.timeout / 4)
                    say(name, "resume: same boot id as before the reboot — waiting up to \(PlanFormat.duration(grace)) for it to go down")
                    if await waitForNewBoot(name, before: h.bootIDBefore, within: grace) == nil {
                        say(name, "resume: still the same boot — sending the reboot again")
                        try await journal.event(rolloutID, host: name, kind: "intent", "reboot re-sent on resume (boot id unchanged after \(PlanFormat.duration(grace)))")
                        try await journal.move(rolloutID, host: name, to: .rebooting, countsReboot: true)
                        await sendReboot(await connections.host(name), name)
                    }
                case .unknown: say(name, "resume: host unreachable — waiting for it to come back")
                }
            }
            if h.state == .rebooting {
                guard let newBoot = await waitForNewBoot(name, before: h.bootIDBefore) else {
                    return try await fail(name, "did not come back with a new boot id within \(PlanFormat.duration(plan.reboot.timeout))")
                }
                try await journal.move(rolloutID, host: name, to: .up, set: ["boot_id_after": newBoot])
                h.state = .up
            }
            if h.state == .up {
                let host = await connections.host(name)
                let release = try await mustRun(host, "cat /proc/sys/kernel/osrelease", "read release").trimmed
                guard release == plan.kernel.release else {
                    try await journal.move(rolloutID, host: name, to: .failed, reason: "booted \(release), expected \(plan.kernel.release) (GRUB fell back to the default: the new kernel did not boot, or the entry was wrong)",
                                     set: ["release_after": release])
                    return say(name, "FAILED: booted \(release), expected \(plan.kernel.release)", problem: true)
                }
                try await journal.move(rolloutID, host: name, to: .verified, set: ["release_after": release])
                say(name, "up on \(release) (new boot id)")
            }
        } catch {
            try? await fail(name, describe(error))
        }
    }

    func sendReboot(_ host: any RemoteHost, _ name: String) async {
        do {
            _ = try await host.run(plan.reboot.command, timeout: .seconds(15))
        } catch let e as SSHError where e.code == .connectionLost || e.code == .commandTimeout {
            // Expected: the connection drops as the host goes down.
        } catch {
            say(name, "reboot command: \(describe(error)) — waiting for a new boot id anyway", problem: true)
        }
        await connections.drop(name)
        try? await journal.event(rolloutID, host: name, kind: "outcome", "reboot command sent")
        say(name, "rebooting")
    }

    func probeBootID(_ name: String, timeout: Duration) async throws -> String {
        let host = await connections.fresh(name)
        return try await mustRun(host, "cat /proc/sys/kernel/random/boot_id", "read boot id", timeout: timeout).trimmed
    }

    /// Polls with backoff until the host answers with a boot id different from `before`.
    func waitForNewBoot(_ name: String, before: String?, within limit: Duration? = nil) async -> String? {
        let deadline = ContinuousClock.now + (limit ?? plan.reboot.timeout)
        if limit == nil { try? await Task.sleep(for: plan.reboot.settle) }
        var delay = Duration.milliseconds(500)
        while ContinuousClock.now < deadline {
            if let id = try? await probeBootID(name, timeout: .seconds(5)), id != before {
                return id
            }
            await connections.drop(name)
            try? await Task.sleep(for: delay)
            delay = min(delay * 2, .seconds(5))
        }
        return nil
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
        let stop = stopRequested
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
                    if stop() { return nil }
                    try? await Task.sleep(for: .milliseconds(200))
                }
                return nil
            }
            let first = await group.next() ?? nil
            group.cancelAll()
            return first
        }
        guard let report = finished else { return nil }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        try journal.saveGateResults(rolloutID, wave: wave, report.hosts.map { r in
            let json = (try? encoder.encode(r)).map { String(decoding: $0, as: UTF8.self) } ?? "{}"
            let why = r.reasons.map(\.summary).joined(separator: "; ")
            return (r.host, r.verdict.rawValue, json, r.verdict == .pass ? .healthy : .failed,
                    r.verdict == .pass ? nil : "gate \(r.verdict.rawValue): \(why.isEmpty ? r.end.rawValue : why)")
        })
        // The wave row keeps the verdict and who failed; every host's evidence is in gate_report.
        struct Summary: Encodable { var verdict: String; var passed: Int; var failed: [String]; var inconclusive: [String] }
        let summary = Summary(verdict: report.verdict.rawValue, passed: report.passed.count, failed: report.failed, inconclusive: report.inconclusive)
        let waveJSON = (try? encoder.encode(summary)).map { String(decoding: $0, as: UTF8.self) }
        try journal.setWave(rolloutID, wave, state: "running", verdict: report.verdict.rawValue, report: waveJSON)
        if report.verdict != .pass {
            for r in report.hosts where r.verdict != .pass {
                say(r.host, "gate evidence:\n" + r.render().split(separator: "\n").map { "    " + $0 }.joined(separator: "\n"), problem: true)
            }
        }
        return report
    }

    /// healthy → committed: the new kernel becomes the saved default.
    func commit(_ name: String) async {
        do {
            guard let h = try journal.host(rolloutID, name), h.state == .healthy else { return }
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
        } catch {
            try? await fail(name, describe(error))
        }
    }

    /// Back to the kernel the host ran before: restore the default, clear the
    /// one-shot entry, reboot if it runs anything else, verify the old release.
    func rollback(_ name: String) async {
        do {
            guard var h = try journal.host(rolloutID, name), needsRollback(h) else { return }
            guard let oldRelease = h.releaseBefore, plan.bootloader != .grub || h.grubEntryBefore != nil else {
                try await journal.move(rolloutID, host: name, to: .rollingBack)
                try await journal.move(rolloutID, host: name, to: .rollbackFailed, reason: "no previous kernel journaled")
                return
            }
            if h.state != .rollingBack {
                try await journal.move(rolloutID, host: name, to: .rollingBack, message: "\(h.state.rawValue) → rolling_back (intent: default back to \(oldRelease))")
                h.state = .rollingBack
            }
            let host = await connections.fresh(name)
            if plan.bootloader == .grub { _ = try? await host.run(HostCommands.clearOneShot, timeout: .seconds(30)) }
            for command in HostCommands.restoreDefault(plan, previousRelease: oldRelease, previousEntryPath: h.grubEntryBefore) {
                _ = try await mustRun(host, command, "restore the previous default")
            }
            let running = try await mustRun(host, "cat /proc/sys/kernel/osrelease", "read release").trimmed
            if running != oldRelease {
                let bootID = try await mustRun(host, "cat /proc/sys/kernel/random/boot_id", "read boot id").trimmed
                try await journal.move(rolloutID, host: name, to: .rollingBack, message: "rolling_back (intent: reboot into \(oldRelease))",
                                 set: ["boot_id_before": bootID], countsReboot: true)
                await sendReboot(host, name)
                guard await waitForNewBoot(name, before: bootID) != nil else {
                    try await journal.move(rolloutID, host: name, to: .rollbackFailed, reason: "did not come back within \(PlanFormat.duration(plan.reboot.timeout)) after the rollback reboot")
                    return say(name, "ROLLBACK FAILED: did not come back", problem: true)
                }
                let after = try await mustRun(await connections.host(name), "cat /proc/sys/kernel/osrelease", "read release").trimmed
                guard after == oldRelease else {
                    try await journal.move(rolloutID, host: name, to: .rollbackFailed, reason: "booted \(after) after rollback, expected \(oldRelease)")
                    return say(name, "ROLLBACK FAILED: booted \(after), expected \(oldRelease)", problem: true)
                }
            }
            try await journal.move(rolloutID, host: name, to: .rolledBack, message: "rolled_back: runs \(oldRelease) again, default restored")
            say(name, "rolled back: runs \(oldRelease), default restored")
        } catch {
            try? await journal.move(rolloutID, host: name, to: .rollbackFailed, reason: describe(error))
            say(name, "ROLLBACK FAILED: \(describe(error))", problem: true)
        }
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

    func forEach<T: Sendable>(_ items: [T], limit: Int, _ body: @escaping @Sendable (T) async -> Void) async {
        _ = await concurrentMap(items, limit: limit) { _, item in await body(item) }
    }
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

/// SHA-256 of the plan text for the journal, from libcrypto (which libssh2 links anyway).
func sha256Hex(_ text: String) -> String {
    let bytes = Array(text.utf8)
    var digest = [UInt8](repeating: 0, count: Int(SHA256_DIGEST_LENGTH))
    _ = SHA256(bytes, bytes.count, &digest)
    return digest.map { String(format: "%02x", $0) }.joined()
}
