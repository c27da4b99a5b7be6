import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// An error that ends a fleetsim command with a message and an exit code.
public struct FleetsimError: Error, CustomStringConvertible {
    public var message: String
    public var exitCode: Int32
    public init(_ message: String, exitCode: Int32 = 1) {
        self.message = message
        self.exitCode = exitCode
    }
    public var description: String { message }
}

// MARK: - typed values

/// Parses durations like `20s`, `1.5s`, `500ms`, `2m`, `1h`, or a bare number of seconds.
public func parseDuration(_ text: String) -> Double? {
    let t = text.trimmingCharacters(in: .whitespaces).lowercased()
    let units: [(String, Double)] = [("ms", 0.001), ("s", 1), ("m", 60), ("h", 3600), ("d", 86400)]
    for (suffix, factor) in units where t.hasSuffix(suffix) {
        let number = String(t.dropLast(suffix.count))
        if let v = Double(number), v >= 0 { return v * factor }
        if suffix == "m" || suffix == "s" { continue }  // "ms" vs "s"/"m" ambiguity handled by order
        return nil
    }
    if let v = Double(t), v >= 0 { return v }
    return nil
}

/// Parses sizes like `300MiB`, `16GiB`, `512KiB`, `1.5GiB`, `2048kB`, or a bare number of bytes. Returns bytes.
public func parseSize(_ text: String) -> Double? {
    let t = text.trimmingCharacters(in: .whitespaces)
    let units: [(String, Double)] = [
        ("KiB", 1024), ("MiB", 1024 * 1024), ("GiB", 1024 * 1024 * 1024), ("TiB", 1024.0 * 1024 * 1024 * 1024),
        ("kB", 1024), ("KB", 1024), ("MB", 1024 * 1024), ("GB", 1024 * 1024 * 1024),
        ("K", 1024), ("M", 1024 * 1024), ("G", 1024 * 1024 * 1024), ("B", 1),
    ]
    for (suffix, factor) in units where t.hasSuffix(suffix) {
        let number = String(t.dropLast(suffix.count)).trimmingCharacters(in: .whitespaces)
        if let v = Double(number), v >= 0 { return v * factor }
        return nil
    }
    if let v = Double(t), v >= 0 { return v }
    return nil
}

public func formatDuration(_ seconds: Double) -> String {
    if seconds == seconds.rounded() { return "\(Int(seconds))s" }
    return String(format: "%.2fs", seconds)
}

// MARK: - addresses

public func parseIPv4(_ s: String) -> UInt32? {
    let parts = s.split(separator: ".", omittingEmptySubsequences: false)
    guard parts.count == 4 else { return nil }
    var v: UInt32 = 0
    for p in parts {
        guard let b = UInt8(p) else { return nil }
        v = v << 8 | UInt32(b)
    }
    return v
}

public func formatIPv4(_ v: UInt32) -> String {
    "\(v >> 24).\((v >> 16) & 255).\((v >> 8) & 255).\(v & 255)"
}

/// `count` loopback addresses starting at `base`, skipping .0 and .255 in the last octet.
public func hostAddresses(base: String, count: Int) throws -> [String] {
    guard var v = parseIPv4(base), v >> 24 == 127 else {
        throw FleetsimError("base address \(base) is not in 127.0.0.0/8", exitCode: 2)
    }
    var out: [String] = []
    while out.count < count {
        let last = v & 255
        if last != 0 && last != 255 { out.append(formatIPv4(v)) }
        v += 1
        guard v >> 24 == 127 else { throw FleetsimError("ran out of 127/8 addresses", exitCode: 2) }
    }
    return out
}

// MARK: - files

public func writeFile(_ path: String, _ text: String, mode: mode_t = 0o644) throws {
    guard FileManager.default.createFile(atPath: path, contents: Data(text.utf8), attributes: [.posixPermissions: Int(mode)]) else {
        throw FleetsimError("cannot write \(path): \(String(cString: strerror(errno)))")
    }
}

/// Rewrites a file in place (open, truncate, write) so bind mounts of it keep seeing the new content.
@discardableResult
public func rewriteInPlace(_ path: String, _ text: String) -> Bool {
    let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
    guard fd >= 0 else { return false }
    defer { close(fd) }
    var ok = true
    text.utf8CString.withUnsafeBufferPointer { buf in
        let n = buf.count - 1
        var off = 0
        while off < n {
            let w = write(fd, buf.baseAddress! + off, n - off)
            if w <= 0 { ok = false; return }
            off += w
        }
    }
    return ok
}

/// Replaces a file atomically (write a temporary then rename). Only for files nobody bind-mounts.
public func replaceFile(_ path: String, _ text: String) {
    let tmp = path + ".tmp\(getpid())"
    if rewriteInPlace(tmp, text) { rename(tmp, path) }
}

/// Reads a whole file with read(2) until EOF (works for /proc files, whose size reads as 0).
public func readFile(_ path: String) -> String? {
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { return nil }
    defer { close(fd) }
    var out = [UInt8]()
    var buf = [UInt8](repeating: 0, count: 65536)
    while true {
        let n = read(fd, &buf, buf.count)
        if n < 0 { if errno == EINTR { continue }; return nil }
        if n == 0 { break }
        out.append(contentsOf: buf[0..<n])
    }
    return String(decoding: out, as: UTF8.self)
}

public func fileExists(_ path: String) -> Bool { access(path, F_OK) == 0 }

public func mkdirs(_ path: String) throws {
    try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
}

public func now() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_REALTIME, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
}

public func monotonic() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
}

public func isoTime(_ t: Double) -> String {
    let f = ISO8601DateFormatter()
    f.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
    return f.string(from: Date(timeIntervalSince1970: t))
}

public func randomUUIDLower() -> String { UUID().uuidString.lowercased() }

/// Absolute, normalised path.
public func absolutePath(_ p: String) -> String {
    let url = URL(fileURLWithPath: p, relativeTo: URL(fileURLWithPath: FileManager.default.currentDirectoryPath))
    return url.standardizedFileURL.path
}

/// The path of the running executable.
public func selfExecutable() -> String {
    var buf = [CChar](repeating: 0, count: 4096)
    let n = readlink("/proc/self/exe", &buf, buf.count - 1)
    if n > 0 { return String(decoding: buf[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self) }
    return absolutePath(CommandLine.arguments[0])
}

public func shellQuote(_ s: String) -> String {
    if !s.isEmpty && s.allSatisfy({ $0.isLetter || $0.isNumber || "-_./=:@,+".contains($0) }) { return s }
    return "'" + s.replacingOccurrences(of: "'", with: "'\\''") + "'"
}

// MARK: - processes

/// Runs a program and waits; returns exit status and combined output.
@discardableResult
public func runProgram(_ path: String, _ args: [String], input: String? = nil) -> (status: Int32, output: String) {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: path)
    p.arguments = args
    let pipe = Pipe()
    p.standardOutput = pipe
    p.standardError = pipe
    if let input {
        let inPipe = Pipe()
        p.standardInput = inPipe
        inPipe.fileHandleForWriting.write(Data(input.utf8))
        try? inPipe.fileHandleForWriting.close()
    } else {
        p.standardInput = FileHandle.nullDevice
    }
    do { try p.run() } catch { return (127, "cannot run \(path): \(error)") }
    let data = pipe.fileHandleForReading.readDataToEndOfFile()
    p.waitUntilExit()
    return (p.terminationStatus, String(decoding: data, as: UTF8.self))
}

/// Spawns a detached child with posix_spawn (new session, stdio to a log file). Returns its pid.
public func spawnDetached(_ path: String, _ args: [String], logPath: String?, newSession: Bool = true) -> pid_t? {
    var attr = posix_spawnattr_t()
    posix_spawnattr_init(&attr)
    defer { posix_spawnattr_destroy(&attr) }
    var flags: Int32 = 0
    if newSession { flags |= 0x80 }  // POSIX_SPAWN_SETSID (glibc)
    // Reset signal mask and default handlers in the child.
    var empty = sigset_t()
    sigemptyset(&empty)
    posix_spawnattr_setsigmask(&attr, &empty)
    var defaults = sigset_t()
    sigemptyset(&defaults)
    sigaddset(&defaults, SIGPIPE)
    sigaddset(&defaults, SIGCHLD)
    sigaddset(&defaults, SIGTERM)
    sigaddset(&defaults, SIGINT)
    sigaddset(&defaults, SIGHUP)
    posix_spawnattr_setsigdefault(&attr, &defaults)
    flags |= Int32(POSIX_SPAWN_SETSIGMASK) | Int32(POSIX_SPAWN_SETSIGDEF)
    posix_spawnattr_setflags(&attr, Int16(flags))

    var fa = posix_spawn_file_actions_t()
    posix_spawn_file_actions_init(&fa)
    defer { posix_spawn_file_actions_destroy(&fa) }
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0)
    let log = logPath ?? "/dev/null"
    posix_spawn_file_actions_addopen(&fa, 1, log, O_WRONLY | O_CREAT | O_APPEND, 0o644)
    posix_spawn_file_actions_adddup2(&fa, 1, 2)

    markInheritedDescriptorsCloseOnExec()
    let argv: [UnsafeMutablePointer<CChar>?] = ([path] + args).map { strdup($0) } + [nil]
    defer { for a in argv { free(a) } }
    var pid: pid_t = 0
    let rc = posix_spawn(&pid, path, &fa, &attr, argv, environ)
    return rc == 0 ? pid : nil
}

/// Sets FD_CLOEXEC on every descriptor above 2, so a spawned daemon keeps none of ours
/// (e.g. the pipe a test reads `fleetsim up`'s output from).
public func markInheritedDescriptorsCloseOnExec() {
    guard let fds = try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd") else { return }
    for f in fds {
        if let fd = Int32(f), fd > 2 { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
    }
}

public func processAlive(_ pid: pid_t) -> Bool {
    guard pid > 0 else { return false }
    if kill(pid, 0) != 0 { return false }
    // A zombie counts as dead.
    if let stat = readFile("/proc/\(pid)/stat"), let close = stat.lastIndex(of: ")") {
        let rest = stat[stat.index(after: close)...].trimmingCharacters(in: .whitespaces)
        if rest.hasPrefix("Z") { return false }
    }
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

/// All pids whose command line mentions `needle`.
public func pidsMentioning(_ needle: String) -> [pid_t] {
    let me = getpid()
    guard let entries = try? FileManager.default.contentsOfDirectory(atPath: "/proc") else { return [] }
    var out: [pid_t] = []
    for e in entries {
        guard let pid = pid_t(e), pid != me else { continue }
        if processCmdline(pid).contains(where: { $0.contains(needle) }) { out.append(pid) }
    }
    return out
}

/// A small, seedable random generator (SplitMix64) so generated fleets are reproducible.
public struct SeededRandom: RandomNumberGenerator {
    var state: UInt64
    public init(seed: UInt64) { state = seed }
    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
