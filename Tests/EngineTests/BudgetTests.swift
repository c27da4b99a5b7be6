import Foundation
import Testing
import RolloutTesting
@testable import RolloutConfig
@testable import RolloutJournal
@testable import Engine

/// Failure budgets as shares: of the wave's hosts, of the rollout's, and hosts unhealthy at once.
/// A budget tolerates its limit; one more failed host halts.
@Suite("failure budgets in percent", .serialized) struct BudgetTests {
    /// Ten hosts, each its own rack: the canary, then one batch of nine.
    static func fleet(bad: Int, _ failure: FailurePolicy) async throws -> (SimFleet, String, [String]) {
        let f = try SimFleet(count: 10, racks: 10, waves: [.count(1), .percent(100)], maxParallel: 9)
        f.plan.failure = failure
        let id = try f.create()
        let wave2 = try f.names(id, wave: 2)
        for name in wave2.prefix(bad) { await f.hosts[name]!.setIgnoresOneShot(true) }
        return (f, id, Array(wave2.prefix(bad)))
    }

    @Test func limitsAreSharesRoundedDown() {
        #expect(FailureBudget.share(0.02).limit(of: 120) == 2)
        #expect(FailureBudget.share(0.02).limit(of: 49) == 0)
        #expect(FailureBudget.share(0.29).limit(of: 100) == 29)  // 28.999… in binary
        #expect(FailureBudget.share(0.07).limit(of: 100) == 7)
        #expect(FailureBudget.count(3).limit(of: 1) == 3)
        #expect(FailureBudget.share(0.025).description == "2.5%" && FailureBudget.share(0.1).description == "10%")
    }

    @Test func aShareOfTheWaveToleratesItsLimitAndHaltsAtOneMore() async throws {
        // 20% of wave 2's nine hosts: 1.8, so one failure is tolerated and a second halts.
        let tolerant = FailurePolicy(maxFailedHostsPerWave: .share(0.2), maxFailedHostsTotal: .share(0.2))
        let (ok, okID, _) = try await Self.fleet(bad: 1, tolerant)
        let a = ok.orchestrator(okID)
        defer { a.releaseLease() }
        #expect(try await a.run() == .completed)
        #expect(try ok.journal.waves(okID).map(\.state) == [.passed, .passed])

        let (f, id, bad) = try await Self.fleet(bad: 2, tolerant)
        let o = f.orchestrator(id)
        defer { o.releaseLease() }
        guard case .halted(let reason) = try await o.run() else { Issue.record("not halted"); return }
        #expect(reason.hasPrefix("wave 2: 2 hosts failed (budget 20% = 1) — \(bad.sorted()[0])") || reason.hasPrefix("wave 2: 2 hosts failed (budget 20% = 1) — \(bad[0])"), "\(reason)")
    }

    @Test func tooManyHostsUnhealthyAtOnceHalt() async throws {
        // Generous per-wave and total budgets; at most 10% of the ten hosts (one) failed at once.
        let policy = FailurePolicy(maxFailedHostsPerWave: .share(0.5), maxFailedHostsTotal: .share(0.5), maxUnhealthyHosts: .share(0.1))
        let (f, id, _) = try await Self.fleet(bad: 2, policy)
        let o = f.orchestrator(id)
        defer { o.releaseLease() }
        guard case .halted(let reason) = try await o.run() else { Issue.record("not halted"); return }
        #expect(reason == "2 hosts failed or rolling back at once (max_unhealthy_hosts 10% = 1)", "\(reason)")
        // Without that limit the same rollout completes with its two failures tolerated.
        let (g, gid, _) = try await Self.fleet(bad: 2, FailurePolicy(maxFailedHostsPerWave: .share(0.5), maxFailedHostsTotal: .share(0.5)))
        let p = g.orchestrator(gid)
        defer { p.releaseLease() }
        #expect(try await p.run() == .completed)
    }
}

/// A halt on a failed gate or on hosts that did not boot the kernel records the release as known bad.
@Suite("known-bad kernels", .serialized) struct KnownBadTests {
    static func drive(_ f: SimFleet, _ id: String) async throws -> RolloutOutcome {
        let service = RolloutService(journal: f.journal, transport: { [hosts = f.hosts] in hosts[$0.name]! })
        return try await service.drive(f.orchestrator(id))
    }

    @Test func aFailedGateRecordsTheReleaseWithItsHostsAndReason() async throws {
        let f = try SimFleet(count: 3, racks: 3)
        f.plan.gate.soak = .seconds(10)
        f.plan.gate.sUnreclaimMax = 310_000 * 1024
        let id = try f.create()
        let canary = try #require(try f.names(id, wave: 1).first)
        await f.hosts[canary]!.setLeak(on: SimFleet.new, bytesPerSecond: 1_073_741_824)
        let outcome = try await Self.drive(f, id)
        guard case .halted(let reason) = outcome else { Issue.record("not halted: \(outcome) \(try f.journal.hosts(id).map { "\($0.name) \($0.state) \($0.reason ?? "")" })"); return }
        let bad = try #require(try f.journal.knownBad(SimFleet.new))
        #expect(bad.source == .gate && bad.hosts == [canary] && bad.rolloutID == id && bad.evidence == reason, "\(bad)")
        #expect(try f.journal.events(id).contains { $0.message == "kernel \(SimFleet.new) recorded as known bad (gate)" })
    }

    @Test func hostsThatDidNotBootItRecordItAndAHookFailureDoesNot() async throws {
        let f = try SimFleet(count: 3, racks: 3)
        let id = try f.create()
        let canary = try #require(try f.names(id, wave: 1).first)
        await f.hosts[canary]!.setIgnoresOneShot(true)
        guard case .halted = try await Self.drive(f, id) else { Issue.record("not halted"); return }
        let bad = try #require(try f.journal.knownBad(SimFleet.new))
        #expect(bad.source == .boot && bad.hosts == [canary], "\(bad)")

        // A halt that says nothing of the kernel (a drain that failed before any reboot) records nothing.
        let g = try SimFleet(count: 3, racks: 3)
        g.plan.hooks.preReboot = [Hook(run: "drain-FAIL")]
        let gid = try g.create()
        guard case .halted = try await Self.drive(g, gid) else { Issue.record("not halted"); return }
        #expect(try g.journal.knownBad(SimFleet.new) == nil)
    }
}
