/// Caps on what an HTTP peer may send. Every byte from a test site or a webhook
/// endpoint is hostile (issue 14): each size has a bound, and crossing it ends
/// the response as malformed with a reason naming the cap.
public struct HTTPResponseLimits: Sendable, Equatable {
    /// `HTTP/1.1 200 OK`, without its CRLF.
    public var statusLineBytes: Int
    /// One header (or trailer) line, without its CRLF.
    public var headerLineBytes: Int
    /// Header lines of one response, trailers included.
    public var headerCount: Int
    /// The status line and every header (and trailer) line of one response, line ends included.
    public var headerBytes: Int
    /// The body after de-chunking. A `Content-Length` or chunk size above what is
    /// left of it is refused before a byte of it is read.
    public var bodyBytes: Int
    /// One chunk-size line: the hex size and any extensions.
    public var chunkSizeLineBytes: Int
    /// Interim (1xx) responses before the real one.
    public var interimResponses: Int

    public static let statusLineCap = 8 << 10
    public static let headerLineCap = 8 << 10
    public static let headerCountCap = 100
    public static let headerBytesCap = 64 << 10
    public static let bodyBytesCap = 1 << 20
    public static let chunkSizeLineCap = 1 << 10
    public static let interimResponsesCap = 8

    public init(statusLineBytes: Int = statusLineCap, headerLineBytes: Int = headerLineCap, headerCount: Int = headerCountCap,
                headerBytes: Int = headerBytesCap, bodyBytes: Int = bodyBytesCap, chunkSizeLineBytes: Int = chunkSizeLineCap,
                interimResponses: Int = interimResponsesCap) {
        self.statusLineBytes = statusLineBytes
        self.headerLineBytes = headerLineBytes
        self.headerCount = headerCount
        self.headerBytes = headerBytes
        self.bodyBytes = bodyBytes
        self.chunkSizeLineBytes = chunkSizeLineBytes
        self.interimResponses = interimResponses
    }

    /// The site probe's and the webhook's caps.
    public static let standard = HTTPResponseLimits()
}

/// Incremental HTTP/1.1 response parser, with no socket in it: feed it the
/// bytes as they arrive, in pieces of any size, and it answers `.needMore`,
/// `.complete` or `.malformed(reason)`. Status line, headers, then a body
/// delimited by Content-Length, chunked encoding, or the close of the
/// connection (`finish()`). Interim 1xx responses (not 101) are skipped.
///
/// It reads the stream one byte position at a time (body bytes in bulk), so
/// what it decides depends on the bytes alone, never on how they were split
/// into reads; the fuzz tests hold it to that. Lines end with CRLF or a bare
/// LF; a CR anywhere else in a line is malformed. Used by the site probe and
/// by the webhook channel (Rollout).
package struct HTTPResponseParser: Sendable {
    package enum Progress: Equatable, Sendable {
        case needMore
        case complete
        case malformed(String)
    }

    package struct Head: Equatable, Sendable {
        /// The status line, control bytes shown as `.`.
        package var statusLine: String
        package var status: Int
        package var contentLength: Int?
        package var chunked: Bool
    }

    package let limits: HTTPResponseLimits
    /// Keep the decoded body in `body` (the probe only counts it).
    package let retainsBody: Bool
    package private(set) var head: Head?
    /// The status once its line is in (before the rest of the head).
    package var status: Int? { head?.status ?? pendingStatus?.status }
    package private(set) var body: [UInt8] = []
    /// Decoded body bytes so far.
    package private(set) var bodyBytes = 0
    /// Every byte fed, the head's included.
    package private(set) var byteCount = 0
    package private(set) var progress: Progress = .needMore

    private enum State: Sendable {
        case statusLine
        case headerLine
        case body(remaining: Int)
        case toClose
        case chunkSize
        case chunkData(remaining: Int)
        case chunkDataEnd(sawCR: Bool)
        case trailerLine
        case done
    }

    private var state = State.statusLine
    private var line: [UInt8] = []
    /// Of the response being read (an interim one resets them).
    private var headBytes = 0
    private var headerLines = 0
    private var interim = 0
    private var contentLength: Int?
    private var transferCodings: [String] = []
    private var pendingStatus: (line: String, status: Int)?

    package init(limits: HTTPResponseLimits = .standard, retainsBody: Bool = false) {
        self.limits = limits
        self.retainsBody = retainsBody
    }

    /// True when the body runs to the close of the connection.
    package var endsAtClose: Bool { if case .toClose = state { true } else { false } }

    package var isComplete: Bool { progress == .complete }

    @discardableResult
    package mutating func feed(_ bytes: [UInt8]) -> Progress { feed(bytes[...]) }

    @discardableResult
    package mutating func feed(_ bytes: ArraySlice<UInt8>) -> Progress {
        guard progress == .needMore else { return progress }
        byteCount += bytes.count
        var i = bytes.startIndex
        while i < bytes.endIndex, progress == .needMore {
            switch state {
            case .body(let remaining):
                let n = min(remaining, bytes.endIndex - i)
                takeBody(bytes[i..<(i + n)])
                i += n
                if remaining == n { finishResponse() } else { state = .body(remaining: remaining - n) }
            case .chunkData(let remaining):
                let n = min(remaining, bytes.endIndex - i)
                takeBody(bytes[i..<(i + n)])
                i += n
                state = remaining == n ? .chunkDataEnd(sawCR: false) : .chunkData(remaining: remaining - n)
            case .toClose:
                let n = min(bytes.endIndex - i, limits.bodyBytes - bodyBytes)
                takeBody(bytes[i..<(i + n)])
                i += n
                if i < bytes.endIndex { return fail("body larger than \(Self.size(limits.bodyBytes))") }
            case .done:
                return progress
            default:
                step(bytes[i])
                i += 1
            }
        }
        return progress
    }

    /// The peer closed the connection: a body delimited by the close is complete
    /// here, anything else unfinished is malformed.
    @discardableResult
    package mutating func finish() -> Progress {
        guard progress == .needMore else { return progress }
        switch state {
        case .toClose, .done:
            progress = .complete
        case .statusLine:
            if byteCount == 0 { return fail("connection closed without a response") }
            if !line.isEmpty, !Self.startsLikeHTTP(line) { return fail(notHTTP) }
            return fail("connection closed inside the response header")
        case .headerLine:
            return fail("connection closed inside the response header")
        case .body, .chunkSize, .chunkData, .chunkDataEnd, .trailerLine:
            return fail("connection closed before the end of the body")
        }
        return progress
    }

    // MARK: - one byte of a line-oriented state

    private mutating func step(_ byte: UInt8) {
        switch state {
        case .statusLine:
            headBytes += 1
            guard byte == 0x0A else {
                if headBytes > limits.headerBytes { fail("response header larger than \(Self.size(limits.headerBytes))"); return }
                guard appendToLine(byte, cap: limits.statusLineBytes, what: "status line") else { return }
                if line.count == 40, !Self.startsLikeHTTP(line) { fail(notHTTP) }
                return
            }
            guard let text = endLine(cap: limits.statusLineBytes, what: "status line") else { return }
            statusLine(text)
        case .headerLine, .trailerLine:
            let trailer = if case .trailerLine = state { true } else { false }
            headBytes += 1
            guard byte == 0x0A else {
                if headBytes > limits.headerBytes {
                    fail((trailer ? "trailers" : "response header") + " larger than \(Self.size(limits.headerBytes))"); return
                }
                appendToLine(byte, cap: limits.headerLineBytes, what: trailer ? "trailer line" : "header line")
                return
            }
            guard let text = endLine(cap: limits.headerLineBytes, what: trailer ? "trailer line" : "header line") else { return }
            if text.isEmpty {
                if trailer { finishResponse() } else { endOfHead() }
                return
            }
            headerLines += 1
            if headerLines > limits.headerCount {
                fail("more than \(limits.headerCount) header lines"); return
            }
            if !trailer { header(text) }
        case .chunkSize:
            guard byte == 0x0A else {
                appendToLine(byte, cap: limits.chunkSizeLineBytes, what: "chunk-size line")
                return
            }
            guard let text = endLine(cap: limits.chunkSizeLineBytes, what: "chunk-size line") else { return }
            chunkSize(text)
        case .chunkDataEnd(let sawCR):
            if byte == 0x0D, !sawCR {
                state = .chunkDataEnd(sawCR: true)
            } else if byte == 0x0A {
                state = .chunkSize
            } else {
                fail("chunk data not followed by CRLF")
            }
        case .body, .chunkData, .toClose, .done:
            preconditionFailure("bulk states are handled in feed")
        }
    }

    /// False (and malformed) when the line would pass its cap. One byte over
    /// is allowed for the CR of a CRLF; `endLine` checks the rest.
    @discardableResult
    private mutating func appendToLine(_ byte: UInt8, cap: Int, what: String) -> Bool {
        if line.count > cap {
            fail("\(what) longer than \(Self.size(cap))")
            return false
        }
        line.append(byte)
        return true
    }

    /// The line without its CR; nil (and malformed) for a bare CR inside it or a line over `cap`.
    private mutating func endLine(cap: Int, what: String) -> [UInt8]? {
        var text = line
        line.removeAll(keepingCapacity: true)
        if text.last == 0x0D { text.removeLast() }
        if text.count > cap { fail("\(what) longer than \(Self.size(cap))"); return nil }
        if text.contains(0x0D) { fail("a bare CR in the \(what)"); return nil }
        return text
    }

    // MARK: - the head

    private var notHTTP: String { "not an HTTP response: \"\(Self.printable(line.prefix(40)))\"" }

    /// `HTTP/1.x SSS[ reason]`, the status 100...999.
    private mutating func statusLine(_ text: [UInt8]) {
        guard Self.startsLikeHTTP(text), text.count >= 5 else {
            line = text
            fail(notHTTP)
            return
        }
        let bad = "bad status line \"\(Self.printable(text.prefix(60)))\""
        guard text.count >= 12, text[5] == UInt8(ascii: "1"), text[6] == UInt8(ascii: "."), Self.isDigit(text[7]), text[8] == 0x20 else {
            fail(bad); return
        }
        var i = 8
        while i < text.count, text[i] == 0x20 { i += 1 }
        guard i + 3 <= text.count, text[i..<(i + 3)].allSatisfy(Self.isDigit), text[i] != UInt8(ascii: "0"),
              i + 3 == text.count || text[i + 3] == 0x20 else {
            fail(bad); return
        }
        let status = text[i..<(i + 3)].reduce(0) { $0 * 10 + Int($1 - UInt8(ascii: "0")) }
        pendingStatus = (Self.printable(text), status)
        state = .headerLine
    }

    private mutating func header(_ text: [UInt8]) {
        if text[0] == 0x20 || text[0] == 0x09 { fail("obsolete line folding in the response header"); return }
        guard let colon = text.firstIndex(of: UInt8(ascii: ":")), colon > 0,
              text[..<colon].allSatisfy({ $0 > 0x20 && $0 < 0x7F }) else {
            fail("bad header line \"\(Self.printable(text.prefix(60)))\""); return
        }
        let name = String(decoding: text[..<colon], as: UTF8.self).lowercased()
        var value = text[(colon + 1)...]
        while let f = value.first, f == 0x20 || f == 0x09 { value = value.dropFirst() }
        while let l = value.last, l == 0x20 || l == 0x09 { value = value.dropLast() }
        switch name {
        case "content-length":
            guard !value.isEmpty, value.allSatisfy(Self.isDigit) else {
                fail("bad Content-Length \"\(Self.printable(value.prefix(40)))\""); return
            }
            // Digit by digit, stopping above the cap: no overflow whatever its length.
            var n = 0
            for d in value {
                n = n * 10 + Int(d - UInt8(ascii: "0"))
                if n > limits.bodyBytes {
                    fail("Content-Length \(Self.printable(value.prefix(40))) over the \(Self.size(limits.bodyBytes)) body cap"); return
                }
            }
            if let earlier = contentLength, earlier != n { fail("conflicting Content-Length headers (\(earlier), \(n))"); return }
            contentLength = n
        case "transfer-encoding":
            for coding in value.split(separator: UInt8(ascii: ",")) {
                let token = coding.drop { $0 == 0x20 || $0 == 0x09 }.reversed().drop { $0 == 0x20 || $0 == 0x09 }.reversed()
                if !token.isEmpty { transferCodings.append(String(decoding: token, as: UTF8.self).lowercased()) }
            }
        default:
            break
        }
    }

    private mutating func endOfHead() {
        guard let (statusText, status) = pendingStatus else { return }
        pendingStatus = nil
        if (100..<200).contains(status) && status != 101 {
            // Interim (103 Early Hints, 100 Continue): the real response follows.
            interim += 1
            if interim > limits.interimResponses { fail("more than \(limits.interimResponses) interim (1xx) responses"); return }
            headBytes = 0
            headerLines = 0
            contentLength = nil
            transferCodings = []
            state = .statusLine
            return
        }
        let chunked = transferCodings.last == "chunked"
        head = Head(statusLine: statusText, status: status, contentLength: transferCodings.isEmpty ? contentLength : nil, chunked: chunked)
        if status == 101 || status == 204 || status == 304 {
            finishResponse()
        } else if chunked {
            state = .chunkSize
        } else if !transferCodings.isEmpty {
            state = .toClose  // chunked not the last coding: the close ends the body (RFC 9112 6.3)
        } else if let length = contentLength {
            if length == 0 { finishResponse() } else { state = .body(remaining: length) }
        } else {
            state = .toClose
        }
    }

    // MARK: - the body

    /// `1f4[ ;ext=v]`: hex digits, then optional blanks and extensions.
    private mutating func chunkSize(_ text: [UInt8]) {
        var i = 0
        var size = 0
        let room = limits.bodyBytes - bodyBytes
        while i < text.count, let d = Self.hexValue(text[i]) {
            size = size * 16 + d
            i += 1
            // Stop above what is left of the cap: no overflow whatever the number of digits.
            if size > room {
                fail("chunk size \(Self.printable(text.prefix(40))) over what is left of the \(Self.size(limits.bodyBytes)) body cap")
                return
            }
        }
        while i < text.count, text[i] == 0x20 || text[i] == 0x09 { i += 1 }
        guard i > 0, Self.hexValue(text[0]) != nil, i == text.count || text[i] == UInt8(ascii: ";") else {
            fail("bad chunk size \"\(Self.printable(text.prefix(40)))\""); return
        }
        state = size == 0 ? .trailerLine : .chunkData(remaining: size)
    }

    private mutating func takeBody(_ bytes: ArraySlice<UInt8>) {
        bodyBytes += bytes.count
        if retainsBody { body += bytes }
    }

    private mutating func finishResponse() {
        state = .done
        progress = .complete
    }

    @discardableResult
    private mutating func fail(_ reason: String) -> Progress {
        progress = .malformed(reason)
        line = []
        return progress
    }

    // MARK: - bytes

    private static let httpPrefix = Array("HTTP/".utf8)

    /// The bytes so far could begin `HTTP/` (or do).
    static func startsLikeHTTP(_ bytes: [UInt8]) -> Bool {
        bytes.count >= 5 ? bytes.starts(with: httpPrefix) : httpPrefix.starts(with: bytes)
    }

    static func isDigit(_ b: UInt8) -> Bool { b >= 0x30 && b <= 0x39 }

    static func hexValue(_ b: UInt8) -> Int? {
        switch b {
        case 0x30...0x39: Int(b - 0x30)
        case 0x41...0x46: Int(b - 0x41 + 10)
        case 0x61...0x66: Int(b - 0x61 + 10)
        default: nil
        }
    }

    static func size(_ n: Int) -> String {
        n >= 1 << 20 && n % (1 << 20) == 0 ? "\(n >> 20) MiB" : n >= 1024 && n % 1024 == 0 ? "\(n >> 10) KiB" : "\(n) bytes"
    }

    /// Printable ASCII as is, anything else as `.`: safe in a detail, a journal or a terminal.
    package static func printable<C: Collection>(_ bytes: C) -> String where C.Element == UInt8 {
        String(bytes.map { (32..<127).contains($0) ? Character(UnicodeScalar($0)) : "." })
    }
}
