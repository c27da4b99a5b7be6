import ArgumentParser
import Foundation
import Basics
import SSH
import RolloutConfig
import Engine

struct PlanCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "plan",
        abstract: "Check a rollout plan, preview it, apply it.",
        subcommands: [PlanValidate.self, PlanApply.self]
    )
}

struct PlanValidate: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "validate",
        abstract: "Check a plan, its inventory and customers file without touching any host.",
        discussion: """
        Reports every problem at once, each with file:line:col. Exit code 0 when the plan is valid, 2 otherwise.
        """
    )

    @Argument(help: ArgumentHelp("The plan (YAML).", valueName: "plan"))
    var plan: String

    @Option(name: .shortAndLong, help: ArgumentHelp("Use this inventory instead of the plan's.", valueName: "file"))
    var inventory: String?

    @OptionGroup var journalOption: JournalOption

    @Flag(help: "Accept a plan whose kernel release is known bad (`rollctl kernel list`).")
    var allowKnownBad = false

    func run() async throws {
        let loaded = try PlanLoader.loadChecked(path: plan, inventoryPath: inventory)
        let p = loaded.plan
        try KnownBadCheck.refuse(p, journal: journalOption, allowed: allowKnownBad, existingOnly: true)
        let layout = WavePlanner.plan(p, inventory: loaded.inventory, currentRelease: [:], unreachable: [:], customers: loaded.customers)
        let rolled = layout.waves.reduce(0) { $0 + $1.hosts.count }
        let sizes = layout.waves.map { "\($0.hosts.count)" }.joined(separator: ", ")
        var line = "OK \(plan): '\(p.name)' -> \(p.kernel.release); \(rolled) host\(rolled == 1 ? "" : "s") of \(loaded.inventory.path) in \(layout.waves.count) wave\(layout.waves.count == 1 ? "" : "s") (\(sizes))"
        if !layout.skipped.isEmpty { line += ", \(layout.skipped.count) excluded" }
        line += "; gate soak \(PlanFormat.duration(p.gate.soak))"
        if let c = loaded.customers { line += "; \(c.count) customers" }
        Console.shared.out(line)
    }
}

struct PlanApply: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "apply",
        abstract: "Roll the plan's kernel across the fleet; --dry-run previews it.",
        discussion: """
        --dry-run reads each selected host's current kernel over SSH (read-only; nothing is written to any host \
        or to the journal) and shows the waves and batches, the hosts skipped and why, the exact commands of \
        every step for one example host, the gate thresholds, the customer notices and an estimated duration. \
        --offline plans without contacting any host. Exit codes: 0 ok, 2 bad input (no host contacted).
        """
    )

    @Argument(help: ArgumentHelp("The plan (YAML).", valueName: "plan"))
    var plan: String

    @Flag(help: "Preview only: change nothing anywhere.")
    var dryRun = false

    @Flag(help: "JSON: with --dry-run one document; otherwise one JSON line per event.")
    var json = false

    @OptionGroup var journalOption: JournalOption
    @OptionGroup var log: LogOptions

    @Flag(help: "With --dry-run: do not contact any host (current kernels unknown).")
    var offline = false

    @Option(name: .shortAndLong, help: ArgumentHelp("Use this inventory instead of the plan's.", valueName: "file"))
    var inventory: String?

    @Option(help: ArgumentHelp("How many hosts to survey at once.", valueName: "n"))
    var parallel: Int = 64

    @Option(help: ArgumentHelp("OpenSSH client config to read for values the inventory leaves open.", valueName: "file"))
    var sshConfig: String?

    @Option(help: ArgumentHelp("Start later: the survey, the waves and the hosts' locks now, the first step at this moment — "
                               + "\"2026-12-02 02:00\" on the plan's schedule.time_zone (UTC without one), or RFC 3339 with an offset. "
                               + "Journaled: a resume waits for it too.", valueName: "time"))
    var at: String?

    @Flag(help: "Roll the plan's kernel even when it is known bad (`rollctl kernel list`).")
    var allowKnownBad = false

    @OptionGroup var metrics: MetricsOption
    @OptionGroup var lease: LeaseOption

    /// `--at` as a moment: bad input (exit 2) when it cannot be read, has passed, or is more than a year away.
    static func startAt(_ text: String?, plan: RolloutConfig.Plan, now: Date = Date()) throws -> Date? {
        guard let text else { return nil }
        let zone = plan.schedule?.timeZone ?? TimeZone(identifier: "UTC")!
        let zoneName = plan.schedule?.zoneName ?? "UTC"
        guard let at = RebootSchedule.parseMoment(text, in: zone) else {
            throw InputError(file: "--at", "'\(text)' is not a time rollctl can read (or does not exist in \(zoneName))",
                             hint: "write \"2026-12-02 02:00\" (on \(zoneName), the plan's schedule.time_zone) or 2026-12-02T02:00:00+03:00")
        }
        if at < now.addingTimeInterval(-60) { throw InputError(file: "--at", "\(TimeText.iso(at)) has passed (it is \(TimeText.iso(now)))") }
        if at > now.addingTimeInterval(366 * 86400) { throw InputError(file: "--at", "\(TimeText.iso(at)) is more than a year away") }
        return at
    }

    func validate() throws {
        guard (1...4096).contains(parallel) else { throw ValidationError("--parallel must be between 1 and 4096, got \(parallel)") }
        if !dryRun && offline { throw ValidationError("--offline goes with --dry-run") }
    }

    func run() async throws {
        guard dryRun else {
            // The real thing: journal, waves, gates, halt and rollback (RolloutCommands.swift).
            return try await ApplyRun.run(planPath: plan, inventoryPath: inventory, journal: journalOption, parallel: parallel, json: json, log: log,
                                          at: at, allowKnownBad: allowKnownBad, metrics: metrics, leaseTTL: lease.ttl)
        }
        let cfg = SSHConfig.load(path: sshConfig)
        let loaded = try PlanLoader.loadChecked(path: plan, inventoryPath: inventory, sshConfig: cfg)
        let p = loaded.plan
        try KnownBadCheck.refuse(p, journal: journalOption, allowed: allowKnownBad, existingOnly: true)
        let template = try Self.maintenanceTemplate(p)
        var facts = DryRunFacts(offline: offline, customers: loaded.customers, maintenanceTemplate: template)
        if let start = try Self.startAt(at, plan: p) { facts.now = start; facts.scheduledStart = start }
        facts.packages = try await ShippedPackage.digest(p.kernel.packages)
        for h in PlanLoader.selectedHosts(p, inventory: loaded.inventory) {
            if let j = loaded.inventory.jump(for: h, sshConfig: cfg) { facts.bastions[h.name] = "\(j.endpoint.name) (\(j.endpoint.address):\(j.endpoint.port))" }
        }
        if !offline {
            let excluded = Set(p.selection.exclude)
            let targets = PlanLoader.selectedHosts(p, inventory: loaded.inventory).filter { !excluded.contains($0.name) }
            if loaded.inventory.defaults.hostKeyPolicy == .off {
                Console.shared.warn("host_key_policy is 'off' in \(loaded.inventory.path): host keys are NOT verified")
            }
            let counter = Counter()
            let total = targets.count
            let survey = await PlanSurvey(inventory: loaded.inventory, parallelism: parallel, sshConfig: cfg).run(hosts: targets) {
                let n = counter.increment()
                Console.shared.progress("reading current kernels: \(n)/\(total) hosts")
            }
            Console.shared.clearProgress()
            facts.releases = survey.releases
            facts.hostFacts = survey.hostFacts
            facts.bootFree = survey.bootFree
            facts.unreachable = survey.unreachable
            facts.bootloaders = survey.bootloaders
            facts.grubSafety = survey.grubSafety
            // The example host's menu (with its own driver), to show the exact GRUB entry paths.
            let layout = WavePlanner.plan(p, inventory: loaded.inventory, currentRelease: facts.releases, unreachable: facts.unreachable,
                                          customers: loaded.customers)
            // With `bootloader: auto`, also the first host of each other driver (the preview shows its steps too).
            var firsts: [(InventoryHost, any BootloaderDriver)] = []
            for h in layout.waves.flatMap(\.hosts) {
                let driver = p.bootloader != .auto ? BootloaderDrivers.driver(for: p.bootloader)
                    : survey.bootloaders[h.name]?.driverName.flatMap(BootloaderDrivers.builtIn(named:))
                guard let driver, !firsts.contains(where: { $0.1.name == driver.name }) else { continue }
                firsts.append((h, driver))
                if p.bootloader != .auto { break }
            }
            for (i, (host, driver)) in firsts.enumerated() {
                guard let listing = driver.entryListing else { continue }
                let (endpoint, options) = loaded.inventory.sshTarget(for: host, sshConfig: cfg)
                let conn = SSHHost(endpoint: endpoint, options: options)
                if let r = try? await conn.exec(listing, timeout: .seconds(20)), r.exitStatus == 0 {
                    if i == 0 && host.name == layout.waves.first?.hosts.first?.name { facts.exampleGrubConfig = r.stdoutText }
                    facts.entryListings[host.name] = r.stdoutText
                }
                await conn.close()
            }
        }
        let layout = WavePlanner.plan(p, inventory: loaded.inventory, currentRelease: facts.releases, unreachable: facts.unreachable,
                                      customers: loaded.customers)
        let preview = DryRun.preview(plan: p, inventory: loaded.inventory, layout: layout, facts: facts)
        if json {
            Console.shared.out(try PlanPreviewRendering.json(preview))
        } else {
            PlanPreviewRendering.text(preview).forEach(Console.shared.out)
        }
        // What `plan apply` would refuse (exit 2): hosts whose bootloader `auto` cannot tell.
        if !offline {
            let refused = BootloaderChoice.resolve(plan: p, hosts: layout.waves.flatMap(\.hosts), detected: facts.bootloaders).errors
            if !refused.isEmpty { throw InputErrors(refused) }
        }
    }

    /// The plan's maintenance templates, when it names a folder (validated already).
    static func maintenanceTemplate(_ plan: RolloutConfig.Plan) throws -> (subject: String, body: String)? {
        guard let dir = plan.notify?.templateDir else { return nil }
        guard let s = FileManager.default.contents(atPath: dir + "/maintenance.subject"),
              let b = FileManager.default.contents(atPath: dir + "/maintenance.body") else { return nil }
        return (String(decoding: s, as: UTF8.self), String(decoding: b, as: UTF8.self))
    }
}

/// Text and JSON forms of a dry-run preview.
enum PlanPreviewRendering {
    static func json(_ p: DryRunPreview) throws -> String {
        let enc = JSONEncoder()
        enc.outputFormatting = [.sortedKeys, .prettyPrinted, .withoutEscapingSlashes]
        enc.keyEncodingStrategy = .convertToSnakeCase
        return String(decoding: try enc.encode(p), as: UTF8.self)
    }

    static func text(_ p: DryRunPreview, maxBatchesShown: Int = 40) -> [String] {
        let c = Console.shared
        var out: [String] = []
        out.append(c.paint("Plan \(p.plan.name)", .bold) + " (\(p.plan.path)): roll \(p.plan.targetRelease), bootloader \(p.plan.bootloader)")
        if let perHost = p.plan.bootloaderPerHost { out.append("  bootloader auto: " + perHost) }
        if let d = p.plan.description { out.append("  " + d.split(whereSeparator: \.isNewline).joined(separator: " ")) }
        var survey = "Inventory \(p.inventory): \(p.inventoryHosts) hosts, \(p.selectedHosts) selected, \(p.hostsToRoll) to roll"
        if p.survey.offline {
            survey += "; offline (no host contacted)"
        } else {
            let kernels = p.survey.releases.sorted { ($1.value, $0.key) < ($0.value, $1.key) }.map { "\($0.key) ×\($0.value)" }.joined(separator: ", ")
            survey += "; read \(p.survey.reached) host\(p.survey.reached == 1 ? "" : "s")" + (kernels.isEmpty ? "" : " (\(kernels))")
            if p.survey.unreachable > 0 { survey += ", \(p.survey.unreachable) unreachable" }
        }
        out.append(survey)
        out.append("")
        out.append(c.paint("Waves", .bold))
        for w in p.waves {
            var head = "  \(w.name): \(w.hostCount) host\(w.hostCount == 1 ? "" : "s") in \(w.batches.count) batch\(w.batches.count == 1 ? "" : "es")"
            if !w.failureDomains.isEmpty { head += ", domains \(summarize(w.failureDomains))" }
            if let n = w.customers { head += ", \(n) customer\(n == 1 ? "" : "s")" }
            head += " (\(Int((w.doneShare * 100).rounded()))% done after)"
            out.append(head)
            for (i, b) in w.batches.prefix(maxBatchesShown).enumerated() {
                let hosts = b.map { h -> String in
                    var s = h.name
                    if let via = h.via { s += " via bastion \(via)" }
                    if !h.labels.isEmpty { s += " {" + h.labels.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: ", ") + "}" }
                    if let r = h.currentRelease { s += " " + r }
                    if let b = h.sunreclaimBytes {
                        s += ", SUnreclaim \(Quantity.formatBytes(b))" + (h.sunreclaimShare.map { " (\(String(format1: $0 * 100))%)" } ?? "")
                    }
                    if let o = h.oomKills, o > 0 { s += ", \(o) OOM kill\(o == 1 ? "" : "s")" }
                    return s
                }
                out.append("    batch \(i + 1): " + hosts.joined(separator: "; "))
            }
            if w.batches.count > maxBatchesShown {
                out.append("    … \(w.batches.count - maxBatchesShown) more batches (--json lists all)")
            }
            if w.pauseAfter { out.append("    then PAUSE for a person: `rollctl rollout promote ID` continues (waves.pause_after)") }
        }
        if !p.skipped.isEmpty {
            out.append("")
            out.append(c.paint("Skipped (\(p.skipped.count))", .bold))
            for s in p.skipped { out.append("  \(s.host): \(s.reason)") }
        }
        out.append("")
        let exampleDriver = p.plan.bootloaderPerHost == nil ? nil : p.exampleHost.flatMap { name in p.waves.first?.batches.first?.first { $0.name == name }?.bootloader }
        out.append(c.paint("Steps" + (p.exampleHost.map { " for \($0) (example\(exampleDriver.map { ", bootloader \($0)" } ?? ""))" } ?? ""), .bold))
        for s in p.steps {
            out.append("  \(s.step.padding(toLength: 9, withPad: " ", startingAt: 0))\(s.description)")
            for cmd in s.commands { out.append("           $ " + cmd) }
        }
        for other in p.otherDrivers {
            out.append("")
            out.append(c.paint("Steps for \(other.exampleHost) (example, bootloader \(other.bootloader)) where they differ", .bold))
            for s in other.steps {
                out.append("  \(s.step.padding(toLength: 9, withPad: " ", startingAt: 0))\(s.description)")
                for cmd in s.commands { out.append("           $ " + cmd) }
            }
        }
        out.append("")
        let g = p.gate
        out.append(c.paint("Gate", .bold) + " soak \(dur(g.soakSeconds)), every \(dur(g.intervalSeconds)) (\(g.samples) samples)")
        var limits: [String] = []
        if let b = g.sunreclaimMaxBytes { limits.append("SUnreclaim ≤ \(Quantity.formatBytes(b))") }
        if let s = g.sunreclaimMaxShare { limits.append("SUnreclaim ≤ \(String(format1: s * 100))% of MemTotal") }
        if let b = g.sunreclaimGrowthMaxBytesPerHour { limits.append("growth ≤ \(Quantity.formatBytes(b))/h") }
        limits.append("new OOM kills ≤ \(g.maxNewOOMKills)")
        if let url = g.testSiteURL, let m = g.testSiteMinSuccess {
            limits.append("test site \(url) ≥ \(String(format1: m * 100))% ok of \(g.testSiteRequests ?? 0) requests")
        }
        out.append("  " + limits.joined(separator: "; "))
        for check in g.checks { out.append("  check " + check) }
        if let n = p.notify {
            out.append("")
            out.append(c.paint("Notices", .bold) + " via \(n.channel), lead time \(dur(n.leadTimeSeconds)), undeliverable: \(n.onFailure)")
            out.append("  customers per wave: " + n.customersPerWave.enumerated().map { "\($0.offset == 0 ? "canary" : "wave \($0.offset + 1)") \($0.element)" }.joined(separator: ", ")
                       + "; \(n.totalCustomers) in all (\(n.customersFile))")
            if let e = n.example {
                out.append("  example to \(e.to):")
                out.append("    Subject: \(e.subject)")
                for l in e.body.split(separator: "\n", omittingEmptySubsequences: false) { out.append("    | " + l) }
            }
        }
        out.append("")
        out.append(c.paint("On failure", .bold) + " halt; roll back \(p.onFailure.rollback == "none" ? "nothing" : p.onFailure.rollback == "all" ? "every host changed so far" : "the failed wave"); "
                   + "tolerate " + Self.tolerated(p.onFailure))
        if let s = p.schedule {
            out.append(c.paint("Schedule", .bold) + " " + s.summary)
            for w in s.waves {
                out.append("  \(w.wave == 1 ? "canary" : "wave \(w.wave)"): \(w.batches) batch\(w.batches == 1 ? "" : "es") from \(w.firstBatchStartLocal), the last ending by \(w.lastBatchEndLocal)")
            }
            out.append("  done by \(s.doneByLocal) at the latest (every batch taking its whole allowance, from the start)")
        }
        if let start = p.scheduledStart { out.append(c.paint("Starts", .bold) + " at \(start) (plan apply --at); the hosts are locked from now") }
        let e = p.estimate
        out.append(c.paint("Estimated duration", .bold) + " about \(dur(e.typicalSeconds)) with \(dur(e.typicalBootSeconds)) boots (at least \(dur(e.minimumSeconds)), at most \(dur(e.maximumSeconds)) if every boot takes the whole timeout)")
        for n in p.notes { out.append(c.paint("note:", .yellow) + " " + n) }
        out.append("Dry run: nothing was changed on any host.")
        return out
    }

    /// "0 failed hosts per wave, 2 in all" or, for shares, "10% per wave (0, 1, 5), 2% in all (2), 5% at once (6)".
    static func tolerated(_ f: DryRunPreview.Failure) -> String {
        func hosts(_ n: Int) -> String { "\(n) failed host\(n == 1 ? "" : "s")" }
        let perWave = f.maxFailedHostsPerWave.hasSuffix("%")
            ? "\(f.maxFailedHostsPerWave) of each wave's hosts (\(f.toleratedPerWave.map(String.init).joined(separator: ", ")) failed hosts)"
            : "\(hosts(f.toleratedPerWave.first ?? 0)) per wave"
        let total = f.maxFailedHosts.hasSuffix("%") ? "\(f.maxFailedHosts) in all (\(f.toleratedTotal))" : "\(f.toleratedTotal) in all"
        let unhealthy = f.maxUnhealthyHosts.map { "; at most \($0)\($0.hasSuffix("%") ? " (\(f.toleratedUnhealthy ?? 0))" : "") failed or rolling back at once" } ?? ""
        return "\(perWave), \(total)\(unhealthy); one more halts"
    }

    static func dur(_ seconds: Double) -> String { PlanFormat.duration(.seconds(Int64(seconds.rounded()))) }

    static func summarize(_ values: [String]) -> String {
        values.count <= 8 ? values.joined(separator: ", ") : values.prefix(8).joined(separator: ", ") + " +\(values.count - 8)"
    }
}
