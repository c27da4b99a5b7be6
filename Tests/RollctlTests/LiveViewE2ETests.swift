import Foundation
import Testing
import SSHTesting
#if canImport(Glibc)
import Glibc
#endif

/// The live view on a real terminal: `rollctl rollout watch` and `plan apply` inside tmux
/// (Debian's), captured with `capture-pane` at 80×24 and 200×60 while a fleetsim rollout runs.
@Suite("the live view in tmux", .serialized, .enabled(if: geteuid() == 0 && FileManager.default.isExecutableFile(atPath: "/usr/bin/tmux")))
struct LiveViewE2ETests {
    typealias Fleet = RolloutE2ETests.Fleet

    static func tmux(_ args: [String]) throws -> (Int32, String) { try Spawn.run("/usr/bin/tmux", args) }

    /// A detached session: its server must not inherit a pipe of ours (a read would never end).
    static func session(_ socket: String, _ name: String, _ w: Int, _ h: Int, _ command: String) throws -> Int32 {
        let pid = try Spawn.start("/usr/bin/tmux", ["-S", socket, "new-session", "-d", "-s", name, "-x", "\(w)", "-y", "\(h)",
                                                    "-e", "TERM=xterm-256color", command], outputPath: "/dev/null")
        return Spawn.wait(pid)
    }

    /// The pane's text, its lines without trailing blanks.
    static func capture(_ session: String, socket: String) throws -> [String] {
        let (_, out) = try tmux(["-S", socket, "capture-pane", "-p", "-t", session])
        var lines = out.split(separator: "\n", omittingEmptySubsequences: false).map { String($0) }
        if lines.last == "" { lines.removeLast() }   // the newline after the last row
        return lines
    }

    @Test func watchAndApplyFitTheTerminalWhileARolloutRuns() throws {
        let fleet = try Fleet(hosts: 4, racks: 2, slot: 40); defer { fleet.down() }
        let socket = fleet.dir + "/tmux.sock"
        defer { if let pid = try? Spawn.start("/usr/bin/tmux", ["-S", socket, "kill-server"], outputPath: "/dev/null") { _ = Spawn.wait(pid) } }
        let plan = try fleet.plan(release: "6.1.0-19-hosting", waves: "[1, 100%]", soak: "12s", name: "live")
        // plan apply on a terminal: the live view under the log.
        let apply = "\(CLI.binary) plan apply \(plan) --journal \(fleet.journal); echo EXIT=$?; sleep 600"
        #expect(try Self.session(socket, "apply", 200, 60, apply) == 0)
        var id: String?
        for _ in 0..<200 where id == nil {
            usleep(100_000)
            id = try? CLI.run(["rollout", "list", "--journal", fleet.journal, "--json"]).json.first?["id"] as? String
        }
        let rollout = try #require(id)
        for (name, w, h) in [("w80", 80, 24), ("w200", 200, 60)] {
            let watch = "\(CLI.binary) rollout watch \(rollout) --journal \(fleet.journal); echo WATCH-EXIT=$?; sleep 600"
            #expect(try Self.session(socket, name, w, h, watch) == 0)
        }
        // While it runs: a host soaking shows in every view with what the gate has seen so far
        // (its SUnreclaim, then its slope), and every view fits its terminal.
        func soakingWithReadings(_ line: String) -> Bool { line.contains("soaking") && line.contains("web-00") && line.contains("SUnreclaim ") }
        var seen: [String: [String]] = [:]
        for _ in 0..<300 {
            usleep(200_000)
            for s in ["w80", "w200", "apply"] { seen[s] = try Self.capture(s, socket: socket) }
            if ["w80", "w200", "apply"].allSatisfy({ seen[$0]!.contains(where: soakingWithReadings) }),
               seen["w200"]!.contains(where: { soakingWithReadings($0) && $0.contains("MiB/h") }) { break }
        }
        #expect(seen["w200"]?.contains { soakingWithReadings($0) && $0.contains("MiB/h") } == true, "\(seen["w200"]?.joined(separator: "\n") ?? "")")
        for (s, w, h) in [("w80", 80, 24), ("w200", 200, 60), ("apply", 200, 60)] {
            let lines = seen[s] ?? []
            #expect(lines.contains(where: soakingWithReadings), "\(s): \(lines.joined(separator: "\n"))")
            #expect(lines.count <= h && lines.allSatisfy { $0.count <= w }, "\(s) overflows \(w)×\(h)")
            #expect(lines.contains { $0.hasPrefix("rollout \(rollout)") }, "\(s): \(lines.joined(separator: "\n"))")
            #expect(lines.contains { $0.hasPrefix("waves ") }, "\(s)")
        }
        // The apply's log lines are above the view, not mixed into it.
        let applied = seen["apply"] ?? []
        if let head = applied.firstIndex(where: { $0.hasPrefix("rollout \(rollout) ·") }) {
            #expect(applied[..<head].contains { $0.contains("wave 1/2: starting") }, "\(applied.joined(separator: "\n"))")
            #expect(!applied[head...].contains { $0.contains("wave 1/2: starting") }, "a log line inside the view")
        }
        // At the end: the watchers stop by themselves, the apply exits 0, the view shows it completed.
        var done = false
        for _ in 0..<600 where !done {
            usleep(200_000)
            let a = try Self.capture("apply", socket: socket), w = try Self.capture("w80", socket: socket)
            done = a.contains { $0.contains("EXIT=") } && w.contains { $0.contains("WATCH-EXIT=") }
        }
        #expect(done)
        let final = try Self.capture("w80", socket: socket)
        #expect(final.contains { $0.contains("WATCH-EXIT=0") }, "\(final.joined(separator: "\n"))")
        #expect(final.contains { $0.contains("completed") && $0.hasPrefix("rollout ") }, "FINAL:\n\(final.joined(separator: "\n"))")
        #expect(final.allSatisfy { $0.count <= 80 })
        #expect(try Self.capture("apply", socket: socket).contains { $0.contains("EXIT=0") })
    }
}
