import Foundation
import Testing
@testable import Basics
@testable import HealthGate

@Suite struct GateRunnerTests {
    let settings = GateSettings()

    func runner(_ s: GateSettings? = nil, clock: VirtualClock, site: any SiteProbing = ScriptedSiteProbe { _ in .ok })
        throws -> GateRunner<VirtualClock> {
        try GateRunner(settings: s ?? settings, clock: clock, siteProbe: site)
    }

    @Test func flatHostPassesAfterTheWholeSoak() async throws {
        let clock = VirtualClock()
        let site = ScriptedSiteProbe { _ in .ok }
        let log = ProgressLog()
        let host = GateHost(reader: FakeHost(hostName: "web1", clock: clock, state: flat()), address: "10.0.0.1")
        let r = try await runner(clock: clock, site: site).run(host, progress: log.record)
        #expect(r.verdict == .pass, "\(r.render())")
        #expect(r.end == .completed)
        let every30s: [Double] = (0...20).map { Double($0) * 30 }
        #expect(r.samples.map(\.seconds) == every30s)
        #expect(site.requests == 42)
        #expect(log.samples.count == 21)
        #expect(log.decided.map(\.verdict) == [.pass])
    }

    @Test func leakFailsOnTheSlopeBeforeAnyOOM() async throws {
        let clock = VirtualClock()
        // 1 MiB/min, and OOM kills would only start after 20 minutes — past the soak.
        let host = FakeHost(hostName: "web1", clock: clock, state: { t in
            var s = leaking(perMinuteKiB: 1024)(t)
            s.oomKill = t > 1200 ? 1 : 0
            return s
        })
        let r = try await runner(clock: clock).run(GateHost(reader: host, address: "10.0.0.1"))
        #expect(r.verdict == .fail)
        #expect(r.end == .completed)
        #expect(r.reasons.map(\.check) == ["sunreclaim.growth"])
        #expect(r.oom?.counted == 0)
        #expect(abs(try #require(r.growth).bytesPerHour - 60 * MiB) < 1 * MiB)
    }

    @Test func oomKillHaltsWithinOneInterval() async throws {
        let clock = VirtualClock()
        let host = FakeHost(hostName: "web1", clock: clock, state: { t in HostState(oomKill: t >= 95 ? 1 : 0) })
        let r = try await runner(clock: clock).run(GateHost(reader: host, address: "10.0.0.1"))
        #expect(r.verdict == .fail)
        #expect(r.end == .earlyFail)
        #expect(r.reasons.map(\.check) == ["oom"])
        #expect(r.decidedAtSeconds >= 95 && r.decidedAtSeconds <= 95 + 30)
        #expect(r.samples.count == 5)
        #expect(clock.elapsed <= 125, "the runner stopped sampling")
    }

    @Test func failingProbesAreInconclusive() async throws {
        let clock = VirtualClock()
        let host = FakeHost(hostName: "web1", clock: clock, state: flat(), fails: { _ in true })
        let r = try await runner(clock: clock).run(GateHost(reader: host, address: "10.0.0.1"))
        #expect(r.verdict == .inconclusive)
        #expect(r.end == .earlyInconclusive)
        #expect(r.samples.count == 5)  // 5 of 21 unreadable: more than 20%
        #expect(r.samples.allSatisfy { $0.factsError == "reading facts: connection lost" })
        #expect(r.render().contains("  ??   samples      5 of 21 planned samples unreadable"))
    }

    @Test func wedgedReaderIsCutByTheWatchdog() async throws {
        let clock = VirtualClock()
        var s = settings
        s.probeTimeout = .milliseconds(40)
        let host = FakeHost(hostName: "web1", clock: clock, state: flat(), wedged: true)
        let real = ContinuousClock()
        let start = real.now
        let r = try await runner(s, clock: clock).run(GateHost(reader: host, address: "10.0.0.1"))
        #expect(r.verdict == .inconclusive)
        #expect(r.samples.first?.factsError?.contains("no answer within") == true)
        // Five samples, each cut after 40 ms of real time: well under a minute even on a loaded
        // 2-core machine (seen at 10.5 s while another build ran); a reader the watchdog did not
        // cut would never return at all.
        #expect(real.now - start < .seconds(60))
    }

    @Test func thirtyPercentResetsFailWithTheResetClass() async throws {
        let clock = VirtualClock()
        let site = ScriptedSiteProbe { $0 % 10 < 3 ? .reset : .ok }
        let host = GateHost(reader: FakeHost(hostName: "web1", clock: clock, state: flat()), address: "10.0.0.1")
        let r = try await runner(clock: clock, site: site).run(host)
        #expect(r.verdict == .fail)
        #expect(r.end == .earlyFail)
        #expect(r.reasons.map(\.check) == ["site"])
        let tally = try #require(r.site)
        #expect(tally.byOutcome[.reset] == 3)
        #expect(tally.byOutcome.keys.sorted() == [.ok, .reset])
        #expect(r.reasons[0].summary.contains("reset 3"))
    }

    @Test func resetsFromARealLoopbackServer() async throws {
        // The real probe against a real socket that resets every third connection.
        let server = try LoopbackHTTPServer { $0 % 3 == 1 ? .reset : .status(200) }
        defer { server.stop() }
        let clock = VirtualClock()
        var s = settings
        s.testSite = TestSiteSettings(urlTemplate: "http://{address}:\(server.port)/test-site", timeout: .seconds(2))
        let host = GateHost(reader: FakeHost(hostName: "web1", clock: clock, state: flat()), address: "127.0.0.1")
        let r = try await GateRunner(settings: s, clock: clock).run(host)
        #expect(r.verdict == .fail)
        let tally = try #require(r.site)
        #expect(tally.byOutcome[.reset] ?? 0 >= 1)
        #expect(tally.byOutcome[.ok] ?? 0 >= 2)
        #expect(tally.attempts == server.connections)
    }

    @Test func baselineComparisonThroughTheRunner() async throws {
        let clock = VirtualClock()
        let host = GateHost(reader: FakeHost(hostName: "web1", clock: clock, state: leaking(perMinuteKiB: 2.1 * 1024 / 60)),
                            address: "10.0.0.1",
                            baseline: GrowthBaseline(bytesPerHour: 2.4 * GiB, method: "SUnreclaim / uptime (10d0h)"))
        let r = try await runner(clock: clock).run(host)
        #expect(r.verdict == .pass)
        #expect(r.baselineComparison == "slope 2.1 MiB/h vs 2.4 GiB/h before: 99.9% less")
    }

    @Test func customCheckRunsOnTheHost() async throws {
        let clock = VirtualClock()
        var s = settings
        s.customChecks = [CustomCheck(name: "nginx", command: "pgrep -x nginx")]
        let host = FakeHost(hostName: "web1", clock: clock, state: flat(),
                            checks: { cmd, t in cmd == "pgrep -x nginx" && t >= 200 ? 1 : 0 })
        let r = try await runner(s, clock: clock).run(GateHost(reader: host, address: "10.0.0.1"))
        #expect(r.verdict == .fail)
        #expect(r.end == .earlyFail)
        #expect(r.samples.count == 8)  // first failing run at 210 s
        #expect(r.reasons.first?.summary == "nginx: failed 1 of 8 runs (max 0), exit 1: pgrep -x nginx: failed")
    }

    @Test func waveSoaksConcurrentlyAndStopsWhenAHostFails() async throws {
        let clock = VirtualClock()
        let log = ProgressLog()
        let bad = FakeHost(hostName: "bad", clock: clock, state: { _ in HostState(oomKill: 1) })
        // The healthy hosts take real time per read, so they are still soaking when `bad` fails.
        let good = (1...3).map { i in
            FakeHost(hostName: "good\(i)", clock: clock, state: flat(), delay: .milliseconds(200))
        }
        let hosts = ([bad] + good).map { GateHost(reader: $0, address: "10.0.0.9") }
        let w = try await runner(clock: clock).run(hosts, progress: log.record)
        #expect(w.verdict == .fail)
        #expect(w.hosts.map(\.host) == ["bad", "good1", "good2", "good3"])
        #expect(w.failed == ["bad"])
        #expect(w.hosts.dropFirst().allSatisfy { $0.end == .stoppedWithWave && $0.verdict == .inconclusive })
        #expect(Set(log.decided.map(\.host)) == ["bad", "good1", "good2", "good3"])
    }

    @Test func waveOfHealthyHostsPassesConcurrently() async throws {
        let clock = VirtualClock()
        let meter = ConcurrencyMeter()
        let hosts = (1...8).map { i in
            GateHost(reader: MeteredReader(inner: FakeHost(hostName: "web\(i)", clock: clock, state: flat(), delay: .milliseconds(20)), meter: meter),
                     address: "10.0.0.\(i)")
        }
        let w = try await runner(clock: clock).run(hosts)
        #expect(w.verdict == .pass, "\(w.render())")
        #expect(w.passed.count == 8)
        // Hosts are sampled side by side, not one after the other (measured as
        // reads in flight at once, not as wall time, which a loaded machine skews).
        #expect(meter.peak >= 4, "at most \(meter.peak) reads in flight")
    }

    @Test func samplesInFlightAreBoundedAndEveryHostIsStillJudged() async throws {
        let clock = VirtualClock()
        let meter = ConcurrencyMeter()
        let hosts = (1...40).map { i in
            GateHost(reader: MeteredReader(inner: FakeHost(hostName: "web\(i)", clock: clock, state: flat(), delay: .milliseconds(5)), meter: meter),
                     address: "10.0.0.\(i)")
        }
        var r = try runner(GateSettings(soak: .seconds(90), sUnreclaimGrowthMaxPerHour: nil, testSite: nil), clock: clock)
        r.maxConcurrentSamples = 3
        let w = await r.run(hosts)
        #expect(w.passed.count == 40, "\(w.render())")
        #expect(w.hosts.allSatisfy { $0.samples.count == 4 })
        #expect(meter.peak <= 3, "\(meter.peak) reads in flight, bound 3")
        #expect(meter.peak >= 2)
    }

    @Test func cancellationEndsTheSoakInconclusive() async throws {
        let clock = VirtualClock()
        let hosts = (1...2).map { i in
            GateHost(reader: FakeHost(hostName: "web\(i)", clock: clock, state: flat(), delay: .milliseconds(50)), address: "10.0.0.1")
        }
        let r = try runner(clock: clock)
        let task = Task { await r.run(hosts) }
        try await Task.sleep(for: .milliseconds(180))
        task.cancel()
        let w = await task.value
        #expect(w.verdict == .inconclusive)
        #expect(w.hosts.allSatisfy { $0.end == .cancelled && $0.samples.count < 21 })
        #expect(w.hosts.allSatisfy { $0.findings.first { $0.check == "samples" }?.summary.contains("cancelled") == true })
    }

    @Test func oneShotCheckTakesOneSample() async throws {
        var s = GateSettings(soak: .zero, sUnreclaimGrowthMaxPerHour: nil, oomKillsSince: .gateStart)
        s.testSite?.minRequests = 2
        let clock = VirtualClock()
        let host = GateHost(reader: FakeHost(hostName: "web1", clock: clock, state: { _ in HostState(oomKill: 5) }), address: "10.0.0.1")
        let r = try await runner(s, clock: clock).run(host)
        #expect(r.verdict == .pass, "\(r.render())")
        #expect(r.samples.count == 1)
        #expect(clock.elapsed == 0)
        #expect(!r.findings.contains { $0.check == "sunreclaim.growth" })
    }

    @Test func thisMachineOnTheRealClockWithARealSite() async throws {
        // Real shell, real /proc, real sockets, real clock: a short soak of this machine.
        // (No growth limit: over half a second, slab noise is a huge hourly rate.)
        let server = try LoopbackHTTPServer(always: .status(200))
        defer { server.stop() }
        let s = GateSettings(soak: .milliseconds(1200), interval: .milliseconds(300), probeTimeout: .seconds(0.3),
                             sUnreclaimGrowthMaxPerHour: nil, oomKillsSince: .gateStart,
                             testSite: TestSiteSettings(urlTemplate: "http://{address}:\(server.port)/", minRequests: 5,
                                                        requestsPerSample: 1, timeout: .seconds(0.3)))
        let log = ProgressLog()
        let r = try await GateRunner(settings: s).run(GateHost(reader: LocalShell(), address: "127.0.0.1"), progress: log.record)
        #expect(r.verdict == .pass, "\(r.render())")
        #expect(r.samples.count == 5)
        #expect(r.release == (try String(contentsOfFile: "/proc/sys/kernel/osrelease", encoding: .utf8)).trimmed)
        #expect(server.connections == 5)
        // Each sample on its schedule: never before index × interval.
        #expect(r.samples.allSatisfy { $0.seconds >= Double($0.index) * 0.3 - 0.001 }, "\(r.samples.map(\.seconds))")
        #expect(r.decidedAtSeconds >= 1.2)
    }

    @Test func invalidSettingsAreRefusedUpFront() {
        var s = GateSettings()
        s.testSite?.minRequests = 1000
        #expect(throws: GateSettingsError.self) { try GateRunner(settings: s, clock: VirtualClock()) }
    }
}

/// Counts how many reads run at the same moment.
final class ConcurrencyMeter: @unchecked Sendable {
    private let lock = NSLock()
    private var now = 0
    private(set) var peakValue = 0
    var peak: Int { lock.lock(); defer { lock.unlock() }; return peakValue }
    func enter() { lock.lock(); now += 1; peakValue = max(peakValue, now); lock.unlock() }
    func leave() { lock.lock(); now -= 1; lock.unlock() }
}

struct MeteredReader: HostReader {
    let inner: FakeHost
    let meter: ConcurrencyMeter
    var hostName: String { inner.hostName }
    func run(_ command: String, timeout: Duration) async throws -> HostCommandResult {
        meter.enter()
        defer { meter.leave() }
        return try await inner.run(command, timeout: timeout)
    }
}
