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

    /// The parser reads lines on UTF-8 bytes (it runs for every gate sample): on random outputs of
    /// marker lines and hostile content (CR, CR LF, accents, emoji, stray markers, no final newline)
    /// it finds the same facts as the Character-based reading it replaced.
    @Test func byteParserAgreesWithTheCharacterParserOnRandomOutputs() {
        func reference(_ output: String) -> [String: Substring] {
            var sections: [String: Substring] = [:]
            var current: String?
            var start = output.startIndex, idx = output.startIndex
            func close(_ end: String.Index) { if let c = current { sections[c] = output[start..<end] } }
            while idx < output.endIndex {
                let lineEnd = output[idx...].firstIndex(where: \.isNewline) ?? output.endIndex
                let line = output[idx..<lineEnd]
                if line.hasPrefix("@@rollctl-file ") {
                    close(idx)
                    current = String(line.dropFirst("@@rollctl-file ".count))
                    start = lineEnd < output.endIndex ? output.index(after: lineEnd) : lineEnd
                }
                idx = lineEnd < output.endIndex ? output.index(after: lineEnd) : lineEnd
            }
            close(output.endIndex)
            return sections
        }
        let files = ["/proc/sys/kernel/osrelease", "/proc/sys/kernel/random/boot_id", "/proc/uptime", "/proc/meminfo", "/proc/vmstat"]
        let bits = ["6.1.0-19", " ", "\n", "\r\n", "\r", "SUnreclaim: 300000 kB\n", "oom_kill 3\n", "1234.5 99.0\n", "é", "😀",
                    "@@rollctl-unreadable", "@@rollctl-file", "\u{0}", "kB", "MemTotal: 1 kB\n"]
        var rng = SystemRandomNumberGenerator()
        for _ in 0..<2000 {
            var out = ""
            for _ in 0..<Int.random(in: 0...7, using: &rng) {
                if Bool.random(using: &rng) { out += "@@rollctl-file " + files.randomElement(using: &rng)! + (Bool.random(using: &rng) ? "\n" : "\r\n") }
                for _ in 0..<Int.random(in: 0...5, using: &rng) { out += bits.randomElement(using: &rng)! }
            }
            let ref = reference(out)
            var facts = HostFacts()
            for file in files {
                guard let text = ref[file] else { facts.unreadable[file] = "no output"; continue }
                if text.contains("@@rollctl-unreadable") {
                    facts.unreadable[file] = String(text.split(whereSeparator: \.isNewline).first ?? "unreadable").trimmed
                    continue
                }
                switch file {
                case "/proc/sys/kernel/osrelease": let t = String(text).trimmed; facts.release = t.isEmpty ? nil : t
                case "/proc/sys/kernel/random/boot_id": let t = String(text).trimmed; facts.bootID = t.isEmpty ? nil : t
                case "/proc/uptime": facts.uptimeSeconds = Uptime.seconds(in: String(text))
                case "/proc/meminfo": facts.memory = MemInfo.parse(text)
                default: facts.oomKill = VMStat.value("oom_kill", in: text)
                }
            }
            #expect(HostFacts.parse(out) == facts, "\(out.debugDescription)")
        }
    }
}
