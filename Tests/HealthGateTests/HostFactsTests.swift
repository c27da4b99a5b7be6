import Dispatch
import Foundation
import Testing
@testable import Basics
@testable import HealthGate

/// Runs commands through this machine's real `/bin/sh`, off the cooperative pool.
struct LocalShell: HostReader {
    let hostName = "localhost"

    func run(_ command: String, timeout: Duration) async throws -> HostCommandResult {
        try await withCheckedThrowingContinuation { continuation in
            DispatchQueue.global().async {
                let p = Process()
                p.executableURL = URL(fileURLWithPath: "/bin/sh")
                p.arguments = ["-c", command]
                let out = Pipe(), err = Pipe()
                p.standardOutput = out
                p.standardError = err
                do {
                    try p.run()
                } catch {
                    continuation.resume(throwing: error)
                    return
                }
                // The commands used here print little on stderr: reading it after
                // stdout cannot fill its pipe.
                let stdoutBytes = out.fileHandleForReading.readDataToEndOfFile()
                let stderrBytes = err.fileHandleForReading.readDataToEndOfFile()
                p.waitUntilExit()
                continuation.resume(returning: HostCommandResult(
                    stdout: String(decoding: stdoutBytes, as: UTF8.self),
                    stderr: String(decoding: stderrBytes, as: UTF8.self),
                    exitStatus: p.terminationStatus))
            }
        }
    }
}

@Suite struct HostFactsTests {
    func file(_ path: String) throws -> String {
        try String(contentsOfFile: path, encoding: .utf8)
    }

    @Test func readsThisMachineThroughTheRealShell() async throws {
        let facts = try await HostFacts.read(from: LocalShell())
        #expect(facts.unreadable.isEmpty, "unreadable: \(facts.unreadable)")
        #expect(facts.release == (try file("/proc/sys/kernel/osrelease")).trimmed)
        #expect(facts.bootID == (try file("/proc/sys/kernel/random/boot_id")).trimmed)
        let direct = MemInfo.parse(try file("/proc/meminfo"))
        #expect(facts.memory.memTotal == direct.memTotal)
        let shellSU = try #require(facts.memory.sUnreclaim)
        let directSU = try #require(direct.sUnreclaim)
        // Slab moves between the two reads, but not by 20%.
        #expect(abs(Double(shellSU) - Double(directSU)) < 0.2 * Double(directSU))
        #expect(facts.oomKill == VMStat.oomKill(in: try file("/proc/vmstat")))
        let uptime = try #require(Uptime.seconds(in: try file("/proc/uptime")))
        let shellUptime = try #require(facts.uptimeSeconds)
        #expect(shellUptime <= uptime && uptime - shellUptime < 30)
    }

    @Test func commandIsReadOnly() {
        // Only `echo` and `cat` of /proc files: nothing that writes or loads the host.
        let words = HostFacts.command.split(whereSeparator: { $0 == " " || $0 == ";" }).map(String.init)
        for forbidden in ["rm", ">", ">>", "tee", "nginx", "kill", "sync", "echo 3"] {
            #expect(!words.contains(forbidden), "\(forbidden) in \(HostFacts.command)")
        }
        #expect(HostFacts.files.allSatisfy { $0.hasPrefix("/proc/") })
    }

    @Test func unreadableFileThroughTheRealShell() async throws {
        // The same loop as HostFacts.command with one file that does not exist.
        let command = HostFacts.command.replacingOccurrences(of: "/proc/vmstat", with: "/proc/no-such-vmstat")
        let out = try await LocalShell().run(command, timeout: .seconds(5))
        let facts = HostFacts.parse(out.stdout.replacingOccurrences(of: "/proc/no-such-vmstat", with: "/proc/vmstat"))
        #expect(facts.oomKill == nil)
        #expect(facts.unreadable["/proc/vmstat"]?.contains("No such file") == true)
        #expect(facts.memory.sUnreclaim != nil)
    }
}
