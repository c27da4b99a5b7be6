#if canImport(Glibc)
import Glibc
#endif
import Foundation
import Testing
@testable import Notices

/// SplitMix64: a seeded generator, so every fuzz run is the same run (a failure
/// names the seed and the iteration; `ROLLCTL_FUZZ_SEED` and
/// `ROLLCTL_FUZZ_ITERATIONS` explore further). HealthGateTests has its twin
/// (and of `FuzzLog` and `Fuzz`): test targets cannot share code without a new target.
struct FuzzGenerator: RandomNumberGenerator {
    private var rng: SeededRNG  // the target's one SplitMix64
    init(seed: UInt64) { rng = SeededRNG(seed: seed) }
    mutating func next() -> UInt64 { rng.next() }

    static var seed: UInt64 { ProcessInfo.processInfo.environment["ROLLCTL_FUZZ_SEED"].flatMap { UInt64($0) } ?? 14 }
    static func iterations(_ standard: Int) -> Int {
        ProcessInfo.processInfo.environment["ROLLCTL_FUZZ_ITERATIONS"].flatMap { Int($0) } ?? standard
    }

    mutating func chance(_ p: Double) -> Bool { Double.random(in: 0..<1, using: &self) < p }
    mutating func bytes(_ n: Int) -> [UInt8] { (0..<n).map { _ in UInt8.random(in: 0...255, using: &self) } }

    /// `bytes` cut at random points: one piece, every byte alone, or a few random cuts.
    mutating func splits(_ bytes: [UInt8]) -> [ArraySlice<UInt8>] {
        guard bytes.count > 1 else { return [bytes[...]] }
        switch Int.random(in: 0..<4, using: &self) {
        case 0: return [bytes[...]]
        case 1: return bytes.indices.map { bytes[$0...$0] }
        default:
            let cuts = Set((0..<Int.random(in: 1...min(30, bytes.count - 1), using: &self))
                .map { _ in Int.random(in: 1..<bytes.count, using: &self) }).sorted()
            var pieces: [ArraySlice<UInt8>] = []
            var from = 0
            for c in cuts { pieces.append(bytes[from..<c]); from = c }
            pieces.append(bytes[from...])
            return pieces
        }
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

@Suite struct SMTPReplyReaderFuzzTests {
    /// Feeds the pieces until the reader ends, as `readReply` does; then the close.
    /// `used` is made absolute (bytes from the start of the stream).
    static func read(_ pieces: [ArraySlice<UInt8>]) -> (SMTPReplyReader.Progress, closed: String?) {
        var reader = SMTPReplyReader()
        var offset = 0
        for piece in pieces {
            switch reader.feed(piece) {
            case .needMore: offset += piece.count
            case .complete(let reply, let used): return (.complete(reply, used: offset + used), nil)
            case .malformed(let why): return (.malformed(why), nil)
            }
        }
        return (.needMore, reader.closedReason())
    }

    static let texts = ["mail.example.org ESMTP Postfix", "PIPELINING", "SIZE 10240000", "AUTH PLAIN LOGIN", "2.0.0 Ok: queued as 4F2A",
                        "", "8BITMIME", "STARTTLS", "ENHANCEDSTATUSCODES", "Grüße, Ελλάδα", "tab\there"]

    /// A random well-formed reply and what it should read as.
    static func validReply(_ g: inout FuzzGenerator) -> ([UInt8], SMTPReply) {
        let code = Int.random(in: 200...599, using: &g)
        let count = g.chance(0.1) ? SMTPReplyReader.maxLines : Int.random(in: 1...12, using: &g)
        var out: [UInt8] = []
        var lines: [String] = []
        for i in 0..<count {
            let text = g.chance(0.05) ? String(repeating: "w", count: SMTPReplyReader.maxLineBytes - 4) : texts.randomElement(using: &g)!
            let last = i == count - 1
            let bare = last && text.isEmpty && g.chance(0.5)  // `250` alone
            out += Array("\(code)".utf8) + (bare ? [] : Array((last ? " " : "-").utf8) + Array(text.utf8))
            out += g.chance(0.9) ? [13, 10] : [10]
            lines.append(text)
        }
        return (out, SMTPReply(code: code, lines: lines))
    }

    /// A valid reply reads the same whatever the split, and takes exactly its
    /// own bytes: what follows (the next reply, junk) is left for later.
    @Test func validRepliesReadIdenticallyWhateverTheSplit() async {
        let failures = await Fuzz.offThePool { Self.validReplies() }
        #expect(failures.isEmpty, "\(failures)")
    }

    static func validReplies() -> [String] {
        var log = FuzzLog()
        var g = FuzzGenerator(seed: FuzzGenerator.seed)
        for i in 0..<FuzzGenerator.iterations(600) {
            let (bytes, reply) = Self.validReply(&g)
            let stream = bytes + (g.chance(0.5) ? g.bytes(Int.random(in: 1...50, using: &g)) : [])
            let context = "seed \(FuzzGenerator.seed) iteration \(i)"
            let expected = SMTPReplyReader.Progress.complete(reply, used: bytes.count)
            log.check(Self.read([stream[...]]).0 == expected, "\(context)")
            log.check(Self.read(g.splits(stream)).0 == expected, "\(context)")
            if Self.read([stream[...]]).0 != expected { break }
        }
        return log.failures
    }

    static let hostile: [[UInt8]] = [[0], [13], [10], [13, 13, 10], [0x1B], [0xFF], Array("-".utf8), Array(" ".utf8),
                                     Array("99999999999999999999".utf8), Array("-250".utf8), Array("+25".utf8), Array("0x".utf8),
                                     Array("250-".utf8), Array("550 ".utf8), Array("\r\n250 x\r\n".utf8)]

    /// Random bytes, valid replies mutated (bytes changed, inserted, deleted;
    /// huge and negative numbers, NULs, lone CR and LF, ESC put in), lines over
    /// the cap, replies over the line count: never a crash, the same end
    /// whatever the split, a reply only within the caps and with no control bytes.
    @Test func hostileStreamsNeverCrashAndEndTheSameWhateverTheSplit() async {
        let failures = await Fuzz.offThePool { Self.hostileStreams() }
        #expect(failures.isEmpty, "\(failures)")
    }

    static func hostileStreams() -> [String] {
        var log = FuzzLog()
        var g = FuzzGenerator(seed: FuzzGenerator.seed &+ 1)
        var ends: [String: Int] = [:]
        for i in 0..<FuzzGenerator.iterations(1500) {
            var bytes: [UInt8]
            switch Int.random(in: 0..<10, using: &g) {
            case 0: bytes = g.bytes(Int.random(in: 0...300, using: &g))
            case 1: bytes = Array("250-".utf8) + g.bytes(Int.random(in: 0...300, using: &g))
            case 2: bytes = Array(String(repeating: "250-x\r\n", count: Int.random(in: 95...105, using: &g)).utf8) + Array("250 y\r\n".utf8)
            case 3: bytes = Array("220 ".utf8) + [UInt8](repeating: 0x61, count: Int.random(in: 4090...4100, using: &g)) + [13, 10]
            default:
                bytes = Self.validReply(&g).0
                for _ in 0..<Int.random(in: 1...4, using: &g) where !bytes.isEmpty {
                    let at = Int.random(in: 0..<bytes.count, using: &g)
                    switch Int.random(in: 0..<5, using: &g) {
                    case 0: bytes[at] = UInt8.random(in: 0...255, using: &g)
                    case 1: bytes.insert(UInt8.random(in: 0...255, using: &g), at: at)
                    case 2: bytes.removeSubrange(at..<min(bytes.count, at + Int.random(in: 1...20, using: &g)))
                    case 3: bytes.insert(contentsOf: Self.hostile.randomElement(using: &g)!, at: at)
                    default: bytes.removeSubrange(at...)
                    }
                }
            }
            let context = "seed \(FuzzGenerator.seed &+ 1) iteration \(i): \(String(decoding: bytes.prefix(200), as: UTF8.self).debugDescription)"
            let whole = Self.read([bytes[...]])
            let split = Self.read(g.splits(bytes))
            log.check(split == whole, "\(context)")
            if split != whole { break }
            switch whole.0 {
            case .complete(let reply, let used):
                log.check(used <= bytes.count && (200...599).contains(reply.code), "\(context)")
                log.check(reply.lines.count <= SMTPReplyReader.maxLines, "\(context)")
                // Each byte is at most one scalar (an invalid byte becomes U+FFFD).
                log.check(reply.lines.allSatisfy { $0.unicodeScalars.count <= SMTPReplyReader.maxLineBytes - 4 }, "\(context)")
                log.check(reply.lines.allSatisfy { !$0.unicodeScalars.contains { $0.value < 0x20 && $0 != "\t" || $0.value == 0x7F } }, "\(context)")
                ends["complete", default: 0] += 1
            case .malformed(let why): ends[String(why.prefix(20)), default: 0] += 1
            case .needMore: ends["closed: " + (whole.closed ?? ""), default: 0] += 1
            }
        }
        log.check(ends.count >= 7, "\(ends)")
        return log.failures
    }
}
