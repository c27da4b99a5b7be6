import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// A host's test-site answers since it booted, as its nginx would count them (a reboot restarts
/// the count, like a restarted process).
struct SiteCounters {
    var byStatus: [Int: Int] = [:]
    var resets = 0

    mutating func count(status: Int?) {
        if let status { byStatus[status, default: 0] += 1 } else { resets += 1 }
    }
}

/// What one scrape of a host's node metrics shows.
public struct NodeMetricsSample: Sendable {
    public var host: String
    /// The snapshot the host's fake /proc/meminfo and /proc/vmstat were last rendered from.
    public var snapshot: ProcSnapshot
    /// Unix seconds of the current boot (whole seconds, like `btime` in /proc/stat).
    public var bootTime: Double
    public var requests: [Int: Int]
    public var resets: Int

    public init(host: String, snapshot: ProcSnapshot, bootTime: Double, requests: [Int: Int] = [:], resets: Int = 0) {
        self.host = host; self.snapshot = snapshot; self.bootTime = bootTime; self.requests = requests; self.resets = resets
    }
}

/// The node_exporter-like page every running host serves on `<address>:9100/metrics`
/// (Prometheus text exposition format 0.0.4).
public enum NodeMetrics {
    public static let port: UInt16 = 9100
    public static let contentType = "text/plain; version=0.0.4; charset=utf-8"

    /// A label value escaped as the exposition format wants it: `\` -> `\\`, `"` -> `\"`, newline -> `\n`.
    public static func escapeLabel(_ v: String) -> String {
        var out = ""
        out.reserveCapacity(v.utf8.count)
        for ch in v.unicodeScalars {
            switch ch {
            case "\\": out += "\\\\"
            case "\"": out += "\\\""
            case "\n": out += "\\n"
            default: out.unicodeScalars.append(ch)
            }
        }
        return out
    }

    /// The memory and vmstat values are the ones meminfo/vmstat print for the same snapshot
    /// (meminfo's kB times 1024, as node_exporter multiplies them).
    public static func render(_ m: NodeMetricsSample) -> String {
        let s = m.snapshot
        let host = escapeLabel(m.host)
        var out = ""
        func family(_ name: String, _ type: String, _ help: String) {
            out += "# HELP \(name) \(help)\n# TYPE \(name) \(type)\n"
        }
        family("node_boot_time_seconds", "gauge", "Node boot time, in unixtime.")
        out += "node_boot_time_seconds \(Int64(m.bootTime.rounded(.down)))\n"
        family("node_memory_MemTotal_bytes", "gauge", "Memory information field MemTotal_bytes.")
        out += "node_memory_MemTotal_bytes \(ProcFiles.memTotalKB(s) * 1024)\n"
        family("node_memory_SUnreclaim_bytes", "gauge", "Memory information field SUnreclaim_bytes.")
        out += "node_memory_SUnreclaim_bytes \(ProcFiles.sunreclaimKB(s) * 1024)\n"
        family("node_vmstat_oom_kill", "untyped", "/proc/vmstat information field oom_kill.")
        out += "node_vmstat_oom_kill \(s.oomKill)\n"
        family("nginx_http_requests_total", "counter", "Test-site requests answered since the host booted, by HTTP status.")
        let statuses = Set([200, 500]).union(m.requests.keys).sorted()
        for st in statuses {
            out += "nginx_http_requests_total{host=\"\(host)\",status=\"\(st)\"} \(m.requests[st] ?? 0)\n"
        }
        family("fleetsim_site_resets_total", "counter", "Test-site requests answered with a TCP reset since the host booted.")
        out += "fleetsim_site_resets_total{host=\"\(host)\"} \(m.resets)\n"
        return out
    }
}

/// The node-metrics sockets of all hosts (`<address>:9100`), served from the supervisor's poll
/// loop beside the test sites. A host's listener exists only while the host runs, whatever its
/// site mode. `GET /metrics` gets the page; anything else 404.
final class MetricsServer {
    struct Conn {
        var host: Int
        var acceptedAt: Double
        var buffer: [UInt8] = []
    }
    var listeners: [Int: Int32] = [:]        // host index -> fd
    var listenerHost: [Int32: Int] = [:]     // fd -> host index
    var conns: [Int32: Conn] = [:]
    static let requestLimit = 16384
    static let maxConns = 256
    static let idleLimit = 30.0

    /// Opens the host's listener if it has none; returns an error to log.
    func open(host: Int, address: String) -> String? {
        guard listeners[host] == nil else { return nil }
        let (fd, err) = SiteServer.listen(address: address, port: NodeMetrics.port)
        guard let fd else { return err }
        listeners[host] = fd
        listenerHost[fd] = host
        return nil
    }

    /// Closes the host's listener and its open connections (the host went down).
    func closeAll(host: Int) {
        if let fd = listeners.removeValue(forKey: host) {
            listenerHost.removeValue(forKey: fd)
            close(fd)
        }
        for (fd, c) in conns where c.host == host {
            close(fd)
            conns.removeValue(forKey: fd)
        }
    }

    func owns(_ fd: Int32) -> Bool { listenerHost[fd] != nil || conns[fd] != nil }

    func pollFDs() -> [pollfd] {
        var out: [pollfd] = []
        out.reserveCapacity(listeners.count + conns.count)
        for (_, fd) in listeners { out.append(pollfd(fd: fd, events: Int16(POLLIN), revents: 0)) }
        for (fd, _) in conns { out.append(pollfd(fd: fd, events: Int16(POLLIN), revents: 0)) }
        return out
    }

    /// Handles readiness on one of its fds. `page(host)` is the metrics text now (nil: not running).
    func handle(fd: Int32, page: (Int) -> String?) {
        if let host = listenerHost[fd] {
            while true {
                let c = accept(fd, nil, nil)
                if c < 0 { break }
                if conns.count >= MetricsServer.maxConns { close(c); continue }
                _ = fcntl(c, F_SETFD, FD_CLOEXEC)
                _ = fcntl(c, F_SETFL, fcntl(c, F_GETFL) | O_NONBLOCK)
                conns[c] = Conn(host: host, acceptedAt: monotonic())
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
        conn.buffer.append(contentsOf: buf[0..<n])
        let complete = conn.buffer.count > MetricsServer.requestLimit || SiteServer.containsHeaderEnd(conn.buffer)
        guard complete else { conns[fd] = conn; return }
        conns.removeValue(forKey: fd)
        if MetricsServer.isMetricsRequest(conn.buffer) {
            if let body = page(conn.host) {
                respond(fd, status: "200 OK", contentType: NodeMetrics.contentType, body: body)
            } else {
                respond(fd, status: "503 Service Unavailable", contentType: "text/plain; charset=utf-8", body: "host not running\n")
            }
        } else {
            respond(fd, status: "404 Not Found", contentType: "text/plain; charset=utf-8", body: "404 page not found\n")
        }
    }

    /// True for a request line `GET /metrics[?query] HTTP/1.x`.
    static func isMetricsRequest(_ b: [UInt8]) -> Bool {
        let end = b.firstIndex(of: 10) ?? b.count
        var line = b[..<end]
        if line.last == 13 { line = line.dropLast() }
        let parts = String(decoding: line, as: UTF8.self).split(separator: " ", omittingEmptySubsequences: false)
        guard parts.count == 3, parts[0] == "GET", parts[2].hasPrefix("HTTP/") else { return false }
        return parts[1] == "/metrics" || parts[1].hasPrefix("/metrics?")
    }

    /// Closes connections that never sent a whole request.
    func expire() {
        let t = monotonic()
        for (fd, c) in conns where t - c.acceptedAt > MetricsServer.idleLimit {
            close(fd)
            conns.removeValue(forKey: fd)
        }
    }

    /// One send (the page is a few hundred bytes, far below a fresh socket's send buffer), then close.
    func respond(_ fd: Int32, status: String, contentType: String, body: String) {
        let head = "HTTP/1.1 \(status)\r\nContent-Type: \(contentType)\r\nContent-Length: \(body.utf8.count)\r\nConnection: close\r\n\r\n"
        let bytes = Array((head + body).utf8)
        _ = bytes.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
        shutdown(fd, Int32(SHUT_WR))
        close(fd)
    }
}
