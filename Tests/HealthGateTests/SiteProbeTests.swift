import Testing
@testable import Basics
@testable import NetIO
@testable import HealthGate

@Suite struct SiteProbeTests {
    let probe = SiteProbe()

    func fetch(_ b: LoopbackHTTPServer.Behaviour, timeout: Duration = .seconds(3)) async throws -> SiteAttempt {
        let server = try LoopbackHTTPServer(always: b)
        defer { server.stop() }
        return await probe.fetch(server.url, timeout: timeout)
    }

    @Test func ok200() async throws {
        let a = try await fetch(.status(200))
        #expect(a.outcome == .ok)
        #expect(a.status == 200)
        #expect(a.latencySeconds > 0 && a.latencySeconds < 1)
    }

    @Test func http500() async throws {
        let a = try await fetch(.status(500, body: "boom"))
        #expect(a.outcome == .http5xx)
        #expect(a.status == 500)
    }

    @Test func http404AndRedirectAreOther() async throws {
        #expect(try await fetch(.status(404)).outcome == .other)
        let r = try await fetch(.status(301))
        #expect(r.outcome == .other)
        #expect(r.detail?.contains("redirect") == true)
    }

    @Test func hangingServerTimesOut() async throws {
        let a = try await fetch(.hang, timeout: .milliseconds(300))
        #expect(a.outcome == .timeout)
        #expect(a.latencySeconds >= 0.29 && a.latencySeconds < 2, "\(a.latencySeconds)")
        #expect(a.detail?.contains("waiting for the response") == true)
    }

    @Test func resetIsItsOwnClass() async throws {
        let a = try await fetch(.reset)
        #expect(a.outcome == .reset, "\(a)")
        #expect(a.detail?.contains("ECONNRESET") == true || a.detail?.contains("EPIPE") == true)
        #expect(try await fetch(.resetAtOnce).outcome == .reset)
    }

    @Test func refusedPort() async throws {
        let a = await probe.fetch(HTTPURL(host: "127.0.0.1", port: LoopbackHTTPServer.unusedPort()), timeout: .seconds(3))
        #expect(a.outcome == .refused, "\(a)")
    }

    @Test func garbageEmptyAndShortAreOther() async throws {
        let g = try await fetch(.garbage)
        #expect(g.outcome == .other)
        #expect(g.detail?.contains("not an HTTP response") == true)
        let e = try await fetch(.closeEmpty)
        #expect(e.outcome == .other)
        #expect(e.detail == "connection closed without a response")
        let s = try await fetch(.shortBody)
        #expect(s.outcome == .other)
        #expect(s.status == 200)
    }

    @Test func responseEndsByItsFramingNotByClose() async throws {
        // The server keeps these connections open: waiting for the close would time out.
        let c = try await fetch(.chunkedKeepOpen, timeout: .seconds(2))
        #expect(c.outcome == .ok, "\(c)")
        #expect(c.latencySeconds < 1)
        let l = try await fetch(.lengthKeepOpen, timeout: .seconds(2))
        #expect(l.outcome == .ok, "\(l)")
        #expect(l.latencySeconds < 1)
        let h = try await fetch(.earlyHints, timeout: .seconds(2))
        #expect(h.outcome == .ok, "\(h)")
        #expect(h.status == 200)
    }

    @Test func unresolvableNameIsOther() async {
        let a = await probe.fetch(HTTPURL(host: "no-such-host.invalid", port: 80), timeout: .seconds(5))
        #expect(a.outcome == .other)
        #expect(a.detail?.contains("cannot resolve") == true)
    }

    @Test func mixedServerIsCountedPerClass() async throws {
        // 10 connections: 5 ok, 2 reset, 2 http 500, 1 hang.
        let plan: [LoopbackHTTPServer.Behaviour] = [.status(200), .reset, .status(500), .status(200), .hang,
                                                   .status(200), .reset, .status(503), .status(200), .status(200)]
        let server = try LoopbackHTTPServer { plan[$0 % plan.count] }
        defer { server.stop() }
        var attempts: [SiteAttempt] = []
        for _ in plan { attempts.append(await probe.fetch(server.url, timeout: .milliseconds(300))) }
        let tally = SiteTally(attempts)
        #expect(tally.byOutcome == [.ok: 5, .reset: 2, .http5xx: 2, .timeout: 1])
        #expect(tally.failureBreakdown == "reset 2, timeout 1, http5xx 2")
        #expect(server.connections == 10)
    }

    @Test func cancellationEndsAHangingRequestPromptly() async throws {
        let server = try LoopbackHTTPServer(always: .hang)
        defer { server.stop() }
        let task = Task { await probe.fetch(server.url, timeout: .seconds(30)) }
        for _ in 0..<500 where server.requests.isEmpty { try await Task.sleep(for: .milliseconds(20)) }
        let cancelled = ContinuousClock.now
        task.cancel()
        let a = await task.value
        #expect(a.outcome == .timeout)
        #expect(a.detail?.contains("cancelled") == true)
        // The probe's own thread closes the connection: timed by the server's thread, so
        // the unit phase's busy cooperative pool (2 cores) cannot stretch it. Far sooner
        // than the 30 s timeout; ~50 ms is the design.
        for _ in 0..<250 where server.closedAt.isEmpty { try await Task.sleep(for: .milliseconds(20)) }
        let closed = try #require(server.closedAt.first, "the probe never closed the hung connection")
        #expect(closed - cancelled < .seconds(2))
    }

    @Test func requestIsOneSmallGET() async throws {
        let server = try LoopbackHTTPServer(always: .status(200))
        defer { server.stop() }
        let url = HTTPURL(host: "127.0.0.1", port: server.port, path: "/wp/test?probe=1")
        #expect(await probe.fetch(url, timeout: .seconds(3)).outcome == .ok)
        #expect(server.connections == 1)
        let request = try #require(server.requests.first)
        #expect(request == "GET /wp/test?probe=1 HTTP/1.1\r\nHost: 127.0.0.1:\(server.port)\r\nUser-Agent: rollctl-health-gate\r\n"
                + "Accept: */*\r\nConnection: close\r\n\r\n")
        #expect(request.utf8.count < 200)
    }

    @Test func nameWithSeveralAddressesFallsBackToTheOneThatListens() async throws {
        // "localhost" resolves to ::1 and 127.0.0.1; the server listens on 127.0.0.1 only.
        let server = try LoopbackHTTPServer(always: .status(200))
        defer { server.stop() }
        let a = await probe.fetch(HTTPURL(host: "localhost", port: server.port), timeout: .seconds(3))
        #expect(a.outcome == .ok, "\(a)")
        #expect(server.requests.first?.contains("Host: localhost:\(server.port)\r\n") == true)
    }

    @Test func ipv6Authority() {
        let u = HTTPURL(host: "::1", port: 8080, path: "/health?x=1")
        #expect(u.authority == "[::1]:8080")
        #expect(u.description == "http://[::1]:8080/health?x=1")
        #expect(HTTPURL(host: "web1", port: 80, path: "x").description == "http://web1/x")
    }
}

@Suite struct HTTPURLTests {
    @Test func parses() throws {
        #expect(try HTTPURL.parse("http://10.0.0.5/") == HTTPURL(host: "10.0.0.5", port: 80, path: "/"))
        #expect(try HTTPURL.parse("http://web17.example:8080/wp/test?probe=1#x")
                == HTTPURL(host: "web17.example", port: 8080, path: "/wp/test?probe=1"))
        #expect(try HTTPURL.parse("HTTP://h") == HTTPURL(host: "h", port: 80, path: "/"))
        #expect(try HTTPURL.parse("http://[2001:db8::1]:81/x") == HTTPURL(host: "2001:db8::1", port: 81, path: "/x"))
    }

    @Test func rejects() {
        for bad in ["https://h/", "ftp://h", "http://", "http://h:0/", "http://h:99999/", "http://u:p@h/", "http://h/a b",
                    "http://[::1/", "h/path"] {
            #expect(throws: HTTPURLError.self, "\(bad)") { try HTTPURL.parse(bad) }
        }
    }

    @Test func theProbeRefusesHTTPSTheWebhookTakesIt() throws {
        let e = #expect(throws: HTTPURLError.self) { try HTTPURL.parse("https://h/") }
        #expect(e?.reason == "only http:// URLs are supported" && e?.part == .scheme)
        #expect(try HTTPURL.parse("https://status.example.org/x", allowHTTPS: true)
                == HTTPURL(host: "status.example.org", port: 443, path: "/x", tls: true))
        let u = try HTTPURL.parse("HTTPS://[::1]:8443/hook?x=1", allowHTTPS: true)
        #expect(u == HTTPURL(host: "::1", port: 8443, path: "/hook?x=1", tls: true))
        #expect(u.authority == "[::1]:8443" && u.description == "https://[::1]:8443/hook?x=1")
        #expect(HTTPURL(host: "h", tls: true).authority == "h" && HTTPURL(host: "h", port: 80, tls: true).authority == "h:80")
        let ftp = #expect(throws: HTTPURLError.self) { try HTTPURL.parse("ftp://h/", allowHTTPS: true) }
        #expect(ftp?.reason == "only http:// and https:// URLs are supported")
        // A template expands to http only, whatever the address.
        #expect(throws: HTTPURLError.self) { try HTTPURL.expand(template: "https://{address}/", address: "192.0.2.7", name: "w") }
    }

    @Test func eachRefusalNamesThePartThatIsWrong() {
        let cases: [(String, HTTPURLError.Part)] = [
            ("ftp://h", .scheme), ("http://", .host), ("http://u:p@h/", .host), ("http://[::1/", .host), ("http://[::1]x/", .host),
            ("http://h:0/", .port), ("http://h:99999/", .port), ("http://h:/", .port), ("http://h/a b", .path), ("http://h/caf\u{e9}", .path),
        ]
        for (bad, part) in cases {
            let e = #expect(throws: HTTPURLError.self, "\(bad)") { try HTTPURL.parse(bad, allowHTTPS: true) }
            #expect(e?.part == part, "\(bad)")
        }
        #expect(throws: HTTPURLError.self) { try HTTPURL.expand(template: "http://{name}/", address: "1.2.3.4", name: "a b") }
    }

    @Test func aFragmentIsNeverSent() throws {
        #expect(try HTTPURL.parse("http://h#top").path == "/")
        #expect(try HTTPURL.parse("http://h#top").host == "h")
    }

    @Test func templateExpansion() throws {
        let u = try HTTPURL.expand(template: "http://{address}:8080/t?host={name}", address: "192.0.2.7", name: "web7")
        #expect(u == HTTPURL(host: "192.0.2.7", port: 8080, path: "/t?host=web7"))
        #expect(try HTTPURL.expand(template: "http://{address}/", address: "2001:db8::7", name: "w").host == "2001:db8::7")
        // An inventory value cannot inject another host or a path.
        #expect(throws: HTTPURLError.self) { try HTTPURL.expand(template: "http://{address}/", address: "evil.example/x", name: "w") }
        #expect(throws: HTTPURLError.self) { try HTTPURL.expand(template: "http://{name}/", address: "1.2.3.4", name: "a b") }
        #expect(throws: HTTPURLError.self) { try HTTPURL.expand(template: "http://{name}/", address: "1.2.3.4", name: "u@h") }
    }
}
