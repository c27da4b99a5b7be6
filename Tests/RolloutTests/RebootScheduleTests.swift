import Foundation
import Testing
@testable import Basics
@testable import RolloutConfig
import HealthGate

/// The schedule's arithmetic: windows on a time zone's wall clock (across midnight and
/// daylight-saving changes), slots that hold a batch before the cutoff, spacing between batches.
@Suite struct RebootScheduleTests {
    typealias S = RebootSchedule
    static let utc = TimeZone(identifier: "UTC")!

    static func date(_ iso: String) -> Date { TimeText.parse(iso)! }
    static func hm(_ h: Int, _ m: Int = 0) -> S.TimeOfDay { .init(hour: h, minute: m) }
    static func intervals(_ s: S, from: String, count: Int = 4) -> [String] {
        s.openings(from: date(from)).prefix(count).map { "\(TimeText.iso($0.start))/\(TimeText.iso($0.end))" }
    }

    @Test func weekdayWindowsAndOneThatCrossesMidnight() {
        // Tuesday 1 Dec 2026, 12:00 UTC.
        let s = S(timeZone: Self.utc, windows: [
            .init(days: [.mon, .tue, .wed, .thu, .fri], start: Self.hm(2), end: Self.hm(5)),
            .init(days: [.sat], start: Self.hm(22), end: Self.hm(3)),
        ])
        #expect(Self.intervals(s, from: "2026-12-01T12:00:00Z", count: 5) == [
            "2026-12-02T02:00:00Z/2026-12-02T05:00:00Z",  // Wed
            "2026-12-03T02:00:00Z/2026-12-03T05:00:00Z",  // Thu
            "2026-12-04T02:00:00Z/2026-12-04T05:00:00Z",  // Fri
            "2026-12-05T22:00:00Z/2026-12-06T03:00:00Z",  // Sat night into Sunday
            "2026-12-07T02:00:00Z/2026-12-07T05:00:00Z",  // Mon
        ])
        // A window already open counts from its real start; one that crossed midnight too.
        #expect(Self.intervals(s, from: "2026-12-06T01:00:00Z", count: 1) == ["2026-12-05T22:00:00Z/2026-12-06T03:00:00Z"])
        #expect(s.opening(containing: Self.date("2026-12-06T01:00:00Z")) != nil)
        #expect(s.opening(containing: Self.date("2026-12-06T03:00:00Z")) == nil)
    }

    @Test func windowsThatTouchAreOneOpening() {
        let s = S(timeZone: Self.utc, windows: [
            .init(days: [.sun], start: Self.hm(22), end: .init(seconds: 86400)),
            .init(days: [.mon], start: Self.hm(0), end: Self.hm(2)),
        ])
        #expect(Self.intervals(s, from: "2026-12-01T00:00:00Z", count: 1) == ["2026-12-06T22:00:00Z/2026-12-07T02:00:00Z"])
    }

    /// Europe/Berlin springs forward on 28 Mar 2027 (02:00 CET → 03:00 CEST, at 01:00 UTC) and falls
    /// back on 25 Oct 2026 (03:00 CEST → 02:00 CET, at 01:00 UTC). Windows follow the wall clock:
    /// shorter and longer that night; a start the clock skips opens when the clock reaches it.
    @Test func daylightSavingChangesFollowTheWallClock() {
        let berlin = TimeZone(identifier: "Europe/Berlin")!
        let s = S(timeZone: berlin, windows: [.init(start: Self.hm(1), end: Self.hm(5))])
        // Spring: the night before 4 h (00:00–04:00 UTC), that night 3 h, the night after 4 h in summer time.
        #expect(Self.intervals(s, from: "2027-03-26T12:00:00Z", count: 3) == [
            "2027-03-27T00:00:00Z/2027-03-27T04:00:00Z",
            "2027-03-28T00:00:00Z/2027-03-28T03:00:00Z",
            "2027-03-28T23:00:00Z/2027-03-29T03:00:00Z",
        ])
        // Autumn: that night 5 h (01:00 CEST = 23:00 UTC to 05:00 CET = 04:00 UTC).
        #expect(Self.intervals(s, from: "2026-10-23T12:00:00Z", count: 3) == [
            "2026-10-23T23:00:00Z/2026-10-24T03:00:00Z",
            "2026-10-24T23:00:00Z/2026-10-25T04:00:00Z",
            "2026-10-26T00:00:00Z/2026-10-26T04:00:00Z",
        ])
        // 02:30 does not exist on 28 Mar 2027 in Berlin: the window opens at 03:00 CEST (01:00 UTC).
        let skipped = S(timeZone: berlin, windows: [.init(start: Self.hm(2, 30), end: Self.hm(4))])
        #expect(Self.intervals(skipped, from: "2027-03-27T12:00:00Z", count: 1) == ["2027-03-28T01:00:00Z/2027-03-28T02:00:00Z"])
        // 02:30 happens twice on 25 Oct 2026: the window opens at the first (00:30 UTC).
        #expect(Self.intervals(skipped, from: "2026-10-24T12:00:00Z", count: 1) == ["2026-10-25T00:30:00Z/2026-10-25T03:00:00Z"])
    }

    @Test func aSlotHoldsTheBatchAndTheCutoffOrMovesToTheNextWindow() {
        let s = S(timeZone: Self.utc, windows: [.init(start: Self.hm(2), end: Self.hm(5))], cutoff: .seconds(20 * 60))
        let batch = Duration.seconds(10 * 60)
        // Before the window: its start.
        #expect(s.slot(notBefore: Self.date("2026-12-01T01:00:00Z"), length: batch) == Self.date("2026-12-01T02:00:00Z"))
        // Inside, with room: now.
        #expect(s.slot(notBefore: Self.date("2026-12-01T04:00:00Z"), length: batch) == Self.date("2026-12-01T04:00:00Z"))
        // The last moment that still ends by 04:40 (05:00 − 20m cutoff).
        #expect(s.slot(notBefore: Self.date("2026-12-01T04:30:00Z"), length: batch) == Self.date("2026-12-01T04:30:00Z"))
        // One second later it would end past the cutoff: the next night.
        #expect(s.slot(notBefore: Self.date("2026-12-01T04:30:01Z"), length: batch) == Self.date("2026-12-02T02:00:00Z"))
        // No windows: at once.
        #expect(S().slot(notBefore: Self.date("2026-12-01T04:30:01Z"), length: batch) == Self.date("2026-12-01T04:30:01Z"))
        // A window that can never hold the batch: none.
        #expect(s.slot(notBefore: Self.date("2026-12-01T00:00:00Z"), length: .seconds(3 * 3600)) == nil)
    }

    /// Any schedule, zone and moment: the slot lies in an opening with the batch and the cutoff
    /// inside it, and no earlier minute would do.
    @Test(arguments: 1...40 as ClosedRange<UInt64>)
    func slotsAreTheEarliestThatFit(seed: UInt64) {
        var rng = SeededRNG(seed: seed)  // WavePlannerTests' SplitMix64
        let zones = ["UTC", "Europe/Berlin", "America/New_York", "Asia/Kolkata", "Australia/Lord_Howe", "Europe/Moscow", "America/Santiago"]
        var windows: [S.Window] = []
        for _ in 0..<(1 + Int(rng.next() % 3)) {
            let days = Set(S.Weekday.allCases.filter { _ in rng.next() % 2 == 0 })
            let start = Int(rng.next() % 96) * 900, length = (2 + Int(rng.next() % 30)) * 900
            windows.append(.init(days: days.isEmpty ? [.mon] : days, start: .init(seconds: start), end: .init(seconds: (start + length) % 86400)))
        }
        let s = S(timeZone: TimeZone(identifier: zones[Int(rng.next() % UInt64(zones.count))])!, windows: windows,
                  cutoff: .seconds(Int64(rng.next() % 4) * 600))
        // A Monday in March 2027 plus up to 4 weeks, on a whole minute (DST changes fall in it for most zones).
        let from = Self.date("2027-03-01T00:00:00Z").addingTimeInterval(Double(rng.next() % (28 * 1440)) * 60)
        let batch = Duration.seconds(Int64(5 + rng.next() % 60) * 60)
        let need = batch.seconds + s.cutoff.seconds
        let openings = s.openings(from: from, days: 16)
        func fits(_ t: Date) -> Bool { openings.contains { $0.start <= t && t.addingTimeInterval(need) <= $0.end } }
        guard let slot = s.slot(notBefore: from, length: batch) else {
            // Then no opening of the fortnight holds it.
            #expect(!openings.prefix { $0.start < from.addingTimeInterval(14 * 86400) }.contains { max($0.start, from).addingTimeInterval(need) <= $0.end },
                    "seed \(seed): no slot, but one fits")
            return
        }
        #expect(slot >= from && fits(slot), "seed \(seed): \(slot) does not hold the batch in \(s.summary)")
        var t = from
        while t < slot {
            #expect(!fits(t), "seed \(seed): \(t) fits, before the slot \(slot) (\(s.summary))")
            t = t.addingTimeInterval(60)
        }
    }

    @Test func batchesKeepTheIntervalAndTheCustomersWindowFollowsTheSlots() throws {
        var plan = Plan(name: "s", path: "s.yaml", text: "", kernel: KernelSpec(release: "6.1.0-19-hosting"), inventoryPath: "i.yaml",
                        reboot: RebootSpec(timeout: .seconds(5 * 60), settle: .seconds(20)), gate: GateSettings(soak: .seconds(600), interval: .seconds(60)))
        // Batches take up to 5m + 20s + 40s = 6 min; windows 02:00–02:30 with a 5 min cutoff hold
        // three batches a night with a 2 min interval (02:00, 02:08, 02:16; 02:24 would end after 02:25).
        plan.schedule = S(timeZone: Self.utc, windows: [.init(start: Self.hm(2), end: Self.hm(2, 30))], cutoff: .seconds(300),
                          minBatchInterval: .seconds(120))
        #expect(MaintenanceWindow.batchAllowance(plan) == .seconds(360))
        let times = MaintenanceWindow.batchTimes(from: Self.date("2026-12-01T01:00:00Z"), count: 4, plan: plan)
        #expect(times.map { TimeText.iso($0.start) } == ["2026-12-01T02:00:00Z", "2026-12-01T02:08:00Z", "2026-12-01T02:16:00Z", "2026-12-02T02:00:00Z"])
        // A customer of the 4th batch: from the wave's first slot to that batch's end, the soak and one rollback reboot.
        let w = MaintenanceWindow.forCustomer(rebootsFrom: Self.date("2026-12-01T01:00:00Z"), lastBatch: 3, plan: plan)
        #expect(TimeText.iso(w.start) == "2026-12-01T02:00:00Z" && TimeText.iso(w.end) == "2026-12-02T02:22:00Z")
        // It holds for the remaining batches from any moment up to the first slot, not after the night is lost.
        #expect(w.holds(now: Self.date("2026-12-01T02:00:00Z"), batchesLeft: 4, plan: plan))
        #expect(!w.holds(now: Self.date("2026-12-01T02:09:00Z"), batchesLeft: 4, plan: plan))
    }
}


/// The `schedule` section as a plan writes it, and what a person gets for each mistake.
@Suite struct PlanScheduleTests {
    static let base = "name: m\nkernel: {release: 6.1.0-19-hosting}\ninventory: inv.yaml\nreboot: {timeout: 5m, settle: 20s}\n"

    static func errors(_ schedule: String) -> [String] {
        do { _ = try PlanLoader.parse(text: base + schedule, path: "m.yaml"); return [] } catch let e as InputErrors {
            return e.errors.map { "\($0.line ?? 0):\($0.column ?? 0) \($0.message)" }
        } catch { return ["\(error)"] }
    }

    @Test func theIssuesExampleLoads() throws {
        let plan = try PlanLoader.parse(text: Self.base + """
            schedule:
              time_zone: Europe/Moscow
              windows:
                - {days: [mon, tue, wed, thu, fri], start: "02:00", end: "05:00"}
                - {days: [sat, sun], start: "00:00", end: "06:00"}
                - {days: [friday], start: "23:30", end: "01:00:30"}
              cutoff: 20m
              min_batch_interval: 2m
            """, path: "m.yaml")
        let s = try #require(plan.schedule)
        #expect(s.timeZone.identifier == "Europe/Moscow" && s.cutoff == .seconds(1200) && s.minBatchInterval == .seconds(120))
        #expect(s.windows.map(\.description) == ["mon,tue,wed,thu,fri 02:00–05:00", "sat,sun 00:00–06:00", "fri 23:30–01:00:30"])
        #expect(s.windows[2].crossesMidnight && s.windows[2].nominalLength == .seconds(5430))
        #expect(try PlanLoader.parse(text: Self.base, path: "m.yaml").schedule == nil)
        // Named as the plan names it (Foundation calls UTC "GMT").
        let utc = try #require(try PlanLoader.parse(text: Self.base + "schedule: {time_zone: UTC, min_batch_interval: 1m}\n", path: "m.yaml").schedule)
        #expect(utc.summary == "UTC: any time; 1m between batches")
    }

    @Test func mistakesAreNamedWithTheirPlace() {
        #expect(Self.errors("schedule: {time_zone: Europe/Moskow}\n") == ["5:23 schedule.time_zone 'Europe/Moskow' is not a time zone name (did you mean 'Europe/Moscow'?)"])
        #expect(Self.errors("schedule: {time_zone: MSK}\n").first?.contains("is not a time zone name") == true)
        #expect(Self.errors("schedule:\n  windows:\n    - {days: [mon, thurs], start: \"02:00\", end: \"05:00\"}\n")
                == ["7:14 window days: 'thurs' is not a day (did you mean 'thu'?)"])
        #expect(Self.errors("schedule:\n  windows:\n    - {start: \"2:00\", end: \"05:00\"}\n").first?.hasPrefix("7:15 window start must be a time like \"02:00\"") == true)
        #expect(Self.errors("schedule:\n  windows:\n    - {start: \"02:00\", end: \"25:00\"}\n") == ["7:29 window end '25:00' is not a time of day (00:00 to 23:59, or 24:00)"])
        #expect(Self.errors("schedule:\n  windows:\n    - {start: \"02:00\"}\n") == ["7:7 a window needs an 'end' (local time, like \"05:00\"; before the start: the next day)"])
        #expect(Self.errors("schedule:\n  windows:\n    - {start: \"02:00\", end: \"02:00\"}\n") == ["7:7 a window starting and ending at 02:00 is empty"])
        #expect(Self.errors("schedule:\n  windows: []\n") == ["6:12 schedule.windows is empty: leave it out to allow reboots at any time"])
        // 02:00–02:10 cannot hold a batch of 5m + 20s + 40s plus the 5m cutoff.
        #expect(Self.errors("schedule:\n  cutoff: 5m\n  windows:\n    - {start: \"02:00\", end: \"02:10\"}\n")
                == ["8:7 the window daily 02:00–02:10 is 10m long: a batch may take 6m (reboot.settle + reboot.timeout + 40s for the reads around it) and the cutoff keeps the last 5m, so no batch could ever start in it"])
        let typo = #expect(throws: InputErrors.self) { try PlanLoader.parse(text: Self.base + "schedule: {cutof: 5m}\n", path: "m.yaml") }
        #expect(typo?.errors.first?.hint?.contains("did you mean 'cutoff'?") == true, "\(String(describing: typo?.errors))")
    }
}

/// `waves.pause_after` and `gate.on_inconclusive` as a plan writes them.
@Suite struct PlanPauseTests {
    static let base = "name: m\nkernel: {release: 6.1.0-19-hosting}\ninventory: inv.yaml\n"

    static func errors(_ extra: String) -> [String] {
        do { _ = try PlanLoader.parse(text: base + extra, path: "m.yaml"); return [] } catch let e as InputErrors {
            return e.errors.map { "\($0.line ?? 0):\($0.column ?? 0) \($0.message)" + ($0.hint.map { " (\($0))" } ?? "") }
        } catch { return ["\(error)"] }
    }

    @Test func pausePointsAndTheInconclusivePolicyLoad() throws {
        let p = try PlanLoader.parse(text: Self.base + "waves: {sizes: [1, 10%, 100%], pause_after: [2, 1, 1]}\ngate: {on_inconclusive: pause}\n", path: "m.yaml")
        #expect(p.waves.pauseAfter == [1, 2])
        #expect(p.failure.onInconclusive == .pause)
        let d = try PlanLoader.parse(text: Self.base, path: "m.yaml")
        #expect(d.waves.pauseAfter.isEmpty && d.failure.onInconclusive == .halt)
    }

    @Test func mistakesAreNamed() {
        #expect(Self.errors("waves: {sizes: [1, 100%], pause_after: [2]}\n")
                == ["4:41 waves.pause_after: wave 2 is the last wave: nothing comes after it to hold back (pause after waves 1 to 1)"])
        #expect(Self.errors("waves: {pause_after: [7]}\n").first?.contains("wave 7 is not in the plan (it has 4 waves)") == true)
        #expect(Self.errors("waves: {sizes: [1, 100%], pause_after: [0]}\n").first?.contains("must be between 1 and 10000") == true)
        #expect(Self.errors("gate: {on_inconclusive: pasue}\n") == ["4:25 gate.on_inconclusive must be halt or pause, found 'pasue' (did you mean 'pause'?)"])
    }
}

/// Failure budgets as a plan writes them: counts or shares.
@Suite struct PlanBudgetTests {
    @Test func countsAndSharesLoadAndMistakesAreNamed() throws {
        let p = try PlanLoader.parse(text: PlanPauseTests.base + "on_failure: {max_failed_hosts_per_wave: 10%, max_failed_hosts: 2.5%, max_unhealthy_hosts: 3}\n", path: "m.yaml")
        #expect(p.failure.maxFailedHostsPerWave == .share(0.1) && p.failure.maxFailedHostsTotal == .share(0.025) && p.failure.maxUnhealthyHosts == .count(3))
        #expect(try PlanLoader.parse(text: PlanPauseTests.base, path: "m.yaml").failure.maxUnhealthyHosts == nil)
        #expect(PlanPauseTests.errors("on_failure: {max_failed_hosts: 0.02}\n")
                == ["4:32 on_failure.max_failed_hosts must be a whole number of hosts or a share with %, found 0.02 (write 2% for a share)"])
        #expect(PlanPauseTests.errors("on_failure: {max_failed_hosts: 150%}\n") == ["4:32 on_failure.max_failed_hosts 150% is impossible: a share is between 0% and 100%"])
        #expect(PlanPauseTests.errors("on_failure: {max_failed_hosts_per_wave: 3, max_failed_hosts: 2}\n").first?.contains("is below max_failed_hosts_per_wave (3)") == true)
        // A share of the rollout and a count per wave are not compared.
        #expect(PlanPauseTests.errors("on_failure: {max_failed_hosts_per_wave: 3, max_failed_hosts: 1%}\n").isEmpty)
    }
}

@Suite struct StartMomentTests {
    @Test func momentsAPersonWrites() {
        let moscow = TimeZone(identifier: "Europe/Moscow")!, berlin = TimeZone(identifier: "Europe/Berlin")!
        func iso(_ d: Date?) -> String? { d.map(TimeText.iso) }
        #expect(iso(RebootSchedule.parseMoment("2026-12-02 02:00", in: moscow)) == "2026-12-01T23:00:00Z")
        #expect(iso(RebootSchedule.parseMoment("2026-12-02T02:00:30", in: moscow)) == "2026-12-01T23:00:30Z")
        #expect(iso(RebootSchedule.parseMoment("2026-12-02T02:00:00+01:00", in: moscow)) == "2026-12-02T01:00:00Z")
        #expect(iso(RebootSchedule.parseMoment("2026-12-02T02:00:00Z", in: moscow)) == "2026-12-02T02:00:00Z")
        // A time the clock skips does not exist; nonsense is nothing.
        #expect(RebootSchedule.parseMoment("2027-03-28 02:30", in: berlin) == nil)
        for bad in ["tomorrow", "2026-13-01 02:00", "2026-12-02 25:00", "2026-12-02", "02:00", ""] {
            #expect(RebootSchedule.parseMoment(bad, in: moscow) == nil, "\(bad)")
        }
    }
}

/// The `hooks` section: commands or {run, on, timeout, on_error}.
@Suite struct PlanHookTests {
    @Test func bothFormsLoadWithTheirDefaults() throws {
        let p = try PlanLoader.parse(text: PlanPauseTests.base + """
            hooks:
              pre_reboot:
                - lb-drain
                - {run: notify-ops, on: local, timeout: 2m, on_error: warn}
              post_boot: lb-enable
              on_halt: [page-oncall]
            """, path: "m.yaml")
        #expect(p.hooks.preReboot == [Hook(run: "lb-drain"), Hook(run: "notify-ops", on: .local, timeout: .seconds(120), onError: .warn)])
        #expect(p.hooks.postBoot == [Hook(run: "lb-enable")])
        #expect(p.hooks.afterCommit.isEmpty)
        #expect(p.hooks.onHalt == [Hook(run: "page-oncall", on: .local)], "on_halt runs locally by default")
        #expect(try PlanLoader.parse(text: PlanPauseTests.base, path: "m.yaml").hooks.isEmpty)
    }

    @Test func mistakesAreNamed() {
        #expect(PlanPauseTests.errors("hooks: {on_halt: [{run: page, on: host}]}\n")
                == ["4:35 hooks.on_halt run on rollctl's machine (on: local): a halt concerns the rollout, not one host"])
        #expect(PlanPauseTests.errors("hooks: {pre_reboot: [{run: x, on: remote}]}\n").first?.contains("on must be host or local, found 'remote'") == true)
        #expect(PlanPauseTests.errors("hooks: {pre_reboot: [{run: x, on_error: ignore}]}\n").first?.contains("on_error must be fail or warn") == true)
        #expect(PlanPauseTests.errors("hooks: {pre_reboot: [{on: local}]}\n").first?.contains("needs a 'run' command") == true)
        #expect(PlanPauseTests.errors("hooks: {pre_boot: [x]}\n").first?.contains("did you mean 'pre_reboot'?") == true)
        #expect(PlanPauseTests.errors("hooks: {post_boot: [{run: x, timeout: 2h}]}\n").first?.contains("at most 1h makes sense here") == true)
    }
}
