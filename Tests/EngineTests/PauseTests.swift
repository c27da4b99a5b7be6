import Foundation
import Testing
import RolloutTesting
import HealthGate
@testable import Basics
@testable import RolloutConfig
@testable import RolloutJournal
@testable import Engine

/// Waiting for a person: the plan's pause points and `rollout pause`, released by a promote from
/// another process (another `Journal` on the same file), with or without a driver attached.
@Suite("pauses and promotes", .serialized) struct PauseTests {
    /// Waits (real time) until the rollout is in `state`; false after `seconds`.
    static func until(_ f: SimFleet, _ id: String, is state: RolloutState, seconds: Double = 20) async throws -> Bool {
        let deadline = ContinuousClock.now + .seconds(seconds)
        while ContinuousClock.now < deadline {
            if try f.journal.rollout(id)?.state == state { return true }
            try await Task.sleep(for: .milliseconds(20))
        }
        return false
    }

    static func rebooted(_ f: SimFleet) async -> [String] {
        await f.summaries().filter { $0.value.reboots > 0 }.map(\.key).sorted()
    }

    @Test func aPausePointWaitsForAPromoteFromAnotherProcessAndFullReleasesTheRest() async throws {
        let f = try SimFleet(count: 6, racks: 3, waves: [.count(1), .percent(50), .percent(100)])
        f.plan.waves.pauseAfter = [1, 2]
        let id = try f.create()
        let o = f.orchestrator(id)
        defer { o.releaseLease() }
        let run = Task { try await o.run() }
        #expect(try await Self.until(f, id, is: .paused))
        // Paused after the canary's gate: the canary committed, nothing of wave 2 touched, locks kept.
        let canary = try #require(try f.names(id, wave: 1).first)
        #expect(await Self.rebooted(f) == [canary])
        // The committed canary's connection is closed at once, not held to the end of the rollout.
        #expect(await f.hosts[canary]!.closes == 1)
        // Not even pre-checked during the canary's soak: a person decides first.
        #expect(try f.journal.hosts(id, wave: 2).allSatisfy { $0.state == .pending })
        #expect(try f.journal.waves(id).map(\.state) == [.passed, .pending, .pending])
        #expect(try f.journal.rollout(id)?.note?.contains("after wave 1 passed its gate") == true)
        #expect(try f.journal.lockedHosts(id).count == 5)
        // Still paused a while later: nothing but a person moves it.
        try await Task.sleep(for: .milliseconds(600))
        #expect(try f.journal.rollout(id)?.state == .paused)
        // `rollout promote --full` from another process.
        let other = try Journal(path: f.journal.path, clock: f.clock)
        try other.promote(id, throughWave: 1, fully: true, by: "anna@admin")
        #expect(try await run.value == .completed)
        #expect(await Self.rebooted(f).count == 6)
        let events = try f.journal.events(id).map(\.message)
        #expect(events.filter { $0.hasPrefix("rollout paused") }.count == 1, "the second pause point was released too: \(events)")
        #expect(events.contains("promoted by anna@admin: every remaining pause released"))
        try f.legalPaths(id)
    }

    @Test func aPausedRolloutOutlivesItsDriverAndAResumeWaitsForThePromote() async throws {
        let f = try SimFleet(count: 4, racks: 2, waves: [.count(1), .percent(100)])
        f.plan.waves.pauseAfter = [1]
        let id = try f.create()
        let journal = f.journal
        // The driver is stopped (a signal, say) once it paused.
        let first = f.orchestrator(id, stop: { (try? journal.rollout(id))?.state == .paused })
        #expect(try await first.run() == .interrupted)
        first.releaseLease()
        #expect(try f.journal.rollout(id)?.state == .paused, "a stopped driver must leave the rollout paused")
        #expect(try f.journal.lockedHosts(id).count == 3)
        // Resumed without a promote: it pauses again and waits.
        let second = f.orchestrator(id, as: otherDriver())
        defer { second.releaseLease() }
        let run = Task { try await second.run() }
        try await Task.sleep(for: .milliseconds(500))
        #expect(try f.journal.rollout(id)?.state == .paused)
        #expect(await Self.rebooted(f).count == 1)
        try Journal(path: f.journal.path, clock: f.clock).promote(id, throughWave: 1, fully: false, by: "bob@admin")
        #expect(try await run.value == .completed)
        #expect(await Self.rebooted(f).count == 4)
        try f.legalPaths(id)
    }

    /// `rollout pause` while a batch reboots: the driver finishes that batch, then waits.
    @Test func aRequestedPauseStopsAfterTheCurrentBatch() async throws {
        let f = try SimFleet(count: 4, racks: 4, waves: [.percent(100)], maxParallel: 1)
        let id = try f.create()
        let journal = f.journal
        let firstHost = try #require(try f.names(id, wave: 1).first)
        await f.hosts[firstHost]!.setOnReboot { _ in try? journal.requestPause(id, by: "carol@admin") }
        let o = f.orchestrator(id)
        defer { o.releaseLease() }
        let run = Task { try await o.run() }
        #expect(try await Self.until(f, id, is: .paused))
        #expect(await Self.rebooted(f) == [firstHost])
        #expect(try f.journal.rollout(id)?.note?.contains("after batch 1/4 of wave 1, as carol@admin") == true)
        try Journal(path: f.journal.path, clock: f.clock).promote(id, throughWave: 0, fully: false, by: "carol@admin")
        #expect(try await run.value == .completed)
        #expect(await Self.rebooted(f).count == 4)
    }
}

/// `gate.on_inconclusive: pause`: a gate with no evidence neither passes nor halts; a person decides.
@Suite("an inconclusive gate waits for a person", .serialized) struct InconclusivePauseTests {
    @Test func aPromoteAcceptsTheWaveAndAResumeDoesNotSoakAgain() async throws {
        let f = try SimFleet(count: 3, racks: 3, waves: [.count(1), .percent(100)])
        f.plan.failure.onInconclusive = .pause
        f.plan.gate.soak = .seconds(10)
        let id = try f.create()
        let canary = try #require(try f.names(id, wave: 1).first)
        // After its reboot the canary's facts cannot be read: every gate sample is empty.
        let sim = f.hosts[canary]!
        await sim.setOnReboot { _ in Task { await sim.setFailing([HealthGate.HostFacts.command]) } }
        let journal = f.journal
        let first = f.orchestrator(id, stop: { (try? journal.rollout(id))?.state == .paused })
        #expect(try await first.run() == .interrupted)
        first.releaseLease()
        let r = try #require(try f.journal.rollout(id))
        #expect(r.state == .paused && r.note?.contains("inconclusive gate") == true, "\(r.state) \(r.note ?? "")")
        #expect(try f.journal.host(id, canary)?.state == .soaking)
        // Resumed: it waits for the person again, without a second soak.
        let log = SimFleet.Log()
        let second = f.orchestrator(id, as: otherDriver(), log: log)
        defer { second.releaseLease() }
        let run = Task { try await second.run() }
        #expect(try await PauseTests.until(f, id, is: .paused))
        try await Task.sleep(for: .milliseconds(300))
        #expect(!log.all.contains { $0.contains("soaking") }, "\(log.all)")
        try Journal(path: f.journal.path, clock: f.clock).promote(id, throughWave: 1, fully: false, by: "dana@admin")
        #expect(try await run.value == .completed)
        #expect(try f.journal.host(id, canary)?.state == .committed)
        #expect(try f.journal.events(id).contains { $0.message.contains("the inconclusive gate was accepted by a person") })
        try f.legalPaths(id)
    }

    @Test func withoutThePolicyAnInconclusiveGateHalts() async throws {
        let f = try SimFleet(count: 2, racks: 2, waves: [.count(1), .percent(100)])
        f.plan.gate.soak = .seconds(10)
        let id = try f.create()
        let canary = try #require(try f.names(id, wave: 1).first)
        let sim = f.hosts[canary]!
        await sim.setOnReboot { _ in Task { await sim.setFailing([HealthGate.HostFacts.command]) } }
        let o = f.orchestrator(id)
        defer { o.releaseLease() }
        guard case .halted(let reason) = try await o.run() else { Issue.record("not halted"); return }
        #expect(reason.contains("wave 1 gate inconclusive"), "\(reason)")
        #expect(try f.journal.host(id, canary)?.state == .failed)
    }
}

/// `plan apply --at`: the rollout is journaled (and its hosts locked) now, its first step waits.
@Suite("a scheduled start", .serialized) struct ScheduledStartTests {
    @Test func nothingTouchesAHostBeforeTheStartAlsoAcrossAResume() async throws {
        let f = try SimFleet(count: 3, racks: 3, waves: [.count(1), .percent(100)])
        let start = f.clock.now.addingTimeInterval(3 * 3600)
        let id = try f.create(startAt: start)
        #expect(try f.journal.lockedHosts(id).count == 3, "the hosts are held from creation")
        let journal = f.journal
        // The first driver stops while it waits; a resume waits on.
        let first = f.orchestrator(id, stop: { (try? journal.rollout(id))?.state == .waiting })
        #expect(try await first.run() == .interrupted)
        first.releaseLease()
        #expect(await f.summaries().values.allSatisfy { $0.commands == 0 }, "a host was touched before the start")
        let second = f.orchestrator(id, as: otherDriver())
        defer { second.releaseLease() }
        #expect(try await second.run() == .completed)
        // Journal times have milliseconds (and a double's rounding): compared to 10 ms.
        let firstStep = try #require(try f.journal.events(id).first { $0.kind == .state && $0.host != nil })
        let at = try #require(TimeText.parse(firstStep.at))
        #expect(at >= start.addingTimeInterval(-0.01), "first step at \(firstStep.at), before the start \(TimeText.iso(start))")
        #expect(try f.journal.events(id).contains { $0.message.hasPrefix("rollout waiting: scheduled start (plan apply --at): until ") })
    }
}
