import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Runs blocking socket work on a thread of its own, never on the cooperative pool.
/// SIGPIPE is blocked on that thread: OpenSSL writes with plain `write(2)`, and
/// a relay that closes mid-write must be an error (EPIPE), not the end of
/// rollctl. A signal left pending on the thread dies with it.
public enum Blocking {
    public static func run<T: Sendable>(_ work: @escaping @Sendable () -> T) async -> T {
        await withCheckedContinuation { (c: CheckedContinuation<T, Never>) in
            detached { c.resume(returning: work()) }
        }
    }

    /// Fire and forget (e.g. a polite QUIT at the end of a batch).
    public static func detached(_ work: @escaping @Sendable () -> Void) {
        let thread = Thread {
            var set = sigset_t()
            sigemptyset(&set)
            sigaddset(&set, SIGPIPE)
            pthread_sigmask(SIG_BLOCK, &set, nil)
            work()
        }
        thread.stackSize = 512 * 1024
        thread.start()
    }
}
