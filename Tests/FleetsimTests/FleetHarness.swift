import Foundation
import FleetsimCore
#if canImport(Glibc)
import Glibc
#endif

let isRoot = geteuid() == 0

/// The built `fleetsim` binary: $FLEETSIM_BIN, else next to the test bundle in the build folder.
func fleetsimBinary() -> String {
    if let b = ProcessInfo.processInfo.environment["FLEETSIM_BIN"] { return b }
    var dir = URL(fileURLWithPath: selfExecutable()).deletingLastPathComponent()
    for _ in 0..<4 {
        let c = dir.appendingPathComponent("fleetsim").path
        if FileManager.default.isExecutableFile(atPath: c) { return c }
        dir = dir.deletingLastPathComponent()
    }
    return "fleetsim"
}

struct RunResult {
    var status: Int32
    var out: String
    var err: String
}

/// Runs a program to its end (killed after `timeout` seconds), stdout and stderr apart.
@discardableResult
func run(_ path: String, _ args: [String], timeout: Double = 60) async -> RunResult {
    let r = await runCapturing(path, args, timeout: timeout)
    return RunResult(status: r.status, out: r.stdout, err: r.stderr)
}

/// Pids whose command line mentions `needle`: what the tests look at to see that nothing of a
/// fleet is left (fleetsim itself never looks processes up this way).
func pidsMentioning(_ needle: String) -> [pid_t] {
    let me = getpid()
    guard let entries = try? FileManager.default.contentsOfDirectory(atPath: "/proc") else { return [] }
    var out: [pid_t] = []
    for e in entries {
        guard let pid = pid_t(e), pid != me else { continue }
        if processCmdline(pid).contains(where: { $0.contains(needle) }) { out.append(pid) }
    }
    return out
}

/// A scenario for tests: short boot delays and a fast, unmistakable leak.
let testScenario = """
mem_total: 16GiB
initial_kernel: 6.1.0-17-hosting
defaults:
  boot_delay: 0.5s
  boot_jitter: 0s
  panic_delay: 1s
  sunreclaim_noise: 0.5MiB
kernels:
  6.1.0-17-hosting:
    sunreclaim_base: 300MiB
    sunreclaim_growth_per_min: 600MiB
  6.1.0-19-hosting:
    sunreclaim_base: 250MiB
    sunreclaim_growth_per_min: 0
  6.1.0-20-hosting:
    panic: true
hosts:
  web-002:
    boot_full: true
"""

/// One fleet in a temporary directory on its own addresses; `down()` removes it.
final class TestFleet: @unchecked Sendable {
    let dir: String
    let base: String
    let hosts: Int
    let bin = fleetsimBinary()

    /// Fleets left by a test run that was killed (its pid is gone) are taken down once per run.
    static func cleanStale() async {
        guard staleLock.withLock({ () -> Bool in
            defer { staleCleaned = true }
            return !staleCleaned
        }) else { return }
        let tmp = NSTemporaryDirectory()
        for d in (try? FileManager.default.contentsOfDirectory(atPath: tmp)) ?? [] where d.hasPrefix("fleetsim-") {
            let parts = d.replacingOccurrences(of: ".yaml", with: "").replacingOccurrences(of: ".log", with: "").split(separator: "-")
            guard let pid = parts.last.flatMap({ pid_t($0) }), pid != getpid(), kill(pid, 0) != 0 else { continue }
            if d.hasPrefix("fleetsim-test-") { _ = await run(fleetsimBinary(), ["down", "--dir", tmp + d]) }
            else if d.hasPrefix("fleetsim-scenario-") || d.hasPrefix("fleetsim-err-") || d.hasPrefix("fleetsim-spawn-") { unlink(tmp + d) }
            else if d.hasPrefix("fleetsim-decoy-") || d.hasPrefix("fleetsim-ledger-") { try? FileManager.default.removeItem(atPath: tmp + d) }
        }
    }
    private static let staleLock = NSLock()
    nonisolated(unsafe) private static var staleCleaned = false

    /// Addresses 127.<second>.<slot>.x: `second` from the pid, so two test runs at once
    /// (e.g. two checkouts) rarely meet; `slot` separates the tests of one run.
    init(hosts: Int, third slot: Int, scenario: String? = testScenario, extra: [String] = []) async throws {
        await TestFleet.cleanStale()
        self.hosts = hosts
        let second = 16 + Int(getpid()) % 200
        base = "127.\(second).\(slot).1"
        dir = NSTemporaryDirectory() + "fleetsim-test-\(slot)-\(getpid())"
        var args = ["up", "--hosts", "\(hosts)", "--dir", dir, "--base-address", base, "--racks", "2", "--wait", "60"] + extra
        if let scenario {
            let path = NSTemporaryDirectory() + "fleetsim-scenario-\(slot)-\(getpid()).yaml"
            try scenario.write(toFile: path, atomically: true, encoding: .utf8)
            args += ["--scenario", path]
        }
        let r = await run(bin, args, timeout: 90)
        if scenario != nil { unlink(args[args.count - 1]) }
        guard r.status == 0 else {
            _ = await run(bin, ["down", "--dir", dir])
            throw FleetsimError("fleetsim up failed (\(r.status)): \(r.out) \(r.err)")
        }
    }

    func down() async { _ = await run(bin, ["down", "--dir", dir]) }

    func address(_ i: Int) -> String { try! hostAddresses(base: base, count: i)[i - 1] }

    func ssh(_ i: Int, _ command: String) async -> RunResult {
        await run("/usr/bin/ssh", ["-i", dir + "/client_key", "-o", "UserKnownHostsFile=" + dir + "/known_hosts",
                             "-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes", "-o", "ConnectTimeout=5",
                             "-o", "LogLevel=ERROR", "-p", "2222", "root@" + address(i), command])
    }

    func sshOut(_ i: Int, _ command: String) async -> String {
        await ssh(i, command).out.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    func fleetsim(_ args: [String]) async -> RunResult { await run(bin, args + ["--dir", dir]) }

    func status(_ i: Int) -> HostStatus? {
        guard let d = FileManager.default.contents(atPath: dir + "/status.json"),
              let st = try? JSONDecoder().decode(FleetStatus.self, from: d), i - 1 < st.hosts.count else { return nil }
        return st.hosts[i - 1]
    }

    /// Waits until host i is up with at least `boots` boots; returns its status.
    func waitUp(_ i: Int, boots: Int, timeout: Double = 20) async -> HostStatus? {
        let deadline = monotonic() + timeout
        while monotonic() < deadline {
            if let s = status(i), s.state == "up", s.bootCount >= boots, s.sshd == "up" {
                // sshd listening is checked by the supervisor; give it a moment to accept.
                return s
            }
            await pause(0.1)
        }
        return nil
    }

    func bootLog(_ i: Int) -> [String] {
        let name = status(i)?.name ?? String(format: "web-%03d", i)
        return (readFile(dir + "/hosts/\(name)/boots.log") ?? "").split(separator: "\n").map(String.init)
    }

    func grubenv(_ i: Int) async -> [String: String] {
        var out: [String: String] = [:]
        for line in await sshOut(i, "grub-editenv list").split(separator: "\n") {
            if let eq = line.firstIndex(of: "=") { out[String(line[..<eq])] = String(line[line.index(after: eq)...]) }
        }
        return out
    }

    func sunreclaimKiB(_ i: Int) async -> Int? {
        let line = await sshOut(i, "grep SUnreclaim /proc/meminfo")
        return line.split(separator: " ").dropFirst().first.flatMap { Int($0) }
    }
}

/// Sleeps without holding a thread of Swift's pool (which swift-subprocess needs to finish a run).
func pause(_ seconds: Double) async {
    try? await Task.sleep(nanoseconds: UInt64(seconds * 1e9))
}

/// A fleet for `body`, taken down after it (also when it throws).
func withFleet(hosts: Int, third slot: Int, scenario: String? = testScenario, extra: [String] = [],
               _ body: (TestFleet) async throws -> Void) async throws {
    let f = try await TestFleet(hosts: hosts, third: slot, scenario: scenario, extra: extra)
    do {
        try await body(f)
    } catch {
        await f.down()
        throw error
    }
    await f.down()
}

enum HTTPOutcome: Equatable {
    case status(Int)
    case refused, reset, timeout
    case other(String)
}

/// One GET on a raw socket, so the failure class (refused / reset / timeout) is visible.
func httpGet(_ address: String, port: UInt16 = 80, timeout: Double = 2) -> HTTPOutcome {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { return .other("socket") }
    defer { close(fd) }
    var tv = timeval(tv_sec: Int(timeout), tv_usec: Int((timeout - Double(Int(timeout))) * 1e6))
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
    var sa = sockaddr_in()
    sa.sin_family = sa_family_t(AF_INET)
    sa.sin_port = port.bigEndian
    inet_pton(AF_INET, address, &sa.sin_addr)
    let rc = withUnsafePointer(to: &sa) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
    }
    if rc != 0 {
        if errno == ECONNREFUSED { return .refused }
        if errno == EINPROGRESS || errno == ETIMEDOUT || errno == EAGAIN { return .timeout }
        return .other("connect errno \(errno)")
    }
    let req = Array("GET / HTTP/1.1\r\nHost: \(address)\r\nConnection: close\r\n\r\n".utf8)
    _ = req.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
    var buf = [UInt8](repeating: 0, count: 4096)
    var got: [UInt8] = []
    while true {
        let n = recv(fd, &buf, buf.count, 0)
        if n > 0 { got += buf[0..<n]; continue }
        if n == 0 { break }
        if errno == ECONNRESET { return .reset }
        if errno == EAGAIN || errno == EWOULDBLOCK { return .timeout }
        return .other("recv errno \(errno)")
    }
    let text = String(decoding: got, as: UTF8.self)
    let parts = text.split(separator: " ", maxSplits: 2)
    if parts.count >= 2, let code = Int(parts[1]) { return .status(code) }
    return .other("bad response: \(text.prefix(40))")
}

/// One HTTP/1.1 request on a raw socket: the status, the header block and the body, or the
/// failure class (refused / reset / timeout / other) as `httpGet` tells it.
func httpRequest(_ address: String, port: UInt16, method: String = "GET", path: String,
                 timeout: Double = 2) -> Result<(status: Int, headers: String, body: String), HTTPFailure> {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { return .failure(HTTPFailure(outcome: .other("socket"))) }
    defer { close(fd) }
    var tv = timeval(tv_sec: Int(timeout), tv_usec: Int((timeout - Double(Int(timeout))) * 1e6))
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
    var sa = sockaddr_in()
    sa.sin_family = sa_family_t(AF_INET)
    sa.sin_port = port.bigEndian
    inet_pton(AF_INET, address, &sa.sin_addr)
    let rc = withUnsafePointer(to: &sa) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
    }
    if rc != 0 {
        return .failure(HTTPFailure(outcome: errno == ECONNREFUSED ? .refused : .other("connect errno \(errno)")))
    }
    let req = Array("\(method) \(path) HTTP/1.1\r\nHost: \(address):\(port)\r\nAccept: text/plain\r\nConnection: close\r\n\r\n".utf8)
    _ = req.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
    var buf = [UInt8](repeating: 0, count: 4096)
    var got: [UInt8] = []
    while true {
        let n = recv(fd, &buf, buf.count, 0)
        if n > 0 { got += buf[0..<n]; continue }
        if n == 0 { break }
        if errno == ECONNRESET { return .failure(HTTPFailure(outcome: .reset)) }
        if errno == EAGAIN || errno == EWOULDBLOCK { return .failure(HTTPFailure(outcome: .timeout)) }
        return .failure(HTTPFailure(outcome: .other("recv errno \(errno)")))
    }
    let text = String(decoding: got, as: UTF8.self)
    guard let split = text.range(of: "\r\n\r\n") else { return .failure(HTTPFailure(outcome: .other("no header end: \(text.prefix(60))"))) }
    let head = String(text[..<split.lowerBound])
    let parts = head.split(separator: " ", maxSplits: 2)
    guard parts.count >= 2, let code = Int(parts[1]) else { return .failure(HTTPFailure(outcome: .other("bad status line: \(head.prefix(40))"))) }
    return .success((code, head, String(text[split.upperBound...])))
}

struct HTTPFailure: Error { var outcome: HTTPOutcome }
