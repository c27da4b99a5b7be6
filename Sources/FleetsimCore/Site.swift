import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Test-site sockets of all hosts, served from the supervisor's poll loop (one process for the fleet).
/// A host's listener exists only while the host runs and its site mode is not `refuse`.
/// (Its node metrics, port 9100, are MetricsServer's, driven by the same loop.)
final class SiteServer {
    struct Conn {
        var fd: Int32
        var host: Int
        var acceptedAt: Double
        var buffer: [UInt8] = []
        var holding = false   // `timeout` mode: never answered
    }
    var listeners: [Int: Int32] = [:]   // host index -> fd
    var conns: [Int32: Conn] = [:]
    var rng = SystemRandomNumberGenerator()
    static let holdLimit = 300.0

    /// Opens a listener on address:port. Returns nil (and logs) on failure.
    static func listen(address: String, port: UInt16) -> (fd: Int32?, error: String?) {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { return (nil, "socket: \(String(cString: strerror(errno)))") }
        var one: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        var sa = sockaddr_in()
        sa.sin_family = sa_family_t(AF_INET)
        sa.sin_port = port.bigEndian
        inet_pton(AF_INET, address, &sa.sin_addr)
        let rc = withUnsafePointer(to: &sa) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        if rc != 0 {
            let e = String(cString: strerror(errno))
            close(fd)
            return (nil, "bind \(address):\(port): \(e)")
        }
        if Glibc.listen(fd, 256) != 0 {
            let e = String(cString: strerror(errno))
            close(fd)
            return (nil, "listen \(address):\(port): \(e)")
        }
        return (fd, nil)
    }

    func closeListener(host: Int) {
        if let fd = listeners.removeValue(forKey: host) { close(fd) }
    }

    /// Closes the host's listener and every open connection (its processes died).
    func closeAll(host: Int) {
        closeListener(host: host)
        for (fd, c) in conns where c.host == host {
            close(fd)
            conns.removeValue(forKey: fd)
        }
    }

    func pollFDs() -> [pollfd] {
        var out: [pollfd] = []
        out.reserveCapacity(listeners.count + conns.count)
        for (_, fd) in listeners { out.append(pollfd(fd: fd, events: Int16(POLLIN), revents: 0)) }
        for (fd, _) in conns { out.append(pollfd(fd: fd, events: Int16(POLLIN), revents: 0)) }
        return out
    }

    func hostForListener(_ fd: Int32) -> Int? {
        listeners.first { $0.value == fd }?.key
    }

    /// Handles readiness on one fd. `behaviour(host)` gives the site mode and failure fraction now;
    /// `answered(host, status)` is told of every request answered (status nil: reset).
    func handle(fd: Int32, revents: Int16, name: (Int) -> String, behaviour: (Int) -> Behaviour,
                answered: (Int, Int?) -> Void) {
        if let host = hostForListener(fd) {
            while true {
                let c = accept(fd, nil, nil)
                if c < 0 { break }
                _ = fcntl(c, F_SETFD, FD_CLOEXEC)
                _ = fcntl(c, F_SETFL, fcntl(c, F_GETFL) | O_NONBLOCK)
                conns[c] = Conn(fd: c, host: host, acceptedAt: monotonic())
            }
            return
        }
        guard var conn = conns[fd] else { return }
        var buf = [UInt8](repeating: 0, count: 4096)
        let n = recv(fd, &buf, buf.count, 0)
        if n <= 0 {
            if n < 0 && (errno == EAGAIN || errno == EINTR) { return }
            close(fd)
            conns.removeValue(forKey: fd)
            return
        }
        if conn.holding { return }  // read and ignore
        conn.buffer.append(contentsOf: buf[0..<n])
        let complete = conn.buffer.count > 16384 || SiteServer.containsHeaderEnd(conn.buffer)
        guard complete else { conns[fd] = conn; return }
        let b = behaviour(conn.host)
        var mode = b.site ?? .ok
        if mode == .ok, let f = b.siteFailFraction, f > 0, Double.random(in: 0..<1, using: &rng) < f {
            mode = b.siteFailAs ?? .reset
        }
        switch mode {
        case .ok:
            respond(fd, status: "200 OK", body: page(name(conn.host)))
            conns.removeValue(forKey: fd)
            answered(conn.host, 200)
        case .http500:
            respond(fd, status: "500 Internal Server Error",
                    body: "<html><head><title>500 Internal Server Error</title></head><body><h1>Error establishing a database connection</h1></body></html>\n")
            conns.removeValue(forKey: fd)
            answered(conn.host, 500)
        case .reset, .refuse:
            resetAndClose(fd)
            conns.removeValue(forKey: fd)
            answered(conn.host, nil)
        case .timeout:
            conn.holding = true
            conns[fd] = conn
        }
    }

    /// Closes connections held too long.
    func expire() {
        let t = monotonic()
        for (fd, c) in conns where t - c.acceptedAt > SiteServer.holdLimit {
            close(fd)
            conns.removeValue(forKey: fd)
        }
    }

    static func containsHeaderEnd(_ b: [UInt8]) -> Bool {
        guard b.count >= 4 else { return false }
        for i in 0...(b.count - 4) where b[i] == 13 && b[i + 1] == 10 && b[i + 2] == 13 && b[i + 3] == 10 { return true }
        // Tolerate bare-LF clients.
        for i in 0...(b.count - 2) where b[i] == 10 && b[i + 1] == 10 { return true }
        return false
    }

    func page(_ host: String) -> String {
        """
        <!DOCTYPE html>
        <html lang="en-US"><head><meta charset="UTF-8"><title>Test site &#8211; \(host)</title>
        <meta name="generator" content="WordPress 6.4.2" /></head>
        <body class="home blog"><h1 class="site-title">Test site on \(host)</h1><p>Hello world!</p></body></html>

        """
    }

    func respond(_ fd: Int32, status: String, body: String) {
        let head = "HTTP/1.1 \(status)\r\nServer: nginx\r\nContent-Type: text/html; charset=UTF-8\r\nContent-Length: \(body.utf8.count)\r\nConnection: close\r\n\r\n"
        let bytes = Array((head + body).utf8)
        _ = bytes.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
        shutdown(fd, Int32(SHUT_WR))
        close(fd)
    }

    /// A real TCP RST: SO_LINGER {on, 0} then close.
    func resetAndClose(_ fd: Int32) {
        var l = linger(l_onoff: 1, l_linger: 0)
        setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, socklen_t(MemoryLayout<linger>.size))
        close(fd)
    }
}
