import ArgumentParser
import Foundation
import Basics
import SSH
import HealthGate
import RolloutConfig
import Engine

struct GateGroup: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "gate",
        abstract: "Run the health gate on live hosts, without a rollout.",
        subcommands: [GateCheck.self]
    )
}

struct GateCheck: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "check",
        abstract: "Is this kernel leaking? Sample hosts for a soak and judge them like a rollout's gate.",
        discussion: """
        Samples /proc/meminfo, /proc/vmstat and the boot id over SSH and the test site over HTTP from \
        here, every --interval for --soak, then judges: SUnreclaim level and share of MemTotal, its growth \
        (Theil–Sen slope, failing only when significant), OOM kills during the check, test-site success by \
        failure class (refused, reset, timeout, 5xx). Read-only and cheap. With --plan, the plan's gate \
        settings are used. Exit codes: 0 every host passed, 3 some host failed or was inconclusive, \
        1 unreachable hosts only, 2 bad input.
        """
    )

    @OptionGroup var connection: ConnectionOptions

    @Option(help: ArgumentHelp("Use this plan's gate settings.", valueName: "plan"))
    var plan: String?

    @Option(help: ArgumentHelp("How long to sample (default 60s, or the plan's soak).", valueName: "duration"))
    var soak: String?

    @Option(help: ArgumentHelp("Time between samples (default 5s, or the plan's interval).", valueName: "duration"))
    var interval: String?

    @Option(help: ArgumentHelp("SUnreclaim growth limit per hour (default 32MiB).", valueName: "size"))
    var growthMax: String?

    @Option(help: ArgumentHelp("Test-site URL template ({address}, {name}); default http://{address}/.", valueName: "url"))
    var site: String?

    @Flag(help: "Do not probe a test site.")
    var noSite = false

    @Flag(help: "One JSON object per host, then a summary object.")
    var json = false

    func run() async throws {
        var settings: GateSettings
        if let plan {
            settings = try PlanLoader.load(path: plan).gate
        } else {
            settings = GateSettings(soak: .seconds(60), interval: .seconds(5), probeTimeout: .seconds(5))
            settings.sUnreclaimGrowthMaxPerHour = 32 << 20
            settings.oomKillsSince = .gateStart
            settings.testSite = TestSiteSettings(minRequests: 10)
        }
        if let soak { settings.soak = try Self.duration(soak, "--soak") }
        if let interval {
            settings.interval = try Self.duration(interval, "--interval")
            settings.probeTimeout = min(settings.probeTimeout, settings.interval)
        }
        if let growthMax {
            guard let b = Quantity.bytes(growthMax.replacingOccurrences(of: "/h", with: "")) else {
                throw InputError(file: "--growth-max", "'\(growthMax)' is not a size like 32MiB")
            }
            settings.sUnreclaimGrowthMaxPerHour = b
        }
        if let site { settings.testSite = TestSiteSettings(urlTemplate: site, minRequests: settings.testSite?.minRequests ?? 10) }
        if noSite { settings.testSite = nil }
        if var t = settings.testSite, t.timeout * t.requestsPerSample > settings.interval {
            // Keep a sample's requests inside its interval.
            t.timeout = settings.interval / (t.requestsPerSample + 1)
            settings.testSite = t
        }
        if var t = settings.testSite, t.minRequests > settings.plannedRequests {
            t.minRequests = max(1, settings.plannedRequests)
            settings.testSite = t
        }
        let runner: GateRunner<ContinuousClock>
        do { runner = try GateRunner(settings: settings, stopWaveOnFailure: false) } catch {
            throw InputError(file: plan ?? "command line", "\(error)")
        }

        let (inv, hosts, cfg) = try connection.load()
        let console = Console.shared
        // Connect first: unreachable hosts are reported, not sampled.
        let connected = await concurrentMap(hosts, limit: connection.parallel) { _, h -> (InventoryHost, SSHHost, HostFacts?, SSHError?) in
            let (endpoint, options) = inv.sshTarget(for: h, sshConfig: cfg)
            let conn = SSHHost(endpoint: endpoint, options: options)
            do {
                let facts = try await HostFacts.read(from: conn, timeout: .seconds(10))
                return (h, conn, facts, nil)
            } catch let e as SSHError {
                return (h, conn, nil, e)
            } catch {
                return (h, conn, nil, SSHError(.channelFailure, host: h.name, "\(error)"))
            }
        }
        let reachable = connected.filter { $0.2 != nil }
        for (h, _, _, e) in connected where e != nil {
            if json {
                console.out(JSONLine.encode(["type": "host", "name": h.name, "verdict": "unreachable", "error": ["code": e!.code.rawValue, "message": e!.message]]))
            } else {
                console.error("\(h.name): [\(e!.code.rawValue)] \(e!.message)")
            }
        }
        if !json {
            console.out("sampling \(reachable.count) host\(reachable.count == 1 ? "" : "s") for \(PlanFormat.duration(settings.soak)), every \(PlanFormat.duration(settings.interval)) ...")
        }
        let gateHosts = reachable.map { h, conn, facts, _ in
            GateHost(reader: conn, address: h.address, baseline: facts.flatMap(GrowthBaseline.averageSinceBoot))
        }
        let total = settings.plannedSamples * gateHosts.count
        let counter = Counter()
        let report = await runner.run(gateHosts) { event in
            if case .sampleTaken = event { console.progress("samples: \(counter.increment())/\(total)") }
        }
        console.clearProgress()
        for (_, conn, _, _) in connected { await conn.close() }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        for r in report.hosts {
            if json {
                let data = (try? encoder.encode(r)) ?? Data("{}".utf8)
                let obj = (try? JSONSerialization.jsonObject(with: data)) ?? [:]
                console.out(JSONLine.encode(["type": "host", "name": r.host, "verdict": r.verdict.rawValue, "report": obj]))
            } else {
                console.out("")
                r.render().split(separator: "\n").forEach { console.out(String($0)) }
            }
        }
        let unreachable = connected.count - reachable.count
        if json {
            console.out(JSONLine.encode(["type": "summary", "verdict": report.verdict.rawValue, "passed": report.passed.count,
                                         "failed": report.failed.count, "inconclusive": report.inconclusive.count, "unreachable": unreachable]))
        } else {
            console.out("")
            console.out("gate \(report.verdict.rawValue): \(report.passed.count) passed, \(report.failed.count) failed, \(report.inconclusive.count) inconclusive, \(unreachable) unreachable")
        }
        if !report.hosts.isEmpty && !report.verdict.allowsProgress { throw ExitCode(ExitStatus.halted) }
        if unreachable > 0 { throw ExitCode(ExitStatus.hostFailure) }
    }

    static func duration(_ text: String, _ option: String) throws -> Duration {
        guard let d = DurationText.parse(text), d > .zero else {
            throw InputError(file: option, "'\(text)' is not a duration like 60s or 5m")
        }
        return d
    }
}
