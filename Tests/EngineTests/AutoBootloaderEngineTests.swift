import Foundation
import Testing
import RolloutTesting
@testable import RolloutConfig
@testable import RolloutJournal
@testable import Engine

/// `bootloader: auto` through `RolloutService` (the survey tells each host's bootloader from its
/// files, the journal keeps it per host) and the real orchestrator, over a mixed fleet of
/// in-process Debian and RHEL hosts. A Debian host answers no dnf, grubby or grub2-* command and a
/// RHEL host no apt-get, grub.cfg or grub-* one (exit 127): a host driven with the other's driver fails.
@Suite("bootloader auto over a mixed in-process fleet", .serialized) struct AutoBootloaderEngineTests {
    static let flavours: [SimHost.Flavour] = [.debian, .rhel, .rhel, .debian, .rhel, .debian]

    static func mixed(waves: [WaveSize] = [.count(1), .percent(100)], postgres: Bool = false) throws -> SimFleet {
        let f = try SimFleet(count: 6, racks: 3, waves: waves, postgres: postgres, flavours: flavours)
        f.plan.bootloader = .auto
        return f
    }

    static func service(_ f: SimFleet) -> RolloutService {
        RolloutService(journal: f.journal, transport: { [hosts = f.hosts] in hosts[$0.name]! })
    }

    @Test(arguments: [false, true]) func eachHostIsRolledAndCommittedWithItsOwnDriver(onPostgres: Bool) async throws {
        let f = try Self.mixed(postgres: onPostgres)
        let service = Self.service(f)
        let created = try await service.create(LoadedPlan(plan: f.plan, inventory: f.inventory, customers: nil), parallel: 4)
        #expect(try await service.drive(created.orchestrator) == .completed)
        for (name, s) in await f.summaries() {
            let sim = f.hosts[name]!
            let h = try #require(try f.journal.host(created.id, name))
            #expect(h.state == .committed && s.release == SimFleet.new && s.reboots == 1, "\(name): \(s) \(h)")
            if sim.flavour == .rhel {
                // grubby's entry ids, dnf's install, grubby --set-default at the commit.
                #expect(h.bootloader == "grub-bls", "\(name)")
                #expect(h.bootEntryBefore == "\(sim.machineID)-\(SimFleet.old)" && h.bootEntryAfter == "\(sim.machineID)-\(SimFleet.new)", "\(h)")
                #expect(s.saved == "\(sim.machineID)-\(SimFleet.new)", "\(name): \(s)")
            } else {
                // grub.cfg's title paths, apt's install, grub-set-default at the commit.
                #expect(h.bootloader == "grub", "\(name)")
                #expect(h.bootEntryBefore?.hasPrefix("Advanced options for Debian GNU/Linux>") == true && h.bootEntryAfter?.hasSuffix(SimFleet.new) == true, "\(h)")
                #expect(s.saved == h.bootEntryAfter, "\(name): \(s)")
            }
        }
    }

    /// A leaky kernel on every host of the one wave: the halt's rollback restores each host's
    /// old default with its own driver and boots it back on the old kernel.
    @Test func aHaltRollsEachHostBackWithItsOwnDriver() async throws {
        let f = try Self.mixed(waves: [.percent(100)])
        f.plan.gate.soak = .seconds(10)
        f.plan.gate.sUnreclaimMax = 310_000 * 1024
        for h in f.hosts.values { await h.setLeak(on: SimFleet.new, bytesPerSecond: 1_073_741_824) }
        let service = Self.service(f)
        let created = try await service.create(LoadedPlan(plan: f.plan, inventory: f.inventory, customers: nil), parallel: 4)
        guard case .halted = try await service.drive(created.orchestrator) else { Issue.record("not halted"); return }
        for (name, s) in await f.summaries() {
            let sim = f.hosts[name]!
            let h = try #require(try f.journal.host(created.id, name))
            #expect(h.state == .rolledBack && s.release == SimFleet.old && s.reboots == 2, "\(name): \(s) \(h)")
            #expect(await sim.nextEntry == nil, "\(name): a one-shot entry is left")
            if sim.flavour == .rhel {
                #expect(h.bootloader == "grub-bls" && s.saved == "\(sim.machineID)-\(SimFleet.old)", "\(name): \(s)")
            } else {
                #expect(h.bootloader == "grub" && s.saved == h.bootEntryBefore, "\(name): \(s)")
            }
        }
        #expect(try f.journal.rollout(created.id)?.state == .rolledBack)
    }

    /// A host whose files do not tell its bootloader, or that answers hostile bytes: `plan apply`
    /// refuses, naming each host and what was found, before any rollout is journaled or host touched.
    @Test func aHostWhoseBootloaderCannotBeToldIsRefusedBeforeAnythingIsTouched() async throws {
        let f = try Self.mixed()
        await f.hosts["h03"]!.setBootFiles("ID=arch\nfound bootctl\n")
        await f.hosts["h05"]!.setBootFiles("ID=\"rhel\u{1b}[2J\"\nID_LIKE=fedora\u{0}\nfound /etc/shadow\nfound grubby\n" + String(repeating: "found grubby\n", count: 20_000))
        do {
            _ = try await Self.service(f).create(LoadedPlan(plan: f.plan, inventory: f.inventory, customers: nil), parallel: 4)
            Issue.record("created a rollout")
        } catch let e as InputErrors {
            let messages = e.errors.map(\.message)
            #expect(messages.count == 2, "\(messages)")
            #expect(messages.contains { $0.contains("host h03: cannot tell its bootloader (ID=arch; found bootctl)") }, "\(messages)")
            #expect(messages.contains { $0.contains("host h05: cannot tell its bootloader (no os-release ID; found grubby)") }, "\(messages)")
            #expect(!messages.joined().contains { $0.asciiValue.map { $0 < 32 } ?? false }, "control characters reached a message")
            #expect(e.errors.allSatisfy { $0.file == f.plan.path })
        }
        #expect(try f.journal.rollouts().isEmpty)
        for (name, s) in await f.summaries() {
            #expect(s.release == SimFleet.old && s.reboots == 0 && s.saved == nil, "\(name): \(s)")
            #expect(await f.hosts[name]!.leaseText == nil, "\(name) was leased")
        }
    }

    /// A rollout journaled before hosts had a bootloader column (NULL), whose plan had no
    /// `bootloader` key (grub then, `auto` when read back now): its hosts keep grub.
    @Test func hostsJournaledWithoutADriverKeepGrubUnderAnAutoPlan() async throws {
        let f = try SimFleet(count: 3, racks: 3)
        f.plan.bootloader = .auto
        let id = try f.create()
        #expect(try f.journal.hosts(id).allSatisfy { $0.bootloader == nil })
        let o = f.orchestrator(id)
        defer { o.releaseLease() }
        #expect(try await o.run() == .completed)
        for (name, s) in await f.summaries() { #expect(s.release == SimFleet.new && s.saved?.hasSuffix(SimFleet.new) == true, "\(name): \(s)") }
    }
}
