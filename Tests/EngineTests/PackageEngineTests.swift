import Foundation
import Testing
import RolloutTesting
import HealthGate
import SSH
@testable import NetIO
@testable import Basics
@testable import RolloutConfig
@testable import RolloutJournal
@testable import Engine

/// `kernel.packages` through the real orchestrator and journal over `SimHost`s: shipped and
/// installed once per host, a corrupted upload failing its host, and a driver killed at every
/// host command (uploads included) resumed without sending or installing anything twice.
@Suite("engine: kernel packages over in-process hosts", .serialized)
struct PackageEngineTests {
    static func withPackage(_ f: SimFleet) throws -> String {
        let path = f.dir + "/linux-image-\(SimFleet.new)_6.1.76-1_amd64.deb"
        try Data(("!<arch>\n" + String(repeating: "kernel image ", count: 4000)).utf8).write(to: URL(fileURLWithPath: path))
        f.plan.kernel.packages = [KernelPackage(path: path, name: (path as NSString).lastPathComponent, kind: .deb, size: 0)]
        f.plan.kernel.uploadParallel = 2
        return path
    }

    @Test func everyHostGetsThePackageOnceInstallsItOnceAndKeepsNoCopy() async throws {
        let f = try SimFleet(count: 6, racks: 3, waves: [.count(1), .percent(100)])
        _ = try Self.withPackage(f)
        let id = try f.create()
        let o = f.orchestrator(id)
        defer { o.releaseLease() }
        #expect(try await o.run() == .completed)
        for (name, h) in f.hosts {
            let (uploads, installs, files, reboots, release) = (await h.uploads, await h.installs, await h.files, await h.reboots, await h.release)
            #expect(uploads == 1, "\(name)")
            #expect(installs.count == 1 && installs[0].contains("/var/tmp/rollctl-\(id)/linux-image-"), "\(name): \(installs)")
            #expect(files.isEmpty, "\(name): \(files)")
            #expect(reboots == 1 && release == SimFleet.new, "\(name)")
        }
        // The digests were journaled once, before any host was touched.
        let events = try f.journal.events(id)
        let digests = events.filter { $0.host == nil && $0.message.hasPrefix("kernel packages: ") }
        #expect(digests.count == 1)
        #expect(events.firstIndex { $0.message.hasPrefix("kernel packages: ") }! < events.firstIndex { $0.host != nil && $0.kind == .intent }!)
    }

    @Test func noMoreHostsUploadAtOnceThanUploadParallel() async throws {
        let f = try SimFleet(count: 8, racks: 8, waves: [.percent(100)], maxParallel: 8)
        _ = try Self.withPackage(f)
        f.plan.kernel.uploadParallel = 3
        let id = try f.create()
        let gauge = UploadGauge()
        let sims = f.hosts
        let o = Orchestrator(rolloutID: id, plan: f.plan, inventory: f.inventory, journal: f.journal,
                             transport: { SlowUploadHost(host: sims[$0.name]!, gauge: gauge) })
        defer { o.releaseLease() }
        #expect(try await o.run() == .completed)
        // All 8 stage at once (the stage step runs 32 hosts at a time); 3 upload at a time.
        #expect(gauge.peak == 3, "peak \(gauge.peak)")
        #expect(gauge.total == 8)
    }

    @Test func aCorruptedUploadFailsItsHostBeforeAnythingIsInstalled() async throws {
        let f = try SimFleet(count: 3, racks: 3, waves: [.count(1), .percent(100)])
        _ = try Self.withPackage(f)
        for h in f.hosts.values { await h.setCorruptsUploads(true) }
        let id = try f.create()
        let o = f.orchestrator(id)
        defer { o.releaseLease() }
        guard case .halted = try await o.run() else { Issue.record("a corrupted canary did not halt the rollout"); return }
        let failed = try f.journal.hosts(id).filter { $0.state == .failed }
        #expect(failed.count == 1 && failed[0].reason?.contains("arrived corrupted") == true, "\(failed.map { "\($0.name): \($0.reason ?? "")" })")
        for (name, h) in f.hosts {
            let (installs, reboots, files) = (await h.installs, await h.reboots, await h.files)
            #expect(installs.isEmpty && reboots == 0 && files.isEmpty, "\(name)")
        }
    }

    @Test(arguments: [KillPoint.before, .after])
    func aDriverKilledAtEveryHostCommandShipsAndInstallsOnce(point: KillPoint) async throws {
        var n = 1
        let started = ContinuousClock.now
        while true {
            let f = try SimFleet(count: 2, racks: 2, waves: [.count(1), .percent(100)], maxParallel: 2)
            f.plan.reboot = RebootSpec(timeout: .seconds(2), settle: .zero)
            _ = try Self.withPackage(f)
            let dead = DriverIdentity(host: ProcessInfo.processInfo.hostName, pid: getpid(), startTime: 1, token: UUID().uuidString)
            let id = try f.create(as: dead)
            let kill = KillSwitch(at: n, point)
            let sims = f.hosts
            let first = Orchestrator(rolloutID: id, plan: f.plan, inventory: f.inventory, journal: f.journal,
                                     transport: { KillableHost(host: sims[$0.name]!, kill: kill) }, leaseTTL: .seconds(10), identity: dead)
            let ended = CancelFlag()
            let run = Task { defer { ended.set() }; return try await first.run() }
            var finished = false
            let deadline = ContinuousClock.now + .seconds(20)
            while kill.count < n {
                if try f.journal.rollout(id)?.state == .completed || ended.isSet || ContinuousClock.now > deadline { finished = true; break }
                try await Task.sleep(for: .milliseconds(2))
            }
            if finished {
                first.releaseLease()
                _ = run
                break
            }
            try await Task.sleep(for: .milliseconds(20))
            let journal = try Journal(path: f.journal.path, clock: f.clock)
            let second = Orchestrator(rolloutID: id, plan: f.plan, inventory: f.inventory, journal: journal,
                                      transport: { sims[$0.name]! }, identity: otherDriver())
            let outcome = try await second.run()
            second.releaseLease()
            first.releaseLease()
            let died = kill.died.map { "\($0.host) `\($0.command.prefix(60))`" } ?? "?"
            let context = "died \(point.rawValue) host command \(n) (\(died)):"
            #expect(outcome == .completed, "\(context) \(outcome)")
            for (name, h) in f.hosts {
                let (uploads, installs, files, release, boots) = (await h.uploads, await h.installs, await h.files, await h.release, await h.boots)
                // Sent once: a whole upload whose answer was lost is found on the host and kept.
                #expect(uploads == 1, "\(context) \(name): \(uploads) uploads")
                // Installed once, unless the driver died right after dpkg ran and before it could say so.
                let diedAtInstall = point == .after && kill.died?.host == name && kill.died?.command.contains("dpkg -i") == true
                #expect(installs.count == (diedAtInstall ? 2 : 1), "\(context) \(name): \(installs.count) installs")
                #expect(files.isEmpty, "\(context) \(name): \(files)")
                #expect(release == SimFleet.new && boots == [SimFleet.old, SimFleet.new], "\(context) \(name)")
            }
            n += 1
        }
        print("engine (packages): the driver died \(point.rawValue) each of \(n - 1) host commands; every resume shipped and installed once, in \(ContinuousClock.now - started)")
        #expect(n - 1 >= 30, "only \(n - 1) host commands in the rollout")
    }
}

/// The most uploads in flight at once, and how many there were.
final class UploadGauge: @unchecked Sendable {
    private let lock = NSLock()
    private var now = 0, most = 0, count = 0
    func begin() { lock.lock(); now += 1; count += 1; most = max(most, now); lock.unlock() }
    func end() { lock.lock(); now -= 1; lock.unlock() }
    var peak: Int { lock.lock(); defer { lock.unlock() }; return most }
    var total: Int { lock.lock(); defer { lock.unlock() }; return count }
}

/// A `SimHost` whose uploads take 100 ms of real time (a slow link).
struct SlowUploadHost: RemoteHost {
    let host: SimHost
    let gauge: UploadGauge
    var hostName: String { host.hostName }
    func run(_ command: String, timeout: Duration) async throws -> HostCommandResult { try await host.run(command, timeout: timeout) }
    func upload(file localPath: String, to remotePath: String, pacer: TransferPacer?,
                progress: (@Sendable (UInt64, UInt64) -> Void)?) async throws -> UploadResult {
        gauge.begin()
        defer { gauge.end() }
        try await Task.sleep(for: .milliseconds(100))
        return try await host.upload(file: localPath, to: remotePath, pacer: pacer, progress: progress)
    }
    func close() async {}
}
