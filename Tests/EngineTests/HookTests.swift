import Foundation
import Testing
import RolloutTesting
@testable import Basics
@testable import RolloutConfig
@testable import RolloutJournal
@testable import Engine

/// The plan's hooks over SimHost (host hooks) and /bin/sh on this machine (local hooks).
@Suite("hooks", .serialized) struct HookTests {
    static func fleet(_ hooks: String, count: Int = 3, budget: Int = 0) throws -> SimFleet {
        let f = try SimFleet(count: count, racks: count, waves: [.count(1), .percent(100)], maxFailedPerWave: budget)
        f.plan.hooks = try PlanLoader.parse(text: "name: h\nkernel: {release: \(SimFleet.new)}\ninventory: i.yaml\nhooks:\n" + hooks, path: f.dir + "/p.yaml").hooks
        return f
    }

    @Test func hooksRunInOrderWithTheirEnvironmentAndNeverTwiceAcrossAResume() async throws {
        let out = try TestDir()
        let f = try Self.fleet("""
              pre_reboot:
                - drain-from-lb
                - {run: 'printf "%s %s %s" "$ROLLCTL_WAVE" "$ROLLCTL_ADDRESS" "$ROLLCTL_RELEASE" > \(out.path)/"$ROLLCTL_HOST".pre', on: local}
              post_boot:
                - {run: put-back, timeout: 30s}
              after_commit:
                - {run: 'echo "$ROLLCTL_HOST" >> \(out.path)/committed', on: local}
            """)
        let id = try f.create()
        let journal = f.journal
        // The first driver stops once the first hook has run; the second finishes.
        let first = f.orchestrator(id, stop: { (try? journal.hookRuns(id))?.contains { $0.status == .ok } ?? false })
        #expect(try await first.run() == .interrupted)
        first.releaseLease()
        let second = f.orchestrator(id, as: otherDriver())
        defer { second.releaseLease() }
        #expect(try await second.run() == .completed)
        for (name, sim) in f.hosts {
            let hooks = await sim.hooks
            // Once each: drain before the reboot, put back after it.
            #expect(hooks.count == 2, "\(name): \(hooks.map(\.command))")
            #expect(hooks.first?.command.hasSuffix("sh -c drain-from-lb") == true && hooks.first?.rebootsBefore == 0, "\(name)")
            #expect(hooks.last?.command.hasSuffix("sh -c put-back") == true && hooks.last?.rebootsBefore == 1, "\(name)")
            #expect(hooks.first?.command.contains("export ROLLCTL_HOST=\(name);") == true)
            let wave = try #require(try f.journal.host(id, name)?.wave)
            let address = try #require(f.inventory.hosts.first { $0.name == name }?.address)
            #expect(try String(contentsOfFile: "\(out.path)/\(name).pre", encoding: .utf8) == "\(wave) \(address) \(SimFleet.new)")
        }
        let committed = try String(contentsOfFile: "\(out.path)/committed", encoding: .utf8).split(separator: "\n").map(String.init)
        #expect(committed.sorted() == f.hosts.keys.sorted(), "after_commit once per host: \(committed)")
        #expect(try f.journal.hookRuns(id).allSatisfy { $0.status == .ok })
        try f.legalPaths(id)
    }

    @Test func aFailingPreRebootHookFailsOnlyThatHostUnrebooted() async throws {
        let f = try Self.fleet("""
              pre_reboot: [drain-from-lb]
            """, budget: 1)
        await f.hosts["h02"]!.setFailing(["export ROLLCTL_"])
        let id = try f.create()
        let o = f.orchestrator(id)
        defer { o.releaseLease() }
        #expect(try await o.run() == .completed)
        let failed = try #require(try f.journal.host(id, "h02"))
        #expect(failed.state == .failed && failed.reason?.hasPrefix("hook pre_reboot[0] failed: exit 1") == true, "\(failed)")
        #expect(await f.hosts["h02"]!.summary().reboots == 0)
        for name in ["h01", "h03"] { #expect(try f.journal.host(id, name)?.state == .committed) }
        let run = try #require(try f.journal.hookRuns(id).first { $0.host == "h02" })
        #expect(run.status == .failed && run.exitStatus == 1 && run.output?.contains("simulated failure") == true, "\(run)")
    }

    @Test func aFailingPostBootHookHaltsRollsBackAndTheHaltHookRunsOnce() async throws {
        let out = try TestDir()
        let f = try Self.fleet("""
              post_boot: [put-back-FAIL]
              on_halt:
                - 'printf "%s|%s" "$ROLLCTL_WAVE" "$ROLLCTL_REASON" >> \(out.path)/halt'
                - {run: 'exit 3', on_error: warn}
            """)
        let id = try f.create()
        let service = RolloutService(journal: f.journal, transport: { [hosts = f.hosts] in hosts[$0.name]! })
        let o = f.orchestrator(id)
        guard case .halted(let reason) = try await service.drive(o) else { Issue.record("not halted"); return }
        let canary = try #require(try f.names(id, wave: 1).first)
        #expect(reason.contains("hook post_boot[0] failed: exit 1"), "\(reason)")
        #expect(try f.journal.host(id, canary)?.state == .rolledBack)
        let halt = try String(contentsOfFile: "\(out.path)/halt", encoding: .utf8)
        #expect(halt == "1|\(reason)", "\(halt)")
        let runs = try f.journal.hookRuns(id).filter { $0.phase == "on_halt" }
        #expect(runs.map(\.status) == [.ok, .warned])
    }

    /// A driver that dies right after journaling its halt (before the on_halt hooks and the
    /// rollback policy) loses nothing: `rollout resume` finishes what the halt owes, once — a
    /// second resume runs nothing again.
    @Test func aDriverThatDiesBetweenTheHaltAndItsHooksLeavesThemToTheResume() async throws {
        let out = try TestDir()
        let f = try SimFleet(count: 3, racks: 3)
        // `rollout resume` reopens the rollout from its stored plan text and the inventory file.
        try f.usePlan(SimFleet.yaml(name: "halt-follow-up", """
            waves: {sizes: [1, 100%], max_parallel: 3, failure_domain: rack}
            reboot: {timeout: 5s, settle: 0s}
            gate: {soak: 200ms, interval: 100ms, probe_timeout: 100ms, test_site: off, sunreclaim_growth_max: null}
            hooks:
              post_boot: [put-back-FAIL]
              on_halt:
                - {run: 'printf "%s|%s\\n" "$ROLLCTL_WAVE" "$ROLLCTL_REASON" >> \(out.path)/halt', on: local}
            on_failure: {rollback: wave, max_failed_hosts_per_wave: 0, max_failed_hosts: 0}
            """))
        try ("hosts:\n" + f.inventory.hosts.map { "  - {name: \($0.name), address: \($0.address), labels: {rack: \($0.labels["rack"]!)}}\n" }.joined())
            .write(toFile: f.dir + "/inventory.yaml", atomically: true, encoding: .utf8)
        let id = try f.create()
        // The orchestrator alone halts and returns: what `drive` does next never happens.
        let dying = f.orchestrator(id)
        guard case .halted(let reason) = try await dying.run() else { Issue.record("not halted"); return }
        dying.releaseLease()
        let canary = try #require(try f.names(id, wave: 1).first)
        #expect(!FileManager.default.fileExists(atPath: "\(out.path)/halt"))
        #expect(try f.journal.host(id, canary)?.state != .rolledBack)
        #expect(try f.journal.hookRuns(id).filter { $0.phase == "on_halt" }.isEmpty)

        let service = RolloutService(journal: f.journal, transport: { [hosts = f.hosts] in hosts[$0.name]! })
        for _ in 0..<2 {
            let r = try #require(try f.journal.rollout(id))
            do {
                switch try await service.resume(r) {
                case .over(let state): #expect(state == .rolledBack)
                case .ready: Issue.record("a halted rollout was resumed as if it ran")
                }
            } catch let e as RolloutService.Refusal {
                Issue.record("refused without finishing the halt: \(e)")
            }
        }
        #expect(try String(contentsOfFile: "\(out.path)/halt", encoding: .utf8) == "1|\(reason)\n")
        #expect(try f.journal.host(id, canary)?.state == .rolledBack)
        #expect(try f.journal.hookRuns(id).filter { $0.phase == "on_halt" }.map(\.status) == [.ok])
        #expect(await f.hosts[canary]!.summary().reboots == 2)   // the new kernel, then back: once each
    }
}

/// A temporary folder, removed at deinit.
final class TestDir: @unchecked Sendable {
    let path: String
    init() throws {
        path = NSTemporaryDirectory() + "rollctl-hooks-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }
    deinit { try? FileManager.default.removeItem(atPath: path) }
}
