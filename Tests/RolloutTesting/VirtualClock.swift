import Foundation
import Basics

/// A rollout clock for tests: hours of rollout (lead times, reboots, soaks, windows) in
/// seconds of real time.
///
/// Time stands still while the code under test works, and jumps to the earliest deadline any
/// task sleeps until once nothing has started or ended a sleep for `idle` of real time (all
/// tasks asleep, or busy on real work such as SQLite or a real SMTP server). Deadlines are
/// always reached in order; a task still busy when time jumps sees time pass during its work,
/// as it would on a loaded machine. `advance(by:)` moves it by hand (a driver that was away
/// for a day).
public final class VirtualClock: RolloutClock, @unchecked Sendable {
    private struct Sleeper {
        var deadline: Date
        var continuation: CheckedContinuation<Void, any Error>
    }

    private let lock = NSLock()
    private var current: Date
    private var sleepers: [UInt64: Sleeper] = [:]
    /// Sleeps cancelled before they were registered.
    private var cancelled: Set<UInt64> = []
    private var nextID: UInt64 = 0
    /// Bumped whenever a sleep starts or ends: the advancer jumps only after a quiet `idle`.
    private var activity: UInt64 = 0
    private var jumps = 0
    public let idle: Duration

    /// Starts at `start` (default: the real now, so journal timestamps look like dates).
    public init(start: Date = Date(), idle: Duration = .milliseconds(4)) {
        current = start
        self.idle = idle
        let micros = useconds_t(max(500, idle.seconds * 1_000_000))
        let thread = Thread { [weak self] in
            var seen: UInt64 = .max
            while true {
                usleep(micros)
                guard let clock = self else { return }
                seen = clock.tick(seen)
            }
        }
        thread.name = "VirtualClock"
        thread.start()
    }

    public var now: Date { lock.withLock { current } }

    /// How many times time jumped to a sleeper's deadline.
    public var jumpCount: Int { lock.withLock { jumps } }

    public func sleep(until deadline: Date) async throws {
        let id: UInt64 = lock.withLock { nextID += 1; activity += 1; return nextID }
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (c: CheckedContinuation<Void, any Error>) in
                lock.lock()
                if cancelled.remove(id) != nil { lock.unlock(); c.resume(throwing: CancellationError()); return }
                if deadline <= current { lock.unlock(); c.resume(); return }
                sleepers[id] = Sleeper(deadline: deadline, continuation: c)
                lock.unlock()
            }
        } onCancel: {
            lock.lock()
            let s = sleepers.removeValue(forKey: id)
            if s == nil { cancelled.insert(id) }
            activity += 1
            lock.unlock()
            s?.continuation.resume(throwing: CancellationError())
        }
        lock.withLock { _ = cancelled.remove(id) }
    }

    /// Moves time on by `duration` at once, waking every sleeper whose deadline it passes.
    public func advance(by duration: Duration) {
        lock.lock()
        current = current.addingTimeInterval(duration.seconds)
        let woken = wakeDue()
        lock.unlock()
        for c in woken { c.resume() }
    }

    /// One look of the advancer: if no sleep started or ended since `seen`, jump to the
    /// earliest deadline. Returns the activity count it saw.
    private func tick(_ seen: UInt64) -> UInt64 {
        lock.lock()
        guard activity == seen, let next = sleepers.values.map(\.deadline).min() else {
            let a = activity
            lock.unlock()
            return a
        }
        if next > current { current = next }
        jumps += 1
        let woken = wakeDue()
        let a = activity
        lock.unlock()
        for c in woken { c.resume() }
        return a
    }

    /// Removes and returns the sleepers due at `current` (lock held).
    private func wakeDue() -> [CheckedContinuation<Void, any Error>] {
        let due = sleepers.filter { $0.value.deadline <= current }
        for id in due.keys { sleepers.removeValue(forKey: id) }
        if !due.isEmpty { activity += 1 }
        return due.values.map(\.continuation)
    }
}
