import Foundation
import SSHTesting
import Testing
@testable import Basics
@testable import SSH
@testable import Engine

@Suite("SSHHost against a real sshd", .serialized)
struct SSHHostTests {
    /// A command queued behind one that loses the connection never ran: the
    /// host reconnects and runs it (SSHSession.isAlive does not wait for the
    /// command in flight, so the second call reuses the doomed session).
    @Test func aCommandQueuedBehindALostConnectionRunsOnANewOne() async throws {
        let d = try TestSSHD(); defer { d.cleanUp() }
        let host = SSHHost(endpoint: SSHEndpoint(name: "test-host", address: d.address, port: d.port, user: d.user),
                           options: SSHConnectOptions(connectTimeout: .seconds(5), knownHostsPath: d.knownHostsPath,
                                                      identityFiles: [d.ed25519Key], useAgent: false))
        let ppid = try await host.exec("ps -o ppid= -p $$", timeout: .seconds(5)).stdoutText
            .trimmingCharacters(in: .whitespacesAndNewlines)
        let first = Task { try await host.exec("sleep 0.5; kill -9 \(ppid); sleep 5", timeout: .seconds(10)) }
        try await Task.sleep(for: .milliseconds(150))
        let second = try await host.exec("echo second", timeout: .seconds(10))
        #expect(second.stdoutText == "second\n")
        let r = await first.result
        guard case .failure(let e as SSHError) = r else { Issue.record("expected the first command to lose its connection, got \(r)"); return }
        #expect(e.code == .connectionLost)
        #expect(await host.connections == 2)
        await host.close()
    }
}
