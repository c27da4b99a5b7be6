import Testing
@testable import Basics
@testable import HealthGate

/// Issue 14: every byte from a test site is hostile. Each of these answers
/// must end as a `SiteAttempt` (a class and a detail), never as a crash, and
/// never later than the request's timeout.
@Suite struct HostileSiteTests {
    let probe = SiteProbe()

    func fetch(_ b: LoopbackHTTPServer.Behaviour, timeout: Duration = .seconds(5)) async throws -> SiteAttempt {
        let server = try LoopbackHTTPServer(always: b)
        defer { server.stop() }
        return await probe.fetch(server.url, timeout: timeout)
    }

    func expectOther(_ a: SiteAttempt, _ detail: String, status: Int? = 200, sourceLocation: SourceLocation = #_sourceLocation) {
        #expect(a.outcome == .other, "\(a)", sourceLocation: sourceLocation)
        #expect(a.detail?.contains(detail) == true, "\(a)", sourceLocation: sourceLocation)
        #expect(a.status == status, "\(a)", sourceLocation: sourceLocation)
        // Caps end it long before the timeout.
        #expect(a.latencySeconds < 3, "\(a)", sourceLocation: sourceLocation)
    }

    static let chunkedHead = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"

    /// The regression: `i + size + 2` overflowed and trapped (SIGILL), killing
    /// `rollctl gate check` and the rollout's gate (and again at resume).
    @Test func hugeChunkSizeIsOtherNotACrash() async throws {
        let a = try await fetch(.raw(Self.chunkedHead + "7fffffffffffffff\r\nhello\r\n", keepOpen: true))
        expectOther(a, "chunk size 7fffffffffffffff over what is left of the 1 MiB body cap")
        expectOther(try await fetch(.raw(Self.chunkedHead + "ffffffffffffffffffffffff\r\n", keepOpen: true)), "body cap")
    }

    @Test func hugeContentLengthIsRefusedBeforeTheBody() async throws {
        let a = try await fetch(.raw("HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999\r\n\r\nhello", keepOpen: true))
        expectOther(a, "Content-Length 99999999999999999999 over the 1 MiB body cap")
        expectOther(try await fetch(.raw("HTTP/1.1 200 OK\r\nContent-Length: 9223372036854775807\r\n\r\n", keepOpen: true)), "body cap")
    }

    @Test func endlessStatusLine() async throws {
        expectOther(try await fetch(.endless(head: "HTTP/1.1 200 ", filler: "OK")), "status line longer than 8 KiB", status: nil)
        expectOther(try await fetch(.endless(head: "", filler: "x")), "not an HTTP response", status: nil)
    }

    @Test func headerLineLongerThanTheCap() async throws {
        expectOther(try await fetch(.endless(head: "HTTP/1.1 200 OK\r\nX-Long: ", filler: "a")), "header line longer than 8 KiB")
    }

    @Test func tooManyHeaders() async throws {
        expectOther(try await fetch(.endless(head: "HTTP/1.1 200 OK\r\n", filler: "X-A: 1\r\n")), "more than 100 header lines")
        // Long lines under the count cap meet the total cap.
        let line = "X-B: " + String(repeating: "b", count: 8000) + "\r\n"
        expectOther(try await fetch(.endless(head: "HTTP/1.1 200 OK\r\n", filler: line)), "response header larger than 64 KiB")
        expectOther(try await fetch(.endless(head: "", filler: "HTTP/1.1 103 Early Hints\r\n\r\n")), "more than 8 interim", status: nil)
    }

    @Test func bodyOverTheCap() async throws {
        expectOther(try await fetch(.endless(head: "HTTP/1.1 200 OK\r\n\r\n", filler: "a")), "body larger than 1 MiB")
        let chunk = "4000\r\n" + String(repeating: "c", count: 0x4000) + "\r\n"
        expectOther(try await fetch(.endless(head: Self.chunkedHead, filler: chunk)), "over what is left of the 1 MiB body cap")
        // A 500 with an endless body is still capped (its class is the cap's, not 5xx: the response never ended).
        expectOther(try await fetch(.endless(head: "HTTP/1.1 500 X\r\n\r\n", filler: "e")), "body larger than 1 MiB", status: 500)
    }

    /// One byte every 200 ms: every read succeeds in time, the request does not.
    /// It ends at the request's deadline as `timeout`, not a byte later.
    @Test func slowDripEndsAtTheRequestsDeadline() async throws {
        let response = "HTTP/1.1 200 OK\r\nContent-Length: 40\r\n\r\n" + String(repeating: "d", count: 40)
        let a = try await fetch(.drip(response, interval: .milliseconds(200)), timeout: .seconds(1))
        #expect(a.outcome == .timeout, "\(a)")
        #expect(a.latencySeconds >= 0.95 && a.latencySeconds < 1.6, "\(a)")
        #expect(a.detail?.contains("timed out while waiting for the response") == true, "\(a)")
        // In the body, likewise.
        let b = try await fetch(.drip("HTTP/1.1 200 OK\r\nContent-Length: 40\r\n\r\n" + String(repeating: "d", count: 40),
                                      interval: .milliseconds(30)), timeout: .milliseconds(1500))
        #expect(b.outcome == .timeout, "\(b)")
        #expect(b.status == 200, "\(b)")
        #expect(b.latencySeconds >= 1.45 && b.latencySeconds < 2.1, "\(b)")
        #expect(b.detail?.contains("receiving the body") == true, "\(b)")
    }

    @Test func controlBytesNeverReachTheDetail() async throws {
        let a = try await fetch(.raw("\u{1B}[2J\u{0}HTTP/1.1 200\r\n\r\n"))
        #expect(a.outcome == .other)
        #expect(a.detail?.unicodeScalars.allSatisfy { (32..<127).contains($0.value) } == true, "\(a)")
    }
}
