import ArgumentParser
import Foundation
import Basics
import RolloutConfig
import Engine

struct FleetExecCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "exec",
        abstract: "Run one command on every host and show each host's output and exit status.",
        discussion: """
        The command runs through the remote user's shell exactly as given (quote it for your \
        local shell). Exit code 0 only if every host ran it with exit status 0.
        Example: rollctl fleet exec -i inventory.yaml -- 'grep SUnreclaim /proc/meminfo'
        """
    )

    @OptionGroup var connection: ConnectionOptions

    @Option(help: ArgumentHelp("Give up on a host's command after this long (e.g. 30s, 5m).", valueName: "duration"))
    var timeout: String?

    @Flag(help: "JSON lines: one object per host, then a summary object.")
    var json = false

    @Argument(parsing: .captureForPassthrough, help: ArgumentHelp("The command (after --).", valueName: "command"))
    var command: [String] = []

    func run() async throws {
        var words = command
        if words.first == "--" { words.removeFirst() }
        guard !words.isEmpty else {
            throw InputError(file: "command line", "no command given", hint: "rollctl fleet exec -i INVENTORY -- COMMAND")
        }
        var limit: Duration?
        if let timeout {
            guard let d = DurationText.parse(timeout), d > .zero else {
                throw InputError(file: "--timeout", "'\(timeout)' is not a duration like 30s or 5m")
            }
            limit = d
        }
        let (inv, hosts, cfg) = try connection.load()
        let console = Console.shared
        let line = words.joined(separator: " ")
        let runner = FleetExec(inventory: inv, parallelism: connection.parallel, sshConfig: cfg, timeout: limit)
        let counter = Counter()
        let total = hosts.count
        let results = await runner.run(line, hosts: hosts) { r in
            let n = counter.increment()
            if json { console.out(Self.json(r)) } else {
                Self.render(r)
                console.progress("running: \(n)/\(total) hosts done")
            }
        }
        console.clearProgress()
        let ok = results.filter(\.succeeded).count
        let unreachable = results.filter { $0.result == nil }.count
        let failed = results.count - ok - unreachable
        if json {
            console.out(JSONLine.encode(["type": "summary", "hosts": results.count, "succeeded": ok, "failed": failed, "unreachable": unreachable]))
        } else {
            console.out("\(results.count) hosts: \(ok) succeeded, \(failed) failed, \(unreachable) unreachable")
        }
        if ok < results.count { throw ExitCode(ExitStatus.hostFailure) }
    }

    static func json(_ r: HostExec) -> String {
        var o: [String: Any?] = ["type": "host", "name": r.host.name, "address": r.host.address,
                                 "elapsed_ms": Int(r.elapsed.components.seconds * 1000 + r.elapsed.components.attoseconds / 1_000_000_000_000_000)]
        if let x = r.result {
            o["exit_status"] = Int(x.exitStatus)
            o["exit_signal"] = x.exitSignal
            o["stdout"] = x.stdoutText
            o["stderr"] = x.stderrText
        }
        if let e = r.error { o["error"] = ["code": e.code.rawValue, "message": e.message] }
        return JSONLine.encode(o)
    }

    static func render(_ r: HostExec) {
        let c = Console.shared
        var lines: [String] = []
        let secs = String(format: "%.2fs", Double(r.elapsed.components.seconds) + Double(r.elapsed.components.attoseconds) / 1e18)
        if let x = r.result {
            let status = x.exitSignal.map { "killed by SIG\($0)" } ?? "exit \(x.exitStatus)"
            lines.append(c.paint("== \(r.host.name)", .bold) + " (" + c.paint(status, x.succeeded ? .green : .red) + ", \(secs))")
            lines += x.stdoutText.split(separator: "\n", omittingEmptySubsequences: false).dropLast(x.stdoutText.hasSuffix("\n") ? 1 : 0).map { "  " + $0 }
            lines += x.stderrText.split(separator: "\n", omittingEmptySubsequences: false).dropLast(x.stderrText.hasSuffix("\n") ? 1 : 0).map { c.paint("  ! " + $0, .dim) }
        } else if let e = r.error {
            lines.append(c.paint("== \(r.host.name)", .bold) + " (" + c.paint("unreachable: [\(e.code.rawValue)] \(e.message)", .red) + ")")
        }
        c.out(lines.joined(separator: "\n"))
    }
}
