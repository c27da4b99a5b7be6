#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Foundation
import Basics
import NetIO

/// A tiny HTTP server on 127.0.0.1 (ephemeral port) whose every connection
/// misbehaves as the test asks: the real sockets the probe must classify.
final class LoopbackHTTPServer: @unchecked Sendable {
    enum Behaviour: Sendable {
        /// Answer with this status and body, then close.
        case status(Int, body: String = "ok\n")
        /// Read the request and never answer.
        case hang
        /// Read the request, then reset the connection (SO_LINGER {1, 0} + close).
        case reset
        /// Reset without even reading the request.
        case resetAtOnce
        /// Answer something that is not HTTP.
        case garbage
        /// Close without a byte.
        case closeEmpty
        /// 200 chunked, then keep the connection open: the probe must end on the
        /// last chunk, not on the close.
        case chunkedKeepOpen
        /// 200 with Content-Length, then keep the connection open.
        case lengthKeepOpen
        /// Promise 100 bytes of body, send 5, close.
        case shortBody
        /// A 103 Early Hints interim response, then 200.
        case earlyHints
        /// Hostile peers. These bytes verbatim, then close (or hold the connection open).
        case raw(String, keepOpen: Bool = false)
        /// `head`, then `filler` repeated without end (until the probe goes away, at most
        /// 64 MiB): an endless status line, header or body.
        case endless(head: String, filler: String)
        /// These bytes one at a time, `interval` apart, then hold: a slow-drip server.
        case drip(String, interval: Duration)
    }

    let port: UInt16
    private let listener: Int32
    private let behaviour: @Sendable (Int) -> Behaviour
    private let lock = NSLock()
    private var held: [Int32] = []
    private var accepted = 0
    private var received: [String] = []
    private var closes: [ContinuousClock.Instant] = []
    private var stopped = false

    /// `behaviour` gets the index of the connection (0, 1, …).
    init(_ behaviour: @escaping @Sendable (Int) -> Behaviour) throws {
        self.behaviour = behaviour
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw POSIXError(errno) }
        var one: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        addr.sin_port = 0
        let bound = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard bound == 0, listen(fd, 64) == 0 else { close(fd); throw POSIXError(errno) }
        port = Self.localPort(fd)
        listener = fd
        let thread = Thread { [self] in acceptLoop() }
        thread.start()
    }

    convenience init(always b: Behaviour) throws { try self.init { _ in b } }

    var url: HTTPURL { HTTPURL(host: "127.0.0.1", port: port, path: "/test-site") }

    var connections: Int { lock.lock(); defer { lock.unlock() }; return accepted }

    /// When the probe closed each hung connection, seen from this server's own thread
    /// (so a busy cooperative pool in the test process does not move it).
    var closedAt: [ContinuousClock.Instant] { lock.lock(); defer { lock.unlock() }; return closes }

    /// Every request received, verbatim (header and anything sent after it).
    var requests: [String] { lock.lock(); defer { lock.unlock() }; return received }

    func stop() {
        lock.lock()
        stopped = true
        let fds = held
        held = []
        lock.unlock()
        shutdown(listener, Int32(SHUT_RDWR))
        close(listener)
        for fd in fds { close(fd) }
    }

    deinit { if !stopped { stop() } }

    static func localPort(_ fd: Int32) -> UInt16 {
        var addr = sockaddr_in()
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) }
        }
        return UInt16(bigEndian: addr.sin_port)
    }

    /// A loopback port with no listener: bound then closed, so connecting is refused.
    static func unusedPort() -> UInt16 {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        _ = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        let port = localPort(fd)
        close(fd)
        return port
    }

    private func acceptLoop() {
        while true {
            let fd = accept(listener, nil, nil)
            if fd < 0 {
                if errno == EINTR { continue }
                return
            }
            lock.lock()
            if stopped { lock.unlock(); close(fd); return }
            let index = accepted
            accepted += 1
            lock.unlock()
            let b = behaviour(index)
            Thread { [self] in serve(fd, b) }.start()
        }
    }

    private func serve(_ fd: Int32, _ b: Behaviour) {
        if case .resetAtOnce = b { reset(fd); return }
        readRequest(fd)
        switch b {
        case .status(let code, let body):
            write(fd, "HTTP/1.1 \(code) X\r\nContent-Type: text/plain\r\nContent-Length: \(body.utf8.count)\r\nConnection: close\r\n\r\n\(body)")
            close(fd)
        case .hang:
            hold(fd)
            watchForClose(fd)
        case .reset, .resetAtOnce:
            reset(fd)
        case .garbage:
            write(fd, "SSH-2.0-OpenSSH_9.2\r\n\r\n")
            close(fd)
        case .closeEmpty:
            close(fd)
        case .chunkedKeepOpen:
            write(fd, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\n\r\n")
            hold(fd)
        case .lengthKeepOpen:
            write(fd, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello")
            hold(fd)
        case .shortBody:
            write(fd, "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nhello")
            close(fd)
        case .earlyHints:
            write(fd, "HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n")
            write(fd, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            hold(fd)
        case .raw(let text, let keepOpen):
            write(fd, text)
            if keepOpen { hold(fd) } else { close(fd) }
        case .endless(let head, let filler):
            guard write(fd, head) else { close(fd); return }
            let block = String(repeating: filler, count: max(1, 16 * 1024 / max(1, filler.utf8.count)))
            var sent = 0
            while sent < 64 << 20, !isStopped, write(fd, block) { sent += block.utf8.count }
            close(fd)
        case .drip(let text, let interval):
            for byte in text.utf8 {
                if isStopped { break }
                guard write(fd, String(decoding: [byte], as: UTF8.self)) else { break }
                Thread.sleep(forTimeInterval: interval.seconds)
            }
            hold(fd)
        }
    }

    private func hold(_ fd: Int32) {
        lock.lock()
        if stopped { lock.unlock(); close(fd); return }
        held.append(fd)
        lock.unlock()
    }

    /// Waits (on this connection's thread) for the peer to close a held connection.
    private func watchForClose(_ fd: Int32) {
        var buf = [UInt8](repeating: 0, count: 512)
        while !isStopped {
            var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            guard poll(&p, 1, 100) > 0 else { continue }
            let n = buf.withUnsafeMutableBytes { recv(fd, $0.baseAddress!, $0.count, Int32(MSG_DONTWAIT)) }
            if n > 0 || (n < 0 && (errno == EAGAIN || errno == EINTR)) { continue }
            let now = ContinuousClock.now
            lock.lock()
            closes.append(now)
            lock.unlock()
            return
        }
    }

    private func reset(_ fd: Int32) {
        var l = linger(l_onoff: 1, l_linger: 0)
        setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, socklen_t(MemoryLayout<linger>.size))
        close(fd)
    }

    private func readRequest(_ fd: Int32) {
        var tv = timeval(tv_sec: 5, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        var data: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 4096)
        while !Self.hasHeaderEnd(data) {
            let n = buf.withUnsafeMutableBytes { recv(fd, $0.baseAddress!, $0.count, 0) }
            if n <= 0 { break }
            data.append(contentsOf: buf[0..<n])
        }
        lock.lock()
        received.append(String(decoding: data, as: UTF8.self))
        lock.unlock()
    }

    static func hasHeaderEnd(_ data: [UInt8]) -> Bool {
        data.count >= 4 && (0...(data.count - 4)).contains { data[$0..<$0 + 4].elementsEqual([13, 10, 13, 10]) }
    }

    private var isStopped: Bool { lock.lock(); defer { lock.unlock() }; return stopped }

    /// False when the peer went away.
    @discardableResult
    private func write(_ fd: Int32, _ text: String) -> Bool {
        let bytes = Array(text.utf8)
        var off = 0
        while off < bytes.count {
            let n = bytes.withUnsafeBytes { send(fd, $0.baseAddress! + off, bytes.count - off, Int32(MSG_NOSIGNAL)) }
            if n <= 0 { return false }
            off += n
        }
        return true
    }
}

extension POSIXError {
    init(_ code: Int32) { self.init(POSIXErrorCode(rawValue: code) ?? .EIO) }
}
