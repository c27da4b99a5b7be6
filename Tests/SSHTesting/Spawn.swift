import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Child processes for tests, on posix_spawn + waitpid. (Foundation's `Process`
/// was seen to miss a child's exit under concurrent tests on Linux and hang
/// in `waitUntilExit`.)
public enum Spawn {
    /// Starts `exe` with `args`; stdout/stderr go to `outputPath` (or /dev/null).
    public static func start(_ exe: String, _ args: [String], environment: [String: String]? = nil, outputPath: String? = nil) throws -> pid_t {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        let out = outputPath ?? "/dev/null"
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, out, O_WRONLY | O_CREAT | O_APPEND, 0o644)
        posix_spawn_file_actions_adddup2(&actions, 1, 2)
        return try spawn(exe, args, environment: environment, actions: &actions)
    }

    /// Runs to completion and returns (exit status, stdout+stderr).
    @discardableResult
    public static func run(_ exe: String, _ args: [String], environment: [String: String]? = nil) throws -> (Int32, String) {
        var fds: [Int32] = [0, 0]
        guard pipe(&fds) == 0 else { throw TestSSHDError("pipe failed") }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_adddup2(&actions, fds[1], 1)
        posix_spawn_file_actions_adddup2(&actions, fds[1], 2)
        posix_spawn_file_actions_addclose(&actions, fds[0])
        let pid: pid_t
        do { pid = try spawn(exe, args, environment: environment, actions: &actions) } catch {
            close(fds[0]); close(fds[1]); throw error
        }
        close(fds[1])
        var output: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = read(fds[0], &buf, buf.count)
            if n > 0 { output += buf[0..<n]; continue }
            if n < 0 && errno == EINTR { continue }
            break
        }
        close(fds[0])
        return (wait(pid), String(decoding: output, as: UTF8.self))
    }

    /// Waits for a child; returns its exit status (128+signal if killed).
    public static func wait(_ pid: pid_t) -> Int32 {
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        if status & 0x7f == 0 { return (status >> 8) & 0xff }
        return 128 + (status & 0x7f)
    }

    /// True while the child has not exited (reaps it if it has).
    public static func isRunning(_ pid: pid_t) -> Bool {
        var status: Int32 = 0
        return waitpid(pid, &status, WNOHANG) == 0
    }

    private static func spawn(_ exe: String, _ args: [String], environment: [String: String]?, actions: inout posix_spawn_file_actions_t) throws -> pid_t {
        let argv = ([exe] + args).map { strdup($0) } + [nil]
        defer { argv.forEach { free($0) } }
        let envDict = environment ?? ProcessInfo.processInfo.environment
        let envp = envDict.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer { envp.forEach { free($0) } }
        // Children start with no blocked signals and default handlers: the test
        // runner blocks some, and a child that inherits that ignores SIGTERM.
        var attr = posix_spawnattr_t()
        posix_spawnattr_init(&attr)
        defer { posix_spawnattr_destroy(&attr) }
        var empty = sigset_t()
        sigemptyset(&empty)
        var defaults = sigset_t()
        sigemptyset(&defaults)
        for sig in [SIGTERM, SIGINT, SIGPIPE, SIGHUP, SIGCHLD] { sigaddset(&defaults, sig) }
        posix_spawnattr_setsigmask(&attr, &empty)
        posix_spawnattr_setsigdefault(&attr, &defaults)
        posix_spawnattr_setflags(&attr, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))
        var pid: pid_t = 0
        let rc = posix_spawn(&pid, exe, &actions, &attr, argv, envp)
        guard rc == 0 else { throw TestSSHDError("cannot start \(exe): \(String(cString: strerror(rc)))") }
        return pid
    }
}
