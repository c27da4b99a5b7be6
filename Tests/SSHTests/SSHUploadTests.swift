import Foundation
import Testing
import SSHTesting
@testable import Basics
@testable import NetIO
@testable import SSH

/// `SSHSession.upload` (SFTP) against a real OpenSSH sshd on loopback.
@Suite("SSH uploads against a real sshd", .serialized)
struct SSHUploadTests {
    static let sftp = "Subsystem sftp /usr/lib/openssh/sftp-server"

    static func connect(_ d: TestSSHD) async throws -> SSHSession {
        try await SSHSession.connect(to: SSHSessionTests.endpoint(d), options: SSHSessionTests.options(d))
    }

    /// A file of `size` random bytes (not compressible, not all zeros), from the kernel: a loop
    /// in a debug build would hold a thread of the test pool for seconds.
    static func makeFile(_ path: String, size: Int) throws {
        guard let random = FileHandle(forReadingAtPath: "/dev/urandom") else { throw CocoaError(.fileReadNoPermission) }
        defer { try? random.close() }
        try random.readData(ofLength: size).write(to: URL(fileURLWithPath: path))
    }

    @Test func aLargeFileArrivesWholeWithItsModeAndProgress() async throws {
        let d = try TestSSHD(extraConfig: Self.sftp); defer { d.cleanUp() }
        let local = d.dir + "/big.deb", remote = d.dir + "/remote/big.deb.part"
        try FileManager.default.createDirectory(atPath: d.dir + "/remote", withIntermediateDirectories: true)
        let size = 96 << 20
        try Self.makeFile(local, size: size)
        let s = try await Self.connect(d)
        let reports = Reports()
        let r = try await s.upload(file: local, to: remote, mode: 0o600) { sent, total in reports.add(sent, total) }
        #expect(r.bytes == UInt64(size))
        let secs = Double(r.elapsed.components.seconds) + Double(r.elapsed.components.attoseconds) / 1e18
        print("upload of \(size >> 20) MiB over loopback: \(String(format: "%.2f", secs)) s, \(String(format: "%.1f", Double(size) / secs / 1048576)) MiB/s")
        // What landed is what was sent, byte for byte (the host's own sha256sum, as the orchestrator checks).
        let sum = try await s.exec("sha256sum -- \(shellQuote(remote))")
        #expect(String(sum.stdoutText.prefix(64)) == (try sha256Hex(file: local)).hex)
        let mode = try await s.exec("stat -c %a \(shellQuote(remote))")
        #expect(mode.stdoutText == "600\n")
        // Progress went up to the total, never backwards.
        let seen = reports.all
        #expect(seen.first?.0 == 0 && seen.last?.0 == UInt64(size) && seen.allSatisfy { $0.1 == UInt64(size) })
        #expect(zip(seen, seen.dropFirst()).allSatisfy { $0.0 <= $1.0 })
        // The session still runs commands after an upload.
        #expect(try await s.exec("echo ok").stdoutText == "ok\n")
        // Uploading again truncates: a shorter file leaves no tail of the longer one.
        try Data("short".utf8).write(to: URL(fileURLWithPath: local))
        _ = try await s.upload(file: local, to: remote)
        #expect(try String(contentsOfFile: remote, encoding: .utf8) == "short")
        await s.close()
    }

    @Test func aBandwidthCapHoldsTheRate() async throws {
        let d = try TestSSHD(extraConfig: Self.sftp); defer { d.cleanUp() }
        let local = d.dir + "/capped.deb"
        try Self.makeFile(local, size: 6 << 20)
        let s = try await Self.connect(d)
        let pacer = TransferPacer(bytesPerSecond: 4 << 20)
        let r = try await s.upload(file: local, to: d.dir + "/capped.part", pacer: pacer)
        // 6 MiB at 4 MiB/s: at least ~1.25 s (a quarter second of burst allowed), not the
        // few milliseconds loopback takes.
        #expect(r.elapsed >= .milliseconds(1200), "\(r.elapsed)")
        #expect(r.elapsed < .seconds(10), "\(r.elapsed)")
        await s.close()
    }

    @Test func refusalsAreClassifiedAndTheHostStillAnswers() async throws {
        let d = try TestSSHD(extraConfig: Self.sftp); defer { d.cleanUp() }
        let local = d.dir + "/small.deb"
        try Data("x".utf8).write(to: URL(fileURLWithPath: local))
        let s = try await Self.connect(d)
        do {
            _ = try await s.upload(file: local, to: d.dir + "/no/such/folder/x.part")
            Issue.record("an upload into a missing folder succeeded")
        } catch let e as SSHError {
            #expect(e.code == .fileTransfer && e.message.contains("no such file"), "\(e)")
        }
        // A refused file leaves the connection as it was.
        #expect(s.isAlive)
        #expect(try await s.exec("echo still").stdoutText == "still\n")
        do {
            _ = try await s.upload(file: d.dir + "/missing.deb", to: d.dir + "/x.part")
            Issue.record("an upload of a missing local file succeeded")
        } catch let e as SSHError {
            #expect(e.code == .localFile, "\(e)")
        }
        // Without an SFTP subsystem the error says so and what to do.
        let bare = try TestSSHD(); defer { bare.cleanUp() }
        let b = try await Self.connect(bare)
        do {
            _ = try await b.upload(file: local, to: bare.dir + "/x.part")
            Issue.record("an upload without SFTP succeeded")
        } catch let e as SSHError {
            #expect(e.code == .fileTransfer && e.message.contains("no SFTP subsystem") && (e.hint ?? "").contains("Subsystem sftp"), "\(e)")
        }
        await s.close()
        await b.close()
    }

    @Test func aCancelledUploadStopsPromptly() async throws {
        let d = try TestSSHD(extraConfig: Self.sftp); defer { d.cleanUp() }
        let local = d.dir + "/slow.deb"
        try Self.makeFile(local, size: 8 << 20)
        let s = try await Self.connect(d)
        let pacer = TransferPacer(bytesPerSecond: 256 << 10)
        let task = Task { try await s.upload(file: local, to: d.dir + "/slow.part", pacer: pacer) }
        try await Task.sleep(for: .milliseconds(500))
        let start = ContinuousClock.now
        task.cancel()
        do {
            _ = try await task.value
            Issue.record("a cancelled upload finished")
        } catch let e as SSHError {
            #expect(e.code == .cancelled, "\(e)")
        }
        #expect(ContinuousClock.now - start < .seconds(2))
        #expect(!s.isAlive)
    }
}

final class Reports: @unchecked Sendable {
    private let lock = NSLock()
    private var list: [(UInt64, UInt64)] = []
    func add(_ a: UInt64, _ b: UInt64) { lock.lock(); list.append((a, b)); lock.unlock() }
    var all: [(UInt64, UInt64)] { lock.lock(); defer { lock.unlock() }; return list }
}
