import Basics
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Why a TCP connect failed, classified: SSH turns it into its own error codes, the
/// notice channels into delivery errors.
public struct ConnectError: Error, Sendable, CustomStringConvertible {
    public enum Code: Sendable, Equatable { case nameResolution, refused, timeout, unreachable, cancelled }
    public var code: Code
    /// The peer as the user knows it (an inventory name or an address).
    public var host: String
    /// Says what failed, naming `address:port` ("connection to 127.0.0.1:25 refused").
    public var message: String
    public var hint: String?
    public init(_ code: Code, host: String, _ message: String, hint: String? = nil) {
        self.code = code; self.host = host; self.message = message; self.hint = hint
    }
    public var description: String { "\(host): \(message)" + (hint.map { " (\($0))" } ?? "") }
}

/// Set from a task-cancellation handler, read by a thread blocked in a connect, a probe or libssh2.
public final class CancelFlag: @unchecked Sendable {
    private let lock = NSLock()
    private var flag = false
    public init() {}
    public func set() { lock.lock(); flag = true; lock.unlock() }
    public var isSet: Bool { lock.lock(); defer { lock.unlock() }; return flag }
}

/// A TCP connect with a deadline, its failures classified. Non-blocking, CLOEXEC,
/// TCP_NODELAY; every address of the name is tried in turn.
public enum TCPConnect {
    /// Connects to `address:port` (`name`: how the user knows the peer, for messages) before
    /// `deadline`; returns the connected, non-blocking descriptor.
    public static func connect(name: String? = nil, address: String, port: Int, deadline: ContinuousClock.Instant,
                               cancel: CancelFlag = CancelFlag()) throws(ConnectError) -> Int32 {
        do {
            return try resolveAndConnect(name: name ?? address, address: address, port: port, deadline: deadline, cancel: cancel)
        } catch let e as ConnectError {
            throw e
        } catch {
            throw ConnectError(.unreachable, host: name ?? address, "\(error)")
        }
    }

    private static func resolveAndConnect(name: String, address: String, port: Int, deadline: ContinuousClock.Instant, cancel: CancelFlag) throws -> Int32 {
        var hints = addrinfo()
        hints.ai_family = AF_UNSPEC
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var res: UnsafeMutablePointer<addrinfo>? = nil
        let gai = getaddrinfo(address, String(port), &hints, &res)
        guard gai == 0, let first = res else {
            let why = String(cString: gai_strerror(gai))
            throw ConnectError(.nameResolution, host: name, "cannot resolve \(address): \(why)",
                           hint: "check the address in the inventory")
        }
        defer { freeaddrinfo(res) }

        var lastError: ConnectError?
        var ai: UnsafeMutablePointer<addrinfo>? = first
        while let a = ai {
            do {
                return try attempt(a.pointee, name: name, address: address, port: port, deadline: deadline, cancel: cancel)
            } catch let e as ConnectError {
                lastError = e
                if e.code == .cancelled { throw e }
            }
            ai = a.pointee.ai_next
        }
        throw lastError ?? ConnectError(.unreachable, host: name, "no usable address for \(address)")
    }

    private static func attempt(_ a: addrinfo, name: String, address: String, port: Int, deadline: ContinuousClock.Instant, cancel: CancelFlag) throws -> Int32 {
        let fd = socket(a.ai_family, a.ai_socktype | Int32(SOCK_CLOEXEC.rawValue), a.ai_protocol)
        guard fd >= 0 else {
            throw ConnectError(.unreachable, host: name, "socket(): \(String(cString: strerror(errno)))")
        }
        var ok = false
        defer { if !ok { close(fd) } }
        _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
        var one: Int32 = 1
        _ = setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))

        let where_ = "\(address):\(port)"
        var rc = Glibc.connect(fd, a.ai_addr, a.ai_addrlen)
        var err: Int32 = rc == 0 ? 0 : errno
        if rc != 0 && err == EINPROGRESS {
            while true {
                if cancel.isSet { throw ConnectError(.cancelled, host: name, "connect cancelled") }
                let left = deadline - ContinuousClock.now
                if left <= .zero {
                    throw ConnectError(.timeout, host: name, "no answer from \(where_) within the connect timeout",
                                   hint: "the host may be down, booting, or firewalled")
                }
                var pfd = pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
                rc = poll(&pfd, 1, Int32(min(50, max(1, left.milliseconds))))
                if rc > 0 {
                    var soErr: Int32 = 0
                    var len = socklen_t(MemoryLayout<Int32>.size)
                    err = getsockopt(fd, SOL_SOCKET, SO_ERROR, &soErr, &len) == 0 ? soErr : errno
                    break
                }
            }
        }
        switch err {
        case 0:
            ok = true
            return fd
        case ECONNREFUSED:
            throw ConnectError(.refused, host: name, "connection to \(where_) refused",
                           hint: "sshd is not listening there (host booting, or wrong port)")
        case ETIMEDOUT:
            throw ConnectError(.timeout, host: name, "connection to \(where_) timed out")
        case EHOSTUNREACH, ENETUNREACH, EHOSTDOWN, ENETDOWN:
            throw ConnectError(.unreachable, host: name, "\(where_) is unreachable: \(String(cString: strerror(err)))")
        default:
            throw ConnectError(.unreachable, host: name, "connect to \(where_) failed: \(String(cString: strerror(err)))")
        }
    }
}
