import Foundation
import HealthGate
import Testing
@testable import Basics
import NetIO
@testable import RolloutConfig
@testable import RolloutJournal
@testable import Engine
import RolloutTesting

/// The host state machine end to end over in-process `SimHost`s, in seconds and without root:
/// a leaking kernel, a wrong kernel, a host that never comes back, the failure budget, a driver
/// killed at every host command and resumed, a resume while another process drives. Each test
/// checks the journal's event log: every host's sequence of states is a legal path
/// (`HostState.canMove`) and ends where its row says. The fleetsim suites stay the live proof.
@Suite("engine: the host state machine over in-process hosts", .serialized) struct EngineStateMachineTests {
    static let old = SimFleet.old, new = SimFleet.new

    /// A real soak that PlanLoader accepts: 7 samples 100 ms apart (its minimum interval), enough
    /// for the default growth check (6 points), no test site (nothing serves one in process).
    static let gate = """
    gate:
      soak: 600ms
      interval: 100ms
      probe_timeout: 100ms
      sunreclaim_growth_max: 32MiB/h
      min_slope_points: 6
      test_site: off
    """

    static func leakPlan(_ name: String) -> String {
        SimFleet.yaml(name: name, """
        waves:
          sizes: [1, 100%]
          max_parallel: 4
          failure_domain: rack
        reboot:
          timeout: 5s
          settle: 0s
        \(gate)
        on_failure:
          rollback: wave
          max_failed_hosts_per_wave: 0
          max_failed_hosts: 0
        """)
    }

    // MARK: - the gate: leak, OOM

    /// The control of the leak test: the same YAML plan and soak over hosts whose new kernel
    /// does not leak passes, every host committed (so the leak test's failure is the leak's).
    @Test func aKernelThatDoesNotLeakPassesTheSameGate() async throws {
        let f = try SimFleet(count: 3, racks: 3)
        try f.usePlan(Self.leakPlan("engine-no-leak"))
        let id = try f.create()
        let o = f.orchestrator(id)
        defer { o.releaseLease() }
        #expect(try await o.run() == .completed)
        let paths = try f.legalPaths(id)
        for (name, s) in await f.summaries() {
            #expect(paths[name] == happyPath, "\(name): \(f.render(paths[name] ?? []))")
            #expect(s.reboots == 1 && s.release == Self.new && s.saved?.hasSuffix(Self.new) == true, "\(name): \(s)")
            let wave = try #require(try f.journal.host(id, name)?.wave)
            let report = try #require(try f.gateReport(id, wave: wave, host: name))
            #expect(report.verdict == .pass && report.end == .completed && report.samples.count == 7, "\(name): \(report.findings)")
            #expect(report.findings.first { $0.check == "sunreclaim.growth" }?.status == .pass)
        }
    }

    /// SUnreclaim grows 1 MiB/s on the new kernel (3.5 GiB/h; the gate allows 32 MiB/h): the
    /// canary's gate fails on the slope at the end of its soak, the rollout halts, the canary is
    /// booted back into its old kernel with the old default restored; the later wave is never
    /// touched. The journal's states, reboots and gate evidence say exactly that.
    @Test func aLeakingKernelFailsTheGateHaltsAndTheCanaryWaveIsRolledBack() async throws {
        let f = try SimFleet(count: 5, racks: 3)
        try f.usePlan(Self.leakPlan("engine-leak"))
        let rate = Double(1 << 20)
        for h in f.hosts.values { await h.setLeak(on: Self.new, bytesPerSecond: rate) }
        let id = try f.create()
        let canary = try #require(try f.names(id, wave: 1).first)
        let later = try f.names(id, wave: 2)
        #expect(later.count == 4)
        let before = await f.summaries()
        let o = f.orchestrator(id)
        defer { o.releaseLease() }

        guard case .halted(let reason) = try await o.run() else { Issue.record("not halted"); return }
        #expect(reason == "wave 1 gate fail: failed on \(canary)")
        // Halted, before the rollback: the canary failed the gate, still changed, still locked.
        var c = try #require(try f.journal.host(id, canary))
        #expect(c.state == .failed && c.reason?.hasPrefix("gate fail: growth ") == true && c.reason?.contains("> limit 32") == true, "\(c)")
        #expect(c.releaseAfter == Self.new && c.reboots == 1)
        #expect(try f.journal.lockedHosts(id).contains(canary))
        #expect(try f.journal.waves(id).map(\.state) == [.failed, .pending])
        #expect(try f.journal.rollout(id)?.state == .halted)
        #expect(try f.journal.events(id).contains { $0.kind == .halt && $0.message == reason })
        let report = try #require(try f.gateReport(id, wave: 1, host: canary))
        #expect(report.verdict == .fail && report.end == .completed && report.samples.count == 7)
        let growth = try #require(report.findings.first { $0.check == "sunreclaim.growth" })
        #expect(growth.status == .fail, "\(growth)")
        // The slope the gate measured is the leak's (1 MiB/s = 3600 MiB/h), give or take the timing of the samples.
        let perHour = rate * 3600
        #expect(growth.measured.map { $0 > perHour * 0.5 && $0 < perHour * 1.5 } == true, "measured \(growth.measured ?? -1) B/h, leak \(perHour) B/h")
        #expect(report.findings.filter { $0.status == .fail }.map(\.check) == ["sunreclaim.growth"], "only the slope fails: \(report.findings)")

        // The later wave was pre-checked during the canary's soak (read-only: each host's lease taken).
        for name in later {
            #expect(try f.journal.host(id, name)?.state == .checked)
            #expect(await f.hosts[name]!.leaseText != nil, "\(name): pre-checked, so leased until the halt is finished")
        }
        try await o.finishHalt(reason: reason)
        c = try #require(try f.journal.host(id, canary))
        #expect(c.state == .rolledBack && c.reboots == 2, "\(c)")
        let paths = try f.legalPaths(id)
        #expect(paths[canary] == [.pending, .checked, .staged, .rebooting, .up, .verified, .soaking, .failed, .rollingBack, .rollingBack, .rolledBack],
                "\(f.render(paths[canary] ?? []))")
        let sim = f.hosts[canary]!
        #expect(await sim.boots == [Self.old, Self.new, Self.old])
        let s = await f.summaries()
        #expect(s[canary]!.reboots == 2 && s[canary]!.release == Self.old && s[canary]!.saved?.hasSuffix(Self.old) == true, "\(s[canary]!)")
        #expect(await sim.nextEntry == nil)
        #expect(await sim.leaseText == nil)
        for name in later {
            // Read, never changed; the halt gave their leases back (a new rollout can take them).
            #expect(s[name]!.reboots == 0 && s[name]!.release == Self.old && s[name]!.saved == before[name]!.saved, "\(name) was changed: \(s[name]!)")
            #expect(await f.hosts[name]!.nextEntry == nil, "\(name)")
            #expect(await f.hosts[name]!.leaseText == nil, "\(name)")
            #expect(paths[name] == [.pending, .checked])
        }
        #expect(try f.journal.waves(id).map(\.state) == [.rolledBack, .pending])
        #expect(try f.journal.rollout(id)?.state == .rolledBack)
        #expect(try f.journal.lockedHosts(id).isEmpty)
    }

    /// The next wave's pre-checks run while the wave before it soaks: every wave-2 host is checked
    /// before the canary's gate decides, and the rollout completes as before.
    @Test func theNextWavesHostsArePreCheckedWhileTheWaveBeforeSoaks() async throws {
        let f = try SimFleet(count: 5, racks: 3)
        try f.usePlan(Self.leakPlan("engine-ahead"))
        let id = try f.create()
        let canary = try #require(try f.names(id, wave: 1).first)
        let later = try f.names(id, wave: 2)
        let log = SimFleet.Log()
        let o = f.orchestrator(id, log: log)
        defer { o.releaseLease() }
        #expect(try await o.run() == .completed)
        let events = try f.journal.events(id)
        let decided = try #require(events.firstIndex { $0.host == canary && $0.message == "soaking → healthy" })
        for name in later {
            let checked = try #require(events.firstIndex { $0.host == name && $0.message.hasPrefix("pending → checked") })
            #expect(checked < decided, "\(name) was checked after the canary's gate decided")
        }
        #expect(log.all.contains("- wave 2/2: pre-checking 4 hosts while wave 1 soaks"), "\(log.all.filter { $0.hasPrefix("- ") })")
        let paths = try f.legalPaths(id)
        for name in later { #expect(paths[name] == happyPath, "\(name): \(f.render(paths[name] ?? []))") }
    }

    /// A next-wave host that fails its pre-check during the canary's soak spends the next wave's
    /// budget, not the canary wave's: the canary commits and its wave passes; wave 2 halts on it.
    @Test func aPreCheckFailureAheadIsTheNextWavesNotTheWaveThatSoaks() async throws {
        let f = try SimFleet(count: 5, racks: 3)
        try f.usePlan(Self.leakPlan("engine-ahead-fail"))
        let id = try f.create()
        let canary = try #require(try f.names(id, wave: 1).first)
        let bad = try #require(try f.names(id, wave: 2).first)
        await f.hosts[bad]!.setFailing([HostCommands.bootFree])
        let o = f.orchestrator(id)
        defer { o.releaseLease() }
        guard case .halted(let reason) = try await o.run() else { Issue.record("not halted"); return }
        #expect(reason.hasPrefix("wave 2: 1 host failed (budget 0) — \(bad): "), "\(reason)")
        #expect(try f.journal.host(id, canary)?.state == .committed)
        #expect(try f.journal.waves(id).map(\.state) == [.passed, .failed])
        #expect(await f.summaries()[canary]!.reboots == 1)
    }

    /// A hard check in a later wave, with `rollback: all`: one host of wave 2 leaks fast enough
    /// to cross `sunreclaim_max` mid-soak; its soak ends at that sample, its wave mate's is cut
    /// short (failed, but named as not failing itself), and every host the rollout changed —
    /// the committed canary of the passed wave included — is booted back. Wave 3 is only
    /// pre-checked (during wave 2's soak), never changed, and its host leases are given back.
    @Test func aLeakOverTheCeilingInALaterWaveRollsBackEverythingUnderPolicyAll() async throws {
        let f = try SimFleet(count: 6, racks: 3, waves: [.count(1), .percent(50), .percent(100)])
        try f.usePlan(SimFleet.yaml(name: "engine-leak-all", """
        waves:
          sizes: [1, 50%, 100%]
          max_parallel: 4
          failure_domain: rack
        reboot:
          timeout: 5s
          settle: 0s
        \(Self.gate.replacingOccurrences(of: "soak: 600ms", with: "soak: 1s"))
          sunreclaim_max: 400MiB
        on_failure:
          rollback: all
        """))
        let id = try f.create()
        let canary = try #require(try f.names(id, wave: 1).first)
        let wave2 = try f.names(id, wave: 2), wave3 = try f.names(id, wave: 3)
        #expect(wave2.count == 2 && wave3.count == 3, "\(wave2) \(wave3)")
        let leaky = wave2[0], mate = wave2[1]
        // 300000 kB at boot + 256 MiB/s: over 400 MiB after ~0.4 s of a 1 s soak.
        await f.hosts[leaky]!.setLeak(on: Self.new, bytesPerSecond: Double(256 << 20))
        let o = f.orchestrator(id)
        defer { o.releaseLease() }

        guard case .halted(let reason) = try await o.run() else { Issue.record("not halted"); return }
        #expect(reason == "wave 2 gate fail: failed on \(leaky); soak cut short (not failed) on \(mate)")
        let r = try #require(try f.gateReport(id, wave: 2, host: leaky))
        #expect(r.verdict == .fail && r.end == .earlyFail && r.samples.count < 11, "\(r.end) after \(r.samples.count) samples")
        #expect(r.findings.filter { $0.status == .fail }.map(\.check) == ["sunreclaim.level"], "\(r.findings)")
        let m = try #require(try f.gateReport(id, wave: 2, host: mate))
        #expect(m.verdict == .inconclusive && m.end == .stoppedWithWave)
        #expect(try f.journal.host(id, leaky)?.reason?.contains("> limit 400") == true)
        #expect(try f.journal.host(id, mate)?.reason == "gate inconclusive: soak cut short when another host of the wave failed (this host did not fail)")
        #expect(try f.journal.host(id, canary)?.state == .committed)

        try await o.finishHalt(reason: reason)
        let paths = try f.legalPaths(id)
        let back: [HostState] = [.rollingBack, .rollingBack, .rolledBack]
        #expect(paths[canary] == happyPath + back, "\(f.render(paths[canary] ?? []))")
        for name in [leaky, mate] {
            #expect(paths[name] == Array(happyPath.prefix(7)) + [.failed] + back, "\(name): \(f.render(paths[name] ?? []))")
        }
        let s = await f.summaries()
        for name in [canary, leaky, mate] {
            #expect(s[name]!.reboots == 2 && s[name]!.release == Self.old && s[name]!.saved?.hasSuffix(Self.old) == true, "\(name): \(s[name]!)")
            #expect(await f.hosts[name]!.boots == [Self.old, Self.new, Self.old])
            #expect(try f.journal.host(id, name)?.reboots == 2)
        }
        for name in wave3 {
            #expect(s[name]!.reboots == 0 && s[name]!.release == Self.old, "\(name) was changed: \(s[name]!)")
            #expect(await f.hosts[name]!.nextEntry == nil)
            #expect(await f.hosts[name]!.leaseText == nil, "\(name) kept its host lease after the halt")
            #expect(paths[name] == [.pending, .checked])
        }
        // The canary's wave had passed and stays so; the failed wave is rolled back; the rollout is.
        #expect(try f.journal.waves(id).map(\.state) == [.passed, .rolledBack, .pending])
        #expect(try f.journal.rollout(id)?.state == .rolledBack)
        #expect(try f.journal.lockedHosts(id).isEmpty)
    }

    /// OOM kills since boot on the new kernel fail the gate at its first sample (a hard check).
    @Test func oomKillsOnTheNewKernelFailTheGateAtOnce() async throws {
        let f = try SimFleet(count: 2, racks: 2)
        f.plan.gate.soak = .seconds(30)  // never waited for: the first sample decides
        f.plan.gate.interval = .seconds(1)
        let id = try f.create()
        let canary = try #require(try f.names(id, wave: 1).first)
        await f.hosts[canary]!.setOOMKills(2, on: Self.new)
        let o = f.orchestrator(id)
        defer { o.releaseLease() }
        let start = f.clock.now
        guard case .halted(let reason) = try await o.run() else { Issue.record("not halted"); return }
        #expect(f.clock.now.timeIntervalSince(start) < 10)
        #expect(reason == "wave 1 gate fail: failed on \(canary)")
        let r = try #require(try f.gateReport(id, wave: 1, host: canary))
        #expect(r.end == .earlyFail && r.samples.count == 1 && r.findings.filter { $0.status == .fail }.map(\.check) == ["oom"], "\(r.findings)")
        #expect(try f.journal.host(id, canary)?.reason?.contains("2 OOM kills since boot (max 0)") == true)
        try f.legalPaths(id)
    }

    // MARK: - a wrong kernel, a host that never returns

    /// GRUB ignores the one-shot entry: the host comes back on its old kernel. It fails with the
    /// release it booted (no gate runs on it), the budget of 0 halts the rollout, and the policy
    /// decides: `wave` marks it rolled back without a second reboot (it runs its old kernel and
    /// default already); `none` leaves it failed and locked for a person.
    @Test(arguments: [FailurePolicy.Rollback.wave, .none])
    func aHostThatBootsTheWrongKernelFailsAndHaltsPerPolicy(policy: FailurePolicy.Rollback) async throws {
        let f = try SimFleet(count: 4, racks: 2)
        f.plan.failure.rollback = policy
        let id = try f.create()
        let canary = try #require(try f.names(id, wave: 1).first)
        let later = try f.names(id, wave: 2)
        await f.hosts[canary]!.setIgnoresOneShot(true)
        let o = f.orchestrator(id)
        defer { o.releaseLease() }

        guard case .halted(let reason) = try await o.run() else { Issue.record("not halted"); return }
        let why = "booted \(Self.old), expected \(Self.new) (GRUB fell back to the default: the new kernel did not boot, or the entry was wrong)"
        #expect(reason == "wave 1: 1 host failed (budget 0) — \(canary): \(why)")
        let c = try #require(try f.journal.host(id, canary))
        #expect(c.state == .failed && c.reason == why && c.releaseAfter == Self.old && c.reboots == 1, "\(c)")
        #expect(try f.journal.gateReports(id).isEmpty, "no gate runs on a host that failed its verification")

        try await o.rollbackAfterHalt()
        let paths = try f.legalPaths(id, "\(policy)")
        let failed: [HostState] = [.pending, .checked, .staged, .rebooting, .up, .failed]
        let s = await f.summaries()
        #expect(s[canary]!.reboots == 1 && s[canary]!.release == Self.old && s[canary]!.saved?.hasSuffix(Self.old) == true, "\(s[canary]!)")
        #expect(await f.hosts[canary]!.boots == [Self.old, Self.old])
        switch policy {
        case .none:
            #expect(paths[canary] == failed, "\(f.render(paths[canary] ?? []))")
            #expect(try f.journal.lockedHosts(id) == [canary], "a changed host that failed stays locked")
            #expect(try f.journal.rollout(id)?.state == .halted)
            #expect(try f.journal.waves(id).map(\.state) == [.failed, .pending])
        default:
            #expect(paths[canary] == failed + [.rollingBack, .rolledBack], "\(f.render(paths[canary] ?? []))")
            #expect(try f.journal.host(id, canary)?.reboots == 1, "no second reboot: it already runs its old kernel")
            #expect(try f.journal.lockedHosts(id).isEmpty)
            #expect(try f.journal.rollout(id)?.state == .rolledBack)
            #expect(try f.journal.waves(id).map(\.state) == [.rolledBack, .pending])
            #expect(await f.hosts[canary]!.leaseText == nil)
        }
        for name in later { #expect(s[name]!.commands == 0, "\(name) was touched") }
    }

    /// The new kernel hangs at boot: the canary fails once the reboot timeout (1 s here; a loaded
    /// plan's minimum is 5 s) has passed, the rollout halts with the journal true (rebooting
    /// announced and counted, no boot after it), the host locked. Resumed by a new process, the
    /// halted rollout stays halted without touching a host; once the host is power-cycled (it
    /// boots its old default), the policy's rollback marks it rolled back without another reboot.
    @Test func aHostThatNeverReturnsFailsAfterTheRebootTimeoutAndTheHaltIsResumable() async throws {
        let f = try SimFleet(count: 3, racks: 3)
        f.plan.reboot = RebootSpec(timeout: .seconds(1), settle: .zero)
        let id = try f.create()
        let canary = try #require(try f.names(id, wave: 1).first)
        let sim = f.hosts[canary]!
        await sim.setHangsOn(Self.new)
        let bootBefore = await sim.bootID
        let o = f.orchestrator(id)
        let start = f.clock.now
        guard case .halted(let reason) = try await o.run() else { Issue.record("not halted"); return }
        let took = Duration.seconds(f.clock.now.timeIntervalSince(start))
        o.releaseLease()  // the process ends here (before its rollback)
        #expect(took >= .seconds(1) && took < .seconds(5), "\(took)")
        let why = "did not come back with a new boot id within 1s"
        #expect(reason == "wave 1: 1 host failed (budget 0) — \(canary): \(why)")
        var c = try #require(try f.journal.host(id, canary))
        #expect(c.state == .failed && c.reason == why && c.reboots == 1 && c.bootIDBefore == bootBefore && c.bootIDAfter == nil && c.releaseAfter == nil, "\(c)")
        #expect(c.state.staysLocked(releaseBefore: c.releaseBefore))
        // Every host stays locked until the rollback that follows a halt (`plan apply` runs it next).
        #expect(try f.journal.lockedHosts(id) == f.hosts.keys.sorted())
        #expect(try f.journal.rollout(id)?.state == .halted)

        // `rollout resume` in a new process: a new journal object, a new orchestrator.
        let journal = try Journal(path: f.journal.path, clock: f.clock)
        let tally = Tally()
        let sims = f.hosts
        let again = Orchestrator(rolloutID: id, plan: f.plan, inventory: f.inventory, journal: journal,
                                 transport: { CountedHost(host: sims[$0.name]!, tally: tally) }, identity: otherDriver())
        defer { again.releaseLease() }
        guard case .halted(let second) = try await again.run() else { Issue.record("resume did not halt"); return }
        #expect(second == "wave 1 failed earlier; start a new rollout after fixing the cause")
        #expect(tally.count == 0, "the resume of a halted rollout touched a host")

        await sim.powerCycle()
        try await again.rollbackAfterHalt()
        c = try #require(try journal.host(id, canary))
        #expect(c.state == .rolledBack && c.reboots == 1, "\(c)")
        let paths = try f.legalPaths(id)
        #expect(paths[canary] == [.pending, .checked, .staged, .rebooting, .failed, .rollingBack, .rolledBack], "\(f.render(paths[canary] ?? []))")
        let s = await f.summaries()
        #expect(s[canary]!.reboots == 1 && s[canary]!.release == Self.old && s[canary]!.saved?.hasSuffix(Self.old) == true, "\(s[canary]!)")
        #expect(await sim.boots == [Self.old, Self.new, Self.old], "booted the new kernel (hung), then the old after the power cycle")
        for name in try f.names(id, wave: 2) { #expect(s[name]!.commands == 0) }
        #expect(try journal.lockedHosts(id).isEmpty)
        #expect(try journal.rollout(id)?.state == .rolledBack)
    }

    // MARK: - the failure budget

    /// `max_failed_hosts_per_wave: 1`: two hosts of the first batch of wave 2 boot the wrong
    /// kernel; after that batch the budget is exceeded and the rollout halts before any later
    /// batch reboots. The policy (`wave`) rolls back wave 2: the failed hosts and those staged
    /// for later batches without a reboot (their one-shot entry cleared), the verified one with
    /// one; the committed canary is left alone.
    @Test func moreFailuresInAWaveThanItsBudgetHaltTheRollout() async throws {
        let f = try SimFleet(count: 7, racks: 3, waves: [.count(1), .percent(100)], maxParallel: 4, maxFailedPerWave: 1)
        let id = try f.create()
        let canary = try #require(try f.names(id, wave: 1).first)
        let wave2 = try f.journal.hosts(id, wave: 2)
        let first = wave2.filter { $0.batch == wave2.first?.batch }.map(\.name)
        let rest = wave2.filter { $0.batch != wave2.first?.batch }.map(\.name)
        #expect(first.count == 3 && rest.count == 3, "batches of wave 2: \(wave2.map { "\($0.name)@\($0.batch ?? 0)" })")
        let bad = Array(first.prefix(2)), good = first[2]
        for name in bad { await f.hosts[name]!.setIgnoresOneShot(true) }
        let o = f.orchestrator(id)
        defer { o.releaseLease() }

        guard case .halted(let reason) = try await o.run() else { Issue.record("not halted"); return }
        #expect(reason.hasPrefix("wave 2: 2 hosts failed (budget 1) — \(bad[0]): booted \(Self.old)"), "\(reason)")
        #expect(try f.journal.host(id, good)?.state == .verified, "the halt comes before the gate")
        for name in rest { #expect(try f.journal.host(id, name)?.state == .staged) }

        try await o.rollbackAfterHalt()
        let paths = try f.legalPaths(id)
        let s = await f.summaries()
        #expect(paths[canary] == happyPath && s[canary]!.release == Self.new && s[canary]!.reboots == 1)
        for name in bad {
            #expect(paths[name] == [.pending, .checked, .staged, .rebooting, .up, .failed, .rollingBack, .rolledBack], "\(name): \(f.render(paths[name] ?? []))")
            #expect(s[name]!.reboots == 1)
        }
        #expect(paths[good] == [.pending, .checked, .staged, .rebooting, .up, .verified, .rollingBack, .rollingBack, .rolledBack], "\(f.render(paths[good] ?? []))")
        #expect(s[good]!.reboots == 2 && s[good]!.release == Self.old)
        for name in rest {
            #expect(paths[name] == [.pending, .checked, .staged, .rollingBack, .rolledBack], "\(name): \(f.render(paths[name] ?? []))")
            #expect(s[name]!.reboots == 0 && s[name]!.release == Self.old)
        }
        for name in bad + [good] + rest {
            #expect(s[name]!.saved?.hasSuffix(Self.old) == true, "\(name): \(s[name]!)")
            #expect(await f.hosts[name]!.nextEntry == nil, "\(name) keeps a one-shot entry for the new kernel: its next reboot would boot it")
            #expect(try f.journal.host(id, name)?.reboots == s[name]!.reboots, "\(name): the journal counts the reboots the host had")
        }
        #expect(try f.journal.waves(id).map(\.state) == [.passed, .rolledBack])
        #expect(try f.journal.rollout(id)?.state == .halted, "the committed canary still runs the new kernel")
        #expect(try f.journal.lockedHosts(id).isEmpty)
    }

    /// `max_failed_hosts_per_wave: 1, max_failed_hosts: 1`: one failure in wave 2 is tolerated
    /// (the wave passes, the failed host stays failed and locked), a second in wave 3 exceeds the
    /// rollout's budget: halt, wave 3 rolled back, the tolerated host left for a person.
    @Test func failuresAcrossWavesBeyondTheRolloutsBudgetHaltTheRollout() async throws {
        let f = try SimFleet(count: 7, racks: 3, waves: [.count(1), .percent(50), .percent(100)], maxParallel: 4, maxFailedPerWave: 1)
        let id = try f.create()
        let wave2 = try f.names(id, wave: 2), wave3 = try f.journal.hosts(id, wave: 3)
        let tolerated = wave2[0], second = wave3[0].name
        await f.hosts[tolerated]!.setIgnoresOneShot(true)
        await f.hosts[second]!.setIgnoresOneShot(true)
        let o = f.orchestrator(id)
        defer { o.releaseLease() }

        guard case .halted(let reason) = try await o.run() else { Issue.record("not halted"); return }
        #expect(reason == "2 hosts failed across the rollout (budget 1)")
        #expect(try f.journal.waves(id).map(\.state) == [.passed, .passed, .failed])
        for name in wave2.dropFirst() { #expect(try f.journal.host(id, name)?.state == .committed) }

        try await o.rollbackAfterHalt()
        let paths = try f.legalPaths(id)
        let wrong: [HostState] = [.pending, .checked, .staged, .rebooting, .up, .failed]
        #expect(paths[tolerated] == wrong, "\(f.render(paths[tolerated] ?? []))")
        #expect(paths[second] == wrong + [.rollingBack, .rolledBack], "\(f.render(paths[second] ?? []))")
        #expect(try f.journal.lockedHosts(id) == [tolerated], "the tolerated failure of a passed wave stays locked")
        #expect(try f.journal.waves(id).map(\.state) == [.passed, .passed, .rolledBack])
        #expect(try f.journal.rollout(id)?.state == .halted)
        let s = await f.summaries()
        for h in wave3 {
            #expect(try f.journal.host(id, h.name)?.state == .rolledBack)
            #expect(s[h.name]!.release == Self.old && s[h.name]!.saved?.hasSuffix(Self.old) == true, "\(h.name): \(s[h.name]!)")
            #expect(await f.hosts[h.name]!.nextEntry == nil, "\(h.name) keeps a one-shot entry for the new kernel")
        }
    }

    /// A host staged for a later batch when the rollout halts still has the new kernel as its
    /// GRUB one-shot entry; its rollback must clear it. When `grub-editenv … unset next_entry`
    /// fails there, the host's next reboot (any, weeks later) would boot the new kernel: the
    /// rollback fails (`rollback_failed`, the host stays locked) instead of journaling it
    /// `rolled_back`. (Before, the command ran under `try?` and its exit status was ignored.)
    @Test func aStagedHostWhoseOneShotCannotBeClearedIsNotRolledBack() async throws {
        let f = try SimFleet(count: 3, racks: 1, waves: [.percent(100)])
        let id = try f.create()
        let order = try f.names(id, wave: 1)
        #expect(try f.journal.hosts(id, wave: 1).map(\.batch) == [1, 2, 3], "one host per batch (one rack)")
        await f.hosts[order[0]]!.setIgnoresOneShot(true)
        let stuck = order[1]
        await f.hosts[stuck]!.setFailing([GrubDriver.clearNextEntry])
        let o = f.orchestrator(id)
        defer { o.releaseLease() }
        guard case .halted = try await o.run() else { Issue.record("not halted"); return }
        #expect(try f.journal.host(id, stuck)?.state == .staged)
        try await o.rollbackAfterHalt()
        try f.legalPaths(id)
        let sim = f.hosts[stuck]!
        #expect(await sim.nextEntry?.hasSuffix(Self.new) == true, "the simulated grubenv kept the one-shot entry")
        let row = try #require(try f.journal.host(id, stuck))
        #expect(row.state == .rollbackFailed, "\(stuck): \(row.state.rawValue)")
        #expect(try f.journal.host(id, order[2])?.state == .rolledBack)
        // What that means on the host: its next reboot, by anyone, boots the new kernel.
        _ = try await sim.run("systemctl reboot", timeout: .seconds(1))
        #expect(await sim.boots.last == Self.new)
    }

    // MARK: - a driver killed at every step, resumed

    /// The driver dies at host command N — for every N from 1 to the rollout's last — once before
    /// the command reaches the host and once after the host ran it (its answer lost). A new
    /// process (a new journal object on the same file, a new orchestrator, another driver identity)
    /// takes the dead driver's lease over and finishes. Every time: every host committed, booted
    /// exactly once (its boots: old, new), its lease and locks gone, every host's journaled path
    /// the happy path (steps repeated on resume aside), and the journal's reboot count the host's
    /// — plus one exactly where the dead driver had journaled the reboot but it never reached the
    /// host (it died sending it, or another host's command; the resume re-sends it after its grace
    /// period). A host the dead driver committed but whose host lease it had not yet removed is
    /// still locked in the journal; the resume removes the lease, then the lock.
    @Test(arguments: [KillPoint.before, .after])
    func aDriverKilledAtEveryHostCommandIsResumedAndNoHostRebootsTwice(point: KillPoint) async throws {
        var n = 1
        var resends = 0, leftLeases = 0
        let started = ContinuousClock.now
        while true {
            let f = try SimFleet(count: 3, racks: 3, waves: [.count(1), .percent(100)], maxParallel: 2)
            // The grace period before a reboot is re-sent on resume is a quarter of this (0.5 s).
            f.plan.reboot = RebootSpec(timeout: .seconds(2), settle: .zero)
            // A crashed rollctl: this process's pid with another start time.
            let dead = DriverIdentity(host: ProcessInfo.processInfo.hostName, pid: getpid(), startTime: 1, token: UUID().uuidString)
            let id = try f.create(as: dead)
            let kill = KillSwitch(at: n, point)
            let sims = f.hosts
            let first = Orchestrator(rolloutID: id, plan: f.plan, inventory: f.inventory, journal: f.journal,
                                     transport: { KillableHost(host: sims[$0.name]!, kill: kill) }, leaseTTL: .seconds(10), identity: dead)
            // A generous TTL: on a loaded machine a short one lets the heartbeat miss half of it,
            // and the first driver then stops by itself instead of dying at command N.
            let ended = CancelFlag()
            let run = Task { defer { ended.set() }; return try await first.run() }
            var finished = false
            let deadline = ContinuousClock.now + .seconds(20)
            while kill.count < n {
                if try f.journal.rollout(id)?.state == .completed { finished = true; break }
                if ended.isSet {
                    Issue.record("N = \(n): the first driver stopped by itself before host command \(n): \(String(describing: try? await run.value))")
                    finished = true
                    break
                }
                if ContinuousClock.now > deadline { Issue.record("N = \(n): the first driver neither died nor finished"); finished = true; break }
                try await Task.sleep(for: .milliseconds(2))
            }
            if finished {
                first.releaseLease()
                _ = run
                break
            }
            try await Task.sleep(for: .milliseconds(20))  // the dead driver's journal writes in flight land
            let journal = try Journal(path: f.journal.path, clock: f.clock)
            let second = Orchestrator(rolloutID: id, plan: f.plan, inventory: f.inventory, journal: journal,
                                      transport: { sims[$0.name]! }, identity: otherDriver())
            let outcome = try await second.run()
            second.releaseLease()
            first.releaseLease()  // ends the dead driver's heartbeat; its host tasks stay hung
            let died = kill.died.map { "\($0.host) `\($0.command.prefix(50))`" } ?? "?"
            let context = "died \(point.rawValue) host command \(n) (\(died)):"
            #expect(outcome == .completed, "\(context) \(outcome)")
            let paths = try f.legalPaths(id, context)
            // What the dead driver journaled: every event before the takeover.
            let events = try journal.events(id)
            let takeover = try #require(events.first { $0.message.contains("driver lease taken over") }, "\(context)")
            let byDead = events.filter { $0.id < takeover.id && $0.kind == .state }
            for (name, s) in await f.summaries() {
                #expect(s.reboots == 1 && s.release == SimFleet.new && s.saved?.hasSuffix(SimFleet.new) == true, "\(context) \(name) \(s)")
                #expect(await f.hosts[name]!.boots == [SimFleet.old, SimFleet.new], "\(context) \(name)")
                let row = try #require(try journal.host(id, name))
                let path = (paths[name] ?? []).reduce(into: [HostState]()) { if $0.last != $1 { $0.append($1) } }
                #expect(row.state == .committed && path == happyPath, "\(context) \(name): \(f.render(paths[name] ?? []))")
                // The reboot was announced (journaled) by the dead driver but never reached the host:
                // the resume sees the old boot id, waits its grace period, and sends it again.
                let reached = kill.reached(name)
                let resent = byDead.contains { $0.host == name && $0.message.hasPrefix("staged → rebooting") } && !reached.contains("systemctl reboot")
                #expect(row.reboots == (resent ? 2 : 1), "\(context) \(name): the journal counts \(row.reboots) reboots (one re-sent: \(resent))")
                #expect(events.contains { $0.host == name && $0.message.hasPrefix("reboot re-sent on resume") } == resent, "\(context) \(name)")
                if resent { resends += 1 }
                // Committed (or rolled back) by the dead driver, which may have died before removing the
                // host's lease: the host stays locked in the journal until the lease is gone, so the
                // resume removes it (`releaseFinishedHosts`).
                let lease = await f.hosts[name]!.leaseText
                if byDead.contains(where: { $0.host == name && $0.message.hasPrefix("healthy → committed") }) && !reached.contains(where: { $0.contains("echo NOT-OURS") }) {
                    leftLeases += 1
                }
                #expect(lease == nil, "\(context) \(name) kept its host lease")
            }
            #expect(try journal.lockedHosts(id).isEmpty, "\(context)")
            n += 1
        }
        let points = n - 1
        print("engine: the driver died \(point.rawValue) each of \(points) host commands and every resume finished with every host booted once (\(resends) reboots re-sent on resume, \(leftLeases) host leases a dead driver left were removed by the resume), in \(ContinuousClock.now - started)")
        #expect(points >= 40, "only \(points) host commands in the rollout")
        // Dying as it sends a host's reboot (each of the 3) leaves that reboot announced and not sent.
        #expect(point == .after || resends >= 3, "reboots re-sent: \(resends)")
    }

    // MARK: - a resume while another process drives

    /// `rollout resume` (and `rollback`), built as the CLI builds it, while a live process drives
    /// the rollout (mid-soak): refused
    /// with `LeaseHeld` naming the driver, with no host command sent and nothing journaled; the
    /// driver finishes undisturbed; a resume after it touches no host.
    @Test func aResumeWhileAnotherProcessDrivesIsRefusedAndTouchesNothing() async throws {
        let f = try SimFleet(count: 4, racks: 2)
        try f.usePlan(SimFleet.yaml(name: "engine-resume", """
        waves:
          sizes: [1, 100%]
          failure_domain: rack
        reboot:
          timeout: 5s
          settle: 0s
        \(Self.gate.replacingOccurrences(of: "soak: 600ms", with: "soak: 1s"))
        """))
        let id = try f.create()
        let canary = try #require(try f.names(id, wave: 1).first)
        let a = f.orchestrator(id)
        let driving = Task { try await a.run() }
        let deadline = ContinuousClock.now + .seconds(10)
        while try f.journal.host(id, canary)?.state != .soaking && ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(5)) }
        #expect(try f.journal.host(id, canary)?.state == .soaking)
        // The driver pre-checks wave 2 while the canary soaks: those events land before the count below.
        while try f.journal.hosts(id, wave: 2, in: [.pending]).count > 0 && ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(5)) }
        try await Task.sleep(for: .milliseconds(50))

        // As `rollout resume` builds it (RolloutDriver.reopen): the journal opened anew, the plan
        // parsed from the text the journal keeps.
        let journal = try Journal(path: f.journal.path, clock: f.clock)
        let row = try #require(try journal.rollout(id))
        let plan = try PlanLoader.parse(text: row.planText, path: row.planPath)
        #expect(plan.gate == f.plan.gate && plan.waves == f.plan.waves && plan.reboot == f.plan.reboot)
        let tally = Tally()
        let sims = f.hosts
        let b = Orchestrator(rolloutID: id, plan: plan, inventory: f.inventory, journal: journal,
                             transport: { CountedHost(host: sims[$0.name]!, tally: tally) }, identity: otherDriver())
        let events = try journal.eventCount(id)
        await #expect(throws: LeaseHeld.self) { try await b.run() }
        await #expect(throws: LeaseHeld.self) { try await b.rollback([canary]) }
        await #expect(throws: LeaseHeld.self) { try await b.rollbackAfterHalt() }
        do { _ = try await b.run() } catch let e as LeaseHeld {
            #expect(e.lease.holder.token == DriverIdentity.current.token && e.rolloutID == id, "\(e)")
        }
        #expect(tally.count == 0, "a refused driver sent \(tally.count) host commands")
        #expect(try journal.eventCount(id) == events, "a refused driver journaled something")
        #expect(try journal.host(id, canary)?.state == .soaking)

        #expect(try await driving.value == .completed)
        a.releaseLease()
        #expect(try await b.run() == .completed)
        b.releaseLease()
        #expect(tally.count == 0, "the resume of a completed rollout sent \(tally.count) host commands")
        let paths = try f.legalPaths(id)
        for (name, s) in await f.summaries() {
            #expect(s.reboots == 1 && s.release == Self.new, "\(name): \(s)")
            #expect(paths[name] == happyPath, "\(name): \(f.render(paths[name] ?? []))")
        }
    }
}
