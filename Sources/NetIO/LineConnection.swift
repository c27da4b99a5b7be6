#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Foundation

#if canImport(Glibc)
private let sysSend = Glibc.send
#else
private let sysSend = Darwin.send
#endif
import Basics

/// A blocking TCP connection for the notice channels (SMTP dialogue, webhook
/// POST): connect, send, receive bytes for a parser (`SMTPReplyReader`,
/// `HTTPResponseParser`: the peer is hostile, the caps live there), every wait
/// a `poll` bounded by a deadline the caller sets once for the whole exchange,
/// not per read. Used from one dedicated thread at a time, never from the
/// cooperative pool (see `Blocking.run`).
package final class LineConnection {
    package struct Failure: Error, CustomStringConvertible {
        /// True when the peer may not have seen the bytes at all (connect failed, refused):
        /// used to tell a retry that nothing reached the server.
        package var beforeConnect: Bool
        package var description: String
    }

    private let fd: Int32
    private var buffer: [UInt8] = []
    private var tls: TLSSession?
    let host: String
    package let peer: String

    private init(fd: Int32, host: String, peer: String) {
        self.fd = fd
        self.host = host
        self.peer = peer
    }

    deinit {
        tls?.shutdown()
        tls = nil
        close(fd)
    }

    var isTLS: Bool { tls != nil }

    /// Upgrades to TLS (after the server's go-ahead to STARTTLS). Bytes the
    /// server sent before the handshake would be a plaintext injection: refused.
    package func startTLS(caFile: String?, deadline: ContinuousClock.Instant) throws(Failure) {
        guard buffer.isEmpty else { throw Failure(beforeConnect: false, description: "the server sent data before the TLS handshake (refused)") }
        let fd = self.fd
        tls = try TLSSession(fd: fd, host: host, caFile: caFile) { (events: Int16) throws(Failure) in
            try Self.wait(fd, events, deadline, "in the TLS handshake with \(self.peer)")
        }
    }

    /// Resolves `host` and connects to the first address that answers before `deadline`.
    package static func connect(host: String, port: Int, deadline: ContinuousClock.Instant) throws(Failure) -> LineConnection {
        do {
            let fd = try TCPConnect.connect(address: host, port: port, deadline: deadline)
            return LineConnection(fd: fd, host: host, peer: "\(host):\(port)")
        } catch {
            // SSH's connect: its messages name the peer ("connection to 127.0.0.1:25 refused").
            throw Failure(beforeConnect: true, description: error.message)
        }
    }

    private static func wait(_ fd: Int32, _ events: Int16, _ deadline: ContinuousClock.Instant, _ phase: String,
                             beforeConnect: Bool = false) throws(Failure) {
        while true {
            let left = deadline - ContinuousClock.now
            if left <= .zero { throw Failure(beforeConnect: beforeConnect, description: "timed out \(phase)") }
            var p = pollfd(fd: fd, events: events, revents: 0)
            let leftMs: Double = (left / .milliseconds(1)).rounded(.up)
            let ms = Int32(min(1000, max(1, leftMs)))
            let n = poll(&p, 1, ms)
            if n > 0 { return }
            if n < 0 && errno != EINTR { throw Failure(beforeConnect: beforeConnect, description: "poll: \(String(cString: strerror(errno))) \(phase)") }
        }
    }

    package func send(_ bytes: [UInt8], deadline: ContinuousClock.Instant, phase: String) throws(Failure) {
        var offset = 0
        while offset < bytes.count {
            #if canImport(Glibc)
            let flags = Int32(MSG_NOSIGNAL)
            #else
            let flags: Int32 = 0
            #endif
            if let tls {
                do throws(TLSSession.Failure) {
                    offset += try tls.write(bytes, from: offset)
                } catch {
                    guard error.wantRead || error.wantWrite else { throw Failure(beforeConnect: false, description: "TLS: \(error.message) \(phase)") }
                    try Self.wait(fd, error.wantRead ? Int16(POLLIN) : Int16(POLLOUT), deadline, phase)
                }
                continue
            }
            let n = bytes.withUnsafeBytes { sysSend(fd, $0.baseAddress! + offset, bytes.count - offset, flags) }
            if n >= 0 { offset += n; continue }
            let code = errno
            guard code == EAGAIN || code == EWOULDBLOCK || code == EINTR else {
                throw Failure(beforeConnect: false, description: "\(String(cString: strerror(code))) \(phase)")
            }
            try Self.wait(fd, Int16(POLLOUT), deadline, phase)
        }
    }

    /// Reads more bytes into the buffer; false at the peer's close.
    private func fill(deadline: ContinuousClock.Instant, phase: String) throws(Failure) -> Bool {
        var chunk = [UInt8](repeating: 0, count: 16 * 1024)
        while true {
            if let tls {
                do throws(TLSSession.Failure) {
                    let n = try tls.read(into: &chunk)
                    if n == 0 { return false }
                    buffer += chunk[0..<n]
                    return true
                } catch {
                    guard error.wantRead || error.wantWrite else { throw Failure(beforeConnect: false, description: "TLS: \(error.message) \(phase)") }
                    try Self.wait(fd, error.wantRead ? Int16(POLLIN) : Int16(POLLOUT), deadline, phase)
                    continue
                }
            }
            let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress!, $0.count, 0) }
            if n > 0 { buffer += chunk[0..<n]; return true }
            if n == 0 { return false }
            let code = errno
            guard code == EAGAIN || code == EWOULDBLOCK || code == EINTR else {
                throw Failure(beforeConnect: false, description: "\(String(cString: strerror(code))) \(phase)")
            }
            try Self.wait(fd, Int16(POLLIN), deadline, phase)
        }
    }

    /// The bytes buffered, or when there are none the next that arrive; nil at
    /// the peer's close. The deadline holds even while bytes keep coming.
    package func receive(deadline: ContinuousClock.Instant, phase: String) throws(Failure) -> [UInt8]? {
        if ContinuousClock.now >= deadline { throw Failure(beforeConnect: false, description: "timed out \(phase)") }
        if buffer.isEmpty, try !fill(deadline: deadline, phase: phase) { return nil }
        defer { buffer = [] }
        return buffer
    }

    /// Gives back bytes a parser did not use: the next `receive` returns them first.
    package func unread(_ bytes: ArraySlice<UInt8>) {
        buffer = Array(bytes) + buffer
    }
}
