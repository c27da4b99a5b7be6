import Foundation

/// An RFC 5322 message of plain UTF-8 text, as rollctl sends notices: From, To,
/// Subject (RFC 2047 encoded words when not ASCII), Date, Message-ID,
/// MIME-Version, `text/plain; charset=utf-8` in quoted-printable (safe through
/// any relay: 7-bit, lines of at most 76 characters).
public struct MailMessage: Sendable, Equatable {
    public var fromName: String?
    public var fromAddress: String
    public var toName: String?
    public var toAddress: String
    public var subject: String
    public var body: String
    public var date: Date
    /// With its angle brackets: `<rollctl.r1.1.maintenance.c0042@example.org>`.
    public var messageID: String
    /// Extra headers (e.g. `X-Rollctl-Rollout`), ASCII only.
    public var extraHeaders: [(String, String)]

    public init(fromName: String? = nil, fromAddress: String, toName: String? = nil, toAddress: String, subject: String, body: String,
                date: Date, messageID: String, extraHeaders: [(String, String)] = []) {
        self.fromName = fromName
        self.fromAddress = fromAddress
        self.toName = toName
        self.toAddress = toAddress
        self.subject = subject
        self.body = body
        self.date = date
        self.messageID = messageID
        self.extraHeaders = extraHeaders
    }

    public static func == (a: MailMessage, b: MailMessage) -> Bool {
        a.rendered() == b.rendered()
    }

    /// The message text, CRLF line ends, ready for DATA (before dot-stuffing).
    public func rendered() -> String {
        var h: [String] = []
        h.append("From: " + Self.mailbox(fromName, fromAddress))
        h.append("To: " + Self.mailbox(toName, toAddress))
        h.append("Subject: " + Self.encodeHeaderText(Self.oneLine(subject)))
        h.append("Date: " + Self.rfc5322Date(date))
        h.append("Message-ID: " + messageID)
        for (k, v) in extraHeaders { h.append("\(k): \(Self.encodeHeaderText(Self.oneLine(v)))") }
        h.append("MIME-Version: 1.0")
        h.append("Content-Type: text/plain; charset=utf-8")
        h.append("Content-Transfer-Encoding: quoted-printable")
        return h.joined(separator: "\r\n") + "\r\n\r\n" + Self.quotedPrintable(body)
    }

    /// Control characters (CR, LF, …) never reach a header: no header injection.
    static func oneLine(_ s: String) -> String {
        String(String.UnicodeScalarView(s.unicodeScalars.map { $0.properties.generalCategory == .control ? " " : $0 }))
    }

    /// `"Novak, Anna" <anna@example.org>`, or encoded words for a non-ASCII name.
    static func mailbox(_ name: String?, _ address: String) -> String {
        guard let raw = name.map(oneLine), !raw.trimmingCharacters(in: .whitespaces).isEmpty else { return "<\(address)>" }
        if raw.allSatisfy({ $0.isASCII }) {
            let escaped = raw.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"")
            return "\"\(escaped)\" <\(address)>"
        }
        return encodedWords(raw) + " <\(address)>"
    }

    /// ASCII text as is; anything else as RFC 2047 `=?UTF-8?B?…?=` words of at most
    /// 75 characters, folded onto continuation lines, never splitting a character.
    static func encodeHeaderText(_ s: String) -> String {
        if s.allSatisfy({ $0.isASCII }) && !s.contains("=?") { return s }
        return encodedWords(s)
    }

    static func encodedWords(_ s: String) -> String {
        var words: [[UInt8]] = []
        var chunk: [UInt8] = []
        for ch in s {
            let bytes = Array(String(ch).utf8)
            if chunk.count + bytes.count > 45 {
                words.append(chunk)
                chunk = []
            }
            chunk += bytes
        }
        if !chunk.isEmpty || words.isEmpty { words.append(chunk) }
        return words.map { "=?UTF-8?B?\(Data($0).base64EncodedString())?=" }.joined(separator: "\r\n ")
    }

    /// `Sun, 29 Nov 2026 12:18:16 +0000`.
    static func rfc5322Date(_ d: Date) -> String {
        let f = DateFormatter()
        f.locale = Locale(identifier: "en_US_POSIX")
        f.timeZone = TimeZone(identifier: "UTC")
        f.dateFormat = "EEE, dd MMM yyyy HH:mm:ss Z"
        return f.string(from: d)
    }

    /// RFC 2045 quoted-printable: CRLF line ends, soft breaks so no line exceeds 76
    /// characters, `=` and non-ASCII bytes as `=XX`, trailing spaces encoded.
    static func quotedPrintable(_ text: String) -> String {
        let normalized = text.replacingOccurrences(of: "\r\n", with: "\n").replacingOccurrences(of: "\r", with: "\n")
        var lines: [String] = []
        for line in normalized.split(separator: "\n", omittingEmptySubsequences: false) {
            let bytes = Array(line.utf8)
            var out = ""
            var width = 0
            for (i, b) in bytes.enumerated() {
                let isLast = i == bytes.count - 1
                let token: String
                if (b == 0x20 || b == 0x09) && !isLast { token = String(UnicodeScalar(b)) }
                else if b >= 33 && b <= 126 && b != UInt8(ascii: "=") { token = String(UnicodeScalar(b)) }
                else { token = String(format: "=%02X", b) }
                // Keep room for the soft break's "=" (76 including it).
                if width + token.count > 75 {
                    out += "=\r\n"
                    width = 0
                }
                out += token
                width += token.count
            }
            lines.append(out)
        }
        var result = lines.joined(separator: "\r\n")
        if !result.hasSuffix("\r\n") { result += "\r\n" }
        return result
    }
}
