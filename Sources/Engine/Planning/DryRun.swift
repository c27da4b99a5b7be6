import Foundation
import Basics
import NetIO
import HealthGate
import WebAPI
import RolloutConfig
import Notices

/// What the dry-run learned from the fleet (or, offline, did not).
public struct DryRunFacts: Sendable {
    /// True when no host was contacted: current releases are unknown.
    public var offline: Bool
    /// Host name -> release read from the host.
    public var releases: [String: String]
    /// Host name -> why it could not be read.
    public var unreachable: [String: String]
    /// Host name -> everything the survey read (SUnreclaim, uptime, OOM kills), when online.
    public var hostFacts: [String: HostFacts] = [:]
    /// Host name -> free bytes on /boot, when online.
    public var bootFree: [String: UInt64] = [:]
    /// The example host's `/boot/grub/grub.cfg` text, when it was read.
    public var exampleGrubConfig: String?
    public var customers: Customers?
    /// The maintenance notice templates (subject, body); nil: rollctl's default text.
    public var maintenanceTemplate: (subject: String, body: String)?
    /// When the rollout would start: windows and notices are planned from here.
    public var now = Date()
    /// `plan apply --at`, when given.
    public var scheduledStart: Date?
    /// Host name -> the bastion it is reached through (`jump-1 (10.0.0.1:22)`), for hosts that have one.
    public var bastions: [String: String] = [:]
    /// `kernel.packages` with their sizes and SHA-256 (`ShippedPackage.digest`).
    public var packages: [ShippedPackage] = []
    /// Host name -> what its files tell of its bootloader (`bootloader: auto`), when online.
    public var bootloaders: [String: BootloaderDetection] = [:]
    /// Host name -> what makes GRUB's boot-once safe on it (`GrubSafety`), when online.
    public var grubSafety: [String: GrubSafety] = [:]
    /// `bootloader: auto`: the boot entry listing read from the first host of each other driver, by host name.
    public var entryListings: [String: String] = [:]

    public init(offline: Bool, releases: [String: String] = [:], unreachable: [String: String] = [:],
                exampleGrubConfig: String? = nil, customers: Customers? = nil,
                maintenanceTemplate: (subject: String, body: String)? = nil) {
        self.offline = offline
        self.releases = releases
        self.unreachable = unreachable
        self.exampleGrubConfig = exampleGrubConfig
        self.customers = customers
        self.maintenanceTemplate = maintenanceTemplate
    }
}

/// Everything `plan apply --dry-run` shows, as one stable document (`--json`
/// encodes it with sorted keys). Built by `DryRun.preview`, a pure function.
public struct DryRunPreview: Sendable, Codable, Equatable {
    public struct PlanInfo: Sendable, Codable, Equatable {
        public var name: String
        public var description: String?
        public var path: String
        public var targetRelease: String
        /// `auto`, `grub`, `grub-bls`, `systemd-boot` or `custom`.
        public var bootloader: String
        /// `bootloader: auto`: the drivers chosen, grouped (`grub on 3 hosts (…), grub-bls on 2 (…)`);
        /// offline, that the survey decides. Nil for a plan that names its bootloader.
        public var bootloaderPerHost: String?
    }
    public struct HostRef: Sendable, Codable, Equatable {
        public var name: String
        public var address: String
        public var labels: [String: String]
        /// Release read from the host; nil offline.
        public var currentRelease: String?
        public var customers: Int?
        /// What the survey read, online: unreclaimable slab now, its share of MemTotal, uptime, OOM kills since boot.
        public var sunreclaimBytes: UInt64?
        public var sunreclaimShare: Double?
        public var uptimeSeconds: Double?
        public var oomKills: UInt64?
        public var bootFreeBytes: UInt64?
        /// The bastion the host is reached through (`jump-1 (10.0.0.1:22)`); nil: directly.
        public var via: String?
        /// Its bootloader driver (`grub`, `grub-bls`, …); nil when `bootloader: auto` cannot tell it (or offline).
        public var bootloader: String?
        /// What its driver's pre-check would find (grub: `GrubSafety`), online; an error fails its check step.
        public var bootloaderFindings: [BootloaderFinding]?
    }
    public struct Wave: Sendable, Codable, Equatable {
        public var number: Int
        /// `canary` for wave 1, else `wave N`.
        public var name: String
        public var hostCount: Int
        /// Hosts rebooted at once, batch after batch.
        public var batches: [[HostRef]]
        /// Distinct failure-domain values in the wave.
        public var failureDomains: [String]
        /// Distinct customers hosted on the wave's hosts (nil without a customers file).
        public var customers: Int?
        /// Cumulative share of the hosts to roll done after this wave, 0...1.
        public var doneShare: Double
        /// After its gate the rollout waits for a person (`waves.pause_after`).
        public var pauseAfter: Bool
    }
    public struct Skip: Sendable, Codable, Equatable {
        public var host: String
        public var reason: String
    }
    public struct Step: Sendable, Codable, Equatable {
        /// `check`, `notify`, `install`, `stage`, `reboot`, `verify`, `gate`, `commit`, `rollback`.
        public var step: String
        public var description: String
        /// Commands run on the host (empty for steps rollctl does itself).
        public var commands: [String]
    }
    /// `bootloader: auto` over hosts of several drivers: another driver's steps (install, stage,
    /// commit, rollback), for the first host that has it.
    public struct DriverSteps: Sendable, Codable, Equatable {
        public var bootloader: String
        public var exampleHost: String
        public var steps: [Step]
    }
    public struct Gate: Sendable, Codable, Equatable {
        public var soakSeconds: Double
        public var intervalSeconds: Double
        public var samples: Int
        public var sunreclaimMaxBytes: UInt64?
        public var sunreclaimMaxShare: Double?
        public var sunreclaimGrowthMaxBytesPerHour: UInt64?
        public var maxNewOOMKills: UInt64
        public var testSiteURL: String?
        public var testSiteMinSuccess: Double?
        public var testSiteRequests: Int?
        public var checks: [String]
    }
    public struct Notice: Sendable, Codable, Equatable {
        public var to: String
        public var subject: String
        public var body: String
    }
    public struct Notify: Sendable, Codable, Equatable {
        public var channel: String
        public var customersFile: String
        public var leadTimeSeconds: Double
        public var onFailure: String
        public var customersPerWave: [Int]
        public var totalCustomers: Int
        public var example: Notice?
    }
    public struct Failure: Sendable, Codable, Equatable {
        public var rollback: String
        /// The budgets as the plan gives them: `2` or `2%`.
        public var maxFailedHostsPerWave: String
        public var maxFailedHosts: String
        public var maxUnhealthyHosts: String?
        /// What they tolerate for this layout: failed hosts per wave (in wave order), in all, at once.
        public var toleratedPerWave: [Int]
        public var toleratedTotal: Int
        public var toleratedUnhealthy: Int?
    }
    public struct Estimate: Sendable, Codable, Equatable {
        /// Boots take no time: notice lead times, soaks and settles only.
        public var minimumSeconds: Double
        /// Boots take `typicalBootSeconds` each.
        public var typicalSeconds: Double
        /// Every boot takes the whole reboot timeout.
        public var maximumSeconds: Double
        public var typicalBootSeconds: Double
        public var perWaveTypicalSeconds: [Double]
    }
    /// When each wave's batches would run under the plan's schedule, each batch taking its whole
    /// allowance (the latest it may end), from the moment of the dry-run.
    public struct Schedule: Sendable, Codable, Equatable {
        public struct WaveTimes: Sendable, Codable, Equatable {
            public var wave: Int
            public var batches: Int
            public var firstBatchStart: String
            public var lastBatchEnd: String
            public var firstBatchStartLocal: String
            public var lastBatchEndLocal: String
        }
        public var summary: String
        public var timeZone: String
        public var waves: [WaveTimes]
        /// The last wave's soak ends by then.
        public var doneBy: String
        public var doneByLocal: String
    }
    public struct Survey: Sendable, Codable, Equatable {
        public var offline: Bool
        public var reached: Int
        public var unreachable: Int
        /// Release -> hosts running it, among the selected hosts read.
        public var releases: [String: Int]
    }

    public var plan: PlanInfo
    public var inventory: String
    public var inventoryHosts: Int
    public var selectedHosts: Int
    public var hostsToRoll: Int
    public var survey: Survey
    public var waves: [Wave]
    public var skipped: [Skip]
    public var exampleHost: String?
    public var steps: [Step]
    /// The other drivers' steps (`bootloader: auto`); empty when every host has the example's.
    public var otherDrivers: [DriverSteps]
    public var gate: Gate
    public var notify: Notify?
    public var onFailure: Failure
    public var estimate: Estimate
    public var schedule: Schedule?
    /// `plan apply --at` (RFC 3339), when given.
    public var scheduledStart: String?
    /// Things the admin should know before applying (hosts with unknown release, …).
    public var notes: [String]
}

/// Builds the dry-run preview. Pure: no host, file or clock is touched.
public enum DryRun {
    /// Boot time assumed for the typical estimate, capped by the reboot timeout.
    public static let typicalBoot: Duration = .seconds(90)

    public static func preview(plan: Plan, inventory: Inventory, layout: RolloutLayout, facts: DryRunFacts) -> DryRunPreview {
        let selected = PlanLoader.selectedHosts(plan, inventory: inventory)
        let customers = facts.customers
        // Each host's driver: the plan's, or (auto) what its files told the survey; offline, unknown.
        let auto = plan.bootloader == .auto
        var choice: (drivers: [String: String], errors: [InputError]) = ([:], [])
        if !(auto && facts.offline) { choice = BootloaderChoice.resolve(plan: plan, hosts: layout.waves.flatMap(\.hosts), detected: facts.bootloaders) }
        // A grub or grub-bls host's pre-check findings, from what the survey read (nil: another driver, or not read).
        func grubFindings(_ host: String) -> [BootloaderFinding]? {
            let name = auto ? choice.drivers[host] : BootloaderDrivers.driver(for: plan.bootloader).name
            guard name == GrubDriver().name || name == GrubBLSDriver().name, let g = facts.grubSafety[host] else { return nil }
            return g.findings
        }
        func ref(_ h: InventoryHost) -> DryRunPreview.HostRef {
            let f = facts.hostFacts[h.name]
            return .init(name: h.name, address: h.address, labels: h.labels, currentRelease: facts.releases[h.name],
                         customers: customers.map { $0.customers(onHost: h.name).count },
                         sunreclaimBytes: f?.memory.sUnreclaim, sunreclaimShare: f?.memory.sUnreclaimShare,
                         uptimeSeconds: f?.uptimeSeconds, oomKills: f?.oomKill, bootFreeBytes: facts.bootFree[h.name],
                         via: facts.bastions[h.name], bootloader: choice.drivers[h.name], bootloaderFindings: grubFindings(h.name))
        }
        let total = layout.waves.reduce(0) { $0 + $1.hosts.count }
        var done = 0
        let waves = layout.waves.map { w -> DryRunPreview.Wave in
            let hosts = w.hosts
            done += hosts.count
            let domains = plan.waves.failureDomain.map { d in Set(hosts.compactMap { $0.labels[d] }).sorted() } ?? []
            return .init(number: w.number, name: w.number == 1 ? "canary" : "wave \(w.number)", hostCount: hosts.count,
                         batches: w.batches.map { $0.map(ref) }, failureDomains: domains,
                         customers: customers.map { $0.customers(onHosts: hosts.map(\.name)).count },
                         doneShare: total == 0 ? 1 : Double(done) / Double(total),
                         pauseAfter: plan.waves.pauseAfter.contains(w.number) && w.number < layout.waves.count)
        }
        let example = layout.waves.first?.hosts.first
        let previous = example.flatMap { facts.releases[$0.name] }
        let exampleDriver = example.flatMap { choice.drivers[$0.name] }.flatMap(BootloaderDrivers.builtIn(named:))
            ?? BootloaderDrivers.driver(for: plan.bootloader)
        let steps = self.steps(plan: plan, example: example, previousRelease: previous, grubConfig: facts.exampleGrubConfig, packages: facts.packages,
                               customers: example.flatMap { h in customers.map { $0.customers(onHost: h.name).count } }, bootloader: exampleDriver)
        // The other drivers' own steps, each for its first host.
        var otherDrivers: [DryRunPreview.DriverSteps] = []
        var shown: Set<String> = [exampleDriver.name]
        for h in auto ? layout.waves.flatMap(\.hosts) : [] {
            guard let name = choice.drivers[h.name], !shown.contains(name), let driver = BootloaderDrivers.builtIn(named: name) else { continue }
            shown.insert(name)
            let theirs = self.steps(plan: plan, example: h, previousRelease: facts.releases[h.name], grubConfig: facts.entryListings[h.name],
                                    packages: facts.packages, customers: nil, bootloader: driver)
            otherDrivers.append(.init(bootloader: name, exampleHost: h.name, steps: theirs.filter { ["install", "stage", "commit", "rollback"].contains($0.step) }))
        }
        let g = plan.gate
        let siteURL = g.testSite.flatMap { s in example.flatMap { try? HTTPURL.expand(template: s.urlTemplate, address: $0.address, name: $0.name).description } ?? s.urlTemplate }
        let gate = DryRunPreview.Gate(
            soakSeconds: g.soak.seconds, intervalSeconds: g.interval.seconds, samples: g.plannedSamples,
            sunreclaimMaxBytes: g.sUnreclaimMax, sunreclaimMaxShare: g.sUnreclaimMaxShare,
            sunreclaimGrowthMaxBytesPerHour: g.sUnreclaimGrowthMaxPerHour, maxNewOOMKills: g.maxNewOOMKills,
            testSiteURL: siteURL, testSiteMinSuccess: g.testSite?.minSuccessRatio, testSiteRequests: g.testSite.map { _ in g.plannedRequests },
            checks: g.customChecks.map { "\($0.name): \($0.command)" })
        let estimate = self.estimate(plan: plan, layout: layout)
        var notify: DryRunPreview.Notify?
        if let n = plan.notify {
            let channel: String
            switch n.channel {
            case let .smtp(host, port, from, starttls, _, _, _): channel = "smtp \(host):\(port) from \(from)\(starttls ? " (STARTTLS)" : "")"
            case let .webhook(url): channel = "webhook \(url)"
            }
            var exampleNotice: DryRunPreview.Notice?
            if let c = customers, let first = layout.waves.first {
                let hostNames = first.hosts.map(\.name)
                if let customer = c.customers(onHosts: hostNames).first {
                    let theirs = first.hosts.filter { h in c.customers(onHost: h.name).contains(customer) }
                    // The canary wave's window, by the rule the notice itself uses (MaintenanceWindow):
                    // reboots start after the lead time; the customer's last batch, the soak and a
                    // possible rollback reboot bound the end.
                    let last = first.batches.lastIndex { b in b.contains { h in theirs.contains { $0.name == h.name } } } ?? 0
                    let window = MaintenanceWindow.forCustomer(rebootsFrom: facts.now.addingTimeInterval(n.leadTime.seconds), lastBatch: last, plan: plan)
                    exampleNotice = renderNotice(plan: plan, customer: customer, hosts: theirs, previous: previous,
                                                 windowStart: window.humanStart, windowEnd: window.humanEnd,
                                                 template: facts.maintenanceTemplate)
                }
            }
            notify = .init(channel: channel, customersFile: n.customersPath, leadTimeSeconds: n.leadTime.seconds,
                           onFailure: n.blockOnFailure ? "block" : "skip", customersPerWave: waves.map { $0.customers ?? 0 },
                           totalCustomers: customers.map { $0.customers(onHosts: layout.waves.flatMap { $0.hosts.map(\.name) }).count } ?? 0,
                           example: exampleNotice)
        }
        var releases: [String: Int] = [:]
        for h in selected { if let r = facts.releases[h.name] { releases[r, default: 0] += 1 } }
        var notes: [String] = []
        if facts.offline {
            notes.append("offline: current releases unknown; hosts already on \(plan.kernel.release) would be skipped at apply time")
        }
        let unknown = layout.waves.flatMap(\.hosts).filter { facts.releases[$0.name] == nil }
        if !facts.offline && !unknown.isEmpty {
            notes.append("\(unknown.count) host\(unknown.count == 1 ? "" : "s") in the waves did not report a release")
        }
        let short = layout.waves.flatMap(\.hosts).filter { (facts.bootFree[$0.name] ?? .max) < plan.kernel.minBootFreeBytes }
        if !short.isEmpty {
            let list = short.prefix(10).map { "\($0.name) (\(Quantity.formatBytes(facts.bootFree[$0.name]!)))" }.joined(separator: ", ")
                + (short.count > 10 ? " and \(short.count - 10) more" : "")
            notes.append("\(short.count) host\(short.count == 1 ? " has" : "s have") less than kernel.min_boot_free (\(Quantity.formatBytes(plan.kernel.minBootFreeBytes))) free on /boot and will fail the check step: \(list)")
        }
        for h in layout.waves.flatMap(\.hosts) {
            for f in grubFindings(h.name) ?? [] {
                notes.append("\(h.name): " + (f.severity == .error ? "its check step will fail: " : "warning: ") + f.message)
            }
        }
        if !layout.skipped.filter({ $0.reason.hasPrefix("unreachable") }).isEmpty {
            notes.append("unreachable hosts are left out; they stay on their current kernel")
        }
        var behind: [String: Int] = [:]
        for h in selected { if let b = facts.bastions[h.name] { behind[b, default: 0] += 1 } }
        for (b, n) in behind.sorted(by: { $0.key < $1.key }) {
            notes.append("\(n) host\(n == 1 ? " is" : "s are") reached via bastion \(b) (a direct-tcpip channel of its SSH session; its host key verified too)")
        }
        var perHost: String?
        if auto {
            if facts.offline {
                perHost = "decided per host at the survey (grub, grub-bls or systemd-boot, from its files); offline: not read, the steps show \(exampleDriver.name)'s commands"
            } else {
                perHost = choice.drivers.isEmpty ? "no host told" : BootloaderChoice.summary(choice.drivers)
                if !choice.errors.isEmpty {
                    notes.append("bootloader auto: \(choice.errors.count) host\(choice.errors.count == 1 ? "" : "s") refused, plan apply stops before touching any host: "
                                 + choice.errors.prefix(10).map(\.message).joined(separator: "; "))
                }
            }
        }
        // Each driver's notes once, for the drivers the hosts to roll use.
        let drivers = auto && !facts.offline ? Set(choice.drivers.values).sorted().compactMap(BootloaderDrivers.builtIn(named:)) : [exampleDriver]
        for d in drivers { notes += d.notes }
        return DryRunPreview(
            plan: .init(name: plan.name, description: plan.description, path: plan.path, targetRelease: plan.kernel.release,
                        bootloader: auto ? "auto" : exampleDriver.name, bootloaderPerHost: perHost),
            inventory: inventory.path, inventoryHosts: inventory.hosts.count, selectedHosts: selected.count, hostsToRoll: total,
            survey: .init(offline: facts.offline, reached: facts.offline ? 0 : selected.filter { facts.unreachable[$0.name] == nil }.count,
                          unreachable: facts.unreachable.count, releases: releases),
            waves: waves, skipped: layout.skipped.map { .init(host: $0.host.name, reason: $0.reason) },
            exampleHost: example?.name, steps: steps, otherDrivers: otherDrivers, gate: gate, notify: notify,
            onFailure: .init(rollback: plan.failure.rollback.rawValue, maxFailedHostsPerWave: plan.failure.maxFailedHostsPerWave.description,
                             maxFailedHosts: plan.failure.maxFailedHostsTotal.description, maxUnhealthyHosts: plan.failure.maxUnhealthyHosts?.description,
                             toleratedPerWave: layout.waves.map { plan.failure.maxFailedHostsPerWave.limit(of: $0.hosts.count) },
                             toleratedTotal: plan.failure.maxFailedHostsTotal.limit(of: total),
                             toleratedUnhealthy: plan.failure.maxUnhealthyHosts?.limit(of: total)),
            estimate: estimate, schedule: schedule(plan: plan, layout: layout, from: facts.now),
            scheduledStart: facts.scheduledStart.map(TimeText.iso), notes: notes)
    }

    /// `5 minutes`, `2 hours 30 minutes`: rounded up to 5 minutes, as a person would say it.
    static func roughly(_ seconds: Double) -> String {
        let minutes = max(5, Int((seconds / 300).rounded(.up)) * 5)
        let h = minutes / 60, m = minutes % 60
        let hs = h == 0 ? "" : "\(h) hour\(h == 1 ? "" : "s")"
        let ms = m == 0 ? "" : "\(m) minutes"
        return [hs, ms].filter { !$0.isEmpty }.joined(separator: " ")
    }

    static func limitText(_ v: Double, _ unit: PrometheusCheck.Unit) -> String {
        unit == .bytes && v >= 0 && v < 1.8e19 ? Quantity.formatBytes(UInt64(v)) : (v == v.rounded() && abs(v) < 1e15 ? String(Int64(v)) : "\(v)")
    }

    /// The steps for one host with the exact commands.
    /// `bootloader`: the example host's driver (nil: the plan's).
    public static func steps(plan: Plan, example: InventoryHost?, previousRelease: String?, grubConfig: String?,
                             packages: [ShippedPackage] = [], customers: Int?, bootloader: (any BootloaderDriver)? = nil) -> [DryRunPreview.Step] {
        let release = plan.kernel.release
        let prev = previousRelease ?? "<current release>"
        let bootloader = bootloader ?? BootloaderDrivers.driver(for: plan.bootloader)
        let listing = bootloader.entryListing
        let newEntry = listing == nil ? nil : bootloader.expectedEntry(in: grubConfig, release: release, like: previousRelease)
        let oldEntry = listing == nil ? nil : previousRelease.flatMap { p in grubConfig.flatMap { bootloader.entry(in: $0, release: p) } }
            ?? bootloader.expectedEntry(in: nil, release: prev, like: nil)
        var steps: [DryRunPreview.Step] = []
        steps.append(.init(step: "check", description: "read kernel, boot id, memory and OOM counter; take this rollout's lease on the host (\(HostLease.path), under flock: refused while another rollout, from any journal, holds it); need \(Quantity.formatBytes(plan.kernel.minBootFreeBytes)) free on /boot"
                               + (bootloader.preflightDescription.map { "; \(bootloader.name): " + $0 } ?? "")
                               + "; for a host of a later wave, this step runs while the wave before it soaks (unless a pause comes between)",
                           commands: [HealthGate.HostFacts.command] + (bootloader.preflight.map { [$0] } ?? []) + [HostCommands.bootFree]))
        if plan.kernel.packages.isEmpty {
            steps.append(.init(step: "install", description: "install \(release)", commands: HostCommands.install(plan, bootloader: bootloader)))
        } else {
            let dir = PackageCommands.directory(rollout: "<rollout id>")
            let files = packages.isEmpty ? plan.kernel.packages.map { "\($0.path) (\(Quantity.formatBytes($0.size)))" }
                : packages.map { "\($0.path) (\(Quantity.formatBytes($0.size)), SHA-256 \($0.sha256))" }
            let names = plan.kernel.packages.map(\.name)
            let shipped = packages.isEmpty ? plan.kernel.packages.map { ShippedPackage(name: $0.name, path: $0.path, kind: $0.kind.rawValue, size: $0.size, sha256: "") } : packages
            let limit = plan.kernel.uploadParallel
            let cap = plan.kernel.uploadBandwidth.map { ", all uploads together at most \(Quantity.formatBytes($0))/s" } ?? ""
            steps.append(.init(step: "upload", description: "ship \(files.joined(separator: ", ")) over the host's SSH session (SFTP) into \(dir) (mode 0700), at most \(limit) host\(limit == 1 ? "" : "s") uploading at once\(cap); a file already there with the same SHA-256 is not sent again; each upload lands as NAME.part, is checked with sha256sum on the host (a mismatch fails the host, nothing installed) and then renamed",
                               commands: [PackageCommands.prepare(directory: dir, names: names)]
                                   + names.flatMap { [PackageCommands.checksum(directory: dir, file: PackageCommands.partial($0)), PackageCommands.place(directory: dir, name: $0)] }))
            steps.append(.init(step: "install", description: "install \(release) from the shipped package\(names.count == 1 ? "" : "s"), then remove \(dir)",
                               commands: [PackageCommands.install(directory: dir, packages: shipped), PackageCommands.remove(directory: dir)]))
        }
        steps.append(.init(step: "stage", description: bootloader.stageDescription(release: release),
                           commands: (listing.map { [$0] } ?? []) + bootloader.stage(plan, entry: newEntry, previous: oldEntry)))
        if let n = plan.notify {
            steps.append(.init(step: "notify", description: "once the wave is staged, send the maintenance notice to \(customers.map { "\($0)" } ?? "the") customer\(customers == 1 ? "" : "s") of this host (once per customer per wave), stating the window from the lead time, the customer's last batch, the reboot timeout, the soak and a possible rollback reboot; then wait the lead time \(PlanFormat.duration(n.leadTime)) before the wave's first reboot",
                               commands: []))
        }
        func hooks(_ phase: HookSpec.Phase, _ when: String) {
            let list = plan.hooks[phase]
            guard !list.isEmpty else { return }
            let places = Set(list.map(\.on.rawValue)).sorted().joined(separator: " and ")
            steps.append(.init(step: phase.rawValue, description: "\(when): \(list.count) hook\(list.count == 1 ? "" : "s") on \(places) (ROLLCTL_HOST, ROLLCTL_ADDRESS, ROLLCTL_WAVE, ROLLCTL_ROLLOUT, ROLLCTL_RELEASE in the environment); "
                               + list.map { "\($0.on.rawValue), \(PlanFormat.duration($0.timeout)), on error \($0.onError.rawValue)" }.joined(separator: "; "),
                               commands: list.map(\.run)))
        }
        hooks(.preReboot, "right before this host's reboot; a failure fails it, unrebooted")
        if let block = plan.alertBlock {
            let matchers = block.matchers.map { m in example.map { m.forHost(name: $0.name, address: $0.address) } ?? m }
            steps.append(.init(step: "alerts", description: "before each batch: wait while Alertmanager \(block.url) has firing alerts matching \(matchers.map(\.description).joined(separator: ", "))\(block.perHost ? " (asked per host of the batch)" : " (fleet-wide)"), or cannot be asked; look every \(PlanFormat.duration(block.interval)), halt after \(PlanFormat.duration(block.maxWait))",
                               commands: []))
        }
        if let silence = plan.silence {
            let matchers = silence.matchers.map { m in example.map { m.forHost(name: $0.name, address: $0.address) } ?? m }
            steps.append(.init(step: "silence", description: "right before the reboot: a silence in Alertmanager \(silence.url) for \(matchers.map(\.description).joined(separator: ", ")) (\"\(silence.comment)\"), journaled; expired after the wave's gate verdict",
                               commands: []))
        }
        steps.append(.init(step: "reboot", description: "reboot (at most \(plan.waves.maxParallel) at once, one per failure domain), wait \(PlanFormat.duration(plan.reboot.settle)), then up to \(PlanFormat.duration(plan.reboot.timeout)) for a new boot id",
                           commands: [plan.reboot.command]))
        steps.append(.init(step: "verify", description: "the boot id changed and the release is \(release)", commands: [HostCommands.verify]))
        hooks(.postBoot, "after verify, before the soak; a failure fails the host")
        let g = plan.gate
        var gateDesc = "soak \(PlanFormat.duration(g.soak)), a sample every \(PlanFormat.duration(g.interval)) (\(g.plannedSamples) samples)"
        if let site = g.testSite, let h = example, let url = try? HTTPURL.expand(template: site.urlTemplate, address: h.address, name: h.name) {
            gateDesc += "; test site \(url) from rollctl, \(site.requestsPerSample) request\(site.requestsPerSample == 1 ? "" : "s") per sample"
        }
        var queries: [String] = []
        if let prom = g.prometheus {
            queries = prom.checks.map { c in
                let q = example.flatMap { try? c.query(name: $0.name, address: $0.address) } ?? c.query
                return "prometheus \(c.name): \(q)" + (c.max.map { " ≤ \(Self.limitText($0, c.unit))" } ?? "") + (c.min.map { " ≥ \(Self.limitText($0, c.unit))" } ?? "")
            }
            gateDesc += "; \(prom.checks.count) Prometheus check\(prom.checks.count == 1 ? "" : "s") at \(prom.url) per sample (no answer, an empty one or NaN: inconclusive)"
        }
        steps.append(.init(step: "gate", description: gateDesc, commands: [HealthGate.HostFacts.command] + g.customChecks.map(\.command) + queries))
        steps.append(.init(step: "commit", description: "after the wave's gate passed: make \(release) the default", commands: bootloader.commit(plan, entry: newEntry)))
        hooks(.afterCommit, "after the commit; a failure is reported")
        let rollback = bootloader.clearOneShot + bootloader.restoreDefault(plan, previousRelease: prev, previousEntry: oldEntry) + [plan.reboot.command]
        steps.append(.init(step: "rollback", description: "only on failure (policy: \(plan.failure.rollback.rawValue)): restore \(prev) as the default and reboot into it",
                           commands: rollback))
        hooks(.onHalt, "if the rollout halts, on rollctl's machine (ROLLCTL_REASON too); a failure is reported")
        return steps
    }

    /// The waves' batches on the schedule's windows (nil without a schedule): each wave after the
    /// lead time of its notices, each batch in a slot at its whole allowance, the soak after.
    public static func schedule(plan: Plan, layout: RolloutLayout, from now: Date) -> DryRunPreview.Schedule? {
        guard let s = plan.schedule else { return nil }
        var t = now
        var waves: [DryRunPreview.Schedule.WaveTimes] = []
        for w in layout.waves where !w.batches.isEmpty {
            let times = MaintenanceWindow.batchTimes(from: t.addingTimeInterval(plan.notify?.leadTime.seconds ?? 0), count: w.batches.count, plan: plan)
            guard let first = times.first, let last = times.last else { continue }
            waves.append(.init(wave: w.number, batches: times.count, firstBatchStart: TimeText.iso(first.start), lastBatchEnd: TimeText.iso(last.end),
                               firstBatchStartLocal: s.local(first.start), lastBatchEndLocal: s.local(last.end)))
            t = last.end.addingTimeInterval(plan.gate.soak.seconds)
        }
        return .init(summary: s.summary, timeZone: s.zoneName, waves: waves, doneBy: TimeText.iso(t), doneByLocal: s.local(t))
    }

    /// Minimum (instant boots), typical (boots of `typicalBoot`), maximum (every boot the whole timeout).
    public static func estimate(plan: Plan, layout: RolloutLayout) -> DryRunPreview.Estimate {
        let lead = plan.notify?.leadTime.seconds ?? 0
        let soak = plan.gate.soak.seconds
        let settle = plan.reboot.settle.seconds
        let timeout = plan.reboot.timeout.seconds
        let boot = min(typicalBoot.seconds, timeout)
        var minimum = 0.0, typical = 0.0, maximum = 0.0
        var perWave: [Double] = []
        for w in layout.waves {
            let b = Double(w.batches.count)
            minimum += lead + b * settle + soak
            let t = lead + b * (settle + boot) + soak
            typical += t
            perWave.append(t)
            maximum += lead + b * (settle + timeout) + soak
        }
        return .init(minimumSeconds: minimum, typicalSeconds: typical, maximumSeconds: maximum, typicalBootSeconds: boot,
                     perWaveTypicalSeconds: perWave)
    }

    /// Built-in maintenance notice, used when the plan names no templates folder.

    static func renderNotice(plan: Plan, customer: Customer, hosts: [InventoryHost], previous: String?, windowStart: String,
                             windowEnd: String, template: (subject: String, body: String)?) -> DryRunPreview.Notice {
        let ctx: [String: NoticeTemplate.Value] = [
            "company": .text(plan.notify?.company ?? ""), "customer_name": .text(customer.name), "customer_id": .text(customer.id),
            "customer_email": .text(customer.email), "hosts": .list(hosts.map { ["name": $0.name, "address": $0.address] }),
            "host_count": .text("\(hosts.count)"), "window_start": .text(windowStart), "window_end": .text(windowEnd),
            "kernel": .text(plan.kernel.release), "previous_kernel": .text(previous ?? ""), "plan": .text(plan.name), "wave": .text("1"),
            "lead_time": .text(PlanFormat.duration(plan.notify?.leadTime ?? .zero)),
        ]
        let t = template ?? (NoticeDefaults.subject(.maintenance), NoticeDefaults.body(.maintenance))
        return .init(to: "\(customer.name) <\(customer.email)>",
                     subject: NoticeTemplate.render(t.subject, ctx).trimmingCharacters(in: .whitespacesAndNewlines),
                     body: NoticeTemplate.render(t.body, ctx))
    }
}
