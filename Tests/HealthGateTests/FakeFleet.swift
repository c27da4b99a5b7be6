import Foundation
@testable import Basics
@testable import NetIO
@testable import HealthGate

/// A clock whose time only moves when someone sleeps: `sleep(until:)` jumps to
/// the deadline at once, so a 10-minute soak runs in microseconds.
final class VirtualClock: Clock, @unchecked Sendable {
    struct Instant: InstantProtocol {
        var offset: Duration
        func advanced(by d: Duration) -> Instant { Instant(offset: offset + d) }
        func duration(to other: Instant) -> Duration { other.offset - offset }
        static func < (a: Instant, b: Instant) -> Bool { a.offset < b.offset }
    }

    private let lock = NSLock()
    private var current = Instant(offset: .zero)

    var now: Instant { lock.lock(); defer { lock.unlock() }; return current }
    var minimumResolution: Duration { .nanoseconds(1) }
    var elapsed: Double { now.offset.seconds }

    func sleep(until deadline: Instant, tolerance: Duration?) async throws {
        try Task.checkCancellation()
        lock.withLock { if deadline > current { current = deadline } }
        await Task.yield()
        try Task.checkCancellation()
    }
}

/// What a fake host shows at a moment of its life.
struct HostState: Sendable {
    var release = "6.1.0-fixed"
    var bootID = "3f2a9c1e-0000-4000-8000-000000000001"
    var uptime = 120.0
    var memTotalKiB: UInt64 = 32 * 1024 * 1024
    var sUnreclaimKiB: UInt64 = 200 * 1024
    var oomKill: UInt64 = 0
}

/// The output `HostFacts.command` would print on a host in `state`.
func factsOutput(_ s: HostState) -> String {
    """
    @@rollctl-file /proc/sys/kernel/osrelease
    \(s.release)
    @@rollctl-file /proc/sys/kernel/random/boot_id
    \(s.bootID)
    @@rollctl-file /proc/uptime
    \(s.uptime) 100.00
    @@rollctl-file /proc/meminfo
    MemTotal:       \(s.memTotalKiB) kB
    MemFree:        \(s.memTotalKiB / 2) kB
    Slab:           \(s.sUnreclaimKiB * 2) kB
    SReclaimable:   \(s.sUnreclaimKiB) kB
    SUnreclaim:     \(s.sUnreclaimKiB) kB
    @@rollctl-file /proc/vmstat
    nr_free_pages 1000
    oom_kill \(s.oomKill)

    """
}

/// A host whose state is a function of the virtual time since the gate began.
/// It answers `HostFacts.command` and any other command through `checks`.
struct FakeHost: HostReader {
    enum Failure: Error, CustomStringConvertible {
        case connectionLost
        var description: String { "connection lost" }
    }

    let hostName: String
    let clock: VirtualClock
    var state: @Sendable (Double) -> HostState
    /// When it returns true at a time, the read throws (the probe errs).
    var fails: @Sendable (Double) -> Bool = { _ in false }
    /// Custom checks: command → exit status at a time.
    var checks: @Sendable (String, Double) -> Int32 = { _, _ in 0 }
    /// Real time each command takes (for tests of concurrency and cancellation).
    var delay: Duration = .zero
    /// Never answer and ignore cancellation (a wedged SSH channel).
    var wedged = false

    func run(_ command: String, timeout: Duration) async throws -> HostCommandResult {
        if wedged {
            await withCheckedContinuation { Wedge.shared.hold($0) }
        }
        if delay > .zero { try await Task.sleep(for: delay) }
        let t = clock.elapsed
        if fails(t) { throw Failure.connectionLost }
        if command == HostFacts.command { return HostCommandResult(stdout: factsOutput(state(t))) }
        let status = checks(command, t)
        return HostCommandResult(stdout: "", stderr: status == 0 ? "" : "\(command): failed\nmore", exitStatus: status)
    }
}

/// Test-site outcomes by request number, without a network.
final class ScriptedSiteProbe: SiteProbing, @unchecked Sendable {
    private let lock = NSLock()
    private var count = 0
    let script: @Sendable (Int) -> SiteOutcome

    init(_ script: @escaping @Sendable (Int) -> SiteOutcome) { self.script = script }

    var requests: Int { lock.lock(); defer { lock.unlock() }; return count }

    func fetch(_ url: HTTPURL, timeout: Duration) async -> SiteAttempt {
        let n = lock.withLock {
            count += 1
            return count - 1
        }
        let outcome = script(n)
        return SiteAttempt(outcome: outcome, latencySeconds: 0.004, status: outcome == .ok ? 200 : nil,
                           detail: outcome == .ok ? nil : "scripted \(outcome.rawValue)")
    }
}

/// Collects progress events from concurrent tasks.
final class ProgressLog: @unchecked Sendable {
    private let lock = NSLock()
    private var events: [GateProgress] = []
    func record(_ e: GateProgress) { lock.lock(); events.append(e); lock.unlock() }
    var all: [GateProgress] { lock.lock(); defer { lock.unlock() }; return events }
    var decided: [HostGateReport] {
        all.compactMap { if case .hostDecided(let r) = $0 { r } else { nil } }
    }
    var samples: [(String, GateSample)] {
        all.compactMap { if case .sampleTaken(let h, let s, _) = $0 { (h, s) } else { nil } }
    }
}

/// A leaking state: SUnreclaim grows by `perMinuteKiB` every minute.
func leaking(perMinuteKiB: Double, from base: UInt64 = 200 * 1024) -> @Sendable (Double) -> HostState {
    { t in HostState(sUnreclaimKiB: base + UInt64(perMinuteKiB * t / 60)) }
}

/// A flat state with ±`noiseKiB` deterministic jitter.
func flat(noiseKiB: Int64 = 2048) -> @Sendable (Double) -> HostState {
    { t in
        var rng = SplitMix(state: UInt64(t.rounded()) &+ 7)
        let n = noiseKiB == 0 ? 0 : Int64.random(in: -noiseKiB...noiseKiB, using: &rng)
        return HostState(sUnreclaimKiB: UInt64(Int64(200 * 1024) + n))
    }
}

/// Keeps the continuations of wedged reads forever: they never resume, like a
/// hung SSH channel that also ignores cancellation.
final class Wedge: @unchecked Sendable {
    static let shared = Wedge()
    private let lock = NSLock()
    private var held: [CheckedContinuation<Void, Never>] = []
    func hold(_ c: CheckedContinuation<Void, Never>) { lock.lock(); held.append(c); lock.unlock() }
}
