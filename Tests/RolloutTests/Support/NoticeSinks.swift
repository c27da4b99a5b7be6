import Foundation
import SSHTesting
#if canImport(Glibc)
import Glibc
#endif

/// A message the SMTP sink accepted, as smtp_sink.py decoded it.
struct ReceivedMail: Decodable, Equatable {
    var mail_from: String
    var rcpt_tos: [String]
    var from: String
    var to: String
    var subject: String
    var message_id: String
    var date: String
    var content_type: String
    var charset: String?
    var body: String
    var authenticated: Bool
    var tls: Bool
    /// The client's address:port: one value per SMTP connection.
    var connection: String
    var raw_max_line: Int
}

/// A Python server on loopback (smtp_sink.py or webhook_sink.py), started on a
/// free port, stopped at `stop()` or deinit. Each received item is a file in `folder`.
final class LoopbackSink: @unchecked Sendable {
    let folder: String
    let port: Int
    private let dir: String
    private let pid: pid_t
    private var stopped = false

    static let python = "/usr/bin/python3"
    static func script(_ name: String) -> String {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent(name).path
    }

    init(script: String, arguments: [String] = []) throws {
        let dir = NSTemporaryDirectory() + "rollctl-notice-\(UUID().uuidString.prefix(8))"
        self.dir = dir
        folder = dir + "/inbox"
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        let portFile = dir + "/port"
        pid = try Spawn.start(Self.python, [Self.script(script), "--folder", folder, "--port-file", portFile] + arguments,
                              outputPath: dir + "/server.log")
        let deadline = Date().addingTimeInterval(15)
        var found: Int?
        while Date() < deadline {
            if let text = try? String(contentsOfFile: portFile, encoding: .utf8), let p = Int(text) { found = p; break }
            if !Spawn.isRunning(pid) { break }
            usleep(20_000)
        }
        guard let found else {
            kill(pid, SIGKILL)
            let log = (try? String(contentsOfFile: dir + "/server.log", encoding: .utf8)) ?? ""
            throw TestSSHDError("\(script) did not start: \(log)")
        }
        port = found
    }

    static func smtp(auth: String? = nil, reject: [String] = [], hangFirst: Int = 0, greylistFirst: Int = 0, tls: TestCertificate? = nil,
                     loginOnly: Bool = false) throws -> LoopbackSink {
        var args: [String] = []
        if greylistFirst > 0 { args += ["--greylist-first", "\(greylistFirst)"] }
        if let tls { args += ["--tls-cert", tls.certPath, "--tls-key", tls.keyPath] }
        if loginOnly { args.append("--login-only") }
        if let auth { args += ["--auth", auth] }
        for r in reject { args += ["--reject", r] }
        if hangFirst > 0 { args += ["--hang-first", "\(hangFirst)"] }
        return try LoopbackSink(script: "smtp_sink.py", arguments: args)
    }

    static func webhook(failFirst: Int = 0, tls: TestCertificate? = nil) throws -> LoopbackSink {
        var args = failFirst > 0 ? ["--fail-first", "\(failFirst)"] : []
        if let tls { args += ["--tls-cert", tls.certPath, "--tls-key", tls.keyPath] }
        return try LoopbackSink(script: "webhook_sink.py", arguments: args)
    }

    /// Names of the stored items (`0001`, `0002`, …), in arrival order.
    func items() -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: folder)) ?? [])
            .filter { $0.hasSuffix(".json") && !$0.hasSuffix(".headers.json") }.map { String($0.dropLast(5)) }.sorted()
    }

    func mails() throws -> [ReceivedMail] {
        try items().map { try JSONDecoder().decode(ReceivedMail.self, from: Data(contentsOf: URL(fileURLWithPath: folder + "/\($0).json"))) }
    }

    func raw(_ item: String) throws -> String {
        try String(contentsOfFile: folder + "/\(item).eml", encoding: .utf8)
    }

    func json(_ item: String) throws -> [String: Any] {
        try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: folder + "/\(item).json"))) as? [String: Any] ?? [:]
    }

    func headers(_ item: String) throws -> [String: String] {
        try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: folder + "/\(item).headers.json"))) as? [String: String] ?? [:]
    }

    func stop() {
        guard !stopped else { return }
        stopped = true
        kill(pid, SIGTERM)
        _ = Spawn.wait(pid)
    }

    deinit {
        stop()
        try? FileManager.default.removeItem(atPath: dir)
    }
}

/// A TCP port on 127.0.0.1 where nothing listens (bound, then closed).
func closedLoopbackPort() -> Int {
    try! TestSSHD.freePort()
}

/// A self-signed certificate for localhost and 127.0.0.1 (openssl CLI), for STARTTLS tests.
final class TestCertificate: Sendable {
    let certPath: String
    let keyPath: String
    private let dir: String

    init(subjectAltName: String = "DNS:localhost,IP:127.0.0.1") throws {
        let dir = NSTemporaryDirectory() + "rollctl-tls-\(UUID().uuidString.prefix(8))"
        self.dir = dir
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        certPath = dir + "/cert.pem"
        keyPath = dir + "/key.pem"
        let (status, output) = try Spawn.run("/usr/bin/openssl", ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", keyPath, "-out", certPath,
                                                                  "-days", "2", "-subj", "/CN=localhost", "-addext", "subjectAltName=\(subjectAltName)"])
        guard status == 0 else { throw TestSSHDError("openssl req failed: \(output)") }
    }

    deinit { try? FileManager.default.removeItem(atPath: dir) }
}
