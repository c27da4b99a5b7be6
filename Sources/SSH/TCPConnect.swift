import CLibSSH2
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// A TCP connect with a deadline, its failures classified. Non-blocking, CLOEXEC,
/// TCP_NODELAY; every address of the name is tried in turn.
public enum TCPConnect {
    /// For the other TCP clients (the notice channels): the same connect, not cancellable.
    public static func connect(address: String, port: Int, deadline: ContinuousClock.Instant) throws(SSHError) -> Int32 {
        do {
            return try connect(endpoint: SSHEndpoint(name: address, address: address, port: port), deadline: deadline, cancel: CancelFlag())
        } catch let e as SSHError {
            throw e
        } catch {
            throw SSHError(.hostUnreachable, host: address, "\(error)")
        }
    }

    static func connect(endpoint: SSHEndpoint, deadline: ContinuousClock.Instant, cancel: CancelFlag) throws -> Int32 {
        var hints = addrinfo()
        hints.ai_family = AF_UNSPEC
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var res: UnsafeMutablePointer<addrinfo>? = nil
        let gai = getaddrinfo(endpoint.address, String(endpoint.port), &hints, &res)
        guard gai == 0, let first = res else {
            let why = String(cString: gai_strerror(gai))
            throw SSHError(.nameResolution, host: endpoint.name, "cannot resolve \(endpoint.address): \(why)",
                           hint: "check the address in the inventory")
        }
        defer { freeaddrinfo(res) }

        var lastError: SSHError?
        var ai: UnsafeMutablePointer<addrinfo>? = first
        while let a = ai {
            do {
                return try attempt(a.pointee, endpoint: endpoint, deadline: deadline, cancel: cancel)
            } catch let e as SSHError {
                lastError = e
                if e.code == .cancelled { throw e }
            }
            ai = a.pointee.ai_next
        }
        throw lastError ?? SSHError(.hostUnreachable, host: endpoint.name, "no usable address for \(endpoint.address)")
    }

    private static func attempt(_ a: addrinfo, endpoint: SSHEndpoint, deadline: ContinuousClock.Instant, cancel: CancelFlag) throws -> Int32 {
        let fd = socket(a.ai_family, a.ai_socktype | Int32(SOCK_CLOEXEC.rawValue), a.ai_protocol)
        guard fd >= 0 else {
            throw SSHError(.hostUnreachable, host: endpoint.name, "socket(): \(String(cString: strerror(errno)))")
        }
        var ok = false
        defer { if !ok { close(fd) } }
        _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
        var one: Int32 = 1
        _ = setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))

        let where_ = "\(endpoint.address):\(endpoint.port)"
        var rc = Glibc.connect(fd, a.ai_addr, a.ai_addrlen)
        var err: Int32 = rc == 0 ? 0 : errno
        if rc != 0 && err == EINPROGRESS {
            while true {
                if cancel.isSet { throw SSHError(.cancelled, host: endpoint.name, "connect cancelled") }
                let left = deadline - ContinuousClock.now
                if left <= .zero {
                    throw SSHError(.connectTimeout, host: endpoint.name, "no answer from \(where_) within the connect timeout",
                                   hint: "the host may be down, booting, or firewalled")
                }
                var pfd = pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
                rc = poll(&pfd, 1, Int32(min(50, max(1, left.milliseconds))))
                if rc > 0 {
                    err = rollctl_sock_error(fd)
                    break
                }
            }
        }
        switch err {
        case 0:
            ok = true
            return fd
        case ECONNREFUSED:
            throw SSHError(.connectRefused, host: endpoint.name, "connection to \(where_) refused",
                           hint: "sshd is not listening there (host booting, or wrong port)")
        case ETIMEDOUT:
            throw SSHError(.connectTimeout, host: endpoint.name, "connection to \(where_) timed out")
        case EHOSTUNREACH, ENETUNREACH, EHOSTDOWN, ENETDOWN:
            throw SSHError(.hostUnreachable, host: endpoint.name, "\(where_) is unreachable: \(String(cString: strerror(err)))")
        default:
            throw SSHError(.hostUnreachable, host: endpoint.name, "connect to \(where_) failed: \(String(cString: strerror(err)))")
        }
    }
}
