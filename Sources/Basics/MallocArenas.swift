#if canImport(Glibc)
import Glibc
#endif
import Foundation

/// glibc gives every thread that allocates concurrently an arena of its own (up to 8 per core)
/// and keeps what is freed in each: a rollout's many short-lived tasks, spread over the
/// concurrency pool's threads, leave much of a process's resident memory as such free space.
/// One arena measured (bench-core, 100k hosts, 2 cores): peak RSS 469 MiB instead of 676, for
/// about 6% more CPU (bench/RESULTS.md). `MALLOC_ARENA_MAX` in the environment still decides
/// when set. Call before any thread starts.
public func limitMallocArenas(_ count: Int32 = 1) {
    #if canImport(Glibc)
    guard ProcessInfo.processInfo.environment["MALLOC_ARENA_MAX"] == nil else { return }
    // `mallopt` is declared in <malloc.h>, which the Glibc module leaves out: looked up by name.
    typealias Mallopt = @convention(c) (Int32, Int32) -> Int32
    guard let sym = dlsym(nil, "mallopt") else { return }
    let mArenaMax: Int32 = -8  // M_ARENA_MAX
    _ = unsafeBitCast(sym, to: Mallopt.self)(mArenaMax, count)
    #endif
}
