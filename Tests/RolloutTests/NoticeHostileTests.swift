import Foundation
import Testing
@testable import Basics
@testable import Notices

/// Issue 14: every byte from an SMTP server or a webhook endpoint is hostile.
/// A bad reply is a `NoticeDeliveryError` that says what was wrong, never a
/// crash, and never later than the command's (or the POST's) deadline.
@Suite struct NoticeHostileSMTPTests {
    /// Opens a session against a peer playing `script`; the error, the seconds taken.
    func open(_ script: [HostilePeer.Step], timeout: Duration = .seconds(3)) async throws -> (NoticeDeliveryError?, Double) {
        let peer = try HostilePeer(script)
        defer { peer.stop() }
        let client = SMTPClient(host: "127.0.0.1", port: peer.port, heloName: "rollctl.test", timeout: timeout)
        // Timed on the worker thread: a busy cooperative pool delays the resumption, not the session.
        return await Blocking.run {
            let start = ContinuousClock.now
            do throws(NoticeDeliveryError) {
                let session = try client.open()
                session.quit()
                return (nil, (ContinuousClock.now - start).seconds)
            } catch {
                return (error, (ContinuousClock.now - start).seconds)
            }
        }
    }

    func expectError(_ script: [HostilePeer.Step], stage: DeliveryStage = .greeting, _ message: String,
                     sourceLocation: SourceLocation = #_sourceLocation) async throws {
        let (error, seconds) = try await open(script)
        #expect(error?.stage == stage, "\(String(describing: error))", sourceLocation: sourceLocation)
        #expect(error?.message.contains(message) == true, "\(String(describing: error))", sourceLocation: sourceLocation)
        #expect(seconds < 2.5, sourceLocation: sourceLocation)
    }

    @Test func capsOnReplyLinesAndLines() async throws {
        try await expectError([.send("220 "), .endless("x")], "a reply line longer than 4096 bytes")
        try await expectError([.endless("220-ready\r\n")], "a reply of more than 100 lines")
        try await expectError([.send("220 ok\r\n"), .awaitLine, .endless("250-EXT\r\n")], stage: .ehlo, "a reply of more than 100 lines")
    }

    @Test func malformedRepliesAreNamed() async throws {
        try await expectError([.send("2x0 hello\r\n")], "not an SMTP reply: '2x0 hello'")
        try await expectError([.send("99999999999999999999 big\r\n")], "not an SMTP reply")
        try await expectError([.send("-20 negative\r\n")], "not an SMTP reply")
        try await expectError([.send("220-a\r\n250 b\r\n")], "reply lines with different codes (220, 250)")
        try await expectError([.send("220 a\rb\r\n")], "a bare CR in a reply line")
        try await expectError([.send("220 no line end"), .close], "connection closed inside the reply (a line without its CRLF)")
        try await expectError([.close], "connection closed before the reply")
        try await expectError([.send("220 ok\r\n"), .awaitLine, .send("\u{0}\u{0}\u{0}\r\n")], stage: .ehlo, "not an SMTP reply: '...'")
    }

    /// Each line of this greeting arrives well within the timeout (6 bytes,
    /// 100 ms apart); the reply as a whole does not. The old per-line deadline
    /// let it run for 200 lines; the reply's deadline ends it at the timeout.
    @Test func aSlowDripReplyEndsAtTheCommandsDeadline() async throws {
        let greeting = String(repeating: "220-\r\n", count: 30) + "220 ok\r\n"
        let (error, seconds) = try await open([.drip(greeting, interval: .milliseconds(100))], timeout: .seconds(1))
        #expect(error?.stage == .greeting)
        #expect(error?.message.contains("timed out") == true, "\(String(describing: error))")
        #expect(seconds >= 0.95 && seconds < 1.7, "\(seconds)")
        let (ehlo, s2) = try await open([.send("220 ok\r\n"), .awaitLine, .drip(String(repeating: "250-X\r\n", count: 30), interval: .milliseconds(100))],
                                        timeout: .seconds(1))
        #expect(ehlo?.stage == .ehlo)
        #expect(ehlo?.message.contains("timed out") == true, "\(String(describing: ehlo))")
        #expect(s2 >= 0.95 && s2 < 1.7, "\(s2)")
    }
}

@Suite struct NoticeHostileWebhookTests {
    func post(_ script: [HostilePeer.Step], timeout: Duration = .seconds(3)) async throws -> (Result<String, NoticeDeliveryError>, Double) {
        let peer = try HostilePeer([.awaitRequest] + script)
        defer { peer.stop() }
        let hook = Webhook(url: "http://127.0.0.1:\(peer.port)/hook", timeout: timeout)
        let start = ContinuousClock.now
        let result: Result<String, NoticeDeliveryError>
        do throws(NoticeDeliveryError) { result = .success(try await hook.post(Array("{}".utf8), messageID: "<m@test>")) } catch {
            result = .failure(error)
        }
        return (result, (ContinuousClock.now - start).seconds)
    }

    func expectError(_ script: [HostilePeer.Step], _ message: String, sourceLocation: SourceLocation = #_sourceLocation) async throws {
        let (result, seconds) = try await post(script)
        guard case .failure(let error) = result else { Issue.record("delivered: \(result)", sourceLocation: sourceLocation); return }
        #expect(error.stage == .http, sourceLocation: sourceLocation)
        #expect(error.message.contains(message), "\(error)", sourceLocation: sourceLocation)
        #expect(error.mayHaveBeenAccepted, sourceLocation: sourceLocation)
        #expect(!error.permanent, sourceLocation: sourceLocation)
        #expect(seconds < 2.5, sourceLocation: sourceLocation)
    }

    /// The response is read by NIO's HTTP parser (AsyncHTTPClient) under its header caps.
    @Test func aHostileHeadIsAnErrorNotACrashOrAHang() async throws {
        try await expectError([.send("HTTP/1.1 "), .endless("2")], "not a valid HTTP response")
        try await expectError([.send("HTTP/1.1 200 OK\r\n"), .endless("X: 1\r\n")], "not a valid HTTP response")
        try await expectError([.send("HTTP/1.1 200 OK\r\nX: "), .endless("y")], "not a valid HTTP response")
        try await expectError([.send("SMTP? 220 hello\r\n\r\n"), .close], "not a valid HTTP response")
        try await expectError([.close], "closed the connection")
    }

    /// The status decides once the head is in: a hostile body after a 200
    /// (an overflowing chunk size, an endless stream) neither crashes nor holds the notice.
    @Test func aHostileBodyAfterTheHeadIsCutNotFatal() async throws {
        let (chunk, s1) = try await post([.send("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n7fffffffffffffff\r\nhello\r\n")])
        #expect(try chunk.get() == "HTTP/1.1 200 OK", "\(chunk)")
        #expect(s1 < 1.5)
        let (endless, s2) = try await post([.send("HTTP/1.1 204 No Content\r\nX: 1\r\n\r\n"), .endless("junk")])
        #expect(try endless.get() == "HTTP/1.1 204 No Content", "\(endless)")
        #expect(s2 < 1.5)
        let (busy, _) = try await post([.send("HTTP/1.1 503 Busy\r\n\r\n"), .endless("busy")])
        guard case .failure(let e) = busy else { Issue.record("delivered"); return }
        #expect(e.message == "the webhook answered 503" && e.reply == "HTTP/1.1 503 Service Unavailable" && !e.permanent)
    }

    /// One byte every 200 ms: each read is in time, the POST is not. It ends at
    /// the POST's deadline (connect to response), not per read.
    @Test func aSlowDripResponseEndsAtThePostsDeadline() async throws {
        let (result, seconds) = try await post([.drip("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", interval: .milliseconds(200))],
                                               timeout: .seconds(1))
        guard case .failure(let error) = result else { Issue.record("delivered: \(result)"); return }
        #expect(error.message.contains("no complete answer in time"), "\(error)")
        #expect(error.mayHaveBeenAccepted)
        #expect(seconds >= 0.95 && seconds < 1.7, "\(seconds)")
    }
}
