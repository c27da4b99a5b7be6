import Foundation
import Logging
import Basics
import NetIO

/// Where a delivery failed: the configuration, the connection, a step of the SMTP dialogue
/// (named as the protocol names it), the HTTP exchange, or no attempt at all.
public enum DeliveryStage: String, Sendable, Codable, CaseIterable {
    case config, connecting, greeting
    case starttls = "STARTTLS", ehlo = "EHLO", helo = "HELO", auth = "AUTH"
    case mailFrom = "MAIL FROM", rcptTo = "RCPT TO", data = "DATA", endOfData = "end of data", rset = "RSET", quit = "QUIT"
    case tls = "TLS", http = "HTTP"
    case retry
}

/// Why a notice was not delivered, for the journal and a person. Never carries
/// a credential.
public struct NoticeDeliveryError: Error, Sendable, CustomStringConvertible {
    /// Where it failed.
    public var stage: DeliveryStage
    public var message: String
    /// The server's reply, when there was one (`550 5.1.1 <x@y>: Recipient address rejected`).
    public var reply: String?
    /// Retrying cannot help (a 5xx reply, a configuration problem).
    public var permanent: Bool
    /// The failure came after the whole message was handed over and before the
    /// server's answer: the server may have accepted it. A resend carries the
    /// same Message-ID.
    public var mayHaveBeenAccepted: Bool

    public init(stage: DeliveryStage, _ message: String, reply: String? = nil, permanent: Bool = false, mayHaveBeenAccepted: Bool = false) {
        self.stage = stage
        self.message = message
        self.reply = reply
        self.permanent = permanent
        self.mayHaveBeenAccepted = mayHaveBeenAccepted
    }

    public var description: String {
        "\(stage.rawValue): \(message)" + (reply.map { " (server: \($0))" } ?? "")
    }
}

/// A username and password for SMTP AUTH. Read from the environment or a file
/// named by the plan, only when a session opens; `description` hides the password.
public struct SMTPCredentials: Sendable, CustomStringConvertible {
    public var username: String
    public var password: String
    public init(username: String, password: String) {
        self.username = username
        self.password = password
    }
    public var description: String { "\(username):<redacted>" }

    /// From the plan's `password_env` or `password_file`; a missing source is a configuration error.
    public static func resolve(username: String, passwordEnv: String?, passwordFile: String?,
                               environment: [String: String] = ProcessInfo.processInfo.environment) throws(NoticeDeliveryError) -> SMTPCredentials {
        if let env = passwordEnv {
            guard let p = environment[env], !p.isEmpty else {
                throw NoticeDeliveryError(stage: .config, "the SMTP password variable \(env) is not set in rollctl's environment",
                                          permanent: true)
            }
            return SMTPCredentials(username: username, password: p)
        }
        if let file = passwordFile {
            guard let data = FileManager.default.contents(atPath: file), var p = String(data: data, encoding: .utf8) else {
                throw NoticeDeliveryError(stage: .config, "cannot read the SMTP password file \(file)", permanent: true)
            }
            while p.last == "\n" || p.last == "\r" { p.removeLast() }
            guard !p.isEmpty else { throw NoticeDeliveryError(stage: .config, "the SMTP password file \(file) is empty", permanent: true) }
            return SMTPCredentials(username: username, password: p)
        }
        throw NoticeDeliveryError(stage: .config, "SMTP username \(username) without password_env or password_file", permanent: true)
    }
}

/// An SMTP reply: a three-digit code and its text lines (RFC 5321 4.2).
struct SMTPReply: Sendable, Equatable {
    var code: Int
    var lines: [String]
    /// As the server wrote it, lines joined by ` / `: `250 2.0.0 Ok: queued as 4F2A`.
    var text: String { lines.enumerated().map { $0.offset == 0 ? "\(code) \($0.element)" : $0.element }.joined(separator: " / ") }
    var isPositive: Bool { (200..<400).contains(code) }
    var isTransient: Bool { (400..<500).contains(code) }
}

/// Incremental SMTP reply reader (RFC 5321 4.2), no socket in it: feed it the
/// bytes as they arrive, in pieces of any size; it answers `.needMore`,
/// `.complete(reply, used:)` (how many bytes of the last piece the reply took:
/// the rest belongs to what follows) or `.malformed(reason)`. The server is
/// hostile (issue 14): a line is at most `maxLineBytes`, a reply at most
/// `maxLines` lines; a code that is not three digits 200-599, a line whose
/// fourth byte is neither space nor `-`, lines with different codes, a bare CR
/// inside a line are malformed. Lines end with CRLF (a bare LF is accepted).
/// Control bytes in the text are shown as `.`: it goes to the journal and a
/// terminal. What it decides depends on the bytes alone, never on how they
/// were split into reads (the fuzz tests hold it to that).
struct SMTPReplyReader {
    /// RFC 5321 4.5.3.1.5 allows 512 octets; servers' EHLO lines stay far below this.
    static let maxLineBytes = 4096
    static let maxLines = 100

    enum Progress: Equatable {
        case needMore
        case complete(SMTPReply, used: Int)
        case malformed(String)
    }

    private var line: [UInt8] = []
    private var code: Int?
    private var texts: [String] = []
    private(set) var progress = Progress.needMore

    /// True when nothing of a reply arrived yet.
    var isEmpty: Bool { line.isEmpty && texts.isEmpty }

    @discardableResult
    mutating func feed(_ bytes: ArraySlice<UInt8>) -> Progress {
        guard progress == .needMore else { return progress }
        for i in bytes.indices {
            let b = bytes[i]
            guard b == 0x0A else {
                // One byte over for the CR of the CRLF; `endLine` checks the rest.
                if line.count > Self.maxLineBytes { return fail("a reply line longer than \(Self.maxLineBytes) bytes") }
                line.append(b)
                continue
            }
            var text = line
            line = []
            if text.last == 0x0D { text.removeLast() }
            guard let final = endLine(text) else { return progress }
            if final, let code {
                progress = .complete(SMTPReply(code: code, lines: texts), used: i - bytes.startIndex + 1)
                return progress
            }
        }
        return progress
    }

    @discardableResult
    mutating func feed(_ bytes: [UInt8]) -> Progress { feed(bytes[...]) }

    /// The connection closed: why that is an error here.
    func closedReason() -> String {
        if case .malformed(let reason) = progress { return reason }
        return isEmpty ? "connection closed before the reply" : "connection closed inside the reply (a line without its CRLF)"
    }

    /// True for the last line of the reply; nil when malformed.
    private mutating func endLine(_ text: [UInt8]) -> Bool? {
        if text.count > Self.maxLineBytes { fail("a reply line longer than \(Self.maxLineBytes) bytes"); return nil }
        func digit(_ b: UInt8) -> Int? { b >= 0x30 && b <= 0x39 ? Int(b - 0x30) : nil }
        guard text.count >= 3, let d0 = digit(text[0]), let d1 = digit(text[1]), let d2 = digit(text[2]),
              (2...5).contains(d0), text.count == 3 || text[3] == 0x20 || text[3] == UInt8(ascii: "-") else {
            fail("not an SMTP reply: '\(Self.shown(text.prefix(80)))'"); return nil
        }
        if text.contains(0x0D) { fail("a bare CR in a reply line"); return nil }
        let c = d0 * 100 + d1 * 10 + d2
        if let code, c != code { fail("reply lines with different codes (\(code), \(c))"); return nil }
        code = c
        texts.append(text.count > 4 ? Self.shown(text[4...]) : "")
        let final = text.count == 3 || text[3] == 0x20
        if !final && texts.count >= Self.maxLines { fail("a reply of more than \(Self.maxLines) lines"); return nil }
        return final
    }

    @discardableResult
    private mutating func fail(_ reason: String) -> Progress {
        progress = .malformed(reason)
        line = []
        return progress
    }

    /// UTF-8 text with control bytes (NUL, ESC, …) as `.`.
    static func shown<C: Collection>(_ bytes: C) -> String where C.Element == UInt8 {
        String(decoding: bytes.map { $0 < 0x20 && $0 != 0x09 || $0 == 0x7F ? UInt8(ascii: ".") : $0 }, as: UTF8.self)
    }
}

/// The SMTP dialogue of RFC 5321, written on POSIX sockets (no kept Swift SMTP
/// package is available): EHLO (HELO fallback), AUTH PLAIN or LOGIN when
/// credentials are given, then per message MAIL FROM, RCPT TO, DATA with
/// dot-stuffing, and QUIT. One session sends many messages (RSET between).
/// With `starttls`, the session is upgraded to TLS (system OpenSSL, see
/// `TLSSession`) before AUTH and any message, or fails: never a plaintext fallback.
public struct SMTPClient: Sendable {
    public var host: String
    public var port: Int
    public var starttls: Bool
    public var credentials: SMTPCredentials?
    /// The name rollctl gives in EHLO.
    public var heloName: String
    /// One deadline per command, from sending it to the end of its reply
    /// (connect and greeting together get one; the message and the reply to
    /// the end of DATA get twice this). A server that drips its reply cannot
    /// hold a notice longer.
    public var timeout: Duration
    /// Trusted certificates for STARTTLS (PEM); nil: the system's trust store.
    public var tlsCAFile: String?
    /// The dialogue at `debug` (`→ MAIL FROM:<…>`, `← 250 …`); AUTH lines and message bodies never.
    public var logger: Logger?

    public init(host: String, port: Int, starttls: Bool = false, credentials: SMTPCredentials? = nil,
                heloName: String = SMTPClient.defaultHeloName(), timeout: Duration = .seconds(60), tlsCAFile: String? = nil,
                logger: Logger? = nil) {
        self.tlsCAFile = tlsCAFile
        self.logger = logger
        self.host = host
        self.port = port
        self.starttls = starttls
        self.credentials = credentials
        self.heloName = heloName
        self.timeout = timeout
    }

    /// This machine's name if it looks like a domain, else an address literal.
    public static func defaultHeloName() -> String {
        let name = ProcessInfo.processInfo.hostName
        if !name.isEmpty, name.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "-" || $0 == ".") }) { return name }
        return "[127.0.0.1]"
    }

    /// Opens a session (blocking: call from a dedicated thread).
    func open() throws(NoticeDeliveryError) -> SMTPSession {
        let deadline = ContinuousClock.now.advanced(by: timeout)
        let conn: LineConnection
        do { conn = try LineConnection.connect(host: host, port: port, deadline: deadline) } catch {
            throw NoticeDeliveryError(stage: .connecting, error.description)
        }
        logger?.debug("SMTP: connected to \(host):\(port)")
        let session = SMTPSession(conn: conn, timeout: timeout, greetingDeadline: deadline, logger: logger)
        try session.start(heloName: heloName, credentials: credentials, starttls: starttls, caFile: tlsCAFile)
        return session
    }

    /// The DATA payload: line ends normalised to CRLF, lines starting with `.`
    /// doubled (RFC 5321 4.5.2), ending with the `CRLF.CRLF` terminator.
    static func dataPayload(_ message: String) -> [UInt8] {
        let normalized = message.replacingOccurrences(of: "\r\n", with: "\n").replacingOccurrences(of: "\r", with: "\n")
        var lines = normalized.split(separator: "\n", omittingEmptySubsequences: false)
        if lines.last == "" { lines.removeLast() }
        var out: [UInt8] = []
        out.reserveCapacity(normalized.utf8.count + lines.count + 8)
        for line in lines {
            if line.hasPrefix(".") { out.append(UInt8(ascii: ".")) }
            out += line.utf8
            out += [0x0D, 0x0A]
        }
        out += Array(".\r\n".utf8)
        return out
    }
}

/// One open SMTP session. Not thread-safe: one thread at a time.
final class SMTPSession {
    private let conn: LineConnection
    private let timeout: Duration
    private(set) var extensions: [String: String] = [:]
    private var usable = true
    private let greetingDeadline: ContinuousClock.Instant
    private let logger: Logger?

    init(conn: LineConnection, timeout: Duration, greetingDeadline: ContinuousClock.Instant, logger: Logger? = nil) {
        self.logger = logger
        self.conn = conn
        self.timeout = timeout
        self.greetingDeadline = greetingDeadline
    }

    /// One reply, all of it before `deadline`, through `SMTPReplyReader`'s caps.
    func readReply(_ stage: DeliveryStage, deadline: ContinuousClock.Instant) throws(NoticeDeliveryError) -> SMTPReply {
        var reader = SMTPReplyReader()
        let accepted = stage == .endOfData
        while true {
            let bytes: [UInt8]?
            do { bytes = try conn.receive(deadline: deadline, phase: "waiting for the reply to \(stage)") } catch {
                usable = false
                throw NoticeDeliveryError(stage: stage, error.description, mayHaveBeenAccepted: accepted)
            }
            guard let bytes else {
                usable = false
                throw NoticeDeliveryError(stage: stage, "\(reader.closedReason()) (\(conn.peer))", mayHaveBeenAccepted: accepted)
            }
            switch reader.feed(bytes) {
            case .needMore:
                continue
            case .complete(let reply, let used):
                conn.unread(bytes[used...])
                logger?.debug("SMTP ← \(MailMessage.oneLine(reply.text))")
                return reply
            case .malformed(let reason):
                usable = false
                throw NoticeDeliveryError(stage: stage, reason, mayHaveBeenAccepted: accepted)
            }
        }
    }

    private func write(_ bytes: [UInt8], _ stage: DeliveryStage, deadline: ContinuousClock.Instant) throws(NoticeDeliveryError) {
        do { try conn.send(bytes, deadline: deadline, phase: "sending \(stage)") } catch {
            usable = false
            throw NoticeDeliveryError(stage: stage, error.description)
        }
    }

    /// Sends a command and checks the reply class. AUTH lines, which carry secrets, never come
    /// through here (`auth` sends them), so the line can be logged.
    @discardableResult
    private func command(_ line: String, _ stage: DeliveryStage, expect: ClosedRange<Int> = 200...299) throws(NoticeDeliveryError) -> SMTPReply {
        let deadline = ContinuousClock.now.advanced(by: timeout)
        logger?.debug("SMTP → \(line)")
        try write(Array((line + "\r\n").utf8), stage, deadline: deadline)
        let reply = try readReply(stage, deadline: deadline)
        guard expect.contains(reply.code) else {
            throw NoticeDeliveryError(stage: stage, "refused", reply: reply.text, permanent: !reply.isTransient)
        }
        return reply
    }

    func start(heloName: String, credentials: SMTPCredentials?, starttls: Bool, caFile: String?) throws(NoticeDeliveryError) {
        let greeting = try readReply(.greeting, deadline: greetingDeadline)
        guard greeting.code == 220 else {
            throw NoticeDeliveryError(stage: .greeting, "the server does not accept mail now", reply: greeting.text, permanent: greeting.code >= 500 && greeting.code != 554)
        }
        try hello(heloName)
        if starttls {
            guard extensions["STARTTLS"] != nil else {
                throw NoticeDeliveryError(stage: .starttls, "the server does not offer STARTTLS (starttls: true refuses to send in plaintext)", permanent: true)
            }
            try command("STARTTLS", .starttls, expect: 220...220)
            do { try conn.startTLS(caFile: caFile, deadline: ContinuousClock.now.advanced(by: timeout)) } catch {
                usable = false
                throw NoticeDeliveryError(stage: .starttls, error.description, permanent: error.description.contains("certificate verify failed"))
            }
            // RFC 3207: forget what was learnt before TLS and ask again.
            extensions = [:]
            try hello(heloName)
        }
        guard let credentials else { return }
        guard let mechs = extensions["AUTH"]?.uppercased().split(separator: " ").map(String.init) else {
            throw NoticeDeliveryError(stage: .auth, "a username is set but the server offers no AUTH (it may want STARTTLS first)", permanent: true)
        }
        if mechs.contains("PLAIN") {
            let token = Data(([0] + Array(credentials.username.utf8) + [0] + Array(credentials.password.utf8))).base64EncodedString()
            try auth("AUTH PLAIN \(token)", final: true)
        } else if mechs.contains("LOGIN") {
            try auth("AUTH LOGIN", final: false)
            try auth(Data(credentials.username.utf8).base64EncodedString(), final: false)
            try auth(Data(credentials.password.utf8).base64EncodedString(), final: true)
        } else {
            throw NoticeDeliveryError(stage: .auth, "the server offers AUTH \(mechs.joined(separator: " ")); rollctl speaks PLAIN and LOGIN", permanent: true)
        }
    }

    private func hello(_ heloName: String) throws(NoticeDeliveryError) {
        do throws(NoticeDeliveryError) {
            let ehlo = try command("EHLO \(heloName)", .ehlo)
            for line in ehlo.lines.dropFirst() {
                let parts = line.split(separator: " ", maxSplits: 1)
                guard let key = parts.first else { continue }
                extensions[key.uppercased()] = parts.count > 1 ? String(parts[1]) : ""
            }
        } catch where error.reply != nil {
            try command("HELO \(heloName)", .helo)
        }
    }

    /// One AUTH step: 334 (continue) unless `final`, then 235. The reply text is kept, the line sent never.
    private func auth(_ line: String, final: Bool) throws(NoticeDeliveryError) {
        let deadline = ContinuousClock.now.advanced(by: timeout)
        logger?.debug("SMTP → AUTH … (credentials withheld)")
        try write(Array((line + "\r\n").utf8), .auth, deadline: deadline)
        let reply = try readReply(.auth, deadline: deadline)
        let wanted = final ? 235 : 334
        guard reply.code == wanted else {
            throw NoticeDeliveryError(stage: .auth, "authentication failed (check the username and password source)", reply: reply.text,
                                      permanent: !reply.isTransient)
        }
    }

    /// Sends one message; returns the server's final reply (`250 2.0.0 Ok: queued as …`).
    func send(from: String, to recipients: [String], message: String) throws(NoticeDeliveryError) -> String {
        let size = extensions["SIZE"] != nil ? " SIZE=\(message.utf8.count)" : ""
        try command("MAIL FROM:<\(from)>\(size)", .mailFrom)
        for r in recipients { try command("RCPT TO:<\(r)>", .rcptTo) }
        try command("DATA", .data, expect: 354...354)
        let deadline = ContinuousClock.now.advanced(by: timeout * 2)
        let payload = SMTPClient.dataPayload(message)
        logger?.debug("SMTP → (the message, \(payload.count) bytes) .")
        try write(payload, .endOfData, deadline: deadline)
        let reply = try readReply(.endOfData, deadline: deadline)
        guard (200...299).contains(reply.code) else {
            throw NoticeDeliveryError(stage: .endOfData, "the server refused the message", reply: reply.text, permanent: !reply.isTransient)
        }
        return reply.text
    }

    /// Clears a failed transaction so the session can send the next message.
    func reset() -> Bool {
        guard usable else { return false }
        do { try command("RSET", .rset); return true } catch { return false }
    }

    func quit() {
        guard usable else { return }
        usable = false
        _ = try? command("QUIT", .quit, expect: 200...599)
    }

    var isUsable: Bool { usable }
}
