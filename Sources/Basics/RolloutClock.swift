import Foundation

/// The time a rollout runs on: what "now" is for maintenance windows, lead times, notices and
/// the journal's timestamps, and how the engine waits (reboots, soaks, lead times).
///
/// Production uses `SystemClock`. Tests inject a virtual one (`VirtualClock` in
/// `RolloutTesting`) and run hours of rollout in seconds. Instants are wall-clock `Date`s,
/// because what a rollout waits for is mostly wall time (a window at 02:00 in the customers'
/// time zone, a notice's lead time), and one kind of instant keeps the journal, the notices
/// and the waits in agreement.
///
/// What stays on the real clock, on purpose: the driver lease (other processes and machines
/// judge it by their own clocks), network and probe timeouts and the notices' retry backoff (a
/// peer hangs, or greylists, in real time), and polls of a flag such as a stop request.
public protocol RolloutClock: Sendable {
    /// Wall time now.
    var now: Date { get }
    /// Returns at `deadline` (at once when it has passed); throws `CancellationError` when the
    /// calling task is cancelled first.
    func sleep(until deadline: Date) async throws
}

extension RolloutClock {
    public func sleep(for duration: Duration) async throws {
        try await sleep(until: now.addingTimeInterval(duration.seconds))
    }

    /// `now` plus `duration`.
    public func after(_ duration: Duration) -> Date { now.addingTimeInterval(duration.seconds) }
}

/// The machine's clock.
public struct SystemClock: RolloutClock {
    public init() {}
    public var now: Date { Date() }
    public func sleep(until deadline: Date) async throws {
        let wait = deadline.timeIntervalSinceNow
        if wait > 0 { try await Task.sleep(for: .seconds(wait)) } else { try Task.checkCancellation() }
    }
}

/// A `RolloutClock` seen as a Swift `Clock`, for code written against that protocol (the gate
/// runner). Its instants are the rollout clock's dates.
public struct DateClock: Clock {
    public struct Instant: InstantProtocol {
        public var date: Date
        public init(_ date: Date) { self.date = date }
        public func advanced(by duration: Duration) -> Instant { Instant(date.addingTimeInterval(duration.seconds)) }
        public func duration(to other: Instant) -> Duration { .seconds(other.date.timeIntervalSince(date)) }
        public static func < (a: Instant, b: Instant) -> Bool { a.date < b.date }
    }

    public let base: any RolloutClock
    public init(_ base: any RolloutClock) { self.base = base }
    public var now: Instant { Instant(base.now) }
    public var minimumResolution: Duration { .microseconds(1) }
    public func sleep(until deadline: Instant, tolerance: Duration?) async throws {
        try await base.sleep(until: deadline.date)
    }
}
