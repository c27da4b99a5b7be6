import Foundation
import SSHTesting
import Testing
import Basics
@testable import NetIO

/// `TLSSession` (system OpenSSL through COpenSSL) against a real TLS server on
/// loopback (tls_echo.py, Python's ssl): what is trusted, what is refused and
/// what the refusal says. The notice-level tests (NoticeTests) cover STARTTLS
/// and https on top of it.
@Suite struct TLSSessionTests {
    /// What a client exchange ended with: the server's reply lines, or the failure.
    enum Outcome: Sendable {
        case replies([String])
        case failed(String, seconds: Double)

        var failure: String? { if case .failed(let text, _) = self { return text }; return nil }
        var replies: [String]? { if case .replies(let r) = self { return r }; return nil }
    }

    /// Connects, shakes hands and sends `lines`, one reply line each, on a thread of its own (LineConnection blocks).
    static func exchange(host: String = "127.0.0.1", port: Int, caFile: String?, lines: [String] = ["hello"],
                         timeout: Duration = .seconds(15)) async -> Outcome {
        await Blocking.run {
            let start = ContinuousClock.now
            do throws(LineConnection.Failure) {
                let deadline = start.advanced(by: timeout)
                let conn = try LineConnection.connect(host: host, port: port, deadline: deadline)
                try conn.startTLS(caFile: caFile, deadline: deadline)
                guard conn.isTLS else { return .failed("not TLS after startTLS", seconds: 0) }
                var replies: [String] = []
                for line in lines {
                    try conn.send(Array((line + "\n").utf8), deadline: deadline, phase: "sending")
                    var got: [UInt8] = []
                    while true {
                        if let end = got.firstIndex(of: 0x0A) {
                            conn.unread(got[(end + 1)...])
                            replies.append(String(decoding: got[..<end], as: UTF8.self))
                            break
                        }
                        guard let more = try conn.receive(deadline: deadline, phase: "reading") else {
                            return .failed("closed by the server", seconds: (ContinuousClock.now - start).seconds)
                        }
                        got += more
                    }
                }
                return .replies(replies)
            } catch {
                return .failed(error.description, seconds: (ContinuousClock.now - start).seconds)
            }
        }
    }

    @Test func aCertificateFromATrustedCAIsAcceptedForItsNameAndAddress() async throws {
        #expect(throws: Never.self) { try OpenSSL.shared.get() }
        let ca = try TestCA()
        let leaf = try ca.issue(subjectAltName: "DNS:localhost,IP:127.0.0.1")
        let server = try TLSEchoServer(leaf)
        defer { server.stop() }
        let big = String(repeating: "y", count: 1 << 20)
        for host in ["localhost", "127.0.0.1"] {
            let outcome = await Self.exchange(host: host, port: server.port, caFile: ca.certPath, lines: ["hello", "send 300000", big])
            #expect(outcome.failure == nil, "\(host)")
            // Several records each way: partial reads and writes, WANT_READ/WANT_WRITE on the non-blocking socket.
            #expect(outcome.replies == ["got 5", String(repeating: "x", count: 300_000), "got \(1 << 20)"], "\(host)")
        }
        let seen = server.handshakes(count: 2)
        #expect(seen.count == 2 && seen.allSatisfy { $0 == "ok: TLSv1.3" || $0 == "ok: TLSv1.2" }, "\(seen)")
    }

    @Test func withoutTheCAFileTheSystemStoreRefusesTheCertificate() async throws {
        let ca = try TestCA()
        let server = try TLSEchoServer(try ca.issue(subjectAltName: "DNS:localhost,IP:127.0.0.1"))
        defer { server.stop() }
        let failure = try #require(await Self.exchange(port: server.port, caFile: nil).failure)
        #expect(failure.contains("TLS handshake with 127.0.0.1 failed: certificate verify failed: unable to get local issuer certificate"), "\(failure)")

        // A self-signed certificate, not in the store.
        let selfSigned = try TLSEchoServer(try TestCertificate())
        defer { selfSigned.stop() }
        let other = try #require(await Self.exchange(port: selfSigned.port, caFile: nil).failure)
        #expect(other.contains("certificate verify failed: self-signed certificate") || other.contains("certificate verify failed: self signed certificate"), "\(other)")
    }

    @Test func anotherCAsCertificateIsRefused() async throws {
        let trusted = try TestCA(), stranger = try TestCA()
        let server = try TLSEchoServer(try stranger.issue(subjectAltName: "DNS:localhost,IP:127.0.0.1"))
        defer { server.stop() }
        let failure = try #require(await Self.exchange(host: "localhost", port: server.port, caFile: trusted.certPath).failure)
        #expect(failure.contains("TLS handshake with localhost failed: certificate verify failed:"), "\(failure)")
        let seen = server.handshakes(count: 1)
        #expect(seen.count == 1 && seen.allSatisfy { $0.hasPrefix("failed") }, "\(seen)")
    }

    @Test func aTrustedCertificateForAnotherNameOrAddressIsRefused() async throws {
        let ca = try TestCA()
        let server = try TLSEchoServer(try ca.issue(subjectAltName: "DNS:other.example,IP:127.0.0.2"))
        defer { server.stop() }
        let byName = try #require(await Self.exchange(host: "localhost", port: server.port, caFile: ca.certPath).failure)
        #expect(byName.contains("TLS handshake with localhost failed: certificate verify failed: hostname mismatch"), "\(byName)")
        let byAddress = try #require(await Self.exchange(host: "127.0.0.1", port: server.port, caFile: ca.certPath).failure)
        #expect(byAddress.contains("TLS handshake with 127.0.0.1 failed: certificate verify failed: IP address mismatch"), "\(byAddress)")
        let seen = server.handshakes(count: 2)
        #expect(seen.count == 2 && seen.allSatisfy { $0.hasPrefix("failed") }, "\(seen)")
    }

    @Test func aCAFileThatCannotBeLoadedIsAnErrorThatSaysWhy() async throws {
        let ca = try TestCA()
        let server = try TLSEchoServer(try ca.issue(subjectAltName: "IP:127.0.0.1"))
        defer { server.stop() }
        let missing = try #require(await Self.exchange(port: server.port, caFile: ca.dir + "/missing.pem").failure)
        #expect(missing.contains("TLS: cannot load trusted certificates from \(ca.dir)/missing.pem: error:"), "\(missing)")
        #expect(missing.contains("No such file or directory"), "\(missing)")

        let garbage = ca.dir + "/garbage.pem"
        try "not a certificate\n".write(toFile: garbage, atomically: true, encoding: .utf8)
        let bad = try #require(await Self.exchange(port: server.port, caFile: garbage).failure)
        #expect(bad.contains("TLS: cannot load trusted certificates from \(garbage): error:"), "\(bad)")
        #expect(!bad.contains("unknown TLS error"), "\(bad)")
        // Refused before the ClientHello: the server saw two connections close.
        let seen = server.handshakes(count: 2)
        #expect(seen.count == 2 && seen.allSatisfy { $0.hasPrefix("failed") && $0.contains("EOF") }, "\(seen)")
    }

    @Test func aServerThatOffersOnlyTLS11IsRefused() async throws {
        let ca = try TestCA()
        let server = try TLSEchoServer(try ca.issue(subjectAltName: "IP:127.0.0.1"), maxTLS: "1.1")
        defer { server.stop() }
        let failure = try #require(await Self.exchange(port: server.port, caFile: ca.certPath).failure)
        #expect(failure.contains("TLS handshake with 127.0.0.1 failed: error:"), "\(failure)")
        #expect(failure.contains("protocol version") || failure.contains("unsupported protocol"), "\(failure)")
    }

    @Test func aPeerThatIsNotTLSFailsTheHandshakeWithOpenSSLsReason() async throws {
        let peer = try HostilePeer([.send("220 mail.example ESMTP\r\n"), .awaitRequest])
        defer { peer.stop() }
        let failure = try #require(await Self.exchange(port: peer.port, caFile: nil, timeout: .seconds(10)).failure)
        #expect(failure.contains("TLS handshake with 127.0.0.1 failed: error:"), "\(failure)")
        #expect(failure.contains("SSL routines"), "\(failure)")
    }

    @Test func aPeerThatClosesDuringTheHandshake() async throws {
        let peer = try HostilePeer([.close])
        defer { peer.stop() }
        // A close is seen at once; the long deadline is for a starved start (the whole unit phase
        // begins at once on two cores: once the peer's thread did not close within 10 s).
        let failure = try #require(await Self.exchange(port: peer.port, caFile: nil, timeout: .seconds(30)).failure)
        #expect(failure.contains("TLS handshake with 127.0.0.1 failed: "), "\(failure)")
        #expect(!failure.contains("unknown TLS error"), "\(failure)")
    }

    @Test func aSilentPeerFailsTheHandshakeAtTheDeadline() async throws {
        let peer = try HostilePeer([.awaitRequest])
        defer { peer.stop() }
        let outcome = await Self.exchange(port: peer.port, caFile: nil, timeout: .seconds(1))
        guard case .failed(let failure, let seconds) = outcome else { Issue.record("no failure: \(outcome)"); return }
        #expect(failure == "timed out in the TLS handshake with 127.0.0.1:\(peer.port)")
        #expect(seconds >= 0.9 && seconds < 5, "\(seconds)")
    }
}

@Suite struct DigestTests {
    /// FIPS 180-2 / NIST CAVS vectors, and UTF-8 text hashed as its bytes.
    @Test func sha256HexMatchesKnownVectors() {
        #expect(sha256Hex("") == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        #expect(sha256Hex("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        #expect(sha256Hex("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq")
                == "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1")
        #expect(sha256Hex(String(repeating: "a", count: 1_000_000)) == "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0")
        // "é" is two bytes (c3 a9): the same digest as printf 'é' | sha256sum.
        #expect(sha256Hex("é") == "4a99557e4033c3539de2eb65472017cad5f9557f7a0625a09f1c3f6e2ba69c4c")
    }
}

/// A throwaway certificate authority (openssl CLI, P-256 keys) that issues server certificates.
final class TestCA: Sendable {
    let dir: String
    let certPath: String
    let keyPath: String

    init() throws {
        dir = NSTemporaryDirectory() + "rollctl-ca-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        certPath = dir + "/ca.pem"
        keyPath = dir + "/ca.key"
        try Self.openssl(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                          "-keyout", keyPath, "-out", certPath, "-days", "2", "-subj", "/CN=rollctl test CA",
                          "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign"])
    }

    /// A server certificate and key signed by this CA, for `subjectAltName` ("DNS:…,IP:…").
    func issue(subjectAltName: String) throws -> (certPath: String, keyPath: String) {
        let name = dir + "/leaf-\(UUID().uuidString.prefix(8))"
        try Self.openssl(["req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                          "-keyout", name + ".key", "-out", name + ".csr", "-subj", "/CN=rollctl test server"])
        try "subjectAltName=\(subjectAltName)\nextendedKeyUsage=serverAuth\n".write(toFile: name + ".ext", atomically: true, encoding: .utf8)
        try Self.openssl(["x509", "-req", "-in", name + ".csr", "-CA", certPath, "-CAkey", keyPath, "-CAcreateserial",
                          "-out", name + ".pem", "-days", "2", "-extfile", name + ".ext"])
        return (name + ".pem", name + ".key")
    }

    private static func openssl(_ args: [String]) throws {
        let (status, output) = try Spawn.run("/usr/bin/openssl", args)
        guard status == 0 else { throw TestSSHDError("openssl \(args.first ?? "") failed: \(output)") }
    }

    deinit { try? FileManager.default.removeItem(atPath: dir) }
}

/// tls_echo.py on loopback, presenting one certificate.
final class TLSEchoServer: Sendable {
    private let sink: LoopbackSink
    var port: Int { sink.port }

    init(_ leaf: (certPath: String, keyPath: String), maxTLS: String? = nil) throws {
        sink = try LoopbackSink(script: "tls_echo.py", arguments: ["--tls-cert", leaf.certPath, "--tls-key", leaf.keyPath]
                                    + (maxTLS.map { ["--max-tls", $0] } ?? []))
    }

    convenience init(_ cert: TestCertificate) throws {
        try self.init((cert.certPath, cert.keyPath))
    }

    /// One line per handshake the server saw ("ok: TLSv1.3", "failed: …"), once there are
    /// `count` (the server logs after the client has its answer), or after 5 s.
    func handshakes(count: Int = 0) -> [String] {
        let deadline = Date().addingTimeInterval(5)
        while true {
            let lines = ((try? String(contentsOfFile: sink.folder + "/handshakes.log", encoding: .utf8)) ?? "").split(separator: "\n").map(String.init)
            if lines.count >= count || Date() > deadline { return lines }
            usleep(20_000)
        }
    }

    func stop() { sink.stop() }
}
