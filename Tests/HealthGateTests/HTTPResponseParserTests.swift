#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Testing
import NetIO

@Suite struct HTTPResponseParserTests {
    static let responses: [(String, Int)] = [
        ("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nX-Trailer: 1\r\n\r\n", 200),
        ("HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\nhello world", 200),
        ("HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\nHTTP/1.1 503 Busy\r\nContent-Length: 4\r\n\r\nbusy", 503),
        ("HTTP/1.0 204 No Content\r\n\r\n", 204),
        ("HTTP/1.1 200 OK\nContent-Length: 2\n\nok", 200),
    ]

    /// However the bytes are split across reads, the response is complete at
    /// its last byte and not before.
    @Test(arguments: responses) func completeExactlyAtTheEnd(_ text: String, _ status: Int) {
        let bytes = Array(text.utf8)
        for cut in 1..<bytes.count {
            var r = HTTPResponseParser()
            #expect(r.feed(bytes[0..<cut]) == .needMore, "complete after \(cut) of \(bytes.count) bytes")
            #expect(r.feed(bytes[cut...]) == .complete)
            #expect(r.head?.status == status)
        }
    }

    func parse(_ text: String, limits: HTTPResponseLimits = .standard) -> HTTPResponseParser {
        var r = HTTPResponseParser(limits: limits, retainsBody: true)
        r.feed(Array(text.utf8))
        return r
    }

    func reason(_ text: String, limits: HTTPResponseLimits = .standard, close: Bool = false) -> String? {
        var r = parse(text, limits: limits)
        if close { r.finish() }
        if case .malformed(let why) = r.progress { return why }
        return nil
    }

    @Test func malformed() {
        #expect(reason("HTTP/1.1 2x0 OK\r\n\r\n")?.contains("bad status line") == true)
        #expect(reason("HTTP/1.1 +20 OK\r\n\r\n")?.contains("bad status line") == true)
        #expect(reason("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n")?.contains("bad chunk size") == true)
        #expect(reason("HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n")?.contains("bad Content-Length") == true)
        #expect(reason("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n")?.contains("conflicting") == true)
        #expect(reason("SSH-2.0-OpenSSH_9.2\r\n") == "not an HTTP response: \"SSH-2.0-OpenSSH_9.2\"")
        #expect(reason("HTTP/1.1 200 OK\r\nno colon here\r\n\r\n")?.contains("bad header line") == true)
        #expect(reason("HTTP/1.1 200 OK\r\nA: 1\r\n folded\r\n\r\n")?.contains("folding") == true)
        #expect(reason("HTTP/1.1 200 OK\r\nA: 1\r2\r\n\r\n") == "a bare CR in the header line")
        #expect(reason("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabX") == "chunk data not followed by CRLF")
        // chunked not last: the body runs to the close (RFC 9112 6.3).
        #expect(reason("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n") == nil)
        #expect(parse("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n").endsAtClose)
        #expect(reason("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n", close: true) == nil)
        #expect(reason("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: gzip\r\n\r\n") == nil)
        #expect(reason("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked, gzip\r\n\r\n") == nil)
        #expect(reason("", close: true) == "connection closed without a response")
        #expect(reason("HTTP/1.1 200", close: true) == "connection closed inside the response header")
        #expect(reason("HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nshort", close: true) == "connection closed before the end of the body")
    }

    /// The regression of issue 14 and its neighbours: numbers that do not fit,
    /// or fit and exceed the body cap, are refused before any body is read.
    @Test func hugeNumbersAreRefusedWithoutOverflow() {
        let chunked = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        for size in ["7fffffffffffffff", "ffffffffffffffff", "10000000000000000", String(repeating: "f", count: 900), "100001"] {
            #expect(reason(chunked + size + "\r\nhello\r\n")?.contains("over what is left of the 1 MiB body cap") == true, "\(size)")
        }
        // The cap counts the whole body: a second chunk may not take it over.
        #expect(reason(chunked + "80000\r\n" + String(repeating: "a", count: 0x80000) + "\r\n80001\r\n")?.contains("body cap") == true)
        #expect(reason(chunked + "80000\r\n" + String(repeating: "a", count: 0x80000) + "\r\n80000\r\n") == nil)
        #expect(reason(chunked + "-1\r\n")?.contains("bad chunk size") == true)
        #expect(reason(chunked + String(repeating: "0", count: 2000) + "1\r\n")?.contains("chunk-size line longer than 1 KiB") == true)
        for length in ["9223372036854775807", "9223372036854775808", "99999999999999999999999999", "1048577"] {
            #expect(reason("HTTP/1.1 200 OK\r\nContent-Length: \(length)\r\n\r\n")?.contains("over the 1 MiB body cap") == true, "\(length)")
        }
        #expect(reason("HTTP/1.1 200 OK\r\nContent-Length: 1048576\r\n\r\n") == nil)
    }

    @Test func capsOnTheHead() {
        let long = String(repeating: "a", count: 8193)
        #expect(reason("HTTP/1.1 200 " + long) == "status line longer than 8 KiB")
        #expect(reason("HTTP/1.1 200 OK\r\nX: " + long) == "header line longer than 8 KiB")
        // Exactly at the cap is fine, CRLF or LF.
        let atCap = "X: " + String(repeating: "a", count: 8192 - 3)
        #expect(reason("HTTP/1.1 200 OK\r\n\(atCap)\r\nContent-Length: 0\r\n\r\n") == nil)
        #expect(parse("HTTP/1.1 200 OK\n\(atCap)\nContent-Length: 0\n\n").isComplete)
        #expect(reason("HTTP/1.1 200 OK\r\n" + String(repeating: "X: 1\r\n", count: 101)) == "more than 100 header lines")
        #expect(reason("HTTP/1.1 200 OK\r\n" + String(repeating: "X: 1\r\n", count: 100) + "\r\n") == nil)
        let big = "X: " + String(repeating: "b", count: 8000) + "\r\n"
        #expect(reason("HTTP/1.1 200 OK\r\n" + String(repeating: big, count: 9)) == "response header larger than 64 KiB")
        #expect(reason(String(repeating: "HTTP/1.1 103 Hints\r\n\r\n", count: 9)) == "more than 8 interim (1xx) responses")
        #expect(reason(String(repeating: "x", count: 100)) == "not an HTTP response: \"\(String(repeating: "x", count: 40))\"")
    }

    @Test func bodyToTheCloseIsCapped() {
        var r = HTTPResponseParser()
        #expect(r.feed(Array("HTTP/1.1 200 OK\r\n\r\n".utf8)) == .needMore)
        #expect(r.endsAtClose)
        let block = [UInt8](repeating: 0x61, count: 64 << 10)
        for _ in 0..<16 { #expect(r.feed(block) == .needMore) }
        #expect(r.feed([0x61]) == .malformed("body larger than 1 MiB"))
        var ok = HTTPResponseParser()
        ok.feed(Array("HTTP/1.1 200 OK\r\n\r\nhello".utf8))
        #expect(ok.finish() == .complete)
        #expect(ok.bodyBytes == 5)
    }
}

// MARK: - fuzz

/// SplitMix64: a seeded generator, so every fuzz run is the same run (a failure
/// names the seed and the iteration; `ROLLCTL_FUZZ_SEED` and
/// `ROLLCTL_FUZZ_ITERATIONS` explore further).
struct SeededGenerator: RandomNumberGenerator {
    private var rng: SplitMix  // the target's one SplitMix64
    init(seed: UInt64) { rng = SplitMix(state: seed) }
    mutating func next() -> UInt64 { rng.next() }

    static var seed: UInt64 { ProcessInfo.processInfo.environment["ROLLCTL_FUZZ_SEED"].flatMap { UInt64($0) } ?? 14 }
    static func iterations(_ standard: Int) -> Int {
        ProcessInfo.processInfo.environment["ROLLCTL_FUZZ_ITERATIONS"].flatMap { Int($0) } ?? standard
    }
}

extension RandomNumberGenerator {
    mutating func chance(_ p: Double) -> Bool { Double.random(in: 0..<1, using: &self) < p }
    mutating func bytes(_ n: Int) -> [UInt8] { (0..<n).map { _ in UInt8.random(in: 0...255, using: &self) } }
    mutating func printable(_ n: Int) -> String {
        String((0..<n).map { _ in Character(UnicodeScalar(UInt8.random(in: 0x20...0x7E, using: &self))) })
    }

    /// `bytes` cut at random points: one piece, every byte alone, or a few random cuts.
    mutating func splits(_ bytes: [UInt8]) -> [ArraySlice<UInt8>] {
        guard bytes.count > 1 else { return [bytes[...]] }
        let mode = Int.random(in: 0..<4, using: &self)
        if mode == 0 { return [bytes[...]] }
        if mode == 1 { return bytes.indices.map { bytes[$0...$0] } }
        let cuts = Set((0..<Int.random(in: 1...min(40, bytes.count - 1), using: &self))
            .map { _ in Int.random(in: 1..<bytes.count, using: &self) }).sorted()
        var pieces: [ArraySlice<UInt8>] = []
        var from = 0
        for c in cuts { pieces.append(bytes[from..<c]); from = c }
        pieces.append(bytes[from...])
        return pieces
    }
}

/// Failures of a fuzz run, collected off the test's task (issues are recorded
/// by the test once the run is back): at most 10, one failure usually tells.
struct FuzzLog {
    private(set) var failures: [String] = []
    mutating func check(_ ok: Bool, _ message: @autoclosure () -> String = "", line: Int = #line) {
        if !ok && failures.count < 10 { failures.append("line \(line): \(message())") }
    }
}

enum Fuzz {
    /// Runs CPU-bound fuzzing on a thread of its own at the lowest priority
    /// (nice 19, per thread on Linux): it holds no thread of the cooperative pool
    /// and takes only the CPU that the timing-sensitive tests beside it in
    /// `make test` leave.
    static func offThePool<T: Sendable>(_ work: @escaping @Sendable () -> T) async -> T {
        await withCheckedContinuation { (c: CheckedContinuation<T, Never>) in
            let thread = Thread {
                #if canImport(Glibc)
                _ = nice(19)
                #endif
                c.resume(returning: work())
            }
            thread.stackSize = 4 << 20
            thread.start()
        }
    }
}

/// What a parse came to: compared across splits of the same bytes.
struct ParseResult: Equatable, CustomStringConvertible {
    var progress: HTTPResponseParser.Progress
    var head: HTTPResponseParser.Head?
    var body: [UInt8]
    var bodyBytes: Int
    var description: String { "\(progress) head=\(head.map { "\($0)" } ?? "nil") body=\(bodyBytes) bytes" }

    /// Feeds the pieces, then the close.
    init(_ pieces: [ArraySlice<UInt8>], limits: HTTPResponseLimits) {
        var p = HTTPResponseParser(limits: limits, retainsBody: true)
        for piece in pieces { p.feed(piece) }
        p.finish()
        progress = p.progress
        head = p.head
        body = p.body
        bodyBytes = p.bodyBytes
    }
}

@Suite struct HTTPResponseParserFuzzTests {
    struct Valid {
        var bytes: [UInt8]
        var status: Int
        var body: [UInt8]
        /// Framed by the close: complete only at `finish()`.
        var endsAtClose: Bool
    }

    /// A random well-formed response: interim responses, headers, CRLF or LF,
    /// a body by Content-Length, chunks (sizes with leading zeros, either case,
    /// extensions, trailers) or the close.
    static func validResponse(_ g: inout SeededGenerator) -> Valid {
        var out: [UInt8] = []
        func line(_ s: String) { out += Array(s.utf8) + (g.chance(0.8) ? [13, 10] : [10]) }
        for _ in 0..<(g.chance(0.2) ? Int.random(in: 1...3, using: &g) : 0) {
            line("HTTP/1.1 \([100, 102, 103].randomElement(using: &g)!) Interim")
            if g.chance(0.5) { line("Link: </a.css>; rel=preload") }
            line("")
        }
        let status = [200, 201, 204, 206, 301, 304, 404, 418, 500, 503, 599].randomElement(using: &g)!
        line("HTTP/1.\(Int.random(in: 0...1, using: &g))\(g.chance(0.1) ? "  " : " ")\(status)" + (g.chance(0.9) ? " " + g.printable(Int.random(in: 0...20, using: &g)) : ""))
        for _ in 0..<Int.random(in: 0...8, using: &g) {
            let name = ["Server", "Content-Type", "X-Request-Id", "Cache-Control", "Set-Cookie", "x-weird_name!"].randomElement(using: &g)!
            line("\(name):\(g.chance(0.5) ? " " : "\t")\(g.printable(Int.random(in: 0...60, using: &g)))")
        }
        let noBody = status == 204 || status == 304
        let body = noBody ? [] : g.bytes(g.chance(0.1) ? 0 : Int.random(in: 0...3000, using: &g))
        let framing = noBody ? 0 : Int.random(in: 0...2, using: &g)
        switch framing {
        case 1:
            line("Transfer-Encoding: \(g.chance(0.2) ? "gzip, " : "")\(g.chance(0.5) ? "chunked" : "Chunked")")
            if g.chance(0.2) { line("Content-Length: 3") }  // ignored beside chunked
            line("")
            var rest = body[...]
            while !rest.isEmpty {
                let n = min(rest.count, Int.random(in: 1...700, using: &g))
                var hex = String(n, radix: 16, uppercase: g.chance(0.5))
                if g.chance(0.2) { hex = String(repeating: "0", count: Int.random(in: 1...30, using: &g)) + hex }
                line(hex + (g.chance(0.2) ? ";name=\"v\"" : "") + (g.chance(0.1) ? " " : ""))
                out += rest.prefix(n)
                rest = rest.dropFirst(n)
                line("")
            }
            line(g.chance(0.2) ? "000" : "0")
            if g.chance(0.3) { line("X-Trailer: \(g.printable(10))") }
            line("")
        case 2:
            if !noBody { line("Connection: close") }
            line("")
            out += body
        default:
            if !noBody || g.chance(0.5) { line("Content-Length: \(g.chance(0.1) ? "00" : "")\(body.count)") }
            line("")
            out += body
        }
        return Valid(bytes: out, status: status, body: body, endsAtClose: framing == 2)
    }

    /// A well-formed response parses to its status and body whatever the
    /// split, completes at its last byte and not before (or at the close).
    @Test func validResponsesParseIdenticallyWhateverTheSplit() async {
        let failures = await Fuzz.offThePool { Self.validResponses() }
        #expect(failures.isEmpty, "\(failures)")
    }

    static func validResponses() -> [String] {
        var log = FuzzLog()
        var g = SeededGenerator(seed: SeededGenerator.seed)
        let n = SeededGenerator.iterations(400)
        for i in 0..<n {
            let v = Self.validResponse(&g)
            let whole = ParseResult([v.bytes[...]], limits: .standard)
            let context = "seed \(SeededGenerator.seed) iteration \(i): \(HTTPResponseParser.printable(v.bytes.prefix(300)))"
            log.check(whole.progress == .complete, "\(whole) — \(context)")
            log.check(whole.head?.status == v.status, "\(context)")
            log.check(whole.body == v.body, "\(context)")
            for _ in 0..<2 {
                let split = ParseResult(g.splits(v.bytes), limits: .standard)
                log.check(split == whole, "\(context)")
            }
            if !v.endsAtClose {
                var p = HTTPResponseParser()
                log.check(p.feed(v.bytes.dropLast()) == .needMore, "\(context)")
                log.check(p.feed(v.bytes.suffix(1)) == .complete, "\(context)")
            }
            if whole.progress != .complete { break }  // one failure tells; do not flood
        }
        return log.failures
    }

    static let hostileNumbers = ["7fffffffffffffff", "ffffffffffffffff", "8000000000000000", "-1", "-0", "+5", "0x10",
                                 "99999999999999999999", "18446744073709551616", "9223372036854775807", "1e9", " 5", "5 5",
                                 String(repeating: "f", count: 40), String(repeating: "0", count: 1500), ""]
    static let hostileBytes: [[UInt8]] = [[0], [13], [10], [13, 13, 10], [10, 10], [13, 10, 13, 10], [0x7F], [0xFF, 0xFE],
                                          Array("\r\nTransfer-Encoding: chunked\r\n".utf8), Array("\r\nContent-Length: ".utf8),
                                          Array(";".utf8), Array(":".utf8), Array("HTTP/1.1 ".utf8)]

    /// Random bytes, and valid responses mutated (bytes flipped, inserted, deleted,
    /// duplicated; huge and negative numbers, NULs, lone CR and LF put in), parsed
    /// under the standard caps and under tiny ones: never a crash, always an end
    /// at the close, the same end whatever the split, the caps held.
    @Test func hostileStreamsNeverCrashAndEndTheSameWhateverTheSplit() async {
        let failures = await Fuzz.offThePool { Self.hostileStreams() }
        #expect(failures.isEmpty, "\(failures)")
    }

    static func hostileStreams() -> [String] {
        var log = FuzzLog()
        var g = SeededGenerator(seed: SeededGenerator.seed &+ 1)
        let tiny = HTTPResponseLimits(statusLineBytes: 40, headerLineBytes: 30, headerCount: 4, headerBytes: 200, bodyBytes: 700,
                                      chunkSizeLineBytes: 12, interimResponses: 1)
        let n = SeededGenerator.iterations(1500)
        var ends: [String: Int] = [:]
        for i in 0..<n {
            var bytes: [UInt8]
            switch Int.random(in: 0..<10, using: &g) {
            case 0:
                bytes = g.bytes(Int.random(in: 0...600, using: &g))
            case 1:
                bytes = Array("HTTP/1.1 200 OK\r\n".utf8) + g.bytes(Int.random(in: 0...600, using: &g))
            case 2:
                let number = Self.hostileNumbers.randomElement(using: &g)!
                bytes = Array((g.chance(0.5)
                    ? "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\(number)\r\nhello\r\n0\r\n\r\n"
                    : "HTTP/1.1 200 OK\r\nContent-Length: \(number)\r\n\r\nhello").utf8)
            default:
                bytes = Self.validResponse(&g).bytes
                for _ in 0..<Int.random(in: 1...4, using: &g) where !bytes.isEmpty {
                    let at = Int.random(in: 0..<bytes.count, using: &g)
                    switch Int.random(in: 0..<7, using: &g) {
                    case 0: bytes[at] = UInt8.random(in: 0...255, using: &g)
                    case 1: bytes.insert(UInt8.random(in: 0...255, using: &g), at: at)
                    case 2: bytes.removeSubrange(at..<min(bytes.count, at + Int.random(in: 1...50, using: &g)))
                    case 3: bytes.insert(contentsOf: Self.hostileBytes.randomElement(using: &g)!, at: at)
                    case 4: bytes.insert(contentsOf: Array(Self.hostileNumbers.randomElement(using: &g)!.utf8), at: at)
                    case 5:
                        let copy = Array(bytes[at..<min(bytes.count, at + Int.random(in: 1...200, using: &g))])
                        bytes.insert(contentsOf: copy, at: at)
                    default: bytes.removeSubrange(at...)
                    }
                }
            }
            let limits = g.chance(0.3) ? tiny : .standard
            let whole = ParseResult([bytes[...]], limits: limits)
            let context = "seed \(SeededGenerator.seed &+ 1) iteration \(i): \(HTTPResponseParser.printable(bytes.prefix(300)))"
            log.check(whole.progress != .needMore, "\(context)")
            log.check(whole.bodyBytes <= limits.bodyBytes, "\(context)")
            log.check(whole.body.count == whole.bodyBytes, "\(context)")
            let split = ParseResult(g.splits(bytes), limits: limits)
            log.check(split == whole, "\(context)")
            if split != whole { break }
            switch whole.progress {
            case .malformed(let why): ends[String(why.prefix(18)), default: 0] += 1
            default: ends["\(whole.progress)", default: 0] += 1
            }
        }
        // The streams reach the parser's many ends, not one early refusal.
        log.check(ends.count >= 12, "\(ends)")
        return log.failures
    }
}
