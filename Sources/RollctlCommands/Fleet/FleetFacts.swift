import ArgumentParser
import Foundation
import Basics
import RolloutConfig
import Engine

struct FleetFacts: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "facts",
        abstract: "Survey every host: kernel, boot id, uptime, memory, SUnreclaim, OOM kills, bootloader.",
        discussion: """
        Read-only: one SSH connection per host running one command that reads /proc files, \
        /etc/os-release and which boot files exist. BOOTLOADER is the driver `bootloader: auto` \
        would pick for the host (grub, grub-bls, systemd-boot; `?` when its files do not tell, \
        and a plan with `bootloader: auto` would refuse it). Hosts whose \
        SUnreclaim (unreclaimable kernel slab memory, invisible in ps/top) is over the \
        --sunreclaim-warn threshold are flagged. Unreachable hosts are listed with the reason.
        Exit code 0 when every host answered, 1 when some did not, 2 on bad input.
        """
    )

    @OptionGroup var connection: ConnectionOptions

    @Option(help: ArgumentHelp("Flag hosts whose SUnreclaim is above this share of MemTotal (10%) or size (2GiB).", valueName: "limit"))
    var sunreclaimWarn: String = "10%"

    @Flag(help: "JSON lines: one object per host, then a summary object.")
    var json = false

    func run() async throws {
        guard let threshold = SUnreclaimThreshold.parse(sunreclaimWarn) else {
            throw InputError(file: "--sunreclaim-warn", "'\(sunreclaimWarn)' is not a share (10%) or size (2GiB)")
        }
        let (inv, hosts, cfg) = try connection.load()
        let console = Console.shared
        let survey = FleetSurvey(inventory: inv, parallelism: connection.parallel, threshold: threshold, sshConfig: cfg)
        let counter = Counter()
        let total = hosts.count
        let results = await survey.run(hosts: hosts) { s in
            let n = counter.increment()
            if json {
                console.out(Self.json(s))
            } else {
                console.progress("surveying: \(n)/\(total) hosts")
            }
        }
        console.clearProgress()
        let summary = Self.summarize(results)
        if json {
            console.out(JSONLine.encode(["type": "summary", "hosts": results.count, "reachable": summary.reachable,
                                         "unreachable": results.count - summary.reachable, "flagged": summary.flagged,
                                         "kernels": summary.kernels, "sunreclaim_warn": threshold.description]))
        } else {
            render(results, threshold: threshold, summary: summary)
        }
        if summary.reachable < results.count { throw ExitCode(ExitStatus.hostFailure) }
    }

    struct Summary { var reachable = 0; var flagged = 0; var kernels: [String: Int] = [:] }

    static func summarize(_ results: [HostSurvey]) -> Summary {
        var s = Summary()
        for r in results {
            guard let f = r.facts else { continue }
            s.reachable += 1
            if r.flagged { s.flagged += 1 }
            s.kernels[f.release ?? "unknown", default: 0] += 1
        }
        return s
    }

    static func json(_ s: HostSurvey) -> String {
        var o: [String: Any?] = ["type": "host", "name": s.host.name, "address": s.host.address,
                                 "reachable": s.reachable, "elapsed_ms": Int(s.elapsed.components.seconds * 1000 + s.elapsed.components.attoseconds / 1_000_000_000_000_000)]
        if !s.host.labels.isEmpty { o["labels"] = s.host.labels }
        if let f = s.facts {
            o["release"] = f.release
            o["boot_id"] = f.bootID
            o["uptime_seconds"] = f.uptimeSeconds
            o["mem_total_bytes"] = f.memory.memTotal
            o["mem_available_bytes"] = f.memory.memAvailable
            o["slab_bytes"] = f.memory.slab
            o["sunreclaim_bytes"] = f.memory.sUnreclaim
            o["sunreclaim_share"] = f.memory.sUnreclaimShare
            o["oom_kill"] = f.oomKill
            o["flagged"] = s.flagged
            o["os_id"] = s.boot?.id
            o["bootloader"] = s.boot?.driverName
            if !f.unreadable.isEmpty { o["unreadable"] = f.unreadable }
        }
        if let e = s.error {
            o["error"] = ["code": e.code.rawValue, "message": e.message, "hint": e.hint ?? ""]
        } else if let p = s.problem {
            o["error"] = ["code": "facts_failed", "message": p]
        }
        return JSONLine.encode(o)
    }

    func render(_ results: [HostSurvey], threshold: SUnreclaimThreshold, summary: Summary) {
        let c = Console.shared
        var table = Table(header: ["HOST", "ADDRESS", "KERNEL", "BOOTLOADER", "UPTIME", "MEMTOTAL", "SUNRECLAIM", "OOM"])
        let reachable = results.filter(\.reachable)
        for r in reachable {
            let f = r.facts!
            var sun = f.memory.sUnreclaim.map(Quantity.formatBytes) ?? "?"
            if let share = f.memory.sUnreclaimShare { sun += " (\(String(format1: share * 100))%)" }
            if r.flagged { sun = c.paint(sun + " !", .red) }
            table.rows.append([r.host.name, r.host.address, f.release ?? "?", r.boot?.driverName ?? "?", f.uptimeSeconds.map(Self.formatUptime) ?? "?",
                               f.memory.memTotal.map(Quantity.formatBytes) ?? "?", sun, f.oomKill.map(String.init) ?? "?"])
        }
        if !reachable.isEmpty { table.render().forEach(c.out) }
        let flagged = results.filter(\.flagged)
        if !flagged.isEmpty {
            c.out("")
            c.out(c.paint("\(flagged.count) host\(flagged.count == 1 ? "" : "s") over the SUnreclaim warning (\(threshold)):", .bold))
            for r in flagged {
                let f = r.facts!
                c.out("  \(r.host.name): SUnreclaim \(Quantity.formatBytes(f.memory.sUnreclaim ?? 0)) of \(Quantity.formatBytes(f.memory.memTotal ?? 0)) MemTotal — unreclaimable kernel memory; check for a kernel leak (kmemleak, slabtop)")
            }
        }
        let failed = results.filter { !$0.reachable }
        if !failed.isEmpty {
            c.out("")
            c.out(c.paint("\(failed.count) host\(failed.count == 1 ? "" : "s") not surveyed:", .bold))
            for r in failed {
                if let e = r.error {
                    c.out("  \(r.host.name)  [\(e.code.rawValue)] \(e.message)" + (e.hint.map { "\n      hint: \($0)" } ?? ""))
                } else {
                    c.out("  \(r.host.name)  \(r.problem ?? "unknown problem")")
                }
            }
        }
        c.out("")
        let kernels = summary.kernels.sorted { $0.value > $1.value || ($0.value == $1.value && $0.key < $1.key) }
            .map { "\($0.key) ×\($0.value)" }.joined(separator: ", ")
        c.out("\(results.count) hosts: \(summary.reachable) reachable, \(results.count - summary.reachable) unreachable, \(summary.flagged) flagged" + (kernels.isEmpty ? "" : "; kernels: \(kernels)"))
    }

    static func formatUptime(_ s: Double) -> String {
        let t = Int(s)
        if t < 120 { return "\(t)s" }
        if t < 7200 { return "\(t / 60)m" }
        if t < 172800 { return "\(t / 3600)h" }
        return "\(t / 86400)d"
    }
}

/// A thread-safe counter for progress callbacks.
final class Counter: @unchecked Sendable {
    private let lock = NSLock()
    private var n = 0
    func increment() -> Int { lock.lock(); defer { lock.unlock() }; n += 1; return n }
}
