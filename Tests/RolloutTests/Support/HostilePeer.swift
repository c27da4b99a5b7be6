#if canImport(Glibc)
import Glibc
#endif
import Foundation

/// A TCP server on 127.0.0.1 (ephemeral port) that plays a script on every
/// connection: the hostile SMTP server or webhook endpoint of issue 14.
final class HostilePeer: @unchecked Sendable {
    enum Step: Sendable {
        /// These bytes at once.
        case send(String)
        /// These bytes one at a time, `interval` apart.
        case drip(String, interval: Duration)
        /// `filler` repeated without end (until the client goes away, at most 64 MiB).
        case endless(String)
        /// Read up to and including the next LF (an SMTP command).
        case awaitLine
        /// Read an HTTP request: its head, then Content-Length bytes of body.
        case awaitRequest
        /// Close the connection.
        case close
    }

    let port: Int
    private let listener: Int32
    private let script: [Step]
    private let lock = NSLock()
    private var stopped = false
    private var open: [Int32] = []

    init(_ script: [Step]) throws {
        self.script = script
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw POSIXError(.EIO) }
        var one: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        let bound = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard bound == 0, listen(fd, 16) == 0 else { close(fd); throw POSIXError(.EADDRINUSE) }
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) }
        }
        port = Int(UInt16(bigEndian: addr.sin_port))
        listener = fd
        Thread { [self] in acceptLoop() }.start()
    }

    deinit { stop() }

    func stop() {
        lock.lock()
        guard !stopped else { lock.unlock(); return }
        stopped = true
        let fds = open
        open = []
        lock.unlock()
        shutdown(listener, Int32(SHUT_RDWR))
        close(listener)
        for fd in fds { shutdown(fd, Int32(SHUT_RDWR)) }
    }

    private var isStopped: Bool { lock.lock(); defer { lock.unlock() }; return stopped }

    private func acceptLoop() {
        while true {
            let fd = accept(listener, nil, nil)
            if fd < 0 { if errno == EINTR { continue }; return }
            lock.lock()
            if stopped { lock.unlock(); close(fd); return }
            open.append(fd)
            lock.unlock()
            Thread { [self] in play(fd) }.start()
        }
    }

    private func play(_ fd: Int32) {
        var tv = timeval(tv_sec: 10, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        var pending: [UInt8] = []
        steps: for step in script {
            if isStopped { break }
            switch step {
            case .send(let text):
                guard write(fd, Array(text.utf8)) else { break steps }
            case .drip(let text, let interval):
                for byte in text.utf8 {
                    guard !isStopped, write(fd, [byte]) else { break steps }
                    Thread.sleep(forTimeInterval: Double(interval.components.attoseconds) / 1e18 + Double(interval.components.seconds))
                }
            case .endless(let filler):
                let block = Array(String(repeating: filler, count: max(1, 16 * 1024 / max(1, filler.utf8.count))).utf8)
                var sent = 0
                while sent < 64 << 20, !isStopped, write(fd, block) { sent += block.count }
                break steps
            case .awaitLine:
                guard read(fd, &pending, until: { $0.firstIndex(of: 0x0A).map { $0 + 1 } }) else { break steps }
            case .awaitRequest:
                guard read(fd, &pending, until: Self.requestEnd) else { break steps }
            case .close:
                break steps
            }
        }
        // Hold what was not closed until stop(): a peer that says no more.
        if case .close = script.last {} else {
            while !isStopped { usleep(20_000) }
        }
        lock.lock()
        open.removeAll { $0 == fd }
        lock.unlock()
        close(fd)
    }

    /// The length of a complete request at the front of `data`, or nil.
    static func requestEnd(_ data: [UInt8]) -> Int? {
        guard data.count >= 4, let end = (0...(data.count - 4)).first(where: { data[$0..<$0 + 4].elementsEqual([13, 10, 13, 10]) }) else {
            return nil
        }
        let head = String(decoding: data[..<end], as: UTF8.self).lowercased()
        let length = head.split(separator: "\r\n").first { $0.hasPrefix("content-length:") }
            .flatMap { Int($0.dropFirst("content-length:".count).trimmingCharacters(in: .whitespaces)) } ?? 0
        return data.count >= end + 4 + length ? end + 4 + length : nil
    }

    /// Reads until `until` finds the end of what it waits for, and drops that much.
    private func read(_ fd: Int32, _ pending: inout [UInt8], until: ([UInt8]) -> Int?) -> Bool {
        var buf = [UInt8](repeating: 0, count: 4096)
        while true {
            if let n = until(pending) { pending.removeFirst(n); return true }
            let n = buf.withUnsafeMutableBytes { recv(fd, $0.baseAddress!, $0.count, 0) }
            if n <= 0 { return false }
            pending += buf[0..<n]
        }
    }

    private func write(_ fd: Int32, _ bytes: [UInt8]) -> Bool {
        var off = 0
        while off < bytes.count {
            let n = bytes.withUnsafeBytes { send(fd, $0.baseAddress! + off, bytes.count - off, Int32(MSG_NOSIGNAL)) }
            if n <= 0 { return false }
            off += n
        }
        return true
    }
}
