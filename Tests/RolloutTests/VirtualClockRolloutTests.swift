import Foundation
import Testing
@testable import Basics
@testable import RolloutConfig
@testable import RolloutJournal
@testable import Engine
import HealthGate
import SSHTesting
import RolloutTesting

/// Rollouts that take hours on the rollout's clock (lead times, long soaks, a driver away for
/// a day), run in seconds on a `VirtualClock`: the real orchestrator and journal over
/// `SimHost`s, notices to a real SMTP server (aiosmtpd).
final class ClockFleet: @unchecked Sendable {
    static let old = "6.1.0-18-hosting", new = "6.1.0-19-hosting"
    let clock: VirtualClock
    let dir: String
    let journal: Journal
    let inventory: Inventory
    let customers: Customers
    let hosts: [String: SimHost]
    let plan: Plan
    let sink: LoopbackSink
    let log = LogCapture()
    /// The orchestrators' log, for a failure's message.
    var logText: String { log.lines.map { "\($0.host ?? "-") \($0.message)" }.joined(separator: "\n") }

    /// Four hosts on two racks; customer A on h1 and h2, B on h3 and h4.
    init(_ rest: String, start: Date = Date()) throws {
        clock = VirtualClock(start: start)
        dir = try TestSSHD.makeTempDir()
        sink = try LoopbackSink.smtp()
        journal = try Journal(path: dir + "/journal.sqlite", clock: clock)
        var list: [InventoryHost] = [], sims: [String: SimHost] = [:]
        for i in 1...4 {
            let name = "h\(i)"
            list.append(InventoryHost(name: name, address: "127.0.1.\(i)", labels: ["rack": "r\(i % 2)"]))
            sims[name] = SimHost(name: name, release: Self.old, kernels: [Self.old, Self.new], clock: clock)
        }
        hosts = sims
        var defaults = InventoryDefaults()
        defaults.port = 22
        inventory = Inventory(path: dir + "/inventory.yaml", defaults: defaults, hosts: list)
        let a = Customer(id: "A", name: "Anna", email: "anna@example.org"), b = Customer(id: "B", name: "Bob", email: "bob@example.net")
        customers = Customers(path: dir + "/customers.csv", rows: [("h1", a), ("h2", a), ("h3", b), ("h4", b)])
        plan = try PlanLoader.parse(text: """
            name: clock
            kernel:
              release: \(Self.new)
            inventory: inventory.yaml
            notify:
              customers: customers.csv
              channel: {type: smtp, host: 127.0.0.1, port: \(sink.port), from: rollctl@example.test, starttls: false}
              lead_time: 2h
              company: Clock Hosting
              on_failure: block
            on_failure:
              rollback: wave
              max_failed_hosts_per_wave: 0
              max_failed_hosts: 0
            """ + "\n" + rest, path: dir + "/plan.yaml")
    }

    deinit {
        sink.stop()
        try? FileManager.default.removeItem(atPath: dir)
    }

    func create() throws -> String {
        let current = Dictionary(uniqueKeysWithValues: inventory.hosts.map { ($0.name, Self.old) })
        let layout = WavePlanner.plan(plan, inventory: inventory, currentRelease: current, unreachable: [:], customers: customers)
        return try Orchestrator.create(plan: plan, inventory: inventory, layout: layout, journal: journal)
    }

    func orchestrator(_ id: String, stop: @escaping @Sendable () -> Bool = { false }) -> Orchestrator {
        let sims = hosts
        return Orchestrator(rolloutID: id, plan: plan, inventory: inventory, journal: journal, customers: customers,
                            transport: { sims[$0.name]! }, stopRequested: stop, logger: log.logger())
    }

    /// When each host was ordered to reboot (its `→ rebooting` state events), on the rollout's clock.
    func reboots(_ id: String) throws -> [String: [Date]] {
        var out: [String: [Date]] = [:]
        for e in try journal.events(id) where e.kind == .state && e.message.contains("→ rebooting") {
            out[e.host ?? "-", default: []].append(try #require(TimeText.parse(e.at)))
        }
        return out
    }

    func sent(_ id: String, _ kind: NoticeKind) throws -> [Journal.NoticeRow] {
        try journal.notices(id).filter { $0.kind == kind && $0.status == .sent }
    }
}

@Suite("rollouts on a virtual clock", .serialized) struct VirtualClockRolloutTests {
    static let gate = """
        reboot:
          timeout: 10m
          settle: 2m
        waves:
          sizes: [1, 100%]
          max_parallel: 2
          failure_domain: rack
        gate:
          soak: 30m
          interval: 1m
          probe_timeout: 2s
          sunreclaim_growth_max: 48MiB/h
          test_site: none
        """

    /// Two waves, each with a 2 h lead time, a 2 min settle and a 30 min soak: over five hours
    /// of the rollout's time. The lead time holds from each wave's notices, and the soak samples
    /// every minute for its 30 minutes.
    @Test func hoursOfRolloutRunInSecondsWithEveryWaitKept() async throws {
        let f = try ClockFleet(Self.gate)
        let id = try f.create()
        let start = f.clock.now
        let o = f.orchestrator(id)
        defer { o.releaseLease() }
        #expect(try await o.run() == .completed, "\(f.logText)")
        let moved: Double = f.clock.now.timeIntervalSince(start)
        #expect(moved >= 2 * (2 * 3600 + 30 * 60), "the rollout's clock moved \(moved) s")

        let reboots = try f.reboots(id)
        let maintenance = try f.sent(id, .maintenance)
        let told: Set<String> = Set(maintenance.map(\.customerID))
        #expect(told == ["A", "B"])
        #expect(try f.sent(id, .rescheduled).isEmpty, "a window broke on a rollout that kept its lead times")
        for host in ["h1", "h2", "h3", "h4"] {
            #expect(reboots[host]?.count == 1, "\(host): \(reboots[host] ?? [])")
            #expect(await f.hosts[host]!.summary().release == ClockFleet.new)
        }
        // Every reboot of a wave comes at least the lead time after the wave's last maintenance notice.
        for wave in 1...2 {
            let names = try f.journal.hosts(id, wave: wave).map(\.name)
            let lastSent = try #require(maintenance.filter { $0.wave == wave }.compactMap { $0.sentAt.flatMap(TimeText.parse) }.max())
            for n in names {
                let r = try #require(reboots[n]?.first)
                #expect(r.timeIntervalSince(lastSent) >= 2 * 3600 - 1, "\(n) rebooted \(r.timeIntervalSince(lastSent)) s after its notice")
            }
        }
        // The soak took its 31 samples a minute apart.
        for row in try f.journal.gateReports(id) {
            let report = try JSONDecoder().decode(HostGateReport.self, from: Data(row.report.utf8))
            #expect(report.verdict == .pass && report.samples.count == 31, "\(row.host): \(report.verdict) after \(report.samples.count) samples")
            #expect((report.samples.last?.seconds ?? 0) >= 30 * 60 - 1)
        }
        let done: Int = try f.sent(id, .done).count
        #expect(f.sink.items().count == maintenance.count + done)
    }

    /// A leak of 100 MiB/h is invisible to a short soak and obvious to a 30-minute one: the
    /// canary's gate fails on its slope (SimHost's leak follows the rollout's clock), the
    /// rollout halts, and the canary is rolled back.
    @Test func aSlowLeakOnlyALongSoakSeesHaltsTheRollout() async throws {
        let f = try ClockFleet(Self.gate)
        for h in f.hosts.values { await h.setLeak(on: ClockFleet.new, bytesPerSecond: 100 * 1_048_576 / 3600) }
        let id = try f.create()
        let o = f.orchestrator(id)
        defer { o.releaseLease() }
        guard case .halted(let reason) = try await o.run() else { Issue.record("not halted"); return }
        #expect(reason.contains("wave 1 gate fail"), "\(reason)\n\(f.logText)")
        let canary = try #require(f.journal.hosts(id, wave: 1).first)
        let row = try #require(f.journal.gateReports(id).first { $0.host == canary.name })
        let report = try JSONDecoder().decode(HostGateReport.self, from: Data(row.report.utf8))
        #expect(report.reasons.map(\.summary).joined().contains("growth"), "\(report.reasons.map(\.summary))")
        let slope = try #require(report.growth).bytesPerHour
        #expect(abs(slope - 100 * 1_048_576) < 2 * 1_048_576, "slope \(slope) B/h")
        // Rolled back after the halt: the old kernel again, by a second reboot.
        try await o.rollbackAfterHalt()
        #expect(try f.journal.host(id, canary.name)?.state == .rolledBack)
        #expect(await f.hosts[canary.name]!.summary().release == ClockFleet.old)
    }

    /// A driver stopped during the lead time and resumed a day later: the window the customers
    /// were told is long past, so each gets one corrected notice (never two), and the reboots
    /// wait the corrected notice's lead time and fall inside its window.
    @Test func aResumeADayLaterSendsOneCorrectedNoticeAndWaitsItsLeadTime() async throws {
        let f = try ClockFleet(Self.gate)
        let id = try f.create()
        let journal = f.journal
        // Stops once the first maintenance notice is journaled sent: at the lead-time wait.
        let first = f.orchestrator(id, stop: { (try? journal.notices(id))?.contains { $0.status == .sent } ?? false })
        #expect(try await first.run() == .interrupted)
        first.releaseLease()
        #expect(try f.reboots(id).isEmpty)
        let told = try f.sent(id, .maintenance)
        #expect(told.count == 1)

        f.clock.advance(by: .seconds(26 * 3600))
        let second = f.orchestrator(id)
        defer { second.releaseLease() }
        #expect(try await second.run() == .completed, "\(f.logText)")

        let corrected = try f.sent(id, .rescheduled)
        let maintenance = try f.sent(id, .maintenance)
        // Wave 1's customer: told once, corrected once. Wave 2's customers are told normally.
        let canaryCustomer = try #require(told.first).customerID
        #expect(corrected.map(\.customerID) == [canaryCustomer], "\(corrected.map(\.customerID))")
        #expect(maintenance.filter { $0.wave == 1 }.count == 1)
        let fix = try #require(corrected.first)
        let fixSent = try #require(fix.sentAt.flatMap(TimeText.parse))
        let window = try #require(fix.window)
        let reboots = try f.reboots(id)
        for n in try f.journal.hosts(id, wave: 1).map(\.name) {
            let r = try #require(reboots[n]?.first)
            #expect(reboots[n]?.count == 1)
            #expect(r.timeIntervalSince(fixSent) >= 2 * 3600 - 1, "\(n) rebooted \(r.timeIntervalSince(fixSent)) s after the correction")
            #expect(r >= window.start.addingTimeInterval(-1) && r <= window.end, "\(n) rebooted at \(r), outside \(window)")
        }
        #expect(f.sink.items().count == (try f.journal.notices(id)).filter { $0.status == .sent }.count)
    }
}

/// The plan's `schedule` over days of the rollout's clock: reboots only in windows, a batch only
/// when it ends before the cutoff, the spacing between batches, the customers told the window
/// the schedule gives, and a driver stopped while it waits resumed to wait on.
@Suite("schedules on a virtual clock", .serialized) struct ScheduleRolloutTests {
    /// 02:00–02:15 Moscow time (23:00–23:15 UTC): a batch may take 6 min and must end 5 min before
    /// the window does, so one starts at 02:00 and, SimHost rebooting at once, a second 2 min after
    /// it ended (02:02:20, may end by 02:08:20 + cutoff ≤ 02:15); a third (02:04:40) could not.
    static let plan = """
        waves:
          sizes: [1, 100%]
          max_parallel: 1
          failure_domain: rack
        reboot:
          timeout: 5m
          settle: 20s
        gate:
          soak: 30m
          interval: 1m
          probe_timeout: 2s
          test_site: none
        schedule:
          time_zone: Europe/Moscow
          windows:
            - {start: "02:00", end: "02:15"}
          cutoff: 5m
          min_batch_interval: 2m
        """

    @Test func rebootsKeepTheWindowsTheCutoffAndTheSpacingAcrossAResume() async throws {
        let f = try ClockFleet(Self.plan, start: TimeText.parse("2026-12-01T12:00:00Z")!)  // a Tuesday, 15:00 in Moscow
        let schedule = try #require(f.plan.schedule)
        let id = try f.create()
        let journal = f.journal
        // The first driver stops while it waits for a window; a second one resumes.
        let first = f.orchestrator(id, stop: { (try? journal.rollout(id)).flatMap { $0 }.map { $0.state == .waiting && ($0.note ?? "").contains("maintenance window") } ?? false })
        #expect(try await first.run() == .interrupted, "\(f.logText)")
        first.releaseLease()
        #expect(try f.reboots(id).isEmpty)
        let second = f.orchestrator(id)
        defer { second.releaseLease() }
        #expect(try await second.run() == .completed, "\(f.logText)")

        let allowance = MaintenanceWindow.batchAllowance(f.plan).seconds
        let reboots = try f.reboots(id).flatMap { host, times in times.map { (host, $0) } }.sorted { $0.1 < $1.1 }
        #expect(reboots.count == 4)
        for (host, t) in reboots {
            let w = try #require(schedule.opening(containing: t), "\(host) rebooted at \(t), outside every window")
            #expect(t.addingTimeInterval(allowance + schedule.cutoff.seconds) <= w.end, "\(host) at \(t): its batch may end past the cutoff of \(w)")
        }
        // The canary the first night; wave 2 (told after the canary's soak, 2 h lead time) two the
        // next night, 2m20s apart, and its third the night after.
        let days = reboots.map { String(TimeText.iso($0.1).prefix(19)) }
        #expect(days == ["2026-12-01T23:00:00", "2026-12-02T23:00:00", "2026-12-02T23:02:20", "2026-12-03T23:00:00"], "\(reboots)")
        // Every customer's notice states a window that holds their reboots.
        let notices = try f.sent(id, .maintenance)
        for (host, t) in reboots {
            let wave = try #require(try f.journal.host(id, host)?.wave)
            for n in notices where n.wave == wave && n.hosts.contains(host) {
                let w = try #require(n.window)
                #expect(w.start <= t && t <= w.end, "\(host) rebooted at \(t), outside \(w) told to \(n.customerID)")
            }
        }
        // The waits are in the journal: the rollout was waiting, its note said for what.
        let waits = try f.journal.events(id).filter { $0.message.hasPrefix("rollout waiting: ") }.map(\.message)
        #expect(waits.contains { $0.contains("waiting for the maintenance window (Europe/Moscow: daily 02:00–02:15; cutoff 5m; 2m between batches)") && $0.contains("02:00:00 GMT+3") }, "\(waits)")
        // The waits ended: no note says the rollout still waits.
        #expect(try f.journal.rollout(id)?.note == nil)
    }

    /// With a short spacing in a long window, batches follow each other `min_batch_interval` apart.
    @Test func batchesAreSpacedByTheInterval() async throws {
        let plan = Self.plan.replacingOccurrences(of: "end: \"02:15\"", with: "end: \"04:00\"").replacingOccurrences(of: "min_batch_interval: 2m", with: "min_batch_interval: 10m")
        let f = try ClockFleet(plan, start: TimeText.parse("2026-12-01T12:00:00Z")!)
        let id = try f.create()
        let o = f.orchestrator(id)
        defer { o.releaseLease() }
        #expect(try await o.run() == .completed, "\(f.logText)")
        let wave2 = try f.journal.hosts(id, wave: 2).map(\.name)
        let times = try f.reboots(id).filter { wave2.contains($0.key) }.flatMap(\.value).sorted()
        #expect(times.count == 3)
        for (a, b) in zip(times, times.dropFirst()) {
            // The batch before took its settle (20 s) and the reads; then 10 minutes.
            #expect(b.timeIntervalSince(a) >= 10 * 60 + 20 && b.timeIntervalSince(a) < 10 * 60 + 60, "\(a) → \(b)")
        }
    }
}
