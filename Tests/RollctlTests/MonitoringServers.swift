import Foundation
import SSHTesting
#if canImport(Glibc)
import Glibc
#endif

/// The real Prometheus and Alertmanager from Debian's packages (`prometheus`,
/// `prometheus-alertmanager`), each a child process of the test in its own temporary folder,
/// listening on its own loopback port — never the machine's services (Debian's package may
/// start one on :9090/:9093; these tests neither use nor disturb it).
final class MonitoringServer {
    let name: String
    let pid: pid_t
    let port: UInt16
    let dir: String
    var url: String { "http://127.0.0.1:\(port)" }
    var logPath: String { dir + "/server.log" }
    var log: String { (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? "" }

    private init(name: String, pid: pid_t, port: UInt16, dir: String) {
        self.name = name
        self.pid = pid
        self.port = port
        self.dir = dir
    }

    static let prometheusBinary = ProcessInfo.processInfo.environment["PROMETHEUS_BIN"] ?? "/usr/bin/prometheus"
    static let alertmanagerBinary = ProcessInfo.processInfo.environment["ALERTMANAGER_BIN"] ?? "/usr/bin/prometheus-alertmanager"

    /// Both binaries present: the suite runs only then (make deps installs them).
    static var available: Bool {
        FileManager.default.isExecutableFile(atPath: prometheusBinary) && FileManager.default.isExecutableFile(atPath: alertmanagerBinary)
    }

    /// A Prometheus scraping `targets` (`address:port`) every second.
    static func prometheus(in parent: String, targets: [String]) throws -> MonitoringServer {
        let dir = parent + "/prometheus"
        try FileManager.default.createDirectory(atPath: dir + "/data", withIntermediateDirectories: true)
        let list = targets.map { "'\($0)'" }.joined(separator: ", ")
        try """
        global:
          scrape_interval: 1s
          scrape_timeout: 900ms
          evaluation_interval: 1s
        scrape_configs:
          - job_name: fleetsim
            static_configs:
              - targets: [\(list)]
        """.write(toFile: dir + "/prometheus.yml", atomically: true, encoding: .utf8)
        return try start("prometheus", prometheusBinary, dir: dir, basePort: 0) { port in
            ["--config.file=\(dir)/prometheus.yml", "--storage.tsdb.path=\(dir)/data",
             "--web.listen-address=127.0.0.1:\(port)", "--log.level=warn"]
        }
    }

    /// An Alertmanager with one receiver that sends nothing, clustering off.
    static func alertmanager(in parent: String) throws -> MonitoringServer {
        let dir = parent + "/alertmanager"
        try FileManager.default.createDirectory(atPath: dir + "/data", withIntermediateDirectories: true)
        try """
        route:
          receiver: nowhere
          group_wait: 1s
          group_interval: 1s
          repeat_interval: 1h
        receivers:
          - name: nowhere
        """.write(toFile: dir + "/alertmanager.yml", atomically: true, encoding: .utf8)
        return try start("alertmanager", alertmanagerBinary, dir: dir, basePort: 1) { port in
            ["--config.file=\(dir)/alertmanager.yml", "--storage.path=\(dir)/data",
             "--web.listen-address=127.0.0.1:\(port)", "--cluster.listen-address=", "--log.level=warn"]
        }
    }

    /// Starts the server on a port derived from the pid (another if that one is taken) and waits
    /// for `/-/ready`.
    private static func start(_ name: String, _ binary: String, dir: String, basePort: Int,
                              arguments: (UInt16) -> [String]) throws -> MonitoringServer {
        guard FileManager.default.isExecutableFile(atPath: binary) else { throw TestSSHDError("\(binary) is not installed (make deps)") }
        // 21000–28999, two ports per pid slot: clear of the usual 9090/9093 and of the ephemeral range.
        var candidates = (0..<8).map { i in UInt16(21000 + ((Int(getpid()) + i * 397) % 4000) * 2 + basePort) }
        candidates.removeAll { !portIsFree($0) }
        guard let port = candidates.first else { throw TestSSHDError("no free port for \(name)") }
        let pid = try Spawn.start(binary, arguments(port), outputPath: dir + "/server.log")
        let server = MonitoringServer(name: name, pid: pid, port: port, dir: dir)
        let deadline = Date().addingTimeInterval(60)
        while Date() < deadline {
            if case .success(let r) = server.request("GET", "/-/ready", timeout: 1), r.status == 200 { return server }
            if !Spawn.isRunning(pid) { throw TestSSHDError("\(name) exited at start:\n\(server.log.suffix(2000))") }
            usleep(100_000)
        }
        server.stop()
        throw TestSSHDError("\(name) not ready on port \(port) after 60 s:\n\(server.log.suffix(2000))")
    }

    /// Nothing listens on 127.0.0.1:`port` (a connect is refused).
    static func portIsFree(_ port: UInt16) -> Bool {
        if case .failure(let f) = http("127.0.0.1", port, "GET", "/", timeout: 0.5), f.refused { return true }
        return false
    }

    func stop() {
        kill(pid, SIGTERM)
        for _ in 0..<100 where Spawn.isRunning(pid) { usleep(50_000) }
        if Spawn.isRunning(pid) { kill(pid, SIGKILL) }
        _ = Spawn.wait(pid)
    }

    // MARK: - HTTP

    struct Response {
        var status: Int
        var body: String
        var json: Any? { try? JSONSerialization.jsonObject(with: Data(body.utf8)) }
    }

    struct Failure: Error, CustomStringConvertible {
        var description: String
        var refused = false
    }

    func request(_ method: String, _ path: String, json: Any? = nil, form: [(String, String)]? = nil, timeout: Double = 5) -> Result<Response, Failure> {
        var body: [UInt8]?
        var type: String?
        if let json, let data = try? JSONSerialization.data(withJSONObject: json) { body = Array(data); type = "application/json" }
        if let form {
            var allowed = CharacterSet.alphanumerics
            allowed.insert(charactersIn: "-._~")
            body = Array(form.map { "\($0.0)=\($0.1.addingPercentEncoding(withAllowedCharacters: allowed) ?? $0.1)" }.joined(separator: "&").utf8)
            type = "application/x-www-form-urlencoded"
        }
        return Self.http("127.0.0.1", port, method, path, body: body, contentType: type, timeout: timeout)
    }

    /// The parsed JSON of a request that must succeed with a 2xx.
    func must(_ method: String, _ path: String, json: Any? = nil, form: [(String, String)]? = nil) throws -> Any? {
        switch request(method, path, json: json, form: form) {
        case .success(let r) where (200..<300).contains(r.status): return r.json
        case .success(let r): throw TestSSHDError("\(name) \(method) \(path): \(r.status) \(r.body.prefix(300))")
        case .failure(let f): throw TestSSHDError("\(name) \(method) \(path): \(f)")
        }
    }

    /// One HTTP/1.0 request on a raw socket (so the answer is never chunked) read to EOF.
    static func http(_ address: String, _ port: UInt16, _ method: String, _ path: String, body: [UInt8]? = nil,
                     contentType: String? = nil, timeout: Double) -> Result<Response, Failure> {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return .failure(Failure(description: "socket: errno \(errno)")) }
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
            let e = errno
            return .failure(Failure(description: "connect \(address):\(port): errno \(e)", refused: e == ECONNREFUSED))
        }
        var head = "\(method) \(path) HTTP/1.0\r\nHost: \(address):\(port)\r\nUser-Agent: rollctl-tests\r\n"
        if let body {
            head += "Content-Type: \(contentType ?? "application/octet-stream")\r\nContent-Length: \(body.count)\r\n"
        }
        let request = Array((head + "\r\n").utf8) + (body ?? [])
        var sent = 0
        while sent < request.count {
            let n = request[sent...].withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            guard n > 0 else { return .failure(Failure(description: "send: errno \(errno)")) }
            sent += n
        }
        var buf = [UInt8](repeating: 0, count: 65536)
        var got: [UInt8] = []
        while true {
            let n = recv(fd, &buf, buf.count, 0)
            if n > 0 { got += buf[0..<n]; continue }
            if n == 0 { break }
            if errno == EINTR { continue }
            return .failure(Failure(description: "recv: errno \(errno)"))
        }
        let text = String(decoding: got, as: UTF8.self)
        guard let split = text.range(of: "\r\n\r\n") else { return .failure(Failure(description: "no header end: \(text.prefix(80))")) }
        let parts = text[..<split.lowerBound].split(separator: " ", maxSplits: 2)
        guard parts.count >= 2, let code = Int(parts[1]) else { return .failure(Failure(description: "bad status line: \(text.prefix(80))")) }
        return .success(Response(status: code, body: String(text[split.upperBound...])))
    }
}

// MARK: - Prometheus

extension MonitoringServer {
    /// An instant query's series: labels and value.
    func query(_ promql: String) throws -> [(labels: [String: String], value: Double)] {
        let doc = try must("POST", "/api/v1/query", form: [("query", promql)]) as? [String: Any]
        let result = (doc?["data"] as? [String: Any])?["result"] as? [[String: Any]] ?? []
        return result.map { s in
            let value = (s["value"] as? [Any])?.last.flatMap { $0 as? String }.flatMap(Double.init) ?? .nan
            return (s["metric"] as? [String: String] ?? [:], value)
        }
    }

    /// Waits until every target has been scraped successfully (`up == 1`); false after `seconds`.
    func waitForTargets(_ count: Int, seconds: Double = 60) -> Bool {
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline {
            if let up = try? query("up == 1"), up.count == count { return true }
            usleep(250_000)
        }
        return false
    }
}

// MARK: - Alertmanager

extension MonitoringServer {
    static func iso(_ d: Date) -> String {
        let f = ISO8601DateFormatter()
        f.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        return f.string(from: d)
    }

    /// Pushes an alert firing for the next hour (as Prometheus would send it).
    func fire(_ labels: [String: String]) throws {
        _ = try must("POST", "/api/v2/alerts", json: [["labels": labels, "startsAt": Self.iso(Date().addingTimeInterval(-60)),
                                                        "endsAt": Self.iso(Date().addingTimeInterval(3600))]])
    }

    /// Resolves the alert with these labels: posted again with an end in the past.
    func resolve(_ labels: [String: String]) throws {
        _ = try must("POST", "/api/v2/alerts", json: [["labels": labels, "startsAt": Self.iso(Date().addingTimeInterval(-60)),
                                                        "endsAt": Self.iso(Date().addingTimeInterval(-1))]])
    }

    /// Active (firing) alerts, each with its labels and the silences that mute it.
    func alerts() throws -> [(labels: [String: String], silencedBy: [String])] {
        let list = try must("GET", "/api/v2/alerts?active=true&silenced=true&inhibited=true&unprocessed=true") as? [[String: Any]] ?? []
        return list.map { a in
            (a["labels"] as? [String: String] ?? [:], ((a["status"] as? [String: Any])?["silencedBy"] as? [String]) ?? [])
        }
    }

    struct Silence {
        var id: String
        var state: String
        var comment: String
        var createdBy: String
        var startsAt: Date
        var endsAt: Date
        var matchers: [(name: String, value: String, isRegex: Bool, isEqual: Bool)]
    }

    /// Every silence Alertmanager knows (active, pending and expired).
    func silences() throws -> [Silence] {
        let list = try must("GET", "/api/v2/silences") as? [[String: Any]] ?? []
        let f = ISO8601DateFormatter()
        f.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        let whole = ISO8601DateFormatter()
        func date(_ v: Any?) -> Date { (v as? String).flatMap { f.date(from: $0) ?? whole.date(from: $0) } ?? .distantPast }
        return list.map { s in
            Silence(id: s["id"] as? String ?? "", state: (s["status"] as? [String: Any])?["state"] as? String ?? "",
                    comment: s["comment"] as? String ?? "", createdBy: s["createdBy"] as? String ?? "",
                    startsAt: date(s["startsAt"]), endsAt: date(s["endsAt"]),
                    matchers: (s["matchers"] as? [[String: Any]] ?? []).map {
                        ($0["name"] as? String ?? "", $0["value"] as? String ?? "", $0["isRegex"] as? Bool ?? false, $0["isEqual"] as? Bool ?? true)
                    })
        }
    }
}
