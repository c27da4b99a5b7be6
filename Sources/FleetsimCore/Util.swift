import Basics
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

/// Seconds from a duration (`20s`, `1.5s`, `500ms`, `2m`, `1h30m`, or a bare number of seconds):
/// rollctl's own parser (`DurationText`), so a scenario and a plan read `2m` alike.
public func parseDuration(_ text: String) -> Double? { DurationText.parse(text, bareSeconds: true)?.seconds }

/// Bytes from a size (`300MiB`, `16GiB`, `1.5GiB`, `2048kB`, or a bare number of bytes): rollctl's
/// own parser (`Quantity.bytes`: binary units are powers of 1024, `kB`/`MB`/`GB` of 1000).
public func parseSize(_ text: String) -> Double? { Quantity.bytes(text).map { Double($0) } }

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

// Processes (run and capture, detached children, pids by start time): Processes.swift.

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

/// Appends `text` to the file, creating it (0644) if needed.
public func appendFile(_ path: String, _ text: String) throws {
    let fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o644)
    guard fd >= 0 else { throw FleetsimError("cannot append to \(path): \(String(cString: strerror(errno)))") }
    defer { close(fd) }
    let bytes = Array(text.utf8)
    guard write(fd, bytes, bytes.count) == bytes.count else { throw FleetsimError("cannot append to \(path): \(String(cString: strerror(errno)))") }
}
