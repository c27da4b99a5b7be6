import Foundation
import Logging
import Basics
import NetIO
import WebAPI

/// A host the gate watches.
public struct GateHost: Sendable {
    /// How to read the host (SSH in production, a fake in tests).
    public var reader: any HostReader
    /// Put into the test-site URL template as `{address}` (IPv4, IPv6 or name).
    public var address: String
    /// The host's SUnreclaim growth on its old kernel, to compare with.
    public var baseline: GrowthBaseline?
    /// The kernel release the host must be running; a different one fails the gate.
    public var expectedRelease: String?

    public init(reader: any HostReader, address: String, baseline: GrowthBaseline? = nil, expectedRelease: String? = nil) {
        self.reader = reader
        self.address = address
        self.baseline = baseline
        self.expectedRelease = expectedRelease
    }

    /// The inventory name, as reports and progress events name the host.
    public var name: String { reader.hostName }
}

/// What the runner reports while it works. The callback is called from several
/// tasks at once (one per host): it must be thread-safe and return quickly.
public enum GateProgress: Sendable {
    /// A sample of `host` was taken (`sample.index` counts from 0 to `planned - 1`).
    case sampleTaken(host: String, sample: GateSample, planned: Int)
    /// The verdict on `host` is in (the soak completed or ended early).
    case hostDecided(HostGateReport)
}

/// Runs the health gate: samples every host at each interval for the soak,
/// judges after every sample so a hard failure ends the soak at once, and
/// returns the verdicts with their evidence.
///
/// The soak goes in rounds: at each interval, one sample of every host still
/// undecided, at most `maxConcurrentSamples` in flight (a child task per sample
/// in flight, not per host: a wave of 100,000 hosts holds 256 tasks, and per host
/// only its samples so far). When a host fails and `stopWaveOnFailure` is set,
/// the soak stops for the others too: the wave has failed, and halting sooner
/// limits the damage; their reports end `.stoppedWithWave`. Cancelling the
/// calling task ends the soak promptly with verdict `inconclusive` (`.cancelled`).
///
/// Time comes from the injected clock (tests pass a virtual clock and run a
/// 10-minute soak in microseconds). Probe timeouts are enforced on the real
/// continuous clock, since a hung probe hangs in real time.
public struct GateRunner<C: Clock>: Sendable where C.Duration == Duration {
    public let settings: GateSettings
    public let clock: C
    public let siteProbe: any SiteProbing
    /// Where the Prometheus checks are asked (the plan's server in production).
    public var metricSource: any MetricQuerying = PrometheusQuerier()
    /// End the other hosts' soaks as soon as one host fails (default). Turn it
    /// off to collect full evidence from every host of a failed wave.
    public var stopWaveOnFailure: Bool
    /// How many hosts are sampled at the same moment. A wave of thousands of hosts
    /// must not fire thousands of probes (commands, site requests) at once: beyond
    /// this, a round's samples queue and run a little late (each records its real time).
    public var maxConcurrentSamples = 256
    /// Every sample at `debug` (host in the metadata): what the gate saw, as it saw it.
    public var logger: Logger

    /// Throws when the settings cannot produce a verdict (see `GateSettings.validate`).
    public init(settings: GateSettings, clock: C, siteProbe: any SiteProbing = SiteProbe(),
                stopWaveOnFailure: Bool = true,
                logger: Logger = Logger(label: "rollctl.gate", factory: { _ in SwiftLogNoOpLogHandler() })) throws(GateSettingsError) {
        try settings.validate()
        self.logger = logger
        self.settings = settings
        self.clock = clock
        self.siteProbe = siteProbe
        self.stopWaveOnFailure = stopWaveOnFailure
    }

    /// Soaks every host of a wave; the wave's verdict is the worst of its hosts'.
    /// Reports come back in the order of `hosts`. `progress` is called from the
    /// calling task only, one event at a time.
    public func run(_ hosts: [GateHost], progress: @escaping @Sendable (GateProgress) -> Void = { _ in }) async -> WaveGateReport {
        let start = clock.now
        let planned = settings.plannedSamples
        let urls: [Result<HTTPURL, HTTPURLError>?] = hosts.map { host in
            settings.testSite.map { site in
                Result { () throws(HTTPURLError) in try HTTPURL.expand(template: site.urlTemplate, address: host.address, name: host.name) }
            }
        }
        var samples = [[GateSample]](repeating: [], count: hosts.count)
        var decided = [HostGateReport?](repeating: nil, count: hosts.count)
        var waveFailed = false
        let bound = max(1, maxConcurrentSamples)

        rounds: for index in 0..<planned {
            let open = decided.indices.filter { decided[$0] == nil }
            if open.isEmpty { break }
            if index > 0 {
                do {
                    try await clock.sleep(until: start.advanced(by: settings.interval * index), tolerance: nil)
                } catch {
                    break rounds
                }
            }
            if Task.isCancelled { break }
            // One sample of each open host, at most `bound` in flight; each is judged as it lands.
            waveFailed = await withTaskGroup(of: (Int, GateSample?).self) { group -> Bool in
                var next = open.makeIterator()
                func launch() -> Bool {
                    guard let i = next.next() else { return false }
                    let host = hosts[i], url = urls[i]
                    group.addTask {
                        let seconds = start.duration(to: self.clock.now).seconds
                        let sample = await self.takeSample(index: index, seconds: seconds, host: host, url: url)
                        return (i, Task.isCancelled ? nil : sample)
                    }
                    return true
                }
                for _ in 0..<bound where launch() {}
                for await (i, sample) in group {
                    guard let sample, !Task.isCancelled else { continue }
                    samples[i].append(sample)
                    let host = hosts[i]
                    if logger.logLevel <= .debug {
                        let f = sample.facts
                        logger.debug("gate sample \(index + 1)/\(planned) at \(String(format1: sample.seconds)) s: SUnreclaim \(f?.memory.sUnreclaim.map(Quantity.formatBytes) ?? "?"), OOM kills \(f?.oomKill.map(String.init) ?? "?"), site \(sample.site.filter { $0.outcome == .ok }.count)/\(sample.site.count) ok\(sample.factsError.map { ", facts: \($0)" } ?? "")",
                                     metadata: ["host": "\(host.name)"])
                    }
                    progress(.sampleTaken(host: host.name, sample: sample, planned: planned))
                    if let stop = GateEvaluation.earlyStop(host: host.name, samples: samples[i], settings: settings,
                                                           baseline: host.baseline, expectedRelease: host.expectedRelease) {
                        samples[i] = []
                        decided[i] = stop
                        progress(.hostDecided(stop))
                        if stop.verdict == .fail && stopWaveOnFailure {
                            group.cancelAll()
                            return true
                        }
                    }
                    _ = launch()
                }
                return false
            }
            if waveFailed || Task.isCancelled { break }
        }
        let end: GateEnd = waveFailed ? .stoppedWithWave : Task.isCancelled ? .cancelled : .completed
        let reports = hosts.indices.map { i -> HostGateReport in
            if let r = decided[i] { return r }
            let host = hosts[i]
            let report = GateEvaluation.evaluate(host: host.name, samples: samples[i], settings: settings,
                                                 baseline: host.baseline, expectedRelease: host.expectedRelease, end: end)
            samples[i] = []
            progress(.hostDecided(report))
            return report
        }
        return WaveGateReport(hosts: reports)
    }

    /// Soaks one host.
    public func run(_ host: GateHost, progress: @escaping @Sendable (GateProgress) -> Void = { _ in }) async -> HostGateReport {
        await run([host], progress: progress).hosts[0]
    }

    /// One sample: facts, test-site requests and custom checks, concurrently.
    private func takeSample(index: Int, seconds: Double, host: GateHost, url: Result<HTTPURL, HTTPURLError>?) async -> GateSample {
        let timeout = settings.probeTimeout
        let reader = host.reader
        async let facts: Result<HostFacts, any Error> = {
            do {
                return .success(try await withWatchdog(timeout) { try await HostFacts.read(from: reader, timeout: timeout) })
            } catch {
                return .failure(error)
            }
        }()
        async let site = probeSite(url)
        async let checks = runChecks(reader)
        async let metrics = queryMetrics(host)
        var sample = GateSample(index: index, seconds: seconds)
        switch await facts {
        case .success(let f): sample.facts = f
        case .failure(let e): sample.factsError = "reading facts: \(e)"
        }
        sample.site = await site
        sample.checks = await checks
        sample.metrics = await metrics
        return sample
    }

    /// Every Prometheus check once, concurrently, each within the probe timeout.
    private func queryMetrics(_ host: GateHost) async -> [MetricReading] {
        guard let prom = settings.prometheus else { return [] }
        let timeout = settings.probeTimeout
        let source = metricSource
        return await withTaskGroup(of: (Int, MetricReading).self) { group in
            for (i, check) in prom.checks.enumerated() {
                group.addTask {
                    let query: String
                    do { query = try check.query(name: host.name, address: host.address) } catch {
                        return (i, MetricReading(name: check.name, error: "query: \(error)"))
                    }
                    do {
                        let series = try await withWatchdog(timeout) { try await source.query(query, in: prom, timeout: timeout) }
                        return (i, MetricReading(name: check.name, series: series))
                    } catch {
                        return (i, MetricReading(name: check.name, error: "\(error)"))
                    }
                }
            }
            var out: [(Int, MetricReading)] = []
            for await r in group { out.append(r) }
            return out.sorted { $0.0 < $1.0 }.map(\.1)
        }
    }

    private func probeSite(_ url: Result<HTTPURL, HTTPURLError>?) async -> [SiteAttempt] {
        guard let site = settings.testSite, let url else { return [] }
        var attempts: [SiteAttempt] = []
        for _ in 0..<site.requestsPerSample {
            switch url {
            case .success(let u): attempts.append(await siteProbe.fetch(u, timeout: site.timeout))
            case .failure(let e): attempts.append(SiteAttempt(outcome: .other, latencySeconds: 0, detail: "test-site \(e)"))
            }
            if Task.isCancelled { break }
        }
        return attempts
    }

    private func runChecks(_ reader: any HostReader) async -> [CheckRun] {
        let timeout = settings.probeTimeout
        return await withTaskGroup(of: (Int, CheckRun).self) { group in
            for (i, check) in settings.customChecks.enumerated() {
                group.addTask {
                    do {
                        let r = try await withWatchdog(timeout) { try await reader.run(check.command, timeout: timeout) }
                        let said = [r.stderr, r.stdout].lazy.compactMap { $0.split(whereSeparator: \.isNewline).first }.first
                        let status = r.exitSignal != nil && r.exitStatus == 0 ? 128 : r.exitStatus
                        return (i, CheckRun(name: check.name, exitStatus: status,
                                            output: said.map { String($0.prefix(200)).trimmed }))
                    } catch {
                        return (i, CheckRun(name: check.name, exitStatus: nil, error: "\(error)"))
                    }
                }
            }
            var runs: [(Int, CheckRun)] = []
            for await r in group { runs.append(r) }
            return runs.sorted { $0.0 < $1.0 }.map(\.1)
        }
    }
}

extension GateRunner where C == ContinuousClock {
    /// A runner on the real clock.
    public init(settings: GateSettings, siteProbe: any SiteProbing = SiteProbe(), stopWaveOnFailure: Bool = true,
                logger: Logger = Logger(label: "rollctl.gate", factory: { _ in SwiftLogNoOpLogHandler() })) throws(GateSettingsError) {
        try self.init(settings: settings, clock: ContinuousClock(), siteProbe: siteProbe, stopWaveOnFailure: stopWaveOnFailure, logger: logger)
    }
}

/// Answers the gate's PromQL queries (Prometheus's HTTP API in production; tests may fake it).
public protocol MetricQuerying: Sendable {
    func query(_ promql: String, in settings: PrometheusChecks, timeout: Duration) async throws -> [PromSeries]
}

/// The plan's Prometheus, over `WebAPI.PrometheusAPI`.
public struct PrometheusQuerier: MetricQuerying {
    public init() {}
    public func query(_ promql: String, in settings: PrometheusChecks, timeout: Duration) async throws -> [PromSeries] {
        try await PrometheusAPI(url: settings.url, timeout: timeout, caFile: settings.caFile).query(promql)
    }
}

/// A probe that did not answer within its time (plus a quarter, for the
/// reader's own timeout to fire first).
public struct ProbeTimeout: Error, Sendable, CustomStringConvertible {
    public var after: Duration
    public var description: String { "no answer within \(Format.duration(after.seconds))" }
}

/// Runs `operation`, but returns (throwing `ProbeTimeout`) after `timeout × 1.25`
/// even if the operation ignores cancellation: a hung reader must not hang the gate.
/// The abandoned operation is cancelled and left to finish on its own.
func withWatchdog<T: Sendable>(_ timeout: Duration, _ operation: @escaping @Sendable () async throws -> T) async throws -> T {
    let race = Race<T>()
    return try await withTaskCancellationHandler {
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<T, any Error>) in
            race.install(continuation)
            race.add(Task {
                do { race.finish(.success(try await operation())) } catch { race.finish(.failure(error)) }
            })
            race.add(Task {
                do {
                    try await Task.sleep(for: timeout * 1.25)
                    race.finish(.failure(ProbeTimeout(after: timeout)))
                } catch {}
            })
        }
    } onCancel: {
        race.finish(.failure(CancellationError()))
    }
}

/// The first result wins; later ones are dropped and the racing tasks cancelled.
final class Race<T: Sendable>: @unchecked Sendable {
    private let lock = NSLock()
    private var continuation: CheckedContinuation<T, any Error>?
    private var result: Result<T, any Error>?
    private var tasks: [Task<Void, Never>] = []

    func install(_ c: CheckedContinuation<T, any Error>) {
        lock.lock()
        if let result {
            lock.unlock()
            c.resume(with: result)
            return
        }
        continuation = c
        lock.unlock()
    }

    func add(_ task: Task<Void, Never>) {
        lock.lock()
        if result != nil {
            lock.unlock()
            task.cancel()
            return
        }
        tasks.append(task)
        lock.unlock()
    }

    func finish(_ r: Result<T, any Error>) {
        lock.lock()
        guard result == nil else { lock.unlock(); return }
        result = r
        let c = continuation
        continuation = nil
        let running = tasks
        tasks = []
        lock.unlock()
        c?.resume(with: r)
        for t in running { t.cancel() }
    }
}
