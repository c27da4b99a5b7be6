import Foundation
import Testing
@testable import Basics
@testable import RolloutConfig
@testable import Engine

@Suite struct MaintenanceWindowTests {
    func flagship() throws -> LoadedPlan { try PlanLoader.loadChecked(path: repoRoot + "/plans/socket-bind-fix.yaml") }

    /// plans/socket-bind-fix.yaml: lead time 30m, reboot timeout 10m, soak 15m. The canary's
    /// customers were told "now to now + 25 min" while the first reboot came at now + 30 min.
    @Test func theFlagshipsCanaryWindowStartsAfterTheLeadTimeAndCoversItsBatch() throws {
        let p = try flagship().plan
        let now = Date(timeIntervalSince1970: 1_800_000_000)
        let from = now.addingTimeInterval(p.notify!.leadTime.seconds)
        let w = MaintenanceWindow.forCustomer(rebootsFrom: from, lastBatch: 0, plan: p)
        #expect(w.start == from)
        #expect(w.start == now.addingTimeInterval(1800))
        let batch = p.reboot.settle.seconds + p.reboot.timeout.seconds + 40
        #expect(w.end == from.addingTimeInterval(batch + p.gate.soak.seconds + batch))
        // The first reboot, at once after the lead time, and the slowest reboot of the batch fall inside.
        #expect(w.holds(now: from, batchesLeft: 1, plan: p))
        // Sending the notices and the lead-time wait take a little longer than planned: still held
        // (that is what the rollback reboot's allowance also covers) — no corrected notice.
        #expect(w.holds(now: from.addingTimeInterval(30), batchesLeft: 1, plan: p))
        #expect(!w.holds(now: from.addingTimeInterval(batch + 1), batchesLeft: 1, plan: p))
        #expect(!w.holds(now: from.addingTimeInterval(-60), batchesLeft: 1, plan: p), "never before the window starts")
    }

    /// Simulated wave: batches of random durations up to the allowance; every reboot starts
    /// inside the window of the customers of its host, whatever batch their last host is in.
    @Test func everyBatchOfARandomWaveStartsInsideItsCustomersWindow() throws {
        let p = try flagship().plan
        var rng = SeededRNG(seed: 42)
        let allowance = MaintenanceWindow.batchAllowance(p).seconds
        for _ in 0..<200 {
            let batches = Int.random(in: 1...12, using: &rng)
            let from = Date(timeIntervalSince1970: 1_800_000_000)
            var t = from.addingTimeInterval(Double.random(in: 0...5, using: &rng))  // the lead-time wait ends a little late
            for b in 0..<batches {
                let lastBatchOfCustomer = Int.random(in: b..<batches, using: &rng)
                let w = MaintenanceWindow.forCustomer(rebootsFrom: from, lastBatch: lastBatchOfCustomer, plan: p)
                #expect(t >= w.start && t.addingTimeInterval(allowance) <= w.end.addingTimeInterval(-p.gate.soak.seconds - allowance + 5))
                t = t.addingTimeInterval(Double.random(in: 0...(allowance - 5), using: &rng))
            }
        }
    }

    @Test func humanTextIsNeverNarrowerThanTheWindow() {
        let w = MaintenanceWindow(start: Date(timeIntervalSince1970: 1_800_000_059), end: Date(timeIntervalSince1970: 1_800_000_061))
        #expect(w.humanStart == TimeText.human(Date(timeIntervalSince1970: 1_800_000_000)))
        #expect(w.humanEnd == TimeText.human(Date(timeIntervalSince1970: 1_800_000_120)))
        #expect(w.iso == "2027-01-15T08:00:59Z/2027-01-15T08:01:01Z")
    }

    @Test func theDryRunStatesTheSameWindowAsTheNotice() throws {
        let l = try flagship()
        let layout = WavePlanner.plan(l.plan, inventory: l.inventory, currentRelease: [:], unreachable: [:], customers: l.customers)
        let facts = DryRunFacts(offline: true, customers: l.customers, maintenanceTemplate: nil)
        let before = Date()
        let p = DryRun.preview(plan: l.plan, inventory: l.inventory, layout: layout, facts: facts)
        let body = try #require(p.notify?.example?.body)
        let w = MaintenanceWindow.forCustomer(rebootsFrom: before.addingTimeInterval(l.plan.notify!.leadTime.seconds), lastBatch: 0, plan: l.plan)
        #expect(body.contains("between \(w.humanStart) and \(w.humanEnd)"), "\(body)")
        #expect(!body.contains("between \(TimeText.human(before)) "), "the window must not start now: \(body)")
    }
}
