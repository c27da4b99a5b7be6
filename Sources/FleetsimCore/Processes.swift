import Dispatch
import Foundation
import Subprocess
#if canImport(Glibc)
import Glibc
#endif

// fleetsim's child processes, all started through swift-subprocess: short commands whose
// output it reads (ssh-keygen, iptables, nsenter, umount), and the long-lived ones it
// leaves running (the supervisor, each host's `unshare`). swift-subprocess does what the
// hand-written posix_spawn did: a new session (POSIX_SPAWN_SETSID), signal mask and
// dispositions reset, stdio to /dev/null and a log file, and every other descriptor closed in
// the child (posix_spawn_file_actions_addclosefrom_np), so a daemon keeps none of ours — e.g.
// the pipe a test reads `fleetsim up`'s output from. It also waits for and reaps every child
// itself (a pidfd per child, one monitor thread), so nothing here calls waitpid.
//
// Every long-lived process fleetsim starts is recorded with its start time (ProcessLedger);
// `down` signals only those, and only while pid and start time still match.

// MARK: - from synchronous code

/// The value `work` produces, waited for on this thread. fleetsim's commands and the
/// supervisor's poll loop are synchronous; swift-subprocess is async. Blocks the calling thread
/// while `work` runs on Swift's cooperative pool, so it must not be called from a task of that
/// pool (once every pool thread waits here, nothing is left to run `work`). fleetsim calls it
/// from its main thread only; async code (the tests) calls the async overloads below instead.
func waitFor<T: Sendable>(_ work: @escaping @Sendable () async -> T) -> T {
    let box = OneShot<T>()
    Task { box.put(await work()) }
    return box.take()
}

/// A value handed from one thread to another, once.
final class OneShot<T: Sendable>: @unchecked Sendable {
    private let lock = NSLock()
    private let ready = DispatchSemaphore(value: 0)
    private var value: T?

    /// Stores the value; later calls are ignored.
    func put(_ v: T) {
        let first: Bool = lock.withLock {
            if value != nil { return false }
            value = v
            return true
        }
        if first { ready.signal() }
    }

    /// Waits for the value.
    func take() -> T {
        ready.wait()
        ready.signal()  // a second take() does not block
        return lock.withLock { value! }
    }
}

/// Exit code of a finished child; 128 + N for a child killed by signal N (as shells report it).
func exitCode(_ status: TerminationStatus) -> Int32 {
    switch status {
    case .exited(let code): return code
    case .signaled(let sig): return 128 + sig
    }
}

/// Most output any short command of fleetsim prints (`iptables -S` of a 5000-host fleet is under 1 MiB).
let outputLimit = 16 << 20

// MARK: - run and capture

/// Runs a program and waits; returns its exit status and its stdout and stderr interleaved.
@discardableResult
public func runProgram(_ path: String, _ args: [String], input: String? = nil) -> (status: Int32, output: String) {
    waitFor { await runProgram(path, args, input: input) }
}

@discardableResult
public func runProgram(_ path: String, _ args: [String], input: String? = nil) async -> (status: Int32, output: String) {
    do {
        if let input {
            let r = try await Subprocess.run(.path(.init(path)), arguments: Arguments(args), input: .string(input),
                                             output: .string(limit: outputLimit), error: .combinedWithOutput)
            return (exitCode(r.terminationStatus), r.standardOutput)
        }
        let r = try await Subprocess.run(.path(.init(path)), arguments: Arguments(args), input: .none,
                                         output: .string(limit: outputLimit), error: .combinedWithOutput)
        return (exitCode(r.terminationStatus), r.standardOutput)
    } catch {
        return (127, "cannot run \(path): \(error)")
    }
}

/// What `runCapturing` saw.
public struct CapturedRun: Sendable {
    public var status: Int32
    public var stdout: String
    public var stderr: String
}

/// Runs a program and waits (at most `timeout` seconds: then it is killed and the status is 124);
/// returns its exit status, stdout and stderr, each kept apart.
public func runCapturing(_ path: String, _ args: [String], timeout: Double? = nil) -> CapturedRun {
    waitFor { await runCapturing(path, args, timeout: timeout) }
}

public func runCapturing(_ path: String, _ args: [String], timeout: Double? = nil) async -> CapturedRun {
    await withTaskGroup(of: CapturedRun?.self) { group in
        group.addTask {
            do {
                let r = try await Subprocess.run(.path(.init(path)), arguments: Arguments(args), input: .none,
                                                 output: .string(limit: outputLimit), error: .string(limit: outputLimit))
                return CapturedRun(status: exitCode(r.terminationStatus), stdout: r.standardOutput, stderr: r.standardError)
            } catch is CancellationError {
                return nil
            } catch {
                return CapturedRun(status: 127, stdout: "", stderr: "cannot run \(path): \(error)")
            }
        }
        if let timeout {
            group.addTask {
                try? await Task.sleep(nanoseconds: UInt64(timeout * 1e9))
                return nil
            }
        }
        // The first to finish wins; cancelling a run makes swift-subprocess kill the child.
        let first = await group.next() ?? nil
        group.cancelAll()
        if let first { return first }
        return CapturedRun(status: 124, stdout: "", stderr: "\(path): killed after \(formatDuration(timeout ?? 0))")
    }
}

/// Runs commands (argv arrays), `width` at a time; throws if one fails.
func runAll(_ jobs: [[String]], width: Int) throws {
    let failures: [String] = waitFor {
        await withTaskGroup(of: String?.self) { group in
            var pending = jobs[...]
            func start(_ job: [String]) {
                group.addTask {
                    do {
                        let r = try await Subprocess.run(.path(.init(job[0])), arguments: Arguments(Array(job.dropFirst())),
                                                         input: .none, output: .string(limit: outputLimit), error: .combinedWithOutput)
                        if r.terminationStatus.isSuccess { return nil }
                        let out = r.standardOutput.trimmingCharacters(in: .whitespacesAndNewlines)
                        return job.joined(separator: " ") + " (\(r.terminationStatus))" + (out.isEmpty ? "" : ": " + out)
                    } catch {
                        return "cannot run \(job[0]): \(error)"
                    }
                }
            }
            for _ in 0..<max(1, width) { if let j = pending.popFirst() { start(j) } }
            var failed: [String] = []
            while let r = await group.next() {
                if let r { failed.append(r) }
                if let j = pending.popFirst() { start(j) }
            }
            return failed
        }
    }
    if !failures.isEmpty { throw FleetsimError("failed: \(failures.prefix(3).joined(separator: "; "))") }
}

// MARK: - long-lived children

/// A child left running by `spawnDetached`: its pid and start time, and how it ended once it has.
public final class SpawnedProcess: @unchecked Sendable {
    public let pid: pid_t
    /// Field 22 of /proc/PID/stat, read right after the spawn (nil if the child was already gone).
    public let startTime: UInt64?
    private let lock = NSLock()
    private var ended: Int32?

    init(pid: pid_t) {
        self.pid = pid
        startTime = procStat(pid)?.startTime
    }

    func finish(_ status: Int32) { lock.withLock { ended = status } }

    /// Exit status (128 + N for signal N) once swift-subprocess has reaped it; nil while it runs.
    public var termination: Int32? { lock.withLock { ended } }
    public var hasExited: Bool { termination != nil }

    /// This process as a ledger entry.
    public func record(_ role: String) -> ProcessRecord? {
        startTime.map { ProcessRecord(pid: pid, startTime: $0, role: role) }
    }
}

/// Starts a child and does not wait for it: stdin /dev/null, stdout and stderr appended to
/// `logPath` (or /dev/null), in a new session unless `newSession` is false, keeping none of our
/// descriptors. swift-subprocess reaps it when it ends (see `SpawnedProcess.termination`).
/// If fleetsim exits first, the child goes on (re-parented to init), as a daemon should.
public func spawnDetached(_ path: String, _ args: [String], logPath: String?, newSession: Bool = true) throws -> SpawnedProcess {
    try waitFor { () async -> Result<SpawnedProcess, FleetsimError> in
        do { return .success(try await spawnDetached(path, args, logPath: logPath, newSession: newSession)) } catch let e as FleetsimError {
            return .failure(e)
        } catch {
            return .failure(FleetsimError("cannot start \(path): \(error)"))
        }
    }.get()
}

public func spawnDetached(_ path: String, _ args: [String], logPath: String?, newSession: Bool = true) async throws -> SpawnedProcess {
    let log = logPath ?? "/dev/null"
    let fd = open(log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o644)
    guard fd >= 0 else { throw FleetsimError("cannot open \(log): \(String(cString: strerror(errno)))") }
    let options = { var o = PlatformOptions(); o.createSession = newSession; return o }()
    return try await withCheckedThrowingContinuation { (started: CheckedContinuation<SpawnedProcess, any Error>) in
        // `run` returns when the child has ended, so it runs in a task of its own, which hands
        // the child back as soon as it exists and later records how it ended.
        Task {
            var spawned: SpawnedProcess?
            do {
                let r = try await Subprocess.run(
                    .path(.init(path)), arguments: Arguments(args), platformOptions: options, input: .none,
                    output: .fileDescriptor(.init(rawValue: fd), closeAfterSpawningProcess: true), error: .combinedWithOutput
                ) { execution in
                    let p = SpawnedProcess(pid: execution.processIdentifier.value)
                    spawned = p
                    started.resume(returning: p)
                    return p
                }
                r.closureResult.finish(exitCode(r.terminationStatus))
            } catch {
                if let spawned {
                    spawned.finish(-1)  // swift-subprocess lost track of it: call it ended
                } else {
                    started.resume(throwing: FleetsimError("cannot start \(path): \(error)"))
                }
            }
        }
    }
}

// MARK: - processes by pid and start time

/// State, parent and start time of a process (fields 3, 4 and 22 of /proc/PID/stat).
func procStat(_ pid: pid_t) -> (state: Character, ppid: pid_t, startTime: UInt64)? {
    guard pid > 0, let stat = readFile("/proc/\(pid)/stat"), let close = stat.lastIndex(of: ")") else { return nil }
    // After "pid (comm)": field 3 (state) is the first, field 22 (starttime) the twentieth.
    let f = stat[stat.index(after: close)...].split(separator: " ")
    guard f.count >= 20, let state = f[0].first, let ppid = pid_t(f[1]), let start = UInt64(f[19]) else { return nil }
    return (state, ppid, start)
}

/// The start time of a process, in clock ticks since boot: with the pid, it names one process
/// for good (the kernel reuses pids, not pid and start time together).
public func processStartTime(_ pid: pid_t) -> UInt64? { procStat(pid)?.startTime }

/// One process fleetsim started: pid, start time and what it is ("supervisor", "host web-001").
public struct ProcessRecord: Equatable, Hashable, Sendable, CustomStringConvertible {
    public var pid: pid_t
    public var startTime: UInt64
    public var role: String

    public init(pid: pid_t, startTime: UInt64, role: String) {
        self.pid = pid; self.startTime = startTime; self.role = role
    }

    public var description: String { "\(role) (pid \(pid))" }

    public enum State: Equatable, Sendable {
        case running
        /// Ended (gone, or a zombie its parent has not reaped yet).
        case exited
        /// The pid is now another process's (another start time): never to be signalled.
        case reused
    }

    public var state: State {
        guard let st = procStat(pid) else { return .exited }
        if st.startTime != startTime { return .reused }
        return st.state == "Z" || st.state == "X" ? .exited : .running
    }

    /// Sends `sig` to this process and no other. The pidfd is opened before the start time is
    /// checked, so check and signal cannot land on two processes: if the recorded one ended and its
    /// pid went to another in between, the check fails (another start time) or the signal does
    /// (the pidfd still names the ended one). Returns whether the signal was sent.
    @discardableResult
    public func signal(_ sig: Int32) -> Bool {
        guard let open = pidfdOpen, let send = pidfdSendSignal else {
            // No pidfd calls in this libc (glibc before 2.36): check, then kill(2). A pid reused in
            // the microseconds between the two is the one case this cannot rule out.
            guard state == .running else { return false }
            return kill(pid, sig) == 0
        }
        let fd = open(pid, 0)
        guard fd >= 0 else { return false }
        defer { Glibc.close(fd) }
        guard state == .running else { return false }
        return send(fd, sig, nil, 0) == 0
    }

    /// The direct children of this process, each with its own start time (e.g. a host's PID 1,
    /// the child of its `unshare`). Empty unless this process still runs.
    public func children() -> [ProcessRecord] {
        guard state == .running else { return [] }
        return childPids(pid).compactMap { c in
            guard let st = procStat(c), st.ppid == pid else { return nil }
            return ProcessRecord(pid: c, startTime: st.startTime, role: role + " init")
        }
    }

    /// Waits until the process is no longer running, at most `seconds`; returns whether it stopped.
    public func waitGone(seconds: Double) -> Bool {
        let deadline = monotonic() + seconds
        while state == .running {
            if monotonic() > deadline { return false }
            usleep(20_000)
        }
        return true
    }
}

// pidfd_open(2) and pidfd_send_signal(2): glibc 2.36 has both, but Swift's Glibc module does not
// include <sys/pidfd.h>, so they are looked up by name.
private typealias PidfdOpen = @convention(c) (pid_t, UInt32) -> Int32
private typealias PidfdSendSignal = @convention(c) (Int32, Int32, UnsafeMutableRawPointer?, UInt32) -> Int32
private let pidfdOpen: PidfdOpen? = dlsym(nil, "pidfd_open").map { unsafeBitCast($0, to: PidfdOpen.self) }
private let pidfdSendSignal: PidfdSendSignal? =
    dlsym(nil, "pidfd_send_signal").map { unsafeBitCast($0, to: PidfdSendSignal.self) }

/// The long-lived processes fleetsim started for a fleet, one line each in DIR/run/processes:
/// `PID STARTTIME ROLE`. `up` records the supervisor, the supervisor records itself and each
/// host's `unshare` at every boot. Lines are only appended; `down` reads them all and signals
/// those still running with the recorded start time.
public enum ProcessLedger {
    public static func append(dir: String, _ r: ProcessRecord) {
        let line = "\(r.pid) \(r.startTime) \(r.role)\n"
        let fd = open(Layout(dir: dir).processes, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0o644)
        guard fd >= 0 else { return }
        _ = line.utf8CString.withUnsafeBufferPointer { write(fd, $0.baseAddress, $0.count - 1) }
        close(fd)
    }

    /// Every recorded process, oldest first, each once.
    public static func load(dir: String) -> [ProcessRecord] {
        var seen = Set<ProcessRecord>()
        var out: [ProcessRecord] = []
        for line in (readFile(Layout(dir: dir).processes) ?? "").split(separator: "\n") {
            let f = line.split(separator: " ", maxSplits: 2)
            guard f.count == 3, let pid = pid_t(f[0]), pid > 0, let start = UInt64(f[1]) else { continue }
            let r = ProcessRecord(pid: pid, startTime: start, role: String(f[2]))
            if seen.insert(r).inserted { out.append(r) }
        }
        return out
    }

    /// The fleet's supervisor, if one recorded here is running.
    public static func runningSupervisor(dir: String) -> ProcessRecord? {
        load(dir: dir).last { $0.role == "supervisor" && $0.state == .running }
    }
}

// MARK: - /proc

public func processAlive(_ pid: pid_t) -> Bool {
    guard pid > 0 else { return false }
    if kill(pid, 0) != 0 { return false }
    // A zombie counts as dead.
    if let st = procStat(pid), st.state == "Z" { return false }
    return true
}

/// Global pids of the direct children of `pid`.
public func childPids(_ pid: pid_t) -> [pid_t] {
    guard let s = readFile("/proc/\(pid)/task/\(pid)/children") else { return [] }
    return s.split(separator: " ").compactMap { pid_t($0.trimmingCharacters(in: .whitespacesAndNewlines)) }
}

public func processComm(_ pid: pid_t) -> String {
    (readFile("/proc/\(pid)/comm") ?? "").trimmingCharacters(in: .whitespacesAndNewlines)
}

public func processCmdline(_ pid: pid_t) -> [String] {
    guard let s = readFile("/proc/\(pid)/cmdline") else { return [] }
    return s.split(separator: "\0").map(String.init)
}
