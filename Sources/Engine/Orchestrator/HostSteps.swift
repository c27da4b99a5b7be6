import Foundation
import Basics
import NetIO
import SSH
import HealthGate
import RolloutConfig
import RolloutJournal
import Notices

/// The host steps: check, stage, reboot and verify, gate, commit, roll back.
extension Orchestrator {
    // MARK: - host steps
    //
    // Each step journals its intent, acts, and journals the outcome. A failure on the host
    // fails the host (journaled); a failure to journal is thrown: the run stops
    // (`stopBlind`) rather than go on without a record.

    /// pending → checked: reachable, the driver's pre-check (`BootloaderDriver.preflight`: grub's
    /// `GrubSafety`), the host's lease (no other rollout, from any journal, holds it), current
    /// release and boot id, the running kernel's boot entry (what rollback restores), free space on /boot.
    func check(_ name: String) async throws {
        guard let h = try journal.host(rolloutID, name), h.state == .pending else { return }
        do {
            var host = await connections.host(name)
            let facts: HostFacts
            do {
                facts = try await HostFacts.read(from: host, timeout: .seconds(20))
            } catch let e as SSHError where e.code == .connectionLost || e.code == .sessionClosed {
                // The survey's connection, kept since `plan apply` began, died while idle: the
                // facts are read-only, so one new connection and one more try are safe.
                await connections.drop(name)
                host = await connections.host(name)
                facts = try await HostFacts.read(from: host, timeout: .seconds(20))
            }
            guard let release = facts.release, let bootID = facts.bootID else {
                return try await fail(name, "cannot read the kernel release or boot id")
            }
            if release == plan.kernel.release {
                try await journal.move(rolloutID, host: name, to: .checked, set: ["release_before": release, "boot_id_before": bootID])
                try await journal.move(rolloutID, host: name, to: .skipped, reason: "already runs \(release)")
                await connections.drop(name)
                return say(name, "skipped: already runs \(release)")
            }
            let bootloader = try self.bootloader(h)
            // What makes the driver's boot-once safe (grub: GRUB_DEFAULT=saved, grubenv writable at
            // boot, recordfail): read before the host lease, so a host that fails has nothing written.
            if let preflight = bootloader.preflight {
                let findings = bootloader.preflightFindings(try await mustRun(host, preflight, "check the \(bootloader.name) bootloader"))
                for w in findings where w.severity == .warning {
                    try await journal.event(rolloutID, host: name, kind: .info, "warning: \(w.message)")
                    say(name, "warning: \(w.message)", problem: true)
                }
                let errors = findings.filter { $0.severity == .error }.map(\.message)
                if !errors.isEmpty { return try await fail(name, errors.joined(separator: "; ")) }
            }
            guard try await takeHostLease(name, host) else { return }
            var oldEntry: String? = nil
            if let listing = bootloader.entryListing {
                let menu = try await mustRun(host, listing, "read the boot entries")
                guard let entry = bootloader.entry(in: menu, release: release) else {
                    return try await fail(name, "the running kernel \(release) has no entry in \(bootloader.entrySource): rollback could not boot it")
                }
                oldEntry = entry
            }
            let free = try await mustRun(host, HostCommands.bootFree, "check /boot space")
            if let bytes = UInt64(free.trimmed), bytes < plan.kernel.minBootFreeBytes {
                return try await fail(name, "/boot has \(Quantity.formatBytes(bytes)) free, the plan needs \(Quantity.formatBytes(plan.kernel.minBootFreeBytes))")
            }
            // The old kernel's slab, for the report's baseline (its average growth since boot).
            if let slab = facts.memory.sUnreclaim, let up = facts.uptimeSeconds {
                try await journal.event(rolloutID, host: name, kind: .info, "before: SUnreclaim \(Quantity.formatBytes(slab)) after \(PlanFormat.duration(.seconds(up.rounded()))) up on \(release)",
                                        data: "{\"sunreclaim\":\(slab),\"uptime\":\(up),\"mem_total\":\(facts.memory.memTotal ?? 0),\"release\":\"\(release.filter { $0.isASCII && $0 != "\"" && $0 != "\\" })\"}")
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
            try await journal.event(rolloutID, host: name, kind: .info, "host lease taken over: the lease of \(old) had expired")
            say(name, "took over the expired host lease of \(old)")
            return true
        case .held(let holder):
            try await fail(name, "held by another rollout: \(holder); nothing was changed. Wait for it, or `rollctl fleet unlock \(name) --force` if it is gone for good")
            return false
        }
    }

    /// Removes the host's lease (committed, rolled back). A host that cannot be reached
    /// now keeps it until it expires: reported, not an error.
    /// A host reached its end (committed, rolled back): its lease on the host goes first,
    /// then its lock in the journal. A driver that dies between the two leaves a final host
    /// still locked in the journal, which tells the next run (`releaseFinishedHosts`) that
    /// the host lease may still be there.
    /// Its connection is closed too: nothing more is done on it (a rollout of many thousand hosts
    /// would otherwise hold a session, and the host an sshd, per finished host to the end).
    func releaseLocks(_ name: String) async throws {
        await releaseHostLease(name)
        await connections.drop(name)
        try await journal.releaseLock(rolloutID: rolloutID, host: name)
    }

    /// Hosts an earlier driver finished but did not release (it died in `releaseLocks`).
    func releaseFinishedHosts() async throws {
        let locked = Set(try journal.lockedHosts(rolloutID))
        guard !locked.isEmpty else { return }
        for h in try journal.hosts(rolloutID) where locked.contains(h.name) && (h.state == .committed || h.state == .rolledBack) {
            if stopping() { return }
            try await releaseLocks(h.name)
        }
    }

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
            let bootloader = try self.bootloader(h)
            try await journal.event(rolloutID, host: name, kind: .intent, "install \(plan.kernel.release) and stage it to boot once")
            if plan.kernel.packages.isEmpty {
                for command in HostCommands.install(plan, bootloader: bootloader) {
                    _ = try await mustRun(host, command, "install", timeout: .seconds(1800))
                }
            } else {
                try await installPackages(name, host)
            }
            var newEntry: String? = nil
            if let listing = bootloader.entryListing {
                guard h.bootEntryBefore != nil else { return try await fail(name, "no previous boot entry journaled") }
                let menu = try await mustRun(host, listing, "read the boot entries")
                guard let entry = bootloader.entry(in: menu, release: plan.kernel.release) else {
                    return try await fail(name, "after install, \(bootloader.entrySource) has no entry for \(plan.kernel.release)")
                }
                newEntry = entry
            }
            for command in bootloader.stage(plan, entry: newEntry, previous: h.bootEntryBefore) {
                _ = try await mustRun(host, command, "stage boot-once")
            }
            try await journal.move(rolloutID, host: name, to: .staged, set: newEntry.map { ["grub_entry_after": $0] } ?? [:])
            say(name, "staged: \(plan.kernel.release) boots once next" + (newEntry.map { " (\($0))" } ?? ""))
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
                guard try await takeHostLease(name, await connections.host(name)) else { return }
                // Drain it (the plan's pre_reboot hooks): a failure fails the host, not rebooted.
                switch try await runHooks(.preReboot, host: name, wave: h.wave) {
                case .done: break
                case .failed(let why): return try await fail(name, why)
                case .stopped: return
                }
                guard leaseHeld(), !stopping() else { return }
                // Its alerts silenced from here to its gate's verdict (plan `silence`).
                try await silence(name)
                let host = await connections.host(name)
                let bootID = try await mustRun(host, "cat /proc/sys/kernel/random/boot_id", "read boot id", timeout: MaintenanceWindow.commandAllowance).trimmed
                // Intent first: if we die after this line, resume compares boot ids.
                try await journal.move(rolloutID, host: name, to: .rebooting, message: "staged → rebooting (intent: \(plan.reboot.command))",
                                       set: ["boot_id_before": bootID], countsReboot: true)
                h.bootIDBefore = bootID
                h.state = .rebooting
                // The intent took long to commit (a journal far away, or cut and back): past the
                // lease's margin the reboot is left to whoever drives next, who judges it by the
                // boot id (the intent is journaled; the reboot was not sent).
                guard leaseHeld() else { return }
                try await sendReboot(host, name)
            } else if h.state == .rebooting {
                // Resumed: did the reboot happen? Unreachable is `unknown`: the wait below decides,
                // with its patience for a refused login (`Refusals`).
                let now = try? await probeBootID(name, timeout: .seconds(5))
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
                        try await journal.event(rolloutID, host: name, kind: .intent, "reboot re-sent on resume (boot id unchanged after \(PlanFormat.duration(grace)))")
                        try await journal.move(rolloutID, host: name, to: .rebooting, countsReboot: true)
                        guard leaseHeld() else { return }
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
                try await postBootHooks(name, wave: h.wave)
            }
        } catch where !Self.isJournalFailure(error) {
            try await fail(name, describe(error))
        }
    }

    /// verified → (the plan's post_boot hooks: put it back) → the soak; a failure fails the host.
    /// Also run before the soak for hosts a resume finds verified (the hooks that ran are skipped).
    func postBootHooks(_ name: String, wave: Int?) async throws {
        // A hook's own failures (exit, timeout, SSH) come back as `.failed`; what throws is the journal.
        if case .failed(let why) = try await runHooks(.postBoot, host: name, wave: wave) { try await fail(name, why) }
    }

    func sendReboot(_ host: any RemoteHost, _ name: String) async throws {
        do {
            _ = try await host.run(plan.reboot.command, timeout: .seconds(15))
        } catch let e as SSHError where e.code == .connectionLost || e.code == .commandTimeout {
            // Expected: the connection drops as the host goes down.
        } catch {
            say(name, "reboot command: \(describe(error)) — waiting for a new boot id anyway", problem: true)
            await connections.drop(name)
        }
        // The session stays open: the first boot-id probes ride it while the old boot winds
        // down, so no handshake is spent on a host about to go down (one per boot, issue 19).
        try await journal.event(rolloutID, host: name, kind: .outcome, "reboot command sent")
        say(name, "rebooting")
    }

    /// The host's boot id, over its open session if it still has one (the old boot, right after
    /// the reboot command), else over a new connection.
    func probeBootID(_ name: String, timeout: Duration) async throws -> String {
        let host = await connections.host(name)
        return try await mustRun(host, "cat /proc/sys/kernel/random/boot_id", "read boot id", timeout: timeout).trimmed
    }

    /// The journal could not be read or written (or refused a transition, or this process's
    /// lease was taken over): not the host's failure — the run stops (`stopBlind`) rather than
    /// journal guesses.
    static func isJournalFailure(_ error: Error) -> Bool {
        error is JournalError || Journal.isStorageError(error) || error is StepAbort || error is LeaseLost
    }

    /// Which SSH errors end a wait for a host. A host key that changed or is unknown (under
    /// `strict`) or an unreadable known_hosts is final at once. A refused login is what a host
    /// going down can show for a moment (its sshd still answers while the files it authenticates
    /// with go away), so it is final only once it has lasted `patience`. Anything else (refused,
    /// reset, timeout) is what a rebooting host shows: never final.
    struct Refusals {
        static let patience: Duration = .seconds(10)
        private var since: Date?
        mutating func isFinal(_ error: Error, now: Date) -> Bool {
            switch (error as? SSHError)?.code {
            case .hostKeyMismatch, .hostKeyUnknown, .knownHostsError:
                return true
            case .authFailed:
                let first = since ?? now
                since = first
                return now.timeIntervalSince(first) >= Self.patience.seconds
            default:
                since = nil
                return false
            }
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
    /// retried; a final one (`Refusals`: a changed host key at once, a refused login that lasts) ends it.
    func waitForNewBoot(_ name: String, before: String?, within limit: Duration? = nil) async -> BootWait {
        let deadline = clock.after(limit ?? plan.reboot.timeout)
        if limit == nil { try? await clock.sleep(for: plan.reboot.settle) }
        var delay = Duration.milliseconds(500)
        var refusals = Refusals()
        while clock.now < deadline {
            do {
                let id = try await probeBootID(name, timeout: .seconds(5))
                if id != before { return .newBoot(id) }
            } catch where refusals.isFinal(error, now: clock.now) {
                await connections.drop(name)
                return .refused("after the reboot: \(describe(error)) — not retried (a permanent SSH error: the host key changed or is unknown, or login was refused for \(PlanFormat.duration(Refusals.patience)))")
            } catch {}
            await connections.drop(name)
            try? await clock.sleep(for: delay)
            delay = min(delay * 2, .seconds(5))
        }
        return .timedOut
    }

    /// A connection to a host that may be down (a rollback right after a failed boot):
    /// retried with the reboot wait's backoff up to the reboot timeout; a permanent SSH
    /// error is thrown at once.
    func reachable(_ name: String) async throws -> any RemoteHost {
        let deadline = clock.after(plan.reboot.timeout)
        var delay = Duration.milliseconds(500)
        var said = false
        var refusals = Refusals()
        while true {
            let host = await connections.fresh(name)
            do {
                _ = try await mustRun(host, "true", "reach the host", timeout: .seconds(20))
                return host
            } catch where !refusals.isFinal(error, now: clock.now) && clock.after(delay) < deadline {
                if !said {
                    say(name, "unreachable (\(describe(error))) — waiting up to \(PlanFormat.duration(plan.reboot.timeout)) for it to come back")
                    said = true
                }
                await connections.drop(name)
                try? await clock.sleep(for: delay)
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
        let runner = try GateRunner(settings: plan.gate, clock: DateClock(clock), logger: logger)
        let gateHosts = hosts
        let progress = SoakProgressRecorder(wave: wave)
        let flusher = progress.flushing(to: journal, rolloutID, while: { !self.leaseLost })
        // A stop request ends the soak at once: the hosts stay `soaking` and a resume
        // runs the gate again from the start (a cut-short soak is no evidence).
        let finished: WaveGateReport? = await unlessStopped {
            await runner.run(gateHosts) { event in
                switch event {
                case .sampleTaken(let host, let sample, let planned):
                    progress.record(host: host, sample: sample, planned: planned)
                case .hostDecided(let r):
                    self.say(r.host, "gate \(r.verdict.rawValue)" + (r.reasons.first.map { ": \($0.summary)" } ?? ""), problem: r.verdict != .pass)
                }
            }
        }
        flusher.cancel()
        if !leaseLost { try? await journal.saveSoakProgress(rolloutID, progress.takeChanged()) }
        // A driver that lost its lease during the soak (another took the rollout over) writes nothing.
        guard let report = finished, !leaseLost else { return nil }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        try journal.saveGateResults(rolloutID, wave: wave, count: report.hosts.count) { i in
            let r = report.hosts[i]
            let json = String(decoding: try encoder.encode(r), as: UTF8.self)
            let why = r.reasons.map(\.summary).joined(separator: "; ")
            let cut = r.verdict == .inconclusive && r.end == .stoppedWithWave
            // An inconclusive wave under `on_inconclusive: pause` keeps its hosts soaking: a person decides.
            let awaitsPerson = report.verdict == .inconclusive && plan.failure.onInconclusive == .pause
            let state: HostState? = r.verdict == .pass ? .healthy : awaitsPerson ? nil : .failed
            return (r.host, r.verdict.rawValue, json, state,
                    r.verdict == .pass ? nil : cut ? "gate inconclusive: soak cut short when another host of the wave failed (this host did not fail)"
                                              : "gate \(r.verdict.rawValue): \(why.isEmpty ? r.end.rawValue : why)")
        }
        // The wave row keeps the verdict and who failed; every host's evidence is in gate_report.
        struct Summary: Encodable { var verdict: String; var passed: Int; var failed: [String]; var inconclusive: [String] }
        let summary = Summary(verdict: report.verdict.rawValue, passed: report.passed.count, failed: report.failed, inconclusive: report.inconclusive)
        let waveJSON = String(decoding: try encoder.encode(summary), as: UTF8.self)
        try journal.setWave(rolloutID, wave, state: .running, verdict: report.verdict.rawValue, report: waveJSON)
        try await expireSilences(names)
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
            let bootloader = try self.bootloader(h)
            try await journal.event(rolloutID, host: name, kind: .intent, "make \(plan.kernel.release) the default")
            let host = await connections.host(name)
            if bootloader.entryListing != nil && h.bootEntryAfter == nil {
                return try await fail(name, "no boot entry journaled for \(plan.kernel.release)")
            }
            for command in bootloader.commit(plan, entry: h.bootEntryAfter) {
                _ = try await mustRun(host, command, "make the new kernel the default")
            }
            try await journal.move(rolloutID, host: name, to: .committed)
            say(name, "committed: \(plan.kernel.release) is the default")
            try await afterCommitHooks(name, wave: h.wave)
        } catch where !Self.isJournalFailure(error) {
            return try await fail(name, describe(error))
        }
        try await releaseLocks(name)
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
        let bootloader = try self.bootloader(h)
        guard let oldRelease = h.releaseBefore, bootloader.entryListing == nil || h.bootEntryBefore != nil else {
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
            for command in bootloader.clearOneShot {
                // A one-shot entry left staged would boot the new kernel at the host's next reboot, whoever makes it.
                _ = try await mustRun(host, command, "forget the staged one-shot boot", timeout: .seconds(30))
            }
            for command in bootloader.restoreDefault(plan, previousRelease: oldRelease, previousEntry: h.bootEntryBefore) {
                _ = try await mustRun(host, command, "restore the previous default")
            }
            let running = try await mustRun(host, "cat /proc/sys/kernel/osrelease", "read release").trimmed
            if running != oldRelease {
                let bootID = try await mustRun(host, "cat /proc/sys/kernel/random/boot_id", "read boot id").trimmed
                try await journal.move(rolloutID, host: name, to: .rollingBack, message: "rolling_back (intent: reboot into \(oldRelease))",
                                       set: ["boot_id_before": bootID], countsReboot: true)
                // Past the lease's margin the reboot is left to the next driver (it rolls the
                // host back again from `rolling_back`, and finds the old kernel not running yet).
                guard leaseHeld() else { return }
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
        try await releaseLocks(name)
    }
}
